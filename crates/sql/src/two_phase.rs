//! Two-phase commit over several PostgreSQL sessions, and the recovery of what a run that died
//! between the phases left prepared.

use std::path::Path;

use switchyard_package::engine::Session;

use crate::journal::{Branch, Journal};
use crate::postgres::{PostgresSession, is_unknown_prepared};
use crate::{Error, redact};

/// What to do on purpose between the phases (tests of recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Abort the process once every branch is prepared and the commit decided, before any
    /// COMMIT PREPARED: what a crash at the worst moment leaves behind.
    AbortAfterPrepare,
}

/// Commits `sessions` (url, session) as one transaction named `id`.
pub(crate) async fn commit(
    journal: &Journal,
    fault: Option<Fault>,
    id: &str,
    sessions: Vec<(String, Box<dyn Session>)>,
) -> Result<(), String> {
    let branches: Vec<Branch> = sessions
        .iter()
        .enumerate()
        .map(|(n, (url, _))| Branch {
            transaction: id.to_string(),
            gid: format!("switchyard_{id}_{n}"),
            url: url.clone(),
            commit: false,
        })
        .collect();
    let mut sessions: Vec<Box<dyn Session>> = sessions.into_iter().map(|(_, s)| s).collect();
    if let Err(e) = journal.record(branches.clone()).await {
        rollback(&mut sessions, 0, &branches).await;
        return Err(format!("{e}; rolled back"));
    }
    for i in 0..sessions.len() {
        if let Err(e) = sessions[i].prepare(&branches[i].gid).await {
            rollback(&mut sessions, i, &branches).await;
            forget(journal, &branches).await;
            return Err(format!("PREPARE TRANSACTION on {} failed: {e}; rolled back", redact(&branches[i].url)));
        }
    }
    if let Err(e) = journal.decide_commit(id).await {
        let all = sessions.len();
        rollback(&mut sessions, all, &branches).await;
        forget(journal, &branches).await;
        return Err(format!("{e}; rolled back"));
    }
    if fault == Some(Fault::AbortAfterPrepare) {
        tracing::error!(transaction = %id, "fault injected: aborting between PREPARE TRANSACTION and COMMIT PREPARED");
        std::process::abort();
    }
    for (session, branch) in sessions.iter_mut().zip(&branches) {
        match session.finish_prepared(&branch.gid, true).await {
            Ok(()) => {
                if let Err(e) = journal.forget(&branch.gid).await {
                    tracing::warn!(error = %e, gid = %branch.gid, "cannot forget a committed branch; recovery will find it committed");
                }
            }
            // Decided: the next start's recovery commits it.
            Err(e) => {
                tracing::warn!(error = %e, gid = %branch.gid, url = %redact(&branch.url), "COMMIT PREPARED failed; recovery will commit it")
            }
        }
    }
    Ok(())
}

/// Rolls back: branches before `prepared` were prepared, the others are still open.
async fn rollback(sessions: &mut [Box<dyn Session>], prepared: usize, branches: &[Branch]) {
    for (i, session) in sessions.iter_mut().enumerate() {
        let done = if i < prepared {
            session.finish_prepared(&branches[i].gid, false).await
        } else {
            session.rollback().await
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, url = %redact(&branches[i].url), "rolling back a branch failed");
        }
    }
}

async fn forget(journal: &Journal, branches: &[Branch]) {
    for b in branches {
        if let Err(e) = journal.forget(&b.gid).await {
            tracing::warn!(error = %e, gid = %b.gid, "cannot forget a rolled back branch");
        }
    }
}

/// How recovery resolved one prepared branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The prepared transaction's id on the server.
    pub gid: String,
    /// Where (password hidden).
    pub url: String,
    /// Committed (the decision was recorded) or rolled back (it was not).
    pub committed: bool,
    /// What happened, for the operator: `committed prepared transaction X on URL`.
    pub message: String,
}

/// Resolves every branch the journal of `data_dir` holds: commits those whose commit was
/// decided, rolls back the others, and forgets them. A branch whose server cannot be reached
/// stays recorded for the next start and is reported as an error.
pub async fn recover(data_dir: &Path) -> Result<Vec<Resolution>, Error> {
    let journal = Journal::new(data_dir);
    let mut resolved = Vec::new();
    let mut unreachable = Vec::new();
    for branch in journal.branches().await? {
        let url = redact(&branch.url);
        let verb = if branch.commit { "committed" } else { "rolled back" };
        let finished = match PostgresSession::open(&branch.url).await {
            Ok(mut session) => session.finish_prepared(&branch.gid, branch.commit).await,
            Err(e) => Err(format!("cannot connect: {e}")),
        };
        let message = match finished {
            Ok(()) => format!(
                "{verb} prepared transaction {} on {url}, left by a run that stopped between the two phases",
                branch.gid
            ),
            Err(e) if is_unknown_prepared(&e) => {
                format!("prepared transaction {} on {url} was already resolved", branch.gid)
            }
            Err(e) => {
                unreachable.push(format!("prepared transaction {} on {url}: {e}", branch.gid));
                continue;
            }
        };
        journal.forget(&branch.gid).await?;
        resolved.push(Resolution { gid: branch.gid, url, committed: branch.commit, message });
    }
    if !unreachable.is_empty() {
        return Err(Error::Journal {
            path: data_dir.join(crate::JOURNAL_FILE),
            message: format!("cannot resolve (kept for the next start): {}", unreachable.join("; ")),
        });
    }
    Ok(resolved)
}
