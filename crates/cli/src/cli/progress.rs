//! Live progress lines on stderr while a package runs, and the summary table after it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use switchyard_package::PackageRun;
use switchyard_package::engine::{Event, EventKind};

use super::live::{Live, TaskStep};

/// Writes one line per task start and end to stderr, and keeps the live bars' counts.
pub struct Progress {
    started: Instant,
    live: Arc<Live>,
}

impl Progress {
    /// Progress measured from now, shown through `live`.
    pub fn new(live: Arc<Live>) -> Self {
        Self { started: Instant::now(), live }
    }

    /// The observer to hand to the engine.
    pub fn into_observer(self) -> impl Fn(&Event) + Send + Sync + 'static {
        move |event| {
            match &event.kind {
                EventKind::TaskStarted { kind } => self.live.record(TaskStep::Started { kind }),
                EventKind::TaskFinished { kind, agent, result, .. } => {
                    self.live.record(TaskStep::Finished { kind, agent: agent.as_deref(), result: result.as_str() })
                }
                EventKind::TaskNotRun { .. } => self.live.record(TaskStep::NotRun),
                _ => {}
            }
            let elapsed = self.started.elapsed().as_secs_f64();
            let line = match &event.kind {
                EventKind::PackageStarted { package } => format!("package \"{package}\" started"),
                EventKind::PackageFinished { status, duration_ms } => {
                    format!("package {status} in {}", format_ms(*duration_ms))
                }
                EventKind::TaskStarted { kind } => format!("{:<9} {} ({kind})", "started", event.path),
                EventKind::TaskFinished { result, duration_ms, message, .. } => {
                    format!("{:<9} {} in {}: {message}", result.as_str(), event.path, format_ms(*duration_ms))
                }
                EventKind::TaskNotRun { reason } => format!("{:<9} {}: {reason}", "not run", event.path),
                EventKind::Resumed { replayed } => format!("resumed after a restart; {replayed} ended task(s) kept"),
                EventKind::NotResumed { reason } => format!("not resumed: {reason}"),
                EventKind::TransactionEnded { committed, message } => {
                    let verb = if *committed { "committed" } else { "rollback" };
                    format!(
                        "{verb:<9} transaction of {}: {message}",
                        if event.path.is_empty() { "the package" } else { &event.path }
                    )
                }
            };
            let path_is_child = !event.path.is_empty()
                && matches!(event.kind, EventKind::PackageStarted { .. } | EventKind::PackageFinished { .. });
            let line = if path_is_child { format!("{line} [{}]", event.path) } else { line };
            self.live.println(&format!("[{elapsed:>8.3}s] {line}"));
        }
    }
}

/// A readable duration: milliseconds below 10 s, seconds above.
pub fn format_ms(ms: u64) -> String {
    if ms < 10_000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

/// The summary printed after a run: status line, then one row per task.
pub fn summary(run: &PackageRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\npackage \"{}\" {} in {} (execution {})",
        run.package,
        run.status,
        format_ms(run.duration_ms),
        run.execution_id
    );
    let width = run.tasks.iter().map(|t| t.path.chars().count()).max().unwrap_or(4).clamp(4, 60);
    let _ = writeln!(out, "{:<width$}  {:<10}  {:>10}  MESSAGE", "TASK", "RESULT", "DURATION");
    for t in &run.tasks {
        let duration = t.duration_ms.map_or_else(|| "-".to_string(), format_ms);
        let message = switchyard_coordinator::report::shorten(t.message.lines().next().unwrap_or_default(), 100);
        let _ = writeln!(out, "{:<width$}  {:<10}  {:>10}  {message}", t.path, t.result.as_str(), duration);
    }
    if !run.children.is_empty() {
        let _ = writeln!(out, "\nchild packages:");
        for c in &run.children {
            let duration = c.duration_ms.map_or_else(|| "-".to_string(), format_ms);
            let _ = writeln!(
                out,
                "  {}  {}  {}  {}",
                c.task,
                c.package.as_deref().or(c.job.as_deref()).unwrap_or("-"),
                c.status.as_str(),
                duration
            );
        }
    }
    out
}
