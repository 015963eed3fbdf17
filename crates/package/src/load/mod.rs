//! Loading a package file: parse, read every field with its position, resolve constraints,
//! load referenced child packages, and report all of a file's errors together.

mod checkpoint;
mod constraints;
mod reader;
mod sql;
mod tasks;
mod transactions;
mod warnings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use crate::diagnostics::{Diagnostic, Diagnostics, Severity, SourceMap};
use crate::expr::Map;
use crate::model::Package;
use reader::{Fields, Reader};
use switchyard_settings::Limits;

/// A package that loaded without errors, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The package, ready to run.
    pub package: Arc<Package>,
    /// Warnings about this file and the child packages it references.
    pub warnings: Diagnostics,
}

/// Why a package could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist (dtexec exit code 4).
    #[error("package file {} not found", .0.display())]
    NotFound(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read package file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than `[limits] package_file`.
    #[error("package file {} is {size} bytes, over the limit package_file = {limit} bytes ([limits] in the config)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The file (or a child it references) has errors; warnings come along.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// How packages are loaded: the bounds of `[limits]`, and where child packages may be.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Bounds on the file, its tasks, names, parameters and expressions.
    pub limits: Limits,
    /// When set (on servers), child packages resolve inside this folder only: absolute paths
    /// and `..` are refused, so no file elsewhere on the host is opened (DESIGN.md §11). A local
    /// `switchyard run` leaves it unset and reads what its user can.
    pub root: Option<PathBuf>,
}

/// Loads and validates a package file and every child package it references by a literal path,
/// with the default limits and no confinement.
pub fn load_package(path: &Path) -> Result<Loaded, LoadError> {
    load_package_with(path, &LoadOptions::default())
}

/// [`load_package`] with `options`.
pub fn load_package_with(path: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let limit = options.limits.package_file;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > limit as u64 => {
            return Err(LoadError::TooLarge { path: path.to_path_buf(), size: meta.len(), limit });
        }
        _ => {}
    }
    match std::fs::read_to_string(path) {
        Ok(text) => load_package_text_with(path, &text, options),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound(path.to_path_buf())),
        Err(source) => Err(LoadError::Unreadable { path: path.to_path_buf(), source }),
    }
}

/// Loads a package from text already read; `path` names it in messages and anchors relative paths.
pub fn load_package_text(path: &Path, text: &str) -> Result<Loaded, LoadError> {
    load_package_text_with(path, text, &LoadOptions::default())
}

/// [`load_package_text`] with `options`.
pub fn load_package_text_with(path: &Path, text: &str, options: &LoadOptions) -> Result<Loaded, LoadError> {
    let limit = options.limits.package_file;
    if text.len() > limit {
        return Err(LoadError::TooLarge { path: path.to_path_buf(), size: text.len() as u64, limit });
    }
    let mut loader = Loader { options: options.clone(), ..Loader::default() };
    let package = loader.load_text(path, text);
    let mut diagnostics = Diagnostics(loader.diagnostics);
    diagnostics.sort();
    match package {
        Some(package) if !diagnostics.has_errors() => Ok(Loaded { package, warnings: diagnostics }),
        _ => Err(LoadError::Invalid(diagnostics)),
    }
}

/// Loads a file and the child packages it references, remembering what it has loaded.
#[derive(Default)]
pub(crate) struct Loader {
    options: LoadOptions,
    diagnostics: Vec<Diagnostic>,
    /// Canonical paths of packages being loaded, outermost first: a repeat is a cycle.
    stack: Vec<PathBuf>,
    loaded: HashMap<PathBuf, Option<Arc<Package>>>,
}

impl Loader {
    /// Loads a child package referenced from a parent; None when it has errors (reported).
    pub(crate) fn load_child(&mut self, dir: &Path, relative: &str) -> Result<Option<Arc<Package>>, String> {
        let path = &confine(self.options.root.as_deref(), dir, relative)?;
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("child package file {} not found", path.display()));
            }
            Err(e) => return Err(format!("cannot read child package file {}: {e}", path.display())),
        };
        if let Some(at) = self.stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = self.stack[at..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned()))
                .collect();
            return Err(format!("child packages form a cycle: {}", chain.join(" -> ")));
        }
        if let Some(done) = self.loaded.get(&canonical) {
            return Ok(done.clone());
        }
        if let Some(root) = &self.options.root
            && !root.canonicalize().is_ok_and(|root| canonical.starts_with(root))
        {
            return Err(format!("child package path \"{relative}\" leads outside the execution's package files"));
        }
        let limit = self.options.limits.package_file;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > limit as u64
        {
            return Err(format!(
                "child package file {} is {} bytes, over the limit package_file = {limit} bytes",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read child package file {}: {e}", path.display()))?;
        let package = self.load_text(path, &text);
        self.loaded.insert(canonical, package.clone());
        Ok(package)
    }

    fn load_text(&mut self, path: &Path, text: &str) -> Option<Arc<Package>> {
        let map = SourceMap::new(path, text);
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.stack.push(canonical);
        let (root, parse_errors) = DeTable::parse_recoverable(text);
        let package = if parse_errors.is_empty() {
            let limits = self.options.limits.clone();
            let mut reader = Reader::new(&map, &limits);
            let package = read_document(&mut reader, self, root.get_ref(), root.span(), path).map(|mut package| {
                package.source_hash = hex::encode(Sha256::digest(text.as_bytes()));
                package
            });
            let has_errors = reader.diagnostics.iter().any(|d| d.severity == Severity::Error);
            self.diagnostics.append(&mut reader.diagnostics);
            if has_errors { None } else { package.map(Arc::new) }
        } else {
            for (at, message) in syntax_errors(&parse_errors) {
                self.diagnostics.push(map.diagnostic(Severity::Error, at, "", message));
            }
            None
        };
        self.stack.pop();
        package
    }
}

fn read_document(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    root: &DeTable<'_>,
    span: std::ops::Range<usize>,
    path: &Path,
) -> Option<Package> {
    let mut top = Fields::new(root, span.clone(), "");
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };

    let header = top.require(reader, "package", "a [package] table with at least `name`");
    let mut package = Package {
        name: String::new(),
        description: None,
        file: path.to_path_buf(),
        dir: dir.clone(),
        max_concurrent: -1,
        max_errors: 1,
        parameters: Map::new(),
        secrets: Vec::new(),
        tasks: Vec::new(),
        connections: indexmap::IndexMap::new(),
        transaction: Default::default(),
        isolation: Default::default(),
        checkpoint: None,
        source_hash: String::new(),
    };
    if let Some(header) = header
        && let Some(table) = reader.table(header, "package")
    {
        read_header(reader, Fields::new(table, header.span(), "package"), &mut package);
    }
    if let Some(params) = top.take("parameters")
        && let Some(table) = reader.table(params, "parameters")
    {
        if table.len() > reader.limits.parameters {
            let message =
                Limits::refusal("[parameters]", table.len(), "parameters", reader.limits.parameters, "parameters");
            reader.error(&params.span(), "parameters", message);
        }
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            let field = format!("parameters.{name}");
            if !is_identifier(&name) {
                reader.error(&key.span(), &field, "parameter names must be identifiers (letters, digits and `_`, not starting with a digit) so expressions can say params.<name>");
                continue;
            }
            if let Some(table) = value.get_ref().as_table()
                && table.get("secret").is_some()
            {
                if read_secret(reader, Fields::new(table, value.span(), field)) {
                    package.parameters.insert(name.clone(), serde_json::Value::Null);
                    package.secrets.push(name);
                }
            } else if let Some(v) = reader.json(value, &field) {
                package.parameters.insert(name, v);
            }
        }
    }
    if let Some(connections) = top.take("connections") {
        package.connections = sql::read_connections(reader, connections, &package.parameters);
    }
    let context = tasks::Context { dir: &dir, connections: &package.connections };
    if let Some(list) = top.take("tasks") {
        package.tasks = tasks::read_tasks(reader, loader, &context, list, "tasks");
    }
    top.finish(reader, "at the top of a package (expected package, parameters, connections, tasks)");
    let count = count_tasks(&package.tasks);
    if count > reader.limits.package_tasks {
        let message = Limits::refusal("the file", count, "package_tasks", reader.limits.package_tasks, "tasks");
        reader.error(&span, "tasks", message);
    }
    warnings::warn(reader, &package);
    transactions::check(reader, &package);
    Some(package)
}

fn read_header(reader: &mut Reader<'_>, mut fields: Fields<'_, '_>, package: &mut Package) {
    if let Some(v) = fields.require(reader, "name", "the package's name") {
        package.name = reader.non_empty_string(v, "package.name").unwrap_or_default();
        if let Err(message) = reader.limits.check_name(&package.name, "package name") {
            reader.error(&v.span(), "package.name", message);
        }
    }
    if let Some(v) = fields.take("description") {
        package.description = reader.string(v, "package.description");
    }
    if let Some(v) = fields.take("max_concurrent") {
        let n = reader.integer(v, "package.max_concurrent");
        match n {
            Some(n) if n == -1 || n >= 1 => package.max_concurrent = n,
            Some(n) => reader.error(
                &v.span(),
                "package.max_concurrent",
                format!("{n} is not allowed: use a number of tasks (1 or more) or -1 for logical CPUs + 2"),
            ),
            None => {}
        }
    }
    if let Some(v) = fields.take("max_errors")
        && let Some(n) = reader.integer_in(v, "package.max_errors", 0, i64::from(u32::MAX))
    {
        package.max_errors = n as u32;
    }
    (package.transaction, package.isolation) = sql::read_transaction(reader, &mut fields);
    if let Some(v) = fields.take("checkpoint") {
        package.checkpoint = checkpoint::read(reader, v, &fields.path_of("checkpoint"));
    }
    fields.finish(
        reader,
        "in [package] (expected name, description, max_concurrent, max_errors, transaction, isolation, checkpoint)",
    );
}

/// Reads `[parameters.NAME]` with a `secret` key: `secret = true` and nothing else (a secret's
/// value comes from `--set` or the environment, never from the file). True when it is a secret.
fn read_secret(reader: &mut Reader<'_>, mut fields: Fields<'_, '_>) -> bool {
    let path = fields.path_of("secret");
    let secret = match fields.take("secret") {
        Some(v) => {
            match reader.boolean(v, &path) {
                Some(true) => true,
                Some(false) => {
                    reader.error(&v.span(), &path, "only `secret = true` is allowed here: write `name = default` for a parameter that is not secret");
                    false
                }
                None => false,
            }
        }
        None => false,
    };
    for key in ["value", "default"] {
        if let Some(v) = fields.take(key) {
            let message = "a secret parameter has no value in the file: give it with --set or SWITCHYARD_PARAM_<NAME>";
            reader.error(&v.span(), &fields.path_of(key), message);
        }
    }
    fields.finish(reader, "in a secret parameter (expected secret = true)");
    secret
}

/// The tasks of a file, containers' tasks included.
fn count_tasks(tasks: &[crate::model::Task]) -> usize {
    tasks.iter().map(|t| 1 + t.kind.children().map_or(0, count_tasks)).sum()
}

/// Where a child package named `relative` by a package in `dir` is. With a `root` (servers),
/// absolute paths and `..` are refused, so the child is a file of the root's own.
pub fn confine(root: Option<&Path>, dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    let Some(_) = root else {
        return Ok(if path.is_absolute() { path.to_path_buf() } else { dir.join(path) });
    };
    if path.is_absolute() || relative.contains('\0') {
        return Err(format!(
            "child package path \"{relative}\" is refused: on a server a child package is named relative to its parent, inside the execution's package files"
        ));
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!(
            "child package path \"{relative}\" is refused: `..` is not allowed on a server (child packages stay inside the execution's package files)"
        ));
    }
    Ok(dir.join(path))
}

/// True for names usable as `params.<name>` or `vars.<name>` in expressions.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod limits_tests;

/// The TOML parser's errors as (byte offset, message), each said once: a text nested past the
/// parser's recursion limit otherwise yields the same error hundreds of times at 1:1.
pub fn syntax_errors(errors: &[toml::de::Error]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for e in errors {
        let at = e.span().map_or(0, |s| s.start);
        let message = match e.message().trim_end() {
            "recursion limit" => "invalid TOML: nested too deeply (past the TOML parser's recursion limit); \
                                  flatten the nesting"
                .to_string(),
            other => format!("invalid TOML: {other}"),
        };
        if !out.contains(&(at, message.clone())) {
            out.push((at, message));
        }
    }
    out
}
