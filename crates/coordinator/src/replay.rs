//! Task records rebuilt from an execution's stored events, for executions whose process ended
//! before their results were written (ended_unexpectedly): every task is still listed.

use indexmap::IndexMap;

use switchyard_package::engine::{Event, EventKind, TaskRecord};
use switchyard_package::{Package, Task, TaskKind, TaskResult};

/// What the events say of each task, in the order tasks started; tasks still running when the
/// events stop are `canceled`, and the package's tasks that never appear are `not_run`.
pub fn task_records(events: &[Event], package: Option<&Package>) -> Vec<TaskRecord> {
    let mut records = records_from(events);
    for record in records.values_mut().filter(|record| record.duration_ms.is_none() && record.started_at.is_some()) {
        record.result = TaskResult::Canceled;
        record.message = "the coordinator stopped while it ran".to_owned();
    }
    if let Some(package) = package {
        add_unseen(&package.tasks, "", &mut records);
    }
    records.into_values().collect()
}

/// The tasks of an execution that is still running, as its events so far tell: ended tasks with
/// their results, running ones started without a duration (the report shows them running).
pub fn live_task_records(events: &[Event]) -> Vec<TaskRecord> {
    records_from(events).into_values().collect()
}

fn records_from(events: &[Event]) -> IndexMap<String, TaskRecord> {
    let mut records: IndexMap<String, TaskRecord> = IndexMap::new();
    // Events of child packages run in process carry their task's path as a prefix.
    let mut child_packages: Vec<String> = Vec::new();
    for event in events {
        let path = &event.path;
        if child_packages.iter().any(|prefix| path.starts_with(prefix.as_str())) {
            continue;
        }
        match &event.kind {
            EventKind::PackageStarted { .. } if !path.is_empty() => child_packages.push(format!("{path}/")),
            EventKind::TaskStarted { kind } => {
                records.insert(path.clone(), record(path, kind, TaskResult::NotRun, ""));
                if let Some(r) = records.get_mut(path) {
                    r.started_at = Some(event.at);
                }
            }
            EventKind::TaskFinished { kind, result, duration_ms, message, exit_code, agent, .. } => {
                let entry = records.entry(path.clone()).or_insert_with(|| record(path, kind, *result, ""));
                entry.result = *result;
                entry.duration_ms = Some(*duration_ms);
                entry.message = message.clone();
                entry.exit_code = *exit_code;
                entry.agent = agent.clone();
                entry.started_at.get_or_insert(event.at);
            }
            EventKind::TaskNotRun { reason } => {
                records.entry(path.clone()).or_insert_with(|| record(path, "task", TaskResult::NotRun, reason));
            }
            _ => {}
        }
    }
    records
}

fn record(path: &str, kind: &'static str, result: TaskResult, message: &str) -> TaskRecord {
    TaskRecord {
        path: path.to_string(),
        kind,
        result,
        started_at: None,
        duration_ms: None,
        agent: None,
        message: message.to_string(),
        exit_code: None,
    }
}

/// Lists tasks the events never mention as not run (loop bodies only when their loop never ran).
fn add_unseen(tasks: &[Task], prefix: &str, records: &mut IndexMap<String, TaskRecord>) {
    for task in tasks {
        let path = format!("{prefix}{}", task.name);
        let seen = records.contains_key(&path);
        if let Some(existing) = records.get_mut(&path)
            && existing.kind == "task"
        {
            existing.kind = task.kind.name();
        }
        if !seen {
            let message = "the execution ended unexpectedly before it ran";
            records.insert(path.clone(), record(&path, task.kind.name(), TaskResult::NotRun, message));
        }
        match &task.kind {
            TaskKind::Sequence(c) => add_unseen(&c.tasks, &format!("{path}/"), records),
            TaskKind::Foreach(_) | TaskKind::For(_) if !seen => {
                if let Some(children) = task.kind.children() {
                    add_unseen(children, &format!("{path}/"), records);
                }
            }
            _ => {}
        }
    }
}

/// The task at a report path (`Loop[2]/Copy` finds the loop body's `Copy`).
pub fn find_task<'a>(package: &'a Package, path: &str) -> Option<&'a Task> {
    let mut tasks: &[Task] = &package.tasks;
    let mut found = None;
    for segment in path.split('/') {
        let name = match segment.rfind('[') {
            Some(at)
                if segment.ends_with(']') && segment[at + 1..segment.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
            {
                &segment[..at]
            }
            _ => segment,
        };
        let task = tasks.iter().find(|t| t.name == name)?;
        tasks = task.kind.children().unwrap_or(&[]);
        found = Some(task);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(seq: u64, path: &str, kind: EventKind) -> Event {
        Event { seq, at: Utc::now(), path: path.to_string(), kind }
    }

    #[test]
    fn report_paths_find_their_tasks_through_loop_iterations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("p.toml");
        let text = "[package]\nname = \"p\"\n[[tasks]]\nname = \"Loop[x]\"\nkind = \"foreach\"\nitems = [1]\n\
            [[tasks.tasks]]\nname = \"Copy\"\nkind = \"sleep\"\nduration = \"1s\"\n";
        std::fs::write(&file, text).expect("write");
        let package = switchyard_package::load_package(&file).expect("loads").package;
        assert_eq!(find_task(&package, "Loop[x][3]/Copy").map(|t| t.name.as_str()), Some("Copy"));
        assert_eq!(find_task(&package, "Loop[x]").map(|t| t.name.as_str()), Some("Loop[x]"));
        assert!(find_task(&package, "Nope/Copy").is_none());
    }

    #[test]
    fn finished_running_not_run_and_unseen_tasks_are_all_listed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("p.toml");
        let text = "[package]\nname = \"p\"\n[[tasks]]\nname = \"A\"\nkind = \"sleep\"\nduration = \"1s\"\n\
            [[tasks]]\nname = \"B\"\nkind = \"sleep\"\nduration = \"1s\"\n\
            [[tasks]]\nname = \"C\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [\"A\"]\n\
            [[tasks]]\nname = \"D\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [\"C\"]\n";
        std::fs::write(&file, text).expect("write");
        let package = switchyard_package::load_package(&file).expect("loads").package;
        let events = vec![
            event(1, "", EventKind::PackageStarted { package: "p".into() }),
            event(2, "A", EventKind::TaskStarted { kind: "sleep" }),
            event(3, "B", EventKind::TaskStarted { kind: "sleep" }),
            event(
                4,
                "A",
                EventKind::TaskFinished {
                    kind: "sleep",
                    result: TaskResult::Failure,
                    duration_ms: 5,
                    message: "x".into(),
                    exit_code: None,
                    output: String::new(),
                    agent: None,
                    errors: 1,
                },
            ),
            event(5, "C", EventKind::TaskNotRun { reason: "constraints".into() }),
        ];
        let records = task_records(&events, Some(&package));
        let summary: Vec<(&str, TaskResult, &str)> =
            records.iter().map(|r| (r.path.as_str(), r.result, r.kind)).collect();
        assert_eq!(
            summary,
            [
                ("A", TaskResult::Failure, "sleep"),
                ("B", TaskResult::Canceled, "sleep"),
                ("C", TaskResult::NotRun, "sleep"),
                ("D", TaskResult::NotRun, "sleep"),
            ]
        );
    }
}
