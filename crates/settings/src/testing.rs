//! Helpers for the tests of a service's settings (feature `testing`): an environment from
//! pairs, and a config file written in a fresh folder.

use std::path::PathBuf;

use crate::{Error, Settings};

/// The environment `load` takes, from `(name, value)` pairs.
pub fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Writes `text` as `name` in a fresh folder, removed when the returned guard drops.
pub fn config_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the config file");
    (dir, path)
}

/// Loads `text`, written as `name` in a fresh folder, under the variables `vars` and `flags`.
pub fn load_text<S: Settings>(name: &str, text: &str, vars: &[(&str, &str)], flags: S::Flags) -> Result<S, Error> {
    let (_dir, path) = config_file(name, text);
    S::load(Some(&path), env(vars), flags)
}

/// Checks that a missing file and a file that is not TOML are refused with messages that name
/// the file's kind ("agent config") and its path.
pub fn assert_file_problems_are_named<S: Settings + std::fmt::Debug>(flags: impl Fn() -> S::Flags) {
    let what = S::SCHEMA.what;
    let (_dir, path) = config_file("broken.toml", "name = \n");
    let e = S::load(Some(&path), env(&[]), flags()).expect_err("not TOML");
    assert!(matches!(&e, Error::Syntax { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("{what} {}", path.display())), "{e}");
    let missing = std::path::Path::new("/nonexistent/nope.toml");
    let e = S::load(Some(missing), env(&[]), flags()).expect_err("missing");
    assert!(matches!(&e, Error::Read { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("cannot read {what} /nonexistent/nope.toml: ")), "{e}");
}
