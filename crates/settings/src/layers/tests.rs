//! Tests of the layering with a small schema of its own.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::testing::env;

#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Sample {
    name: String,
    slots: u32,
    #[serde(with = "crate::duration")]
    wait: Duration,
    dir: PathBuf,
    #[serde(deserialize_with = "crate::comma_list::deserialize")]
    labels: Vec<String>,
}

impl Default for Sample {
    fn default() -> Self {
        Self { name: String::new(), slots: 4, wait: Duration::from_secs(1), dir: PathBuf::new(), labels: Vec::new() }
    }
}

impl Settings for Sample {
    /// `--dir`.
    type Flags = Option<PathBuf>;

    const SCHEMA: Schema = Schema {
        what: "sample config",
        env_prefix: "SWITCHYARD_SAMPLE",
        config_file_env: "SWITCHYARD_SAMPLE_CONFIG",
        keys: &["name", "slots", "wait", "dir", "labels"],
        example: |key| (key == "wait").then_some("a duration like \"1s\""),
    };

    fn apply_flags(&mut self, dir: Option<PathBuf>, origins: &mut Origins) {
        origins.flag("dir", dir, &mut self.dir);
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.dir]
    }

    fn check(&self, origins: &Origins) -> Result<(), Error> {
        if self.slots == 0 {
            return Err(origins.invalid("slots", "must be at least 1"));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(origins.invalid("dir", "is required"));
        }
        Ok(())
    }
}

/// Loads `text` as sample.toml (with `dir = "d"` unless it sets `dir`) in a fresh folder.
fn load(text: &str, vars: &[(&str, &str)], dir_flag: Option<&str>) -> (tempfile::TempDir, Result<Sample, Error>) {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("sample.toml");
    let text = if text.contains("dir =") { text.to_string() } else { format!("dir = \"d\"\n{text}") };
    std::fs::write(&path, text).expect("write");
    let loaded = Sample::load(Some(&path), env(vars), dir_flag.map(PathBuf::from));
    (folder, loaded)
}

#[test]
fn the_environment_overrides_the_file_and_the_file_the_defaults() {
    let vars = [("SWITCHYARD_SAMPLE_SLOTS", "8"), ("SWITCHYARD_SAMPLE_CONFIG", "/x.toml"), ("OTHER_SLOTS", "1")];
    let (_dir, loaded) = load("name = \"a\"\nslots = 2\n", &vars, None);
    let sample = loaded.expect("valid");
    assert_eq!((sample.name.as_str(), sample.slots, sample.wait), ("a", 8, Duration::from_secs(1)));
}

#[test]
fn names_stay_text_and_lists_split_on_commas() {
    let vars = [("SWITCHYARD_SAMPLE_NAME", "1e5"), ("SWITCHYARD_SAMPLE_LABELS", "etl,gpu")];
    let (_dir, loaded) = load("", &vars, None);
    let sample = loaded.expect("valid");
    assert_eq!(sample.name, "1e5");
    assert_eq!(sample.labels, ["etl", "gpu"]);
}

#[test]
fn unknown_keys_name_the_file_or_the_variable() {
    let (_dir, loaded) = load("slot = 3\n", &[], None);
    let e = loaded.expect_err("unknown");
    assert!(
        matches!(&e, Error::UnknownKey { key, origin, .. } if key == "slot" && origin.ends_with("sample.toml:2:8"))
    );
    assert!(e.to_string().contains("(known keys: name, slots, wait, dir, labels)"), "{e}");
    let (_dir, loaded) = load("", &[("SWITCHYARD_SAMPLE_SLOTZ", "3")], None);
    let e = loaded.expect_err("unknown");
    assert!(e.to_string().contains("unknown key `slotz` in environment variable SWITCHYARD_SAMPLE_SLOTZ"), "{e}");
}

#[test]
fn bad_values_name_the_key_the_origin_and_how_to_write_it() {
    let (_dir, loaded) = load("", &[("SWITCHYARD_SAMPLE_WAIT", "5")], None);
    let e = loaded.expect_err("no unit");
    let text = e.to_string();
    assert!(text.starts_with("`wait` in environment variable SWITCHYARD_SAMPLE_WAIT: "), "{text}");
    assert!(text.ends_with("; write a duration like \"1s\""), "{text}");
    let (_dir, loaded) = load("slots = -1\n", &[], None);
    assert!(matches!(loaded.expect_err("negative"), Error::Invalid { key, .. } if key == "slots"));
}

#[test]
fn rule_errors_name_the_flag_then_the_variable_then_the_file() {
    let (_dir, loaded) = load("", &[("SWITCHYARD_SAMPLE_SLOTS", "0")], None);
    let e = loaded.expect_err("no slots").to_string();
    assert!(e.starts_with("`slots` in environment variable SWITCHYARD_SAMPLE_SLOTS: must be at least 1"), "{e}");
    let (_dir, loaded) = load("slots = 0\n", &[], None);
    let e = loaded.expect_err("no slots").to_string();
    // In the file, the message says where the value is written.
    assert!(e.starts_with("`slots` in sample config ") && e.contains("sample.toml:2:9: "), "{e}");
    let (_dir, loaded) = load("dir = \"\"\n", &[("SWITCHYARD_SAMPLE_DIR", "x")], Some(""));
    assert_eq!(loaded.expect_err("empty").to_string(), "`dir` in the flag --dir: is required");
    let e = Sample::load(None, env(&[("SWITCHYARD_SAMPLE_DIR", "d")]), None).map(|_| ());
    assert!(e.is_ok(), "{e:?}");
    let e = Sample::load(None, env(&[]), None).expect_err("no dir").to_string();
    assert_eq!(e, "`dir` in the built-in defaults: is required");
    let built = Sample { slots: 0, ..Sample::default() };
    assert_eq!(built.validate().expect_err("no slots").to_string(), "`slots` in the sample config: must be at least 1");
}

#[test]
fn relative_paths_resolve_against_the_files_folder_or_the_current_dir() {
    let (folder, loaded) = load("dir = \"data\"\n", &[], None);
    assert_eq!(loaded.expect("valid").dir, std::path::absolute(folder.path()).expect("absolute").join("data"));
    let (_folder, loaded) = load("", &[], Some("/abs"));
    assert_eq!(loaded.expect("valid").dir, PathBuf::from("/abs"));
    let sample = Sample::load(None, env(&[("SWITCHYARD_SAMPLE_DIR", "rel")]), None).expect("valid");
    assert_eq!(sample.dir, std::path::absolute("rel").expect("absolute"));
}

#[test]
fn file_problems_are_named() {
    crate::testing::assert_file_problems_are_named::<Sample>(|| None);
}
