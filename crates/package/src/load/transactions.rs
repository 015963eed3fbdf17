//! The static check of transactions: `validate` refuses a transaction that would mix SQLite with
//! another connection (a transaction spans PostgreSQL connections, committed in two phases, or
//! one SQLite database), naming both. Urls only the run can render are checked when it runs.

use std::path::Path;

use super::reader::Reader;
use crate::model::{Connection, DatabaseKind, Package, Task, TaskKind, TransactionOption};

/// A connection a transaction would enlist, and where.
struct Enlisted {
    /// The transaction, named by what starts it.
    transaction: String,
    connection: String,
    url: String,
    kind: DatabaseKind,
    /// The field path in this file where it is used (a `sql` task's `connection`, or the
    /// `package` task whose child uses it).
    at: String,
}

/// Reports every transaction of `package` that would mix SQLite with another connection.
pub(crate) fn check(reader: &mut Reader<'_>, package: &Package) {
    let mut found = Vec::new();
    let top = (package.transaction == TransactionOption::Required).then(|| format!("package \"{}\"", package.name));
    walk(&package.tasks, &package.connections, &package.dir, "tasks", None, top, &mut found);
    let mut reported = std::collections::HashSet::new();
    for (i, later) in found.iter().enumerate() {
        let Some(earlier) = found[..i].iter().find(|e| {
            e.transaction == later.transaction
                && e.url != later.url
                && (e.kind == DatabaseKind::Sqlite || later.kind == DatabaseKind::Sqlite)
        }) else {
            continue;
        };
        if !reported.insert((later.transaction.clone(), later.url.clone())) {
            continue;
        }
        let span = reader.field_spans.get(&later.at).cloned().unwrap_or(0..0);
        let message = format!(
            "the transaction started by {} would mix {} connection \"{}\" ({}) with {} connection \"{}\" ({}): a transaction spans PostgreSQL connections (two-phase commit) or a single SQLite database; use one SQLite database, or set transaction = \"not_supported\" on one of them",
            later.transaction, earlier.kind, earlier.connection, earlier.url, later.kind, later.connection, later.url
        );
        reader.error(&span, &later.at, message);
    }
}

/// Walks a control flow: `current` names the transaction it runs in (None outside one); `at`
/// overrides where uses are reported (inside a child package: the parent's `package` task).
fn walk(
    tasks: &[Task],
    connections: &indexmap::IndexMap<String, Connection>,
    dir: &Path,
    path: &str,
    at: Option<&str>,
    current: Option<String>,
    found: &mut Vec<Enlisted>,
) {
    for (i, task) in tasks.iter().enumerate() {
        let task_path = format!("{path}[{i}]");
        let effective = match task.transaction {
            TransactionOption::Required => current.clone().or_else(|| Some(format!("\"{}\" ({task_path})", task.name))),
            TransactionOption::Supported => current.clone(),
            TransactionOption::NotSupported => None,
        };
        let Some(transaction) = effective else { continue };
        let report_at = at.map_or_else(|| format!("{task_path}.connection"), str::to_string);
        match &task.kind {
            TaskKind::Sql(sql) => {
                let Some(connection) = connections.get(&sql.connection) else { continue };
                let (Some(kind), Some(url)) = (connection.kind, known_url(connection, dir)) else { continue };
                found.push(Enlisted { transaction, connection: connection.name.clone(), url, kind, at: report_at });
            }
            TaskKind::Package(p) => {
                let Some(child) = &p.child else { continue };
                let inherited = match child.transaction {
                    TransactionOption::NotSupported => None,
                    _ => Some(transaction),
                };
                let child_at = at.map_or_else(|| format!("{task_path}.path"), str::to_string);
                walk(&child.tasks, &child.connections, &child.dir, "tasks", Some(&child_at), inherited, found);
            }
            kind => {
                if let Some(children) = kind.children() {
                    walk(children, connections, dir, &format!("{task_path}.tasks"), at, Some(transaction), found);
                }
            }
        }
    }
}

/// The url as loading knows it: a literal one, a SQLite path resolved against its package's
/// folder so that two packages' `sqlite://a.db` are told apart when they are different files.
fn known_url(connection: &Connection, dir: &Path) -> Option<String> {
    let url = connection.url.literal()?;
    Some(match url.strip_prefix("sqlite://") {
        Some(file) => format!("sqlite://{}", dir.join(file).display()),
        None => url.to_string(),
    })
}
