//! The two-phase commit journal: a small SQLite file under the data dir recording, before any
//! PREPARE TRANSACTION, the ids a transaction prepares and where, then the decision to commit.
//! Recovery reads it to finish what a run that died between the phases left prepared.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _};

use crate::Error;

/// The journal's file name under a data dir.
pub const JOURNAL_FILE: &str = "prepared-transactions.db";

/// One prepared (or about to be prepared) transaction branch.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    /// The Switchyard transaction it belongs to.
    pub transaction: String,
    /// PostgreSQL's global id (PREPARE TRANSACTION 'gid').
    pub gid: String,
    /// Where it is prepared (the url may hold a password: the file is readable by its owner only).
    pub url: String,
    /// True once every branch was prepared and the commit was decided.
    pub commit: bool,
}

/// The journal file of a data dir.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal of `data_dir` (the file is created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join(JOURNAL_FILE) }
    }

    /// Records the branches of a transaction about to be prepared.
    pub async fn record(&self, branches: Vec<Branch>) -> Result<(), Error> {
        self.write(move |c| {
            let tx = c.unchecked_transaction()?;
            for b in &branches {
                tx.execute(
                    "INSERT INTO prepared (gid, transaction_id, url, decision) VALUES (?1, ?2, ?3, NULL)",
                    (&b.gid, &b.transaction, &b.url),
                )?;
            }
            tx.commit()
        })
        .await
    }

    /// Records that every branch of `transaction` is prepared and will be committed.
    pub async fn decide_commit(&self, transaction: &str) -> Result<(), Error> {
        let id = transaction.to_string();
        self.write(move |c| {
            c.execute("UPDATE prepared SET decision = 'commit' WHERE transaction_id = ?1", [&id]).map(drop)
        })
        .await
    }

    /// Forgets one resolved branch.
    pub async fn forget(&self, gid: &str) -> Result<(), Error> {
        let gid = gid.to_string();
        self.write(move |c| c.execute("DELETE FROM prepared WHERE gid = ?1", [&gid]).map(drop)).await
    }

    /// Every branch recorded; empty when the file does not exist.
    pub async fn branches(&self) -> Result<Vec<Branch>, Error> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        self.write(|c| {
            let mut statement =
                c.prepare("SELECT transaction_id, gid, url, decision FROM prepared ORDER BY transaction_id, gid")?;
            let rows = statement.query_map([], |row| {
                Ok(Branch {
                    transaction: row.get(0)?,
                    gid: row.get(1)?,
                    url: row.get(2)?,
                    commit: row.get::<_, Option<String>>(3)?.as_deref() == Some("commit"),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let failed = |message: String| Error::Journal { path: self.path.clone(), message };
        tokio::task::spawn_blocking(move || {
            let connection = open(&path).map_err(|e| e.to_string())?;
            work(&connection).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
    }
}

/// Opens the journal, creating it (owner-only: urls may carry passwords) and its table.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt as _;
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    }
    let connection = Connection::open(path)?;
    // Full sync: a recorded branch must survive the crash it is recorded for.
    connection.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS prepared (
             gid TEXT PRIMARY KEY,
             transaction_id TEXT NOT NULL,
             url TEXT NOT NULL,
             decision TEXT
         );",
    )?;
    let _: Option<i64> = connection.query_row("SELECT 1", [], |r| r.get(0)).optional()?;
    Ok(connection)
}
