//! Durations written as humantime text (`"500ms"`, `"30s"`, `"7d"`), for
//! `#[serde(with = "switchyard_settings::duration")]`.

use std::time::Duration;

use serde::{Deserializer, Serializer};

/// Reads `"500ms"`, `"2s"`, `"1m"`, `"7d"`; a bare number has no unit and is refused.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    humantime_serde::deserialize(deserializer)
}

/// Writes a duration the way [`deserialize`] reads it.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    humantime_serde::serialize(duration, serializer)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        wait: Duration,
    }

    fn read(text: &str) -> Result<Duration, String> {
        let value = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| e.to_string())?;
        value.try_deserialize::<Holder>().map(|h| h.wait).map_err(|e| e.to_string())
    }

    #[test]
    fn humantime_text_reads_as_a_duration() {
        assert_eq!(read("wait = \"500ms\""), Ok(Duration::from_millis(500)));
        assert_eq!(read("wait = \"1m\""), Ok(Duration::from_secs(60)));
        assert_eq!(read("wait = \"7d\""), Ok(Duration::from_secs(7 * 86400)));
        assert!(read("wait = \"soon\"").is_err());
        assert!(read("wait = \"5\"").is_err(), "a number without a unit is refused");
    }
}
