//! Secret values and their masking: every occurrence of a secret's value becomes `***` in what
//! a run records (DESIGN.md §11), while expressions and templates still see the value.

use crate::expr::Map;
use crate::model::Package;

/// What a secret's value is replaced with.
pub const MASK: &str = "***";

/// The secret values of a run, replaced by [`MASK`] wherever they occur in recorded text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Masker {
    /// A masker for these values (empty ones are ignored: they occur everywhere).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut masker = Self::default();
        masker.add(values);
        masker
    }

    /// Adds values to mask.
    pub fn add(&mut self, values: impl IntoIterator<Item = String>) {
        for value in values {
            if !value.is_empty() && !self.values.contains(&value) {
                self.values.push(value);
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// True when `text` holds a secret value.
    pub fn reveals(&self, text: &str) -> bool {
        self.values.iter().any(|v| text.contains(v.as_str()))
    }

    /// `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_string();
        self.mask_in_place(&mut text);
        text
    }

    /// Replaces every secret value in `text` by `***`.
    pub fn mask_in_place(&self, text: &mut String) {
        for value in &self.values {
            if text.contains(value.as_str()) {
                *text = text.replace(value.as_str(), MASK);
            }
        }
    }

    /// Masks every string (and object key) inside a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => self.mask_in_place(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&k), v);
                }
            }
            _ => {}
        }
    }
}

/// The text of a parameter value as a task would see it in a template.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The values of `package`'s secret parameters among `parameters`.
pub fn secret_values(package: &Package, parameters: &Map) -> Vec<String> {
    package.secrets.iter().filter_map(|name| parameters.get(name)).filter(|v| !v.is_null()).map(value_text).collect()
}

/// The secret parameters of `package` that `parameters` gives no value.
pub fn missing_secrets(package: &Package, parameters: &Map) -> Vec<String> {
    package.secrets.iter().filter(|name| parameters.get(*name).is_none_or(|v| v.is_null())).cloned().collect()
}

/// `parameters` as recorded: secret parameters' values (and any other value holding a secret)
/// shown as `***`.
pub fn masked_parameters(package: &Package, parameters: &Map, masker: &Masker) -> Map {
    let mut shown = parameters.clone();
    for (name, value) in shown.iter_mut() {
        if package.is_secret(name) && !value.is_null() {
            *value = serde_json::Value::String(MASK.to_string());
        } else {
            masker.mask_json(value);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let masker = Masker::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(masker.mask("x abcdef y abc z"), "x *** y *** z");
        assert!(masker.reveals("..abc.."));
        assert!(!masker.reveals("ab"));
        let mut json = serde_json::json!({"k": ["abc", 1], "abc": "v"});
        masker.mask_json(&mut json);
        assert_eq!(json, serde_json::json!({"k": ["***", 1], "***": "v"}));
    }
}
