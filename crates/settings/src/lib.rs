//! What the agent's and the coordinator's configuration share (DESIGN.md §5, §8): the layering
//! of built-in defaults, the TOML file, `SWITCHYARD_*` environment variables and flags; errors
//! that name the key and where its value came from; durations; server addresses; names.
//!
//! Each service keeps its own keys, defaults and rules across fields, and describes its file by
//! implementing [`Settings`]. The sections both services read alike live here: `[tls]` (ca,
//! cert, key; DESIGN.md §11) in [`TlsFiles`], which the rule for `https://` in [`Address`] (by
//! its [`Transport`]) and the loopback-unless-`insecure` rule consult. The TLS machinery itself
//! (rustls, roles) is `switchyard-tls`. `[limits]` (message sizes, name lengths, ...; DESIGN.md
//! §11) is the [`limits`] module. With the `logging` feature, [`logging`] installs the binaries'
//! log output (`--log-format text|json`, DESIGN.md §12).

mod address;
pub mod comma_list;
pub mod duration;
mod error;
mod layers;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
mod name;
mod position;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;

pub use address::{Address, AddressError};
pub use error::Error;
pub use layers::{Origins, Schema, Settings};
pub use limits::Limits;
pub use name::{NAME_RULE, NameError, check_name, is_valid_name};
pub use tls::{TlsFiles, Transport, insecure_http_message, insecure_listen_message};
