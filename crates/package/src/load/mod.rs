//! Loading a package file: parse, read every field with its position, resolve constraints,
//! load referenced child packages, and report all of a file's errors together.

mod constraints;
mod reader;
mod tasks;
mod warnings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use crate::diagnostics::{Diagnostic, Diagnostics, Severity, SourceMap};
use crate::expr::Map;
use crate::model::Package;
use reader::{Fields, Reader};

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
    /// The file (or a child it references) has errors; warnings come along.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Loads and validates a package file and every child package it references by a literal path.
pub fn load_package(path: &Path) -> Result<Loaded, LoadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_package_text(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoadError::NotFound(path.to_path_buf())),
        Err(source) => Err(LoadError::Unreadable { path: path.to_path_buf(), source }),
    }
}

/// Loads a package from text already read; `path` names it in messages and anchors relative paths.
pub fn load_package_text(path: &Path, text: &str) -> Result<Loaded, LoadError> {
    let mut loader = Loader::default();
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
    diagnostics: Vec<Diagnostic>,
    /// Canonical paths of packages being loaded, outermost first: a repeat is a cycle.
    stack: Vec<PathBuf>,
    loaded: HashMap<PathBuf, Option<Arc<Package>>>,
}

impl Loader {
    /// Loads a child package referenced from a parent; None when it has errors (reported).
    pub(crate) fn load_child(&mut self, path: &Path) -> Result<Option<Arc<Package>>, String> {
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
            let mut reader = Reader::new(&map);
            let package = read_document(&mut reader, self, root.get_ref(), root.span(), path);
            let has_errors = reader.diagnostics.iter().any(|d| d.severity == Severity::Error);
            self.diagnostics.append(&mut reader.diagnostics);
            if has_errors { None } else { package.map(Arc::new) }
        } else {
            for e in parse_errors {
                let at = e.span().map_or(0, |s| s.start);
                let message = format!("invalid TOML: {}", e.message().trim_end());
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
    top.refuse_unsupported(reader, &["connections"], "connections come with the `sql` task");

    let header = top.require(reader, "package", "a [package] table with at least `name`");
    let mut package = Package {
        name: String::new(),
        description: None,
        file: path.to_path_buf(),
        dir: dir.clone(),
        max_concurrent: -1,
        max_errors: 1,
        parameters: Map::new(),
        tasks: Vec::new(),
    };
    if let Some(header) = header
        && let Some(table) = reader.table(header, "package")
    {
        read_header(reader, Fields::new(table, header.span(), "package"), &mut package);
    }
    if let Some(params) = top.take("parameters")
        && let Some(table) = reader.table(params, "parameters")
    {
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            let field = format!("parameters.{name}");
            if !is_identifier(&name) {
                reader.error(&key.span(), &field, "parameter names must be identifiers (letters, digits and `_`, not starting with a digit) so expressions can say params.<name>");
                continue;
            }
            if let Some(v) = reader.json(value, &field) {
                package.parameters.insert(name, v);
            }
        }
    }
    let context = tasks::Context { dir: &dir };
    if let Some(list) = top.take("tasks") {
        package.tasks = tasks::read_tasks(reader, loader, &context, list, "tasks");
    }
    top.finish(reader, "at the top of a package (expected package, parameters, tasks)");
    warnings::warn(reader, &package);
    Some(package)
}

fn read_header(reader: &mut Reader<'_>, mut fields: Fields<'_, '_>, package: &mut Package) {
    if let Some(v) = fields.require(reader, "name", "the package's name") {
        package.name = reader.non_empty_string(v, "package.name").unwrap_or_default();
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
    tasks::read_transaction(reader, &mut fields);
    fields.refuse_unsupported(reader, &["checkpoint"], "checkpoints come with restartable packages");
    fields.finish(reader, "in [package] (expected name, description, max_concurrent, max_errors)");
}

/// True for names usable as `params.<name>` or `vars.<name>` in expressions.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
