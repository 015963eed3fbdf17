//! One container's control flow: starts tasks as their precedence constraints allow, runs them
//! concurrently (bounded by the package's slots), and collects their records in file order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::precedence::{self, Decision, Gate};
use super::scope::{Facts, Frame, record};
use super::task::{TaskOutcome, not_run, run_task};
use super::{ChildRecord, RunShared, TaskRecord};
use crate::expr::TaskFacts;
use crate::model::{Task, TaskResult};

/// What a container's tasks amounted to; the container turns it into its result.
#[derive(Debug, Default)]
pub(crate) struct GraphOutcome {
    /// Errors raised inside, counted against the container's max_errors.
    pub errors: u32,
    /// A task with fail_parent_on_failure failed.
    pub fail_parent: bool,
    /// Records of every task inside, in file order.
    pub records: Vec<TaskRecord>,
    /// Child packages run inside.
    pub children: Vec<ChildRecord>,
}

impl GraphOutcome {
    /// Adds another outcome (a later loop iteration).
    pub fn absorb(&mut self, other: GraphOutcome) {
        self.errors += other.errors;
        self.fail_parent |= other.fail_parent;
        self.records.extend(other.records);
        self.children.extend(other.children);
    }
}

type TaskFuture<'a> = Pin<Box<dyn Future<Output = (usize, TaskOutcome)> + Send + 'a>>;

/// Runs the tasks of one container (or of one loop iteration) to their end. `prefix` is the
/// container's path followed by `/` (empty at the top).
pub(crate) fn run_graph<'a>(
    shared: &'a Arc<RunShared>,
    tasks: &'a [Task],
    parent: Frame,
    prefix: &'a str,
    cancel: &'a CancellationToken,
) -> Pin<Box<dyn Future<Output = GraphOutcome> + Send + 'a>> {
    Box::pin(async move {
        let (frame, facts) = parent.nested();
        let mut run = GraphRun::new(shared, tasks, frame, facts, prefix, cancel);
        let mut running: FuturesUnordered<TaskFuture<'a>> = FuturesUnordered::new();
        for (i, task) in tasks.iter().enumerate() {
            if task.after.is_empty() {
                run.launch(i, &mut running);
            }
        }
        loop {
            while let Some(ended) = run.worklist.pop() {
                run.propagate(ended, &mut running).await;
            }
            match running.next().await {
                Some((i, outcome)) => run.finish(i, outcome),
                None => break,
            }
        }
        run.into_outcome()
    })
}

/// The bookkeeping of one container run.
struct GraphRun<'a> {
    shared: &'a Arc<RunShared>,
    tasks: &'a [Task],
    frame: Frame,
    facts: Facts,
    prefix: &'a str,
    cancel: &'a CancellationToken,
    /// For each task, the (task, constraint) pairs that wait for it.
    dependents: Vec<Vec<(usize, usize)>>,
    gates: Vec<Gate>,
    results: Vec<Option<TaskResult>>,
    outcomes: Vec<Option<TaskOutcome>>,
    /// Tasks that ended and whose dependents have not been told yet.
    worklist: Vec<usize>,
    errors: u32,
    fail_parent: bool,
}

impl<'a> GraphRun<'a> {
    fn new(
        shared: &'a Arc<RunShared>,
        tasks: &'a [Task],
        frame: Frame,
        facts: Facts,
        prefix: &'a str,
        cancel: &'a CancellationToken,
    ) -> Self {
        let mut dependents = vec![Vec::new(); tasks.len()];
        let mut gates = Vec::with_capacity(tasks.len());
        for (j, task) in tasks.iter().enumerate() {
            for (c, constraint) in task.after.iter().enumerate() {
                dependents[constraint.index].push((j, c));
            }
            gates.push(Gate::new(task.join, task.after.len()));
        }
        Self {
            shared,
            tasks,
            frame,
            facts,
            prefix,
            cancel,
            dependents,
            gates,
            results: vec![None; tasks.len()],
            outcomes: (0..tasks.len()).map(|_| None).collect(),
            worklist: Vec::new(),
            errors: 0,
            fail_parent: false,
        }
    }

    fn path(&self, i: usize) -> String {
        format!("{}{}", self.prefix, self.tasks[i].name)
    }

    fn launch(&mut self, i: usize, running: &mut FuturesUnordered<TaskFuture<'a>>) {
        if self.cancel.is_cancelled() {
            self.skip(i, "the run was canceled before it started".to_string());
            return;
        }
        let future = run_task(self.shared, &self.tasks[i], self.path(i), self.frame.clone(), self.cancel);
        running.push(Box::pin(async move { (i, future.await) }));
    }

    /// Records a task that will not run, and queues its dependents.
    fn skip(&mut self, i: usize, reason: String) {
        let outcome = not_run(self.shared, &self.tasks[i], &self.path(i), reason);
        self.finish(i, outcome);
    }

    fn finish(&mut self, i: usize, outcome: TaskOutcome) {
        self.errors += outcome.errors_up;
        self.fail_parent |= outcome.fail_parent;
        self.results[i] = Some(outcome.result);
        record(&self.facts, &self.tasks[i].name, outcome.facts.clone());
        self.outcomes[i] = Some(outcome);
        self.worklist.push(i);
    }

    /// Tells the tasks constrained by `ended` how it ended, starting or skipping them.
    async fn propagate(&mut self, ended: usize, running: &mut FuturesUnordered<TaskFuture<'a>>) {
        let result = self.results[ended].unwrap_or(TaskResult::NotRun);
        let dependents = std::mem::take(&mut self.dependents[ended]);
        for &(j, c) in &dependents {
            if self.gates[j].decided() {
                continue;
            }
            let constraint = &self.tasks[j].after[c];
            // A `when` runs on a blocking thread within the run's budgets, never here.
            let computed = match &constraint.when {
                Some(when) if precedence::wants_expression(constraint, result) => {
                    let value = self.frame.value(&self.shared.params);
                    Some(super::budget::evaluate_bool(self.shared, when, value).await)
                }
                _ => None,
            };
            let state = precedence::evaluate_with(constraint, result, || computed.unwrap_or(Ok(true)));
            match self.gates[j].record(state) {
                Decision::Wait => {}
                Decision::Run => self.launch(j, running),
                Decision::NotRun => {
                    let reason = format!(
                        "its precedence constraints were not met (\"{}\" ended with {result})",
                        self.tasks[ended].name
                    );
                    self.skip(j, reason);
                }
                Decision::Fail(message) => {
                    let outcome =
                        super::task::failed_without_running(self.shared, &self.tasks[j], &self.path(j), message);
                    self.finish(j, outcome);
                }
            }
        }
    }

    fn into_outcome(mut self) -> GraphOutcome {
        let mut outcome = GraphOutcome { errors: self.errors, fail_parent: self.fail_parent, ..Default::default() };
        for i in 0..self.tasks.len() {
            // Unreachable with validated (acyclic) constraints; kept so no task goes unlisted.
            let task_outcome = self.outcomes[i].take().unwrap_or_else(|| {
                not_run(
                    self.shared,
                    &self.tasks[i],
                    &self.path(i),
                    "its precedence constraints were never decided".into(),
                )
            });
            outcome.records.extend(task_outcome.records);
            outcome.children.extend(task_outcome.children);
        }
        outcome
    }
}

/// The facts of a task that never ran.
pub(crate) fn not_run_facts() -> TaskFacts {
    TaskFacts {
        result: TaskResult::NotRun.as_str().to_string(),
        exit_code: None,
        duration_ms: 0,
        output: String::new(),
    }
}
