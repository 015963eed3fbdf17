//! A list written as a TOML array in the file or as comma-separated text in an environment
//! variable, for `#[serde(deserialize_with = "switchyard_settings::comma_list::deserialize")]`.
//! Items are kept as written; the service trims them and drops empty ones.

use serde::Deserializer;
use serde::de::{Error, SeqAccess, Visitor};

/// Reads `["etl", "gpu"]` or `"etl,gpu"`; a lone number (`LABELS=7`) is one item.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(ListOrText)
}

struct ListOrText;

impl<'de> Visitor<'de> for ListOrText {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of labels or a comma-separated string")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(text.split(',').map(str::to_string).collect())
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(vec![n.to_string()])
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(vec![n.to_string()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(items)
    }
}
