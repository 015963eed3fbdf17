//! Live progress of `run`, `run --coordinator`, `watch` and `demo` on stderr (DESIGN.md §5:
//! progress goes to stderr). On a terminal, indicatif bars under the event lines: the tasks
//! done, running and pending, and the child jobs by agent. Anywhere else (a pipe, a file, CI)
//! only the plain event lines, one per event, as before.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use switchyard_package::Package;
use switchyard_package::model::{Task, TaskKind};

/// What happened to a task, as the bars count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStep<'a> {
    /// A task started.
    Started {
        /// Its kind (`process`, `agent_job`, `sequence`, ...).
        kind: &'a str,
    },
    /// A task ended.
    Finished {
        /// Its kind.
        kind: &'a str,
        /// The agent that ran its child (agent_job tasks).
        agent: Option<&'a str>,
        /// Its result (`success`, `failure`, ...).
        result: &'a str,
    },
    /// A task did not run.
    NotRun,
}

/// The counts the bars show.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Work tasks the package holds, loops counted once (grows when iterations add more).
    pub total: usize,
    /// Work tasks ended.
    pub done: usize,
    /// Work tasks that failed.
    pub failed: usize,
    /// Work tasks running now.
    pub running: usize,
    /// Work tasks that will not run.
    pub not_run: usize,
    /// Child jobs ended, by the agent that ran them.
    pub children_by_agent: BTreeMap<String, usize>,
    /// agent_job tasks running now (placed, or waiting for a slot).
    pub jobs_running: usize,
}

impl Counts {
    /// Counts for a package of `total` work tasks.
    pub fn new(total: usize) -> Self {
        Counts { total, ..Counts::default() }
    }

    /// Tasks not yet started (never negative).
    pub fn pending(&self) -> usize {
        self.total.saturating_sub(self.done + self.running + self.not_run)
    }

    /// Counts one step; containers (sequence, foreach, for) are not work and are not counted.
    pub fn record(&mut self, step: TaskStep<'_>) {
        match step {
            TaskStep::Started { kind } if is_work(kind) => {
                self.running += 1;
                if kind == "agent_job" {
                    self.jobs_running += 1;
                }
            }
            TaskStep::Finished { kind, agent, result } if is_work(kind) => {
                self.running = self.running.saturating_sub(1);
                self.done += 1;
                if result == "failure" {
                    self.failed += 1;
                }
                if kind == "agent_job" {
                    self.jobs_running = self.jobs_running.saturating_sub(1);
                }
                if let Some(agent) = agent {
                    *self.children_by_agent.entry(agent.to_string()).or_default() += 1;
                }
            }
            TaskStep::NotRun => self.not_run += 1,
            _ => {}
        }
        // Loop iterations run more tasks than the file lists.
        self.total = self.total.max(self.done + self.running + self.not_run);
    }

    /// The tasks line: `tasks 3/10 done (1 failed), 2 running, 5 pending`.
    pub fn tasks_line(&self) -> String {
        let failed = if self.failed > 0 { format!(" ({} failed)", self.failed) } else { String::new() };
        format!("tasks {}/{} done{failed}, {} running, {} pending", self.done, self.total, self.running, self.pending())
    }

    /// The children line: `children by agent: server-a 2, server-b 1; 1 job running`.
    pub fn children_line(&self) -> String {
        let by_agent: Vec<String> = self.children_by_agent.iter().map(|(agent, n)| format!("{agent} {n}")).collect();
        let by_agent = if by_agent.is_empty() { "none yet".to_string() } else { by_agent.join(", ") };
        format!("children by agent: {by_agent}; {} job(s) running", self.jobs_running)
    }
}

/// Whether tasks of this kind do work (containers only group it).
fn is_work(kind: &str) -> bool {
    !matches!(kind, "sequence" | "foreach" | "for" | "")
}

/// Work tasks of a package, loop bodies counted once.
pub fn work_tasks(package: &Package) -> usize {
    fn count(tasks: &[Task]) -> usize {
        tasks
            .iter()
            .map(|task| match &task.kind {
                TaskKind::Sequence(container) => count(&container.tasks),
                TaskKind::Foreach(each) => count(&each.body.tasks),
                TaskKind::For(each) => count(&each.body.tasks),
                _ => 1,
            })
            .sum()
    }
    count(&package.tasks)
}

/// The progress shown while one execution runs.
pub struct Live {
    counts: Mutex<Counts>,
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    tasks: ProgressBar,
    children: ProgressBar,
}

impl Live {
    /// Bars when stderr is a terminal, plain lines otherwise; `total` work tasks expected.
    pub fn new(total: usize) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| Bars::new(total));
        Live { counts: Mutex::new(Counts::new(total)), bars }
    }

    /// Prints one event line (above the bars on a terminal).
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(line);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    /// Counts a step and redraws the bars.
    pub fn record(&self, step: TaskStep<'_>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.record(step);
        if let Some(bars) = &self.bars {
            bars.show(&counts);
        }
    }

    /// Removes the bars (the event lines stay), before the report is printed.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.tasks.finish_and_clear();
            bars.children.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Bars {
    fn new(total: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let tasks = multi.add(ProgressBar::new(total as u64).with_style(style));
        let line = ProgressStyle::with_template("  {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner());
        let children = multi.add(ProgressBar::new_spinner().with_style(line));
        tasks.enable_steady_tick(Duration::from_millis(200));
        let bars = Bars { multi, tasks, children };
        bars.show(&Counts::new(total));
        bars
    }

    fn show(&self, counts: &Counts) {
        self.tasks.set_length(counts.total as u64);
        self.tasks.set_position(counts.done as u64 + counts.not_run as u64);
        self.tasks.set_message(counts.tasks_line());
        self.children.set_message(counts.children_line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_work_tasks_and_children_by_agent() {
        let mut counts = Counts::new(4);
        counts.record(TaskStep::Started { kind: "sequence" });
        counts.record(TaskStep::Started { kind: "process" });
        counts.record(TaskStep::Started { kind: "agent_job" });
        assert_eq!(counts.tasks_line(), "tasks 0/4 done, 2 running, 2 pending");
        counts.record(TaskStep::Finished { kind: "process", agent: None, result: "failure" });
        counts.record(TaskStep::Finished { kind: "agent_job", agent: Some("server-b"), result: "success" });
        counts.record(TaskStep::NotRun);
        counts.record(TaskStep::Finished { kind: "sequence", agent: None, result: "failure" });
        assert_eq!(counts.tasks_line(), "tasks 2/4 done (1 failed), 0 running, 1 pending");
        assert_eq!(counts.children_line(), "children by agent: server-b 1; 0 job(s) running");
    }

    #[test]
    fn iterations_beyond_the_file_grow_the_total() {
        let mut counts = Counts::new(1);
        for _ in 0..3 {
            counts.record(TaskStep::Started { kind: "process" });
        }
        assert_eq!((counts.total, counts.pending()), (3, 0));
    }

    #[test]
    fn loop_bodies_count_once_and_containers_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        let text = "[package]\nname = \"p\"\n\n[[tasks]]\nname = \"A\"\nkind = \"sleep\"\nduration = \"0s\"\n\n\
                    [[tasks]]\nname = \"Each\"\nkind = \"foreach\"\nitems = [1, 2, 3]\n\n\
                    [[tasks.tasks]]\nname = \"B\"\nkind = \"sleep\"\nduration = \"0s\"\n";
        std::fs::write(&path, text).expect("write");
        let package = switchyard_package::load_package(&path).expect("loads").package;
        assert_eq!(work_tasks(&package), 2);
    }
}
