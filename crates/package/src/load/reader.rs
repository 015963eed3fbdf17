//! Typed reads of a parsed TOML tree that record every problem with its position and field path.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::{Diagnostic, Severity, SourceMap};
use crate::expr::{Assignment, Expression, parse_assignments};
use crate::model::ParamValue;
use crate::template::Template;
use switchyard_settings::Limits;

/// A TOML value with its byte span.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Collects the diagnostics of one file while its tree is read.
pub(crate) struct Reader<'m> {
    pub map: &'m SourceMap,
    /// The bounds of `[limits]` checked while reading (names, expressions, parameters).
    pub limits: &'m Limits,
    pub diagnostics: Vec<Diagnostic>,
    /// Where each constraint was written, by field path, for warnings found after loading.
    pub constraint_spans: std::collections::HashMap<String, Range<usize>>,
    /// Where other fields checked after loading were written (a `sql` task's `connection`).
    pub field_spans: std::collections::HashMap<String, Range<usize>>,
}

impl<'m> Reader<'m> {
    pub fn new(map: &'m SourceMap, limits: &'m Limits) -> Self {
        Self {
            map,
            limits,
            diagnostics: Vec::new(),
            constraint_spans: Default::default(),
            field_spans: Default::default(),
        }
    }

    pub fn error(&mut self, span: &Range<usize>, path: &str, message: impl Into<String>) {
        let d = self.map.diagnostic(Severity::Error, span.start, path, message);
        self.diagnostics.push(d);
    }

    pub fn warning(&mut self, span: &Range<usize>, path: &str, message: impl Into<String>) {
        let d = self.map.diagnostic(Severity::Warning, span.start, path, message);
        self.diagnostics.push(d);
    }

    pub fn string(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => self.wrong_type(value, path, "a string", other),
        }
    }

    pub fn non_empty_string(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let s = self.string(value, path)?;
        if s.trim().is_empty() {
            self.error(&value.span(), path, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn integer(&mut self, value: &Value<'_>, path: &str) -> Option<i64> {
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(&value.span(), path, "integer out of range");
                    None
                }
            },
            other => self.wrong_type(value, path, "an integer", other),
        }
    }

    /// An integer in `min..=max`, with a message naming the allowed range.
    pub fn integer_in(&mut self, value: &Value<'_>, path: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.integer(value, path)?;
        if n < min || n > max {
            self.error(&value.span(), path, format!("{n} is out of range ({min} to {max})"));
            return None;
        }
        Some(n)
    }

    pub fn boolean(&mut self, value: &Value<'_>, path: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => self.wrong_type(value, path, "true or false", other),
        }
    }

    pub fn duration(&mut self, value: &Value<'_>, path: &str) -> Option<Duration> {
        let text = self.string(value, path)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    &value.span(),
                    path,
                    format!("invalid duration \"{text}\" ({e}); write it like \"500ms\", \"10s\" or \"5m\""),
                );
                None
            }
        }
    }

    pub fn array<'v, 'i>(&mut self, value: &'v Value<'i>, path: &str) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(a.as_ref()),
            other => self.wrong_type(value, path, "an array", other),
        }
    }

    pub fn table<'v, 'i>(&mut self, value: &'v Value<'i>, path: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => self.wrong_type(value, path, "a table", other),
        }
    }

    /// A string that may embed `{{ expr }}`; syntax errors point into the string.
    pub fn template(&mut self, value: &Value<'_>, path: &str) -> Option<Template> {
        let text = self.string(value, path)?;
        match Template::parse(&text) {
            Ok(t) => self.within_limits(value, path, t.expressions()).then_some(t),
            Err(e) => {
                let at = string_offset(self.map.text(), &value.span(), e.offset);
                self.error(&(at..at), path, format!("bad template: {}", e.message));
                None
            }
        }
    }

    /// A CEL expression; syntax errors name their position.
    pub fn expression(&mut self, value: &Value<'_>, path: &str) -> Option<Expression> {
        let text = self.string(value, path)?;
        match Expression::compile(&text) {
            Ok(e) => self.within_limits(value, path, std::iter::once(&e)).then_some(e),
            Err(e) => {
                self.error(&value.span(), path, format!("bad expression `{}`: {e}", shorten(&text)));
                None
            }
        }
    }

    /// Checks expressions against `[limits]`: their length (`expression`) and, with the lists
    /// written in them, their work (`expression_steps`); false after reporting one that is over.
    fn within_limits<'e>(
        &mut self,
        value: &Value<'_>,
        path: &str,
        expressions: impl Iterator<Item = &'e Expression>,
    ) -> bool {
        for e in expressions {
            let len = e.source().len();
            if len > self.limits.expression {
                let message = Limits::refusal("the expression", len, "expression", self.limits.expression, "bytes");
                self.error(&value.span(), path, message);
                return false;
            }
            let steps = e.static_steps();
            if steps > self.limits.expression_steps {
                let message = format!(
                    "expression `{}` cannot be evaluated: {}",
                    shorten(e.source()),
                    crate::expr::over_budget(steps, self.limits.expression_steps)
                );
                self.error(&value.span(), path, message);
                return false;
            }
        }
        true
    }

    /// SSIS-style assignments `i = 0; j = 1`.
    pub fn assignments(&mut self, value: &Value<'_>, path: &str) -> Option<Vec<Assignment>> {
        let text = self.string(value, path)?;
        match parse_assignments(&text) {
            Ok(a) => self.within_limits(value, path, a.iter().map(|a| &a.value)).then_some(a),
            Err(e) => {
                self.error(&value.span(), path, format!("bad assignment `{text}`: {e}"));
                None
            }
        }
    }

    /// A parameter value: strings may be templates, anything else is a literal.
    pub fn param_value(&mut self, value: &Value<'_>, path: &str) -> Option<ParamValue> {
        if let DeValue::String(s) = value.get_ref()
            && s.contains("{{")
        {
            return self.template(value, path).map(ParamValue::Template);
        }
        self.json(value, path).map(ParamValue::Literal)
    }

    /// Any TOML value as JSON (datetimes become strings).
    pub fn json(&mut self, value: &Value<'_>, path: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match value.get_ref() {
            DeValue::String(s) => J::String(s.to_string()),
            DeValue::Integer(_) => J::from(self.integer(value, path)?),
            DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => J::Number(n),
                None => {
                    self.error(&value.span(), path, "only finite numbers are allowed");
                    return None;
                }
            },
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, item) in a.iter().enumerate() {
                    out.push(self.json(item, &format!("{path}[{i}]"))?);
                }
                J::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                for (k, v) in t.iter() {
                    let key = k.get_ref().to_string();
                    let item = self.json(v, &format!("{path}.{key}"))?;
                    out.insert(key, item);
                }
                J::Object(out)
            }
        })
    }

    fn wrong_type<T>(&mut self, value: &Value<'_>, path: &str, expected: &str, found: &DeValue<'_>) -> Option<T> {
        self.error(&value.span(), path, format!("expected {expected}, found {}", found.type_str()));
        None
    }
}

/// The fields of one table, read one by one; what is left unread is reported as unknown.
pub(crate) struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    path: String,
    taken: Vec<String>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub fn new(table: &'t DeTable<'i>, span: Range<usize>, path: impl Into<String>) -> Self {
        Self { table, span, path: path.into(), taken: Vec::new() }
    }

    /// Where the table starts (its header or opening brace).
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The path of a field of this table.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// The table's own path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes a field, marking it known.
    pub fn take(&mut self, key: &str) -> Option<&'t Value<'i>> {
        self.taken.push(key.to_string());
        self.table.get(key)
    }

    /// Takes a field that must be present; a missing one is reported at the table.
    pub fn require(&mut self, reader: &mut Reader<'_>, key: &str, what: &str) -> Option<&'t Value<'i>> {
        let value = self.take(key);
        if value.is_none() {
            let path = self.path.clone();
            reader.error(&self.span, &path, format!("missing required field `{key}` ({what})"));
        }
        value
    }

    /// True when the field is present (without taking it).
    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Reports every field not taken, with `context` saying where it was found.
    pub fn finish(self, reader: &mut Reader<'_>, context: &str) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref();
            if !self.taken.iter().any(|t| t == name.as_ref()) {
                let path = if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) };
                reader.error(&key.span(), &path, format!("unknown field `{name}` {context}"));
            }
        }
    }
}

/// The byte offset in the file of byte `offset` of a string value's content: past the opening
/// quote (or triple quote, and the newline a triple quote may be followed by, which is not part
/// of the string). Exact for strings without escapes, close otherwise.
/// `text` cut to 200 characters for a message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn string_offset(text: &str, span: &Range<usize>, offset: usize) -> usize {
    let raw = text.get(span.start..span.end).unwrap_or_default();
    let open = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        let rest = &raw[3..];
        3 + if rest.starts_with("\r\n") { 2 } else { usize::from(rest.starts_with('\n')) }
    } else {
        1
    };
    span.start + open + offset
}
