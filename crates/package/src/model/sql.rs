//! The model of databases in a package: `[connections]`, the `sql` task, and the transaction
//! options every package, container and task carries (DESIGN.md §2, §3).

use std::fmt;
use std::path::PathBuf;

use super::ParamValue;
use crate::template::Template;

/// TransactionOption of a package, container or task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionOption {
    /// Starts a transaction unless the parent has one, then joins it.
    Required,
    /// Joins the parent's transaction if there is one, never starts one (SSIS's default).
    #[default]
    Supported,
    /// Never joins: what runs under it runs outside any transaction.
    NotSupported,
}

impl TransactionOption {
    /// The value as written in a package file.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionOption::Required => "required",
            TransactionOption::Supported => "supported",
            TransactionOption::NotSupported => "not_supported",
        }
    }
}

/// IsolationLevel, applied where a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// READ UNCOMMITTED.
    ReadUncommitted,
    /// READ COMMITTED.
    ReadCommitted,
    /// REPEATABLE READ.
    RepeatableRead,
    /// SERIALIZABLE (SSIS's default).
    #[default]
    Serializable,
}

impl Isolation {
    /// The value as written in a package file.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read_uncommitted",
            Isolation::ReadCommitted => "read_committed",
            Isolation::RepeatableRead => "repeatable_read",
            Isolation::Serializable => "serializable",
        }
    }

    /// The level as SQL says it (`ISOLATION LEVEL ...`).
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }

    /// Every value, in the order messages list them.
    pub const ALL: [Isolation; 4] =
        [Isolation::ReadUncommitted, Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable];
}

/// The database a connection url names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `sqlite://PATH`.
    Sqlite,
    /// `postgres://user@host:port/db` (or `postgresql://`).
    Postgres,
}

impl DatabaseKind {
    /// The kind of a url by its scheme; None for any other scheme.
    pub fn of_url(url: &str) -> Option<DatabaseKind> {
        if url.starts_with("sqlite://") {
            Some(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DatabaseKind::Postgres)
        } else {
            None
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseKind::Sqlite => "SQLite",
            DatabaseKind::Postgres => "PostgreSQL",
        })
    }
}

/// `[connections.NAME]`.
#[derive(Debug, Clone)]
pub struct Connection {
    /// NAME.
    pub name: String,
    /// `url`, a template (a password can come from a secret parameter).
    pub url: Template,
    /// The kind as far as loading can tell: from a literal url, or from the url rendered with
    /// the parameters' defaults. None when only the run can tell.
    pub kind: Option<DatabaseKind>,
}

/// The text a `sql` task runs.
#[derive(Debug, Clone)]
pub struct SqlStatement {
    /// The statement(s); a file may hold several when nothing is bound or read back.
    pub text: String,
    /// The file it was read from (`file`), resolved against the package's folder.
    pub file: Option<PathBuf>,
}

/// A `sql` task (Execute SQL task).
#[derive(Debug, Clone)]
pub struct SqlTask {
    /// The name of a connection under `[connections]` of the same package.
    pub connection: String,
    /// What it runs.
    pub statement: SqlStatement,
    /// Values for the placeholders (`?` for SQLite, `$1` for PostgreSQL), templates allowed.
    pub bind: Vec<ParamValue>,
    /// The variable (`vars.<result>`) that receives the first column of the first row.
    pub result: Option<String>,
}
