//! Binding `--set name=value` overrides to a package's parameters, typed like their defaults.

use crate::expr::Map;
use crate::model::Package;

/// A `--set` that names no parameter or whose value does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// `--set` without `=`.
    #[error("--set {0:?}: expected name=value")]
    Malformed(String),
    /// The package has no such parameter.
    #[error("package \"{package}\" has no parameter `{name}` (it has: {known})")]
    Unknown {
        /// The package.
        package: String,
        /// The name given.
        name: String,
        /// The names it has.
        known: String,
    },
    /// The value does not parse as the default's type.
    #[error("--set {name}={value}: {reason}")]
    BadValue {
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A secret parameter was given no value.
    #[error("secret parameter `{name}` has no value: pass --set {name}=... or set {env}", env = secret_env_var(name))]
    MissingSecret {
        /// The parameter.
        name: String,
    },
}

/// The environment variable a secret parameter's value can come from: `SWITCHYARD_PARAM_` and
/// the name in upper case (`db_password` reads `SWITCHYARD_PARAM_DB_PASSWORD`).
pub fn secret_env_var(name: &str) -> String {
    format!("SWITCHYARD_PARAM_{}", name.to_ascii_uppercase())
}

/// Parses `name=value` pairs and converts each value to the type of the parameter's default
/// (a string stays a string; integers, floats, booleans parse; lists and tables parse as JSON).
/// Every secret parameter must get a value; a secret's value is never echoed in an error.
pub fn bind_parameters(package: &Package, sets: &[String]) -> Result<Map, ParameterError> {
    let mut bound = Map::new();
    for set in sets {
        let (name, value) = set.split_once('=').ok_or_else(|| ParameterError::Malformed(set.clone()))?;
        let name = name.trim();
        let Some(default) = package.parameters.get(name) else {
            let known: Vec<&str> = package.parameters.keys().map(String::as_str).collect();
            return Err(ParameterError::Unknown {
                package: package.name.clone(),
                name: name.to_string(),
                known: if known.is_empty() { "none".into() } else { known.join(", ") },
            });
        };
        let shown = if package.is_secret(name) { super::MASK } else { value };
        let bad = |reason: &str| ParameterError::BadValue {
            name: name.to_string(),
            value: shown.to_string(),
            reason: reason.to_string(),
        };
        let typed = match default {
            serde_json::Value::String(_) | serde_json::Value::Null => serde_json::Value::String(value.to_string()),
            serde_json::Value::Bool(_) => match value {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => return Err(bad("expected true or false")),
            },
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                serde_json::Value::from(value.trim().parse::<i64>().map_err(|_| bad("expected an integer"))?)
            }
            serde_json::Value::Number(_) => {
                let f: f64 = value.trim().parse().map_err(|_| bad("expected a number"))?;
                serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| bad("expected a finite number"))?
            }
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                let parsed: serde_json::Value =
                    serde_json::from_str(value).map_err(|e| bad(&format!("expected JSON ({e})")))?;
                if std::mem::discriminant(&parsed) != std::mem::discriminant(default) {
                    return Err(bad(if default.is_array() {
                        "expected a JSON list"
                    } else {
                        "expected a JSON object"
                    }));
                }
                parsed
            }
        };
        bound.insert(name.to_string(), typed);
    }
    if let Some(name) = super::missing_secrets(package, &bound).into_iter().next() {
        return Err(ParameterError::MissingSecret { name });
    }
    Ok(bound)
}
