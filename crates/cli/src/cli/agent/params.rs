//! Job parameters: `--set name=value` to a `google.protobuf.Struct`, and a Struct back to JSON.
//!
//! A value that parses as JSON (a number, true/false, null, a list, an object or a quoted
//! string) is sent as that JSON value; anything else is sent as text. `--set region=emea` is the
//! text "emea", `--set batch=500` the number 500, `--set code='"042"'` the text "042". Integers
//! beyond 2^53 stay text, because a Struct number is a 64-bit float and would round them.

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

use super::Failure;

/// The largest integer a 64-bit float holds exactly.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Turns `--set name=value` arguments into a Struct; a later `--set` of a name wins.
pub fn parse_sets(sets: &[String]) -> Result<Struct, Failure> {
    let mut fields = BTreeMap::new();
    for set in sets {
        let Some((name, value)) = set.split_once('=') else {
            return Err(Failure::usage(format!("--set \"{set}\" is not name=value; write --set {set}=VALUE")));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Failure::usage(format!("--set \"{set}\" has no parameter name before `=`")));
        }
        fields.insert(name.to_string(), typed_value(value));
    }
    Ok(Struct { fields })
}

/// The value of one `--set`: JSON when it parses as JSON and survives the trip, text otherwise.
pub fn typed_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) if survives_as_struct_value(&json) => json_to_value(&json),
        _ => Value { kind: Some(Kind::StringValue(text.to_string())) },
    }
}

/// A JSON value as a protobuf Value (numbers become 64-bit floats).
pub fn json_to_value(json: &serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(map) => {
            Kind::StructValue(Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() })
        }
    };
    Value { kind: Some(kind) }
}

/// A Struct as a JSON object; whole numbers print without a fraction.
pub fn struct_to_json(fields: Option<&Struct>) -> serde_json::Value {
    let map = fields.map(|s| s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect());
    serde_json::Value::Object(map.unwrap_or_default())
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() <= EXACT_INTEGER_LIMIT => (*n as i64).into(),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into),
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(list)) => list.values.iter().map(value_to_json).collect(),
        Some(Kind::StructValue(s)) => struct_to_json(Some(s)),
    }
}

/// False when a number in the JSON would change on its way through a 64-bit float.
fn survives_as_struct_value(json: &serde_json::Value) -> bool {
    match json {
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u <= 1 << 53
            } else if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= 1 << 53
            } else {
                n.as_f64().is_some_and(|f| f.is_finite() && !(f.fract() == 0.0 && f.abs() > EXACT_INTEGER_LIMIT))
            }
        }
        serde_json::Value::Array(items) => items.iter().all(survives_as_struct_value),
        serde_json::Value::Object(map) => map.values().all(survives_as_struct_value),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sets(args: &[&str]) -> serde_json::Value {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        struct_to_json(Some(&parse_sets(&args).expect("valid sets")))
    }

    #[test]
    fn text_stays_text_and_json_is_typed() {
        let params = sets(&[
            "region=emea",
            "run_date=2026-11-21",
            "batch=500",
            "ratio=0.5",
            "full=true",
            "nothing=null",
            "tables=[\"a\",\"b\"]",
            "options={\"x\":1}",
            "code=\"042\"",
            "zip=007",
            "empty=",
            "spaced = a=b",
        ]);
        assert_eq!(
            params,
            json!({
                "region": "emea", "run_date": "2026-11-21", "batch": 500, "ratio": 0.5, "full": true,
                "nothing": null, "tables": ["a", "b"], "options": {"x": 1}, "code": "042", "zip": "007",
                "empty": "", "spaced": " a=b"
            })
        );
    }

    #[test]
    fn integers_a_float_would_round_stay_text() {
        assert_eq!(sets(&["id=12345678901234567890"]), json!({"id": "12345678901234567890"}));
        assert_eq!(sets(&["ids=[1, 12345678901234567890]"]), json!({"ids": "[1, 12345678901234567890]"}));
        assert_eq!(sets(&["id=9007199254740993"]), json!({"id": "9007199254740993"}));
        assert_eq!(sets(&["id=123456789012345678901234"]), json!({"id": "123456789012345678901234"}));
        assert_eq!(sets(&["id=-9007199254740992"]), json!({"id": -9_007_199_254_740_992_i64}));
    }

    #[test]
    fn a_later_set_of_the_same_name_wins() {
        assert_eq!(sets(&["region=emea", "region=apac"]), json!({"region": "apac"}));
    }

    #[test]
    fn malformed_sets_are_bad_command_lines() {
        for bad in ["region", "=emea", " =x"] {
            let failure = parse_sets(&[bad.to_string()]).unwrap_err();
            assert_eq!(failure.exit_code, 6, "{bad}");
        }
    }
}
