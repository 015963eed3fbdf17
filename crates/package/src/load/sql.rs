//! Reading `[connections.NAME]`, the `sql` task, and `transaction` / `isolation`.

use std::path::Path;

use indexmap::IndexMap;

use super::reader::{Fields, Reader, Value};
use crate::expr::{Map, Scope};
use crate::model::{Connection, DatabaseKind, Isolation, SqlStatement, SqlTask, TransactionOption};

/// What `url` must look like.
const URL_FORMS: &str = "sqlite://PATH (relative to the package's folder) or postgres://user@host:port/db";

/// Reads `[connections]`. A url that is a template is rendered with the parameters' defaults
/// to learn its kind where it can be (a secret parameter has no default: only the run can tell).
pub(crate) fn read_connections(
    reader: &mut Reader<'_>,
    value: &Value<'_>,
    defaults: &Map,
) -> IndexMap<String, Connection> {
    let mut connections = IndexMap::new();
    let Some(table) = reader.table(value, "connections") else { return connections };
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let path = format!("connections.{name}");
        if !super::is_identifier(&name) {
            reader.error(
                &key.span(),
                &path,
                "connection names must be identifiers (letters, digits and `_`, not starting with a digit)",
            );
            continue;
        }
        let Some(table) = reader.table(value, &path) else { continue };
        let mut f = Fields::new(table, value.span(), path.clone());
        let url = f.require(reader, "url", URL_FORMS).and_then(|v| {
            let url = reader.template(v, &f.path_of("url"))?;
            Some((url, v))
        });
        f.finish(reader, "in a connection (expected url)");
        let Some((url, url_value)) = url else { continue };
        let known = match url.literal() {
            Some(text) => Some(text.to_string()),
            None => {
                let (vars, tasks) = (Map::new(), IndexMap::new());
                url.render(&Scope { params: defaults, vars: &vars, tasks: &tasks }).ok()
            }
        };
        let kind = known.as_deref().and_then(DatabaseKind::of_url);
        // A template's kind is a guess from the defaults: the run checks the rendered url.
        if let Some(text) = url.literal()
            && kind.is_none()
        {
            reader.error(
                &url_value.span(),
                &f_path(&path, "url"),
                format!("unsupported connection url \"{text}\": use {URL_FORMS}"),
            );
        }
        if let (Some(DatabaseKind::Sqlite), Some(text)) = (kind, &known)
            && text.trim_start_matches("sqlite://").is_empty()
        {
            reader.error(
                &url_value.span(),
                &f_path(&path, "url"),
                "sqlite:// needs a file path, e.g. sqlite://warehouse.db",
            );
        }
        connections.insert(name.clone(), Connection { name, url, kind });
    }
    connections
}

fn f_path(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// Reads the fields of a `sql` task; `connections` are the package's own.
pub(crate) fn read_sql_task(
    reader: &mut Reader<'_>,
    f: &mut Fields<'_, '_>,
    dir: &Path,
    connections: &IndexMap<String, Connection>,
) -> Option<SqlTask> {
    let connection_value = f.require(reader, "connection", "the name of a connection under [connections]");
    let connection_path = f.path_of("connection");
    let connection = connection_value.and_then(|v| {
        let name = reader.non_empty_string(v, &connection_path)?;
        reader.field_spans.insert(connection_path.clone(), v.span());
        if connections.contains_key(&name) {
            return Some(name);
        }
        let known: Vec<&str> = connections.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "this package has no [connections]".to_string()
        } else {
            format!("connections: {}", known.join(", "))
        };
        reader.error(&v.span(), &connection_path, format!("no connection named \"{name}\" ({known})"));
        None
    });
    let statement = match (f.take("statement"), f.take("file")) {
        (Some(v), None) => {
            let text = reader.non_empty_string(v, &f.path_of("statement"))?;
            Some(SqlStatement { text, file: None })
        }
        (None, Some(v)) => {
            let path = f.path_of("file");
            let relative = reader.non_empty_string(v, &path)?;
            let file = dir.join(&relative);
            match std::fs::read_to_string(&file) {
                Ok(text) if text.trim().is_empty() => {
                    reader.error(&v.span(), &path, format!("SQL file {} is empty", file.display()));
                    None
                }
                Ok(text) => Some(SqlStatement { text, file: Some(file) }),
                Err(e) => {
                    reader.error(&v.span(), &path, format!("cannot read SQL file {}: {e}", file.display()));
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            reader.error(&f.span(), f.path(), "give either `statement` or `file`, not both");
            None
        }
        (None, None) => {
            reader.error(
                &f.span(),
                f.path(),
                "missing required field `statement` (SQL text) or `file` (a .sql file, relative to the package)",
            );
            None
        }
    };
    let mut bind = Vec::new();
    if let Some(v) = f.take("bind") {
        let path = f.path_of("bind");
        for (i, item) in reader.array(v, &path).unwrap_or_default().iter().enumerate() {
            if let Some(value) = reader.param_value(item, &format!("{path}[{i}]")) {
                bind.push(value);
            }
        }
    }
    let result = match f.take("result") {
        None => None,
        Some(v) => {
            let path = f.path_of("result");
            let name = reader.string(v, &path)?;
            if !super::is_identifier(&name) {
                reader.error(&v.span(), &path, format!("result variable \"{name}\" must be an identifier (letters, digits and `_`) so expressions can say vars.{name}"));
                return None;
            }
            Some(name)
        }
    };
    Some(SqlTask { connection: connection?, statement: statement?, bind, result })
}

/// Reads `transaction` and `isolation` of a package, container or task.
pub(crate) fn read_transaction(reader: &mut Reader<'_>, f: &mut Fields<'_, '_>) -> (TransactionOption, Isolation) {
    let mut option = TransactionOption::default();
    if let Some(v) = f.take("transaction") {
        let path = f.path_of("transaction");
        match reader.string(v, &path).as_deref() {
            Some("required") => option = TransactionOption::Required,
            Some("supported") | None => {}
            Some("not_supported") => option = TransactionOption::NotSupported,
            Some(other) => reader.error(
                &v.span(),
                &path,
                format!("unknown transaction option \"{other}\" (expected required, supported or not_supported)"),
            ),
        }
    }
    let mut isolation = Isolation::default();
    if let Some(v) = f.take("isolation") {
        let path = f.path_of("isolation");
        if let Some(text) = reader.string(v, &path) {
            match Isolation::ALL.into_iter().find(|level| level.as_str() == text) {
                Some(level) => isolation = level,
                None => reader.error(
                    &v.span(),
                    &path,
                    format!(
                        "unknown isolation \"{text}\" (expected {})",
                        Isolation::ALL.map(Isolation::as_str).join(", ")
                    ),
                ),
            }
        }
    }
    (option, isolation)
}
