//! What an expression sees: the [`Scope`] of params, vars and task facts, and the conversions
//! between JSON and CEL values.

use std::sync::Arc;

use cel::objects::Key;
use indexmap::IndexMap;
use serde_json::Value as Json;

/// Parameters or variables: a name to a JSON value, in declaration order.
pub type Map = IndexMap<String, Json>;

/// What an expression can know about one task, as `tasks["<name>"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    /// `"success"`, `"failure"`, `"completion"`, `"canceled"` or `"not_run"`.
    pub result: String,
    /// The exit code of the task's process, if it ran one and it exited.
    pub exit_code: Option<i64>,
    /// How long the task ran, in milliseconds.
    pub duration_ms: u64,
    /// The task's captured output.
    pub output: String,
}

/// The variables an expression is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Bound to `params`.
    pub params: &'a Map,
    /// Bound to `vars`.
    pub vars: &'a Map,
    /// Bound to `tasks`.
    pub tasks: &'a IndexMap<String, TaskFacts>,
}

/// Converts a JSON value to CEL: integers become `int` (`uint` beyond `i64`), objects maps.
pub fn json_to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => n.as_f64().map_or(cel::Value::Null, cel::Value::Float),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => cel_map(fields.iter().map(|(k, v)| (k.clone(), json_to_cel(v)))),
    }
}

/// Converts a CEL value to JSON; map keys are stringified (and sorted, as CEL maps are
/// unordered), timestamps and durations become their CEL string forms (`"2024-01-01T00:00:00Z"`,
/// `"1.5s"`) and bytes a lossy UTF-8 string. Fails on non-finite floats and on values with
/// no JSON form (types, functions, optionals).
pub fn cel_to_json(value: &cel::Value) -> Result<Json, String> {
    Ok(match value {
        cel::Value::Null => Json::Null,
        cel::Value::Bool(b) => Json::Bool(*b),
        cel::Value::Int(i) => Json::from(*i),
        cel::Value::UInt(u) => Json::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("the result {f} is not a finite number"))?,
        cel::Value::String(s) => Json::String(s.to_string()),
        cel::Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        cel::Value::List(items) => Json::Array(items.iter().map(cel_to_json).collect::<Result<_, _>>()?),
        cel::Value::Map(map) => {
            let mut entries = map
                .map
                .iter()
                .map(|(k, v)| Ok((key_string(k), cel_to_json(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().collect())
        }
        cel::Value::Timestamp(t) => {
            Json::String(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        cel::Value::Duration(d) => Json::String(duration_string(d)),
        other => return Err(format!("a {} value has no JSON form", other.type_of())),
    })
}

/// A CEL map with string keys.
fn cel_map(entries: impl Iterator<Item = (String, cel::Value)>) -> cel::Value {
    let map = entries.map(|(k, v)| (Key::String(Arc::new(k)), v)).collect();
    cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
}

/// Params or vars as a CEL map.
pub(super) fn map_to_cel(map: &Map) -> cel::Value {
    cel_map(map.iter().map(|(k, v)| (k.clone(), json_to_cel(v))))
}

/// The `tasks` variable: a map from task name to a map of its facts.
pub(super) fn tasks_to_cel(tasks: &IndexMap<String, TaskFacts>) -> cel::Value {
    cel_map(tasks.iter().map(|(name, facts)| {
        let duration = i64::try_from(facts.duration_ms).map_or(cel::Value::UInt(facts.duration_ms), cel::Value::Int);
        let fields = [
            ("result", cel::Value::String(Arc::new(facts.result.clone()))),
            ("exit_code", facts.exit_code.map_or(cel::Value::Null, cel::Value::Int)),
            ("duration_ms", duration),
            ("output", cel::Value::String(Arc::new(facts.output.clone()))),
        ];
        let fields = fields.into_iter().map(|(k, v)| (k.to_string(), v));
        (name.clone(), cel_map(fields))
    }))
}

/// A CEL map key as a JSON object key.
fn key_string(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// CEL's `string(duration)`: whole seconds plus a trimmed fraction, e.g. `"1.5s"`.
fn duration_string(d: &chrono::Duration) -> String {
    let (secs, nanos) = (d.num_seconds(), d.subsec_nanos());
    let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
    let (secs, nanos) = (secs.unsigned_abs(), nanos.unsigned_abs());
    if nanos == 0 {
        format!("{sign}{secs}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{sign}{secs}.{}s", frac.trim_end_matches('0'))
    }
}
