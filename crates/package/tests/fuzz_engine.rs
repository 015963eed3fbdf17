//! Property tests of the engine's invariants on randomly generated packages of `process true`,
//! `process false` and `sleep "0s"` tasks inside nested sequences, with random constraints,
//! joins, disabled tasks, force_result, fail_parent / fail_package and max_errors: every task
//! ends exactly once; no task starts before its constraints hold; max_concurrent is never
//! exceeded; results and the package status match a small reference model of DESIGN.md §3.

use std::collections::HashMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use switchyard_package::engine::{Event, EventKind, RunOptions, run_package};
use switchyard_package::load::load_package_text;
use switchyard_package::{ExecutionStatus, PackageRun, TaskResult};

/// Cases per property: enough to shake out ordering bugs, small enough for CI (each case runs
/// a few real processes).
const CASES: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Success,
    Failure,
    Completion,
}

#[derive(Debug, Clone)]
enum Work {
    True,
    False,
    Sleep,
    Sequence { tasks: Vec<Node>, max_errors: u32 },
}

#[derive(Debug, Clone)]
struct Node {
    work: Work,
    /// Raw constraint targets, reduced modulo the task's index to an earlier sibling.
    after: Vec<(usize, On)>,
    join_any: bool,
    disabled: bool,
    force: Option<TaskResult>,
    fail_parent: bool,
    fail_package: bool,
}

#[derive(Debug, Clone)]
struct Spec {
    tasks: Vec<Node>,
    max_errors: u32,
    max_concurrent: i64,
}

fn on() -> impl Strategy<Value = On> {
    prop_oneof![Just(On::Success), Just(On::Failure), Just(On::Completion)]
}

fn node(work: impl Strategy<Value = Work>) -> impl Strategy<Value = Node> {
    let force = prop_oneof![
        6 => Just(None),
        1 => Just(Some(TaskResult::Success)),
        1 => Just(Some(TaskResult::Failure)),
        1 => Just(Some(TaskResult::Completion)),
    ];
    (
        work,
        prop::collection::vec((any::<usize>(), on()), 0..3),
        any::<bool>(),
        prop::bool::weighted(0.1),
        force,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(work, after, join_any, disabled, force, fail_parent, fail_package)| Node {
            work,
            after,
            join_any,
            disabled,
            force,
            fail_parent,
            fail_package,
        })
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = node(prop_oneof![Just(Work::True), Just(Work::False), Just(Work::Sleep)]);
    leaf.prop_recursive(3, 24, 4, |inner| {
        node(
            (prop::collection::vec(inner, 1..4), 0u32..3)
                .prop_map(|(tasks, max_errors)| Work::Sequence { tasks, max_errors }),
        )
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::collection::vec(tree(), 1..6), 0u32..3, 1i64..4).prop_map(|(tasks, max_errors, max_concurrent)| Spec {
        tasks,
        max_errors,
        max_concurrent,
    })
}

/// The constraints of the task at `index`: one per earlier sibling at most.
fn constraints(node: &Node, index: usize) -> Vec<(usize, On)> {
    let mut out: Vec<(usize, On)> = Vec::new();
    if index == 0 {
        return out;
    }
    for &(raw, on) in &node.after {
        let target = raw % index;
        if !out.iter().any(|(t, _)| *t == target) {
            out.push((target, on));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rendering as TOML

fn fields(node: &Node, index: usize) -> Vec<String> {
    let mut out = vec![format!("name = \"t{index}\"")];
    match &node.work {
        Work::True => out.extend(["kind = \"process\"".into(), "command = [\"true\"]".into()]),
        Work::False => out.extend(["kind = \"process\"".into(), "command = [\"false\"]".into()]),
        Work::Sleep => out.extend(["kind = \"sleep\"".into(), "duration = \"0s\"".into()]),
        Work::Sequence { tasks, max_errors } => {
            out.push("kind = \"sequence\"".into());
            out.push(format!("max_errors = {max_errors}"));
            let inner: Vec<String> =
                tasks.iter().enumerate().map(|(i, t)| format!("{{ {} }}", fields(t, i).join(", "))).collect();
            out.push(format!("tasks = [{}]", inner.join(", ")));
        }
    }
    let after = constraints(node, index);
    if !after.is_empty() {
        let list: Vec<String> = after
            .iter()
            .map(|(t, on)| {
                let on = match on {
                    On::Success => "success",
                    On::Failure => "failure",
                    On::Completion => "completion",
                };
                format!("{{ task = \"t{t}\", on = \"{on}\" }}")
            })
            .collect();
        out.push(format!("after = [{}]", list.join(", ")));
        if node.join_any {
            out.push("join = \"any\"".into());
        }
    }
    if node.disabled {
        out.push("disabled = true".into());
    }
    if let Some(force) = node.force {
        out.push(format!("force_result = \"{force}\""));
    }
    if node.fail_parent {
        out.push("fail_parent_on_failure = true".into());
    }
    if node.fail_package {
        out.push("fail_package_on_failure = true".into());
    }
    out
}

fn render(spec: &Spec) -> String {
    let mut text = format!(
        "[package]\nname = \"fuzz\"\nmax_errors = {}\nmax_concurrent = {}\n",
        spec.max_errors, spec.max_concurrent
    );
    for (i, task) in spec.tasks.iter().enumerate() {
        let _ = write!(text, "\n[[tasks]]\n{}\n", fields(task, i).join("\n"));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The reference model (DESIGN.md §3, as engine/task.rs and engine/kinds.rs document it)

#[derive(Debug, Default)]
struct Model {
    results: HashMap<String, TaskResult>,
    fail_package: bool,
}

struct Ended {
    result: TaskResult,
    errors_up: u32,
    fail_parent: bool,
}

impl Model {
    /// Runs one container's tasks; returns (errors counted, a fail_parent task failed).
    fn container(&mut self, tasks: &[Node], prefix: &str) -> (u32, bool) {
        let mut results: Vec<TaskResult> = Vec::new();
        let (mut errors, mut fail_parent) = (0, false);
        for (i, task) in tasks.iter().enumerate() {
            let path = format!("{prefix}t{i}");
            let after = constraints(task, i);
            let holds = |(t, on): &(usize, On)| match results[*t] {
                TaskResult::NotRun | TaskResult::Canceled => false,
                r => match on {
                    On::Success => r == TaskResult::Success,
                    On::Failure => r == TaskResult::Failure,
                    On::Completion => true,
                },
            };
            let runs =
                after.is_empty() || if task.join_any { after.iter().any(holds) } else { after.iter().all(holds) };
            let ended = if runs { self.task(task, &path) } else { self.not_run(task, &path) };
            errors += ended.errors_up;
            fail_parent |= ended.fail_parent;
            results.push(ended.result);
        }
        (errors, fail_parent)
    }

    fn not_run(&mut self, task: &Node, path: &str) -> Ended {
        self.mark_not_run(task, path);
        Ended { result: TaskResult::NotRun, errors_up: 0, fail_parent: false }
    }

    fn mark_not_run(&mut self, task: &Node, path: &str) {
        self.results.insert(path.to_string(), TaskResult::NotRun);
        if let Work::Sequence { tasks, .. } = &task.work {
            for (i, inner) in tasks.iter().enumerate() {
                self.mark_not_run(inner, &format!("{path}/t{i}"));
            }
        }
    }

    fn task(&mut self, task: &Node, path: &str) -> Ended {
        let (raw, inner_errors) = if task.disabled {
            if let Work::Sequence { tasks, .. } = &task.work {
                for (i, inner) in tasks.iter().enumerate() {
                    self.mark_not_run(inner, &format!("{path}/t{i}"));
                }
            }
            (TaskResult::Success, 0)
        } else {
            match &task.work {
                Work::True | Work::Sleep => (TaskResult::Success, 0),
                Work::False => (TaskResult::Failure, 0),
                Work::Sequence { tasks, max_errors } => {
                    let (errors, fail_parent) = self.container(tasks, &format!("{path}/"));
                    let failed = fail_parent || (*max_errors > 0 && errors >= *max_errors);
                    (if failed { TaskResult::Failure } else { TaskResult::Success }, errors)
                }
            }
        };
        // ForceExecutionResult as SSIS applies it (engine/forced.rs): the executable's own
        // errors stay counted by its parents, and a forced success or completion is ignored
        // once they reach its own max_errors (leaves keep the default, 1).
        let (own_errors, own_max) = match &task.work {
            Work::Sequence { max_errors, .. } if raw == TaskResult::Failure => (inner_errors.max(1), *max_errors),
            Work::Sequence { max_errors, .. } => (inner_errors, *max_errors),
            _ => (u32::from(raw == TaskResult::Failure), 1),
        };
        let result = match task.force {
            Some(TaskResult::Failure) => TaskResult::Failure,
            Some(forced) if !(own_max > 0 && own_errors >= own_max) => forced,
            _ => raw,
        };
        let errors_up = if result == TaskResult::Failure { own_errors.max(1) } else { own_errors };
        let failed = result == TaskResult::Failure;
        self.fail_package |= failed && task.fail_package;
        self.results.insert(path.to_string(), result);
        Ended { result, errors_up, fail_parent: failed && task.fail_parent }
    }
}

fn expected(spec: &Spec) -> (Model, ExecutionStatus) {
    let mut model = Model::default();
    let (errors, fail_parent) = model.container(&spec.tasks, "");
    let failed = model.fail_package || fail_parent || (spec.max_errors > 0 && errors >= spec.max_errors);
    (model, if failed { ExecutionStatus::Failed } else { ExecutionStatus::Succeeded })
}

// ---------------------------------------------------------------------------------------------
// Running and checking

fn run(text: &str) -> (PackageRun, Vec<Event>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.toml");
    let loaded =
        load_package_text(&path, text).unwrap_or_else(|e| panic!("a generated package must load:\n{e}\n{text}"));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = RunOptions {
        observer: Some(std::sync::Arc::new(move |e: &Event| sink.lock().expect("events").push(e.clone()))),
        ..RunOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let run = runtime.block_on(run_package(loaded.package, options));
    let events = events.lock().expect("events").clone();
    (run, events)
}

/// A task's path, its constraints (the constraining task's path and the value) and join = any.
type PathConstraints = (String, Vec<(String, On)>, bool);

/// Every task's [`PathConstraints`], nested paths included.
fn all_constraints(tasks: &[Node], prefix: &str, out: &mut Vec<PathConstraints>) {
    for (i, task) in tasks.iter().enumerate() {
        let path = format!("{prefix}t{i}");
        let after = constraints(task, i).into_iter().map(|(t, on)| (format!("{prefix}t{t}"), on)).collect();
        out.push((path.clone(), after, task.join_any));
        if let Work::Sequence { tasks, .. } = &task.work {
            all_constraints(tasks, &format!("{path}/"), out);
        }
    }
}

fn check(spec: &Spec) -> Result<(), TestCaseError> {
    let text = render(spec);
    let (run, events) = run(&text);
    let (model, status) = expected(spec);

    // Every task is recorded once, with the model's result.
    let mut seen: HashMap<&str, TaskResult> = HashMap::new();
    for record in &run.tasks {
        prop_assert!(seen.insert(&record.path, record.result).is_none(), "{} recorded twice\n{text}", record.path);
    }
    prop_assert_eq!(seen.len(), model.results.len(), "records {:?}\n{}", seen, text);
    for (path, result) in &model.results {
        prop_assert_eq!(seen.get(path.as_str()), Some(result), "result of {}\n{}", path, text);
    }
    prop_assert_eq!(run.status, status, "package status\n{}", text);

    // Exactly one end event per task; starts only after the constraints hold.
    let mut ended: HashMap<&str, (u64, TaskResult)> = HashMap::new();
    let mut started: HashMap<&str, u64> = HashMap::new();
    for e in &events {
        match &e.kind {
            EventKind::TaskFinished { result, .. } => {
                prop_assert!(ended.insert(&e.path, (e.seq, *result)).is_none(), "{} ended twice\n{text}", e.path);
            }
            EventKind::TaskNotRun { .. } => {
                prop_assert!(ended.insert(&e.path, (e.seq, TaskResult::NotRun)).is_none(), "{} ended twice", e.path);
            }
            EventKind::TaskStarted { .. } => {
                prop_assert!(started.insert(&e.path, e.seq).is_none(), "{} started twice\n{text}", e.path);
            }
            _ => {}
        }
    }
    let mut specs = Vec::new();
    all_constraints(&spec.tasks, "", &mut specs);
    for (path, after, join_any) in &specs {
        let Some(&at) = started.get(path.as_str()) else { continue };
        let holding_before = after
            .iter()
            .filter(|(target, on)| match ended.get(target.as_str()) {
                Some(&(seq, result)) if seq < at => match on {
                    _ if matches!(result, TaskResult::NotRun | TaskResult::Canceled) => false,
                    On::Success => result == TaskResult::Success,
                    On::Failure => result == TaskResult::Failure,
                    On::Completion => true,
                },
                _ => false,
            })
            .count();
        let enough = if *join_any { holding_before >= 1 } else { holding_before == after.len() };
        prop_assert!(after.is_empty() || enough, "{path} started before its constraints held\n{text}");
        if let Some((container, _)) = path.rsplit_once('/') {
            let container_start = started.get(container).copied();
            prop_assert!(container_start.is_some_and(|s| s < at), "{path} started outside its container\n{text}");
        }
    }
    // Tasks inside a container that never started (not run, disabled) are listed by the
    // records only; the coordinator's replay lists them from the package the same way.
    for path in model.results.keys() {
        let container_ran = path.rsplit_once('/').is_none_or(|(container, _)| started.contains_key(container));
        prop_assert!(!container_ran || ended.contains_key(path.as_str()), "{path} has no end event\n{text}");
    }

    // max_concurrent: slot-holding tasks running at once, from the log's order.
    let mut running = 0i64;
    let mut peak = 0i64;
    for e in &events {
        match &e.kind {
            EventKind::TaskStarted { kind } if *kind != "sequence" => running += 1,
            EventKind::TaskFinished { kind, .. } if *kind != "sequence" && started.contains_key(e.path.as_str()) => {
                running -= 1
            }
            _ => {}
        }
        peak = peak.max(running);
    }
    prop_assert!(
        peak <= spec.max_concurrent,
        "{peak} tasks ran at once, max_concurrent {}\n{text}",
        spec.max_concurrent
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_packages_keep_the_engine_invariants(spec in spec()) {
        check(&spec)?;
    }
}

#[test]
fn a_forced_failure_of_a_succeeding_sequence_counts_one_error() {
    let inner = Node {
        work: Work::True,
        after: vec![],
        join_any: false,
        disabled: false,
        force: None,
        fail_parent: false,
        fail_package: false,
    };
    let sequence = Node {
        work: Work::Sequence { tasks: vec![inner.clone()], max_errors: 1 },
        force: Some(TaskResult::Failure),
        ..inner
    };
    let spec = Spec { tasks: vec![sequence], max_errors: 1, max_concurrent: 1 };
    check(&spec).expect("invariants hold");
}

/// Found by the property: a disabled sequence's tasks have records (not run) but no events;
/// the check expects end events only inside containers that started.
#[test]
fn a_disabled_sequence_lists_its_tasks_as_not_run_without_events() {
    let leaf = Node {
        work: Work::True,
        after: vec![],
        join_any: false,
        disabled: false,
        force: None,
        fail_parent: false,
        fail_package: false,
    };
    let sequence = Node { work: Work::Sequence { tasks: vec![leaf.clone()], max_errors: 0 }, disabled: true, ..leaf };
    let spec = Spec { tasks: vec![sequence], max_errors: 0, max_concurrent: 1 };
    check(&spec).expect("invariants hold");
}
