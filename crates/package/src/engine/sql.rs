//! The `sql` task: renders its connection's url and its binds, runs its statement on the
//! transaction's session for that url (inside a savepoint, so a failed statement leaves the
//! transaction usable) or on a pooled session outside any transaction, and stores `result`.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::RunShared;
use super::kinds::{KindOutcome, LazyScope};
use super::scope::Frame;
use crate::model::{DatabaseKind, SqlTask, Task, TaskResult};

/// Runs a started `sql` task.
pub(crate) async fn run_sql(
    shared: &Arc<RunShared>,
    task: &Task,
    sql: &SqlTask,
    frame: &Frame,
    cancel: &CancellationToken,
) -> KindOutcome {
    let name = &sql.connection;
    // Canceled (or timed out: the task turns that into a failure naming the timeout).
    let fail = |message: String| {
        let message = format!("task \"{}\": connection \"{name}\": {message}", task.name);
        if cancel.is_cancelled() {
            KindOutcome::new(TaskResult::Canceled, message)
        } else {
            KindOutcome::failure(message)
        }
    };
    let Some(databases) = shared.databases.clone() else {
        return fail("this run has no database driver (switchyard run, agents and the coordinator provide one)".into());
    };
    let Some(connection) = shared.package.connections.get(name) else {
        return fail("not defined under [connections]".into());
    };
    let mut scope = LazyScope::new(shared, frame);
    let url = match scope.render(&connection.url) {
        Ok(url) => url,
        Err(e) => return fail(format!("url: {e}")),
    };
    let url = match resolve_url(&shared.package.dir, &url) {
        Ok(url) => url,
        Err(e) => return fail(e),
    };
    let mut binds = Vec::with_capacity(sql.bind.len());
    for (i, value) in sql.bind.iter().enumerate() {
        match scope.param(value) {
            Ok(v) => binds.push(v),
            Err(e) => return KindOutcome::failure(format!("task \"{}\": bind[{i}]: {e}", task.name)),
        }
    }
    let text = sql.statement.text.as_str();
    let want = sql.result.is_some();
    let (first, where_) = match &frame.transaction {
        Some(transaction) => {
            let session = match transaction.session(databases.as_ref(), name, &url).await {
                Ok(s) => s,
                Err(e) => return KindOutcome::failure(format!("task \"{}\": {e}", task.name)),
            };
            let mut session = session.lock().await;
            let quiet = CancellationToken::new();
            if let Err(e) = session.execute("SAVEPOINT switchyard_task", &[], false, &quiet).await {
                return fail(e);
            }
            let run = session.execute(text, &binds, want, cancel).await;
            let end = if run.is_ok() {
                "RELEASE SAVEPOINT switchyard_task"
            } else {
                "ROLLBACK TO SAVEPOINT switchyard_task; RELEASE SAVEPOINT switchyard_task"
            };
            let ended = session.execute(end, &[], false, &quiet).await;
            match (run, ended) {
                (Err(e), _) => return fail(e),
                (Ok(_), Err(e)) => return fail(e),
                (Ok(first), Ok(_)) => (first, format!(" in the transaction started by {}", transaction.starter)),
            }
        }
        None => {
            let mut session = match shared.pool.take(databases.as_ref(), &url).await {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match session.execute(text, &binds, want, cancel).await {
                Ok(first) => {
                    shared.pool.put(&url, session);
                    (first, String::new())
                }
                Err(e) => return fail(e),
            }
        }
    };
    let mut message = format!("ran on connection \"{name}\"{where_}");
    if let Some(variable) = &sql.result {
        let Some(value) = first else {
            return fail(format!("the statement returned no row; result \"{variable}\" needs one"));
        };
        message = format!("{message}; vars.{variable} = {value}");
        frame.set_result(variable, value);
    }
    KindOutcome::new(TaskResult::Success, message)
}

/// Checks the url's scheme and makes a SQLite path absolute against the package's folder, so
/// that the same file is the same url in every package of the run.
fn resolve_url(dir: &Path, url: &str) -> Result<String, String> {
    match DatabaseKind::of_url(url) {
        Some(DatabaseKind::Sqlite) => {
            let file = &url["sqlite://".len()..];
            if file.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            let path = Path::new(file);
            let path = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
            let path = std::path::absolute(&path).unwrap_or(path);
            Ok(format!("sqlite://{}", path.display()))
        }
        Some(DatabaseKind::Postgres) => Ok(url.to_string()),
        None => Err(format!("unsupported connection url \"{url}\": use sqlite://PATH or postgres://user@host:port/db")),
    }
}
