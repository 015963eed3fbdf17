//! [`Drivers`]: the [`Databases`] implementation the binaries hand to the engine.

use std::path::Path;

use switchyard_package::engine::{Databases, DbFuture, Session};
use switchyard_package::model::DatabaseKind;

use crate::journal::Journal;
use crate::postgres::PostgresSession;
use crate::sqlite::SqliteSession;

pub use crate::two_phase::Fault;

/// Opens SQLite and PostgreSQL sessions, and commits multi-database transactions in two phases
/// with the journal under a data dir.
#[derive(Debug, Clone)]
pub struct Drivers {
    journal: Journal,
    fault: Option<Fault>,
}

impl Drivers {
    /// Drivers whose two-phase journal lives in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self { journal: Journal::new(data_dir), fault: None }
    }

    /// The same drivers, doing `fault` at its moment (recovery tests).
    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }
}

impl Databases for Drivers {
    fn open(&self, url: &str) -> DbFuture<'static, Box<dyn Session>> {
        let url = url.to_string();
        Box::pin(async move {
            match DatabaseKind::of_url(&url) {
                Some(DatabaseKind::Sqlite) => {
                    let session = SqliteSession::open(url["sqlite://".len()..].to_string()).await?;
                    Ok(Box::new(session) as Box<dyn Session>)
                }
                Some(DatabaseKind::Postgres) => {
                    let session = PostgresSession::open(&url).await?;
                    Ok(Box::new(session) as Box<dyn Session>)
                }
                None => Err(format!("unsupported connection url \"{}\"", crate::redact(&url))),
            }
        })
    }

    fn commit_two_phase(&self, id: &str, sessions: Vec<(String, Box<dyn Session>)>) -> DbFuture<'static, ()> {
        let (journal, fault, id) = (self.journal.clone(), self.fault, id.to_string());
        Box::pin(async move {
            if let Some((url, _)) = sessions.iter().find(|(_, s)| s.kind() != DatabaseKind::Postgres) {
                return Err(format!("{} cannot take part in a two-phase commit", crate::redact(url)));
            }
            crate::two_phase::commit(&journal, fault, &id, sessions).await
        })
    }
}
