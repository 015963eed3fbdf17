//! Typed reads of a job file's TOML tree that record every problem with its position.

use super::read::Value;
use super::*;
/// Collects the errors of one text, turning byte offsets into lines and columns.
pub(super) struct Reader<'t> {
    origin: &'t str,
    text: &'t str,
    line_starts: Vec<usize>,
    pub(super) errors: Vec<JobError>,
}

impl<'t> Reader<'t> {
    pub(super) fn new(text: &'t str, origin: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { origin, text, line_starts, errors: Vec::new() }
    }

    pub(super) fn error(&mut self, offset: usize, field: &str, message: impl Into<String>) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        self.errors.push(JobError {
            origin: self.origin.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn string(&mut self, value: &Value<'_>, field: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => self.wrong_type(value, field, "a string", other),
        }
    }

    pub(super) fn integer(&mut self, value: &Value<'_>, field: &str) -> Option<i64> {
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(value.span().start, field, "integer out of range");
                    None
                }
            },
            other => self.wrong_type(value, field, "an integer", other),
        }
    }

    pub(super) fn integer_in(&mut self, value: &Value<'_>, field: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.integer(value, field)?;
        if n < 0 && min == 0 {
            self.error(value.span().start, field, format!("must not be negative (found {n})"));
            return None;
        }
        if n < min || n > max {
            self.error(value.span().start, field, format!("{n} is out of range ({min} to {max})"));
            return None;
        }
        Some(n)
    }

    pub(super) fn duration(&mut self, value: &Value<'_>, field: &str) -> Option<Duration> {
        let text = self.string(value, field)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let message = format!("invalid duration \"{text}\" ({e}); write it like \"500ms\", \"10s\" or \"5m\"");
                self.error(value.span().start, field, message);
                None
            }
        }
    }

    pub(super) fn positive_duration(&mut self, value: &Value<'_>, field: &str) -> Option<Duration> {
        let d = self.duration(value, field)?;
        if d.is_zero() {
            self.error(value.span().start, field, "must be longer than 0s; leave it out for no timeout");
            return None;
        }
        Some(d)
    }

    pub(super) fn array<'v, 'i>(&mut self, value: &'v Value<'i>, field: &str) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(a.as_ref()),
            other => self.wrong_type(value, field, "an array", other),
        }
    }

    pub(super) fn table<'v, 'i>(&mut self, value: &'v Value<'i>, field: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => self.wrong_type(value, field, "a table", other),
        }
    }

    /// Any TOML value as JSON (datetimes become strings).
    pub(super) fn json(&mut self, value: &Value<'_>, field: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match value.get_ref() {
            DeValue::String(s) => J::String(s.to_string()),
            DeValue::Integer(_) => J::from(self.integer(value, field)?),
            DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => J::Number(n),
                None => {
                    self.error(value.span().start, field, "only finite numbers are allowed");
                    return None;
                }
            },
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, item) in a.iter().enumerate() {
                    out.push(self.json(item, &format!("{field}[{i}]"))?);
                }
                J::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                for (k, v) in t.iter() {
                    let key = k.get_ref().to_string();
                    let item = self.json(v, &format!("{field}.{key}"))?;
                    out.insert(key, item);
                }
                J::Object(out)
            }
        })
    }

    pub(super) fn wrong_type<T>(
        &mut self,
        value: &Value<'_>,
        field: &str,
        expected: &str,
        found: &DeValue<'_>,
    ) -> Option<T> {
        self.error(value.span().start, field, format!("expected {expected}, found {}", found.type_str()));
        None
    }
}

/// The fields of one table, taken one by one; what is left is reported as unknown.
pub(super) struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    /// Where the table starts (its `[[steps]]` header; 0 for the root).
    pub(super) at: usize,
    path: String,
    taken: Vec<String>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub(super) fn new(table: &'t DeTable<'i>, at: usize, path: &str) -> Self {
        Self { table, at, path: path.to_string(), taken: Vec::new() }
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    pub(super) fn take(&mut self, key: &str) -> Option<&'t Value<'i>> {
        self.taken.push(key.to_string());
        self.table.get(key)
    }

    /// A field that must be present; a missing one is reported at the table, under its own path.
    pub(super) fn require(&mut self, reader: &mut Reader<'_>, key: &str, what: &str) -> Option<&'t Value<'i>> {
        let value = self.take(key);
        if value.is_none() {
            reader.error(self.at, &self.path_of(key), format!("missing required field `{key}` ({what})"));
        }
        value
    }

    /// Where a key is written.
    pub(super) fn key_at(&self, key: &str) -> Option<usize> {
        self.table.get_key_value(key).map(|(k, _)| k.span().start)
    }

    pub(super) fn finish(self, reader: &mut Reader<'_>, context: &str, known: &[&str]) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref();
            if !self.taken.iter().any(|t| t == name.as_ref()) {
                let message = format!("unknown field `{name}` {context}; known fields are {}", known.join(", "));
                reader.error(key.span().start, &self.path_of(name), message);
            }
        }
    }
}
