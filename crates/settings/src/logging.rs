//! Logging for the two binaries (DESIGN.md §12): `--log-format text|json`
//! (`SWITCHYARD_LOG_FORMAT`), quiet by default, more with `-v`, `RUST_LOG` over both. Only the
//! binaries call [`init`]; libraries only emit events and spans.
//!
//! In JSON every line is one object with the event's fields at the top level and the fields of
//! the spans it happened in (`execution_id`, `task`, `agent`, `run_id` on both sides of a start)
//! under `span` and `spans`, so one search for an id follows a run across processes.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, spans' fields before the message.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format \"{other}\"; use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What to log: the filter used when `RUST_LOG` is not set, per `-v` count.
#[derive(Debug, Clone, Copy)]
pub struct Verbosity {
    /// No `-v`.
    pub quiet: &'static str,
    /// `-v`.
    pub verbose: &'static str,
}

/// Installs the global subscriber writing to stderr. `rust_log` is the `RUST_LOG` value, if
/// any, which wins over `-v`; an invalid one falls back to the default and says so.
pub fn init(format: LogFormat, verbose: u8, defaults: Verbosity, rust_log: Option<&str>) {
    let default = match verbose {
        0 => defaults.quiet,
        1 => defaults.verbose,
        _ => "trace",
    };
    let mut problem = None;
    let filter = match rust_log.filter(|value| !value.trim().is_empty()) {
        Some(value) => EnvFilter::try_new(value).unwrap_or_else(|e| {
            problem = Some(format!("RUST_LOG=\"{value}\" is not a valid filter ({e}); using \"{default}\""));
            EnvFilter::new(default)
        }),
        None => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(true).init();
        }
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_refuse_others_naming_the_choices() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        let error = "yaml".parse::<LogFormat>().expect_err("refused");
        assert!(error.contains("\"yaml\"") && error.contains("text or json"), "{error}");
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
