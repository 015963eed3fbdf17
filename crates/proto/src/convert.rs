//! Wire <-> domain conversions both services share: parameter maps as `google.protobuf.Struct`
//! and UTC times as `google.protobuf.Timestamp`.

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};

/// Parameters as the engine holds them: JSON values by name, in order.
pub type ParamMap = IndexMap<String, serde_json::Value>;

/// A protobuf Struct as a parameter map (absent: empty).
pub fn params_from_struct(s: Option<Struct>) -> ParamMap {
    let mut fields: Vec<(String, Value)> = s.map(|s| s.fields.into_iter().collect()).unwrap_or_default();
    // Struct fields travel as a map without order; keep them stable by name.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.into_iter().map(|(k, v)| (k, json_from_value(v))).collect()
}

/// A parameter map as a protobuf Struct.
pub fn struct_from_params(map: &ParamMap) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), value_from_json(v))).collect() }
}

/// A protobuf Value as JSON; whole numbers come back as integers.
pub fn json_from_value(v: Value) -> serde_json::Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.into_iter().map(json_from_value).collect()),
        Some(Kind::StructValue(s)) => {
            serde_json::Value::Object(s.fields.into_iter().map(|(k, v)| (k, json_from_value(v))).collect())
        }
    }
}

/// JSON as a protobuf Value.
pub fn value_from_json(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue { values: a.iter().map(value_from_json).collect() }),
        serde_json::Value::Object(o) => {
            Kind::StructValue(Struct { fields: o.iter().map(|(k, v)| (k.clone(), value_from_json(v))).collect() })
        }
    };
    Value { kind: Some(kind) }
}

/// A UTC time as a Timestamp.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

/// A Timestamp as a UTC time (None when out of range).
pub fn from_timestamp(ts: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_survive_a_round_trip_with_integers_kept_whole() {
        let mut map = ParamMap::new();
        map.insert("count".into(), serde_json::json!(5));
        map.insert("list".into(), serde_json::json!([1, "a", true]));
        map.insert("ratio".into(), serde_json::json!(0.5));
        map.insert("region".into(), serde_json::json!("emea"));
        assert_eq!(params_from_struct(Some(struct_from_params(&map))), map);
    }

    #[test]
    fn timestamps_round_trip() {
        let at = Utc::now();
        assert_eq!(from_timestamp(&timestamp(at)), Some(at));
    }
}
