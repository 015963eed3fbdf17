//! The layering (DESIGN.md §5, STYLE.md "Configuration"): built-in defaults, the TOML file,
//! `PREFIX_*` environment variables (`__` between nested keys), then flags; unknown keys refused;
//! and where each key's value came from, so every message can name the file, the variable or the
//! flag to fix.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::Error;

/// What a service's config file is: the words its messages use, its environment prefix and its
/// keys: a service's [`Settings::SCHEMA`].
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// How messages name the file: "agent config".
    pub what: &'static str,
    /// `SWITCHYARD_AGENT`: the variable `SWITCHYARD_AGENT_SLOTS` sets `slots`.
    pub env_prefix: &'static str,
    /// The variable, under the prefix, that names the file rather than a key; it is skipped.
    pub config_file_env: &'static str,
    /// Every top-level key; any other is refused, naming where it was written.
    pub keys: &'static [&'static str],
    /// How to write a key's value (`"a duration like \"30s\""`), added to a message about a
    /// value of the wrong type, where serde's own words do not say.
    pub example: fn(&str) -> Option<&'static str>,
}

/// A service's settings: its file's [`Schema`], its flags, the paths that resolve against the
/// file's folder and its rules across fields. The layering itself is [`Settings::load`].
pub trait Settings: DeserializeOwned {
    /// The command-line flags that override the file and the environment.
    type Flags;
    /// What the config file is.
    const SCHEMA: Schema;

    /// Applies the flags that were given, each through [`Origins::flag`] so messages name it,
    /// and tidies values (trimmed text, no empty items) before the rules.
    fn apply_flags(&mut self, flags: Self::Flags, origins: &mut Origins);

    /// The paths that, when relative, mean relative to the config file's folder.
    fn relative_paths(&mut self) -> Vec<&mut PathBuf>;

    /// Rules across fields; [`Origins::invalid`] makes an error that names the key and where its
    /// value came from.
    fn check(&self, origins: &Origins) -> Result<(), Error>;

    /// Layers the built-in defaults (serde's `default`), the file (optional), the environment
    /// variables under the schema's prefix (`__` separates nested keys) and the flags; resolves
    /// relative paths against the file's folder (the current dir without a file); then checks.
    /// `env` is a parameter so tests never set the process environment.
    fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Self::Flags,
    ) -> Result<Self, Error> {
        let (mut settings, mut origins) = Self::SCHEMA.layer::<Self>(file, env)?;
        settings.apply_flags(flags, &mut origins);
        origins.resolve_relative(settings.relative_paths())?;
        settings.check(&origins)?;
        Ok(settings)
    }

    /// Checks settings built in code; messages say they came from "the agent config".
    fn validate(&self) -> Result<(), Error> {
        self.check(&Origins::in_code(Self::SCHEMA.what))
    }
}

/// Where each layer's values came from, for messages.
#[derive(Debug, Clone)]
pub struct Origins {
    what: &'static str,
    env_prefix: &'static str,
    /// Built in code rather than layered: every value comes from "the agent config".
    in_code: bool,
    file: Option<PathBuf>,
    /// The file's text, to say where in it a key is written.
    file_text: Option<String>,
    env: Vec<(String, String)>,
    flags: Vec<&'static str>,
}

impl Schema {
    /// Layers `T::default()` (serde's `default`), the file (optional) and the variables of `env`
    /// under the prefix. No value is parsed as a number or a boolean before serde sees it: a
    /// name like "1e5" or "nan" stays text.
    fn layer<T: DeserializeOwned>(
        &self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(T, Origins), Error> {
        let prefix = format!("{}_", self.env_prefix).to_uppercase();
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.to_uppercase().starts_with(&prefix) && !k.eq_ignore_ascii_case(self.config_file_env))
            .collect();
        let origins = Origins {
            what: self.what,
            env_prefix: self.env_prefix,
            in_code: false,
            file: file.map(Path::to_path_buf),
            file_text: file.and_then(|path| std::fs::read_to_string(path).ok()),
            env,
            flags: Vec::new(),
        };

        let mut builder = config::Config::builder();
        if let Some(path) = file {
            // The config crate's own message for a missing file does not say which flag to fix.
            if let Err(source) = std::fs::File::open(path) {
                return Err(Error::Read { what: self.what, path: path.to_path_buf(), source });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
        }
        let environment = config::Environment::with_prefix(self.env_prefix)
            .prefix_separator("_")
            .separator("__")
            .source(Some(origins.env.iter().cloned().collect()));
        let layered = builder.add_source(environment).build().map_err(|e| self.error(e, &origins))?;

        let table =
            layered.cache.clone().into_table().map_err(|e| Error::Other { what: self.what, message: e.to_string() })?;
        let mut unknown: Vec<&String> = table.keys().filter(|k| !self.keys.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(Error::UnknownKey { key: key.to_string(), origin: origins.of(key), known: self.keys });
        }
        let value = layered.try_deserialize().map_err(|e| self.error(e, &origins))?;
        Ok((value, origins))
    }

    fn error(&self, error: config::ConfigError, origins: &Origins) -> Error {
        match error {
            config::ConfigError::FileParse { cause, .. } => Error::Syntax {
                what: self.what,
                path: origins.file.clone().unwrap_or_default(),
                message: cause.to_string().trim_end().to_string(),
            },
            config::ConfigError::Type { unexpected, expected, key: Some(key), .. } => {
                let message = self.with_example(&key, format!("found {unexpected}, expected {expected}"));
                Error::Invalid { origin: origins.of(&key), key, message }
            }
            config::ConfigError::At { error, key: Some(key), .. } => {
                let message = self.with_example(&key, error.to_string());
                Error::Invalid { origin: origins.of(&key), key, message }
            }
            other => Error::Other { what: self.what, message: other.to_string() },
        }
    }

    /// A serde message, followed by how to write the key's value.
    fn with_example(&self, key: &str, message: String) -> String {
        match (self.example)(top_level(key)) {
            Some(example) => format!("{message}; write {example}"),
            None => message,
        }
    }
}

impl Origins {
    /// For settings built in code: every value comes from "the {what}".
    fn in_code(what: &'static str) -> Self {
        Self { what, env_prefix: "", in_code: true, file: None, file_text: None, env: Vec::new(), flags: Vec::new() }
    }

    /// Puts a flag's value in `setting` when the flag was given, and notes that the flag set
    /// `key`, so a message about it names the flag.
    pub fn flag<T>(&mut self, key: &'static str, flag: Option<T>, setting: &mut T) {
        if let Some(value) = flag {
            *setting = value;
            self.flags.push(key);
        }
    }

    /// `key` (or a field path like `agents[0].name`) breaks a rule; `message` says what to write.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid { key: key.to_string(), origin: self.of(key), message: message.into() }
    }

    /// The layer that set `key` last: "the flag --data-dir", "environment variable
    /// SWITCHYARD_AGENT_SLOTS", "agent config /etc/agent.toml:12:9" (where the value is written)
    /// or "the built-in defaults". A field path like `agents[0].name` is looked up by its
    /// top-level key, and placed in the file by the whole path.
    pub fn of(&self, key: &str) -> String {
        if self.in_code {
            return format!("the {}", self.what);
        }
        let path = key;
        let key = top_level(key);
        if self.flags.contains(&key) {
            return format!("the flag --{}", key.replace('_', "-"));
        }
        let env_key = format!("{}_{key}", self.env_prefix).to_uppercase();
        let nested = format!("{env_key}__");
        let from_env = self.env.iter().rev().find(|(k, _)| {
            let k = k.to_uppercase();
            k == env_key || k.starts_with(&nested)
        });
        if let Some((var, _)) = from_env {
            return format!("environment variable {var}");
        }
        let Some(file) = &self.file else { return "the built-in defaults".to_string() };
        let place = self.file_text.as_deref().and_then(|text| crate::position::position_of(text, path));
        match place {
            Some((line, column)) => format!("{} {}:{line}:{column}", self.what, file.display()),
            None => format!("{} {}", self.what, file.display()),
        }
    }

    /// Makes each non-empty relative path absolute against the config file's folder (the
    /// current dir without a file): `packages_dir = "packages"` means beside the file.
    fn resolve_relative(&self, paths: Vec<&mut PathBuf>) -> Result<(), Error> {
        let base = match self.file.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).map_err(|e| Error::Other {
            what: self.what,
            message: format!("cannot resolve {}: {e}", base.display()),
        })?;
        for path in paths {
            if !path.as_os_str().is_empty() && path.is_relative() {
                *path = base.join(&*path);
            }
        }
        Ok(())
    }
}

/// `agents` for `agents[0].name`, `labels` for `labels[1]`.
fn top_level(key: &str) -> &str {
    key.split(['.', '[']).next().unwrap_or(key)
}

#[cfg(test)]
mod tests;
