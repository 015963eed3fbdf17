//! Why a configuration cannot be used, naming the key and where its value came from.

use std::path::PathBuf;

/// Why a configuration cannot be used. `what` names the file's kind ("agent config"); `origin`
/// says where a value came from: the file, an environment variable or a flag.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The file given with `--config` cannot be opened.
    #[error("cannot read {what} {}: {source}; check the path given with --config", path.display())]
    Read {
        /// "agent config" or "coordinator config".
        what: &'static str,
        /// The file as given.
        path: PathBuf,
        /// Why it cannot be opened.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{what} {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// "agent config" or "coordinator config".
        what: &'static str,
        /// The file as given.
        path: PathBuf,
        /// The TOML parser's words.
        message: String,
    },
    /// A key the service does not know, in the file or the environment.
    #[error("unknown key `{key}` in {origin}; remove it or fix its spelling (known keys: {})", known.join(", "))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was written.
        origin: String,
        /// Every key the service knows.
        known: &'static [&'static str],
    },
    /// A value of the wrong type or against a rule.
    #[error("`{key}` in {origin}: {message}")]
    Invalid {
        /// The key, or a field path like `agents[0].name`.
        key: String,
        /// Where its value came from.
        origin: String,
        /// What is wrong and what to write.
        message: String,
    },
    /// Anything else the layering reports.
    #[error("{what}: {message}")]
    Other {
        /// "agent config" or "coordinator config".
        what: &'static str,
        /// What went wrong.
        message: String,
    },
}
