//! The nemesis's invariants, checked from both sides' own records: the coordinator's reports
//! and the agents' job history. Pure functions over plain records, so they are unit-tested and
//! the figures say exactly what was found.

use std::collections::{BTreeMap, HashMap, HashSet};

/// An execution as the coordinator reports it (GetReport).
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// Its id.
    pub id: String,
    /// Its status (§3, lower case).
    pub status: String,
    /// Its task rows.
    pub tasks: Vec<Task>,
    /// Its child runs, one per attempt.
    pub children: Vec<Child>,
}

/// A task row of a report.
#[derive(Debug, Clone, Default)]
pub struct Task {
    /// `fan[1]/work`.
    pub path: String,
    /// `agent_job`, `process`, ...
    pub kind: String,
    /// success, failure, completion, canceled, not_run.
    pub result: String,
    /// Why it ended as it did.
    pub message: String,
}

/// A child run of a report.
#[derive(Debug, Clone, Default)]
pub struct Child {
    /// The path of the task that started it.
    pub task: String,
    /// The agent's name.
    pub agent: String,
    /// The run id on that agent.
    pub run_id: String,
    /// succeeded, failed, canceled, running, lost or superseded.
    pub status: String,
}

/// A job outcome row (step 0) of an agent's history.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The agent whose history holds it.
    pub agent: String,
    /// The job.
    pub job: String,
    /// The run id.
    pub run_id: String,
    /// Whether the job outcome is succeeded.
    pub succeeded: bool,
}

/// What the coordinator's records and the agents' histories hold at the end.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Execution ids the coordinator acknowledged to the submitter.
    pub acknowledged: Vec<String>,
    /// Every execution the coordinator lists, with its report.
    pub executions: Vec<Execution>,
    /// Every job outcome row of the workload's jobs, from every agent.
    pub runs: Vec<Run>,
}

/// Violations by kind, each with a line per occurrence.
pub const VIOLATIONS: [&str; 7] = [
    "execution_lost",
    "execution_stuck",
    "ended_unexpectedly",
    "child_stuck",
    "two_succeeded_children",
    "succeeded_child_not_in_history",
    "run_not_in_any_report",
];

/// Findings reported but not counted as violations.
pub const NOTES: [&str; 1] = ["failed_despite_retries"];

/// Execution statuses after which nothing changes.
const FINAL: [&str; 5] = ["succeeded", "failed", "canceled", "ended_unexpectedly", "completed"];

/// What the checks found: occurrences by kind, violations and notes apart.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Kind -> a line per occurrence; every kind of [`VIOLATIONS`] is present.
    pub violations: BTreeMap<&'static str, Vec<String>>,
    /// Kind -> a line per occurrence; every kind of [`NOTES`] is present.
    pub notes: BTreeMap<&'static str, Vec<String>>,
}

impl Findings {
    /// All violations, of every kind.
    pub fn violation_count(&self) -> usize {
        self.violations.values().map(Vec::len).sum()
    }
}

/// Whether an execution status is final.
pub fn is_final(status: &str) -> bool {
    FINAL.contains(&status)
}

/// Checks every invariant of the nemesis over `records`.
pub fn check(records: &Records) -> Findings {
    let mut findings = Findings {
        violations: VIOLATIONS.iter().map(|k| (*k, Vec::new())).collect(),
        notes: NOTES.iter().map(|k| (*k, Vec::new())).collect(),
    };
    let mut add = |kind: &'static str, line: String| {
        findings.violations.get_mut(kind).expect("a known kind").push(line);
    };
    let listed: HashSet<&str> = records.executions.iter().map(|e| e.id.as_str()).collect();
    for id in &records.acknowledged {
        if !listed.contains(id.as_str()) {
            add(
                "execution_lost",
                format!("execution {id}: acknowledged to the submitter, not listed by the coordinator"),
            );
        }
    }
    // Run id -> whether some agent's history says it succeeded.
    let mut history: HashMap<&str, bool> = HashMap::new();
    for run in &records.runs {
        *history.entry(run.run_id.as_str()).or_default() |= run.succeeded;
    }
    let mut reported: HashSet<&str> = HashSet::new();
    for execution in &records.executions {
        let id = &execution.id;
        if !is_final(&execution.status) {
            add("execution_stuck", format!("execution {id}: still {} after the settle deadline", execution.status));
        }
        if execution.status == "ended_unexpectedly" {
            add("ended_unexpectedly", format!("execution {id}: ended_unexpectedly ({})", unfinished(execution)));
        }
        let mut succeeded: BTreeMap<&str, Vec<&Child>> = BTreeMap::new();
        for child in &execution.children {
            reported.insert(child.run_id.as_str());
            let at = format!("execution {id}: task {}: run {} on {}", child.task, child.run_id, child.agent);
            match child.status.as_str() {
                "running" => add("child_stuck", format!("{at}: still running after the settle deadline")),
                "succeeded" => {
                    succeeded.entry(child.task.as_str()).or_default().push(child);
                    if !history.get(child.run_id.as_str()).copied().unwrap_or(false) {
                        add(
                            "succeeded_child_not_in_history",
                            format!("{at}: succeeded in the report, no succeeded outcome in any agent's history"),
                        );
                    }
                }
                _ => {}
            }
        }
        for (task, children) in succeeded.into_iter().filter(|(_, c)| c.len() > 1) {
            let runs: Vec<String> = children.iter().map(|c| format!("{} on {}", c.run_id, c.agent)).collect();
            add(
                "two_succeeded_children",
                format!("execution {id}: task {task}: {} succeeded children ({})", runs.len(), runs.join(", ")),
            );
        }
        for task in execution.tasks.iter().filter(|t| t.kind == "agent_job" && t.result == "failure") {
            findings
                .notes
                .get_mut("failed_despite_retries")
                .expect("a known kind")
                .push(format!("execution {id}: task {}: failed: {}", task.path, task.message));
        }
    }
    for run in &records.runs {
        if !reported.contains(run.run_id.as_str()) {
            let outcome = if run.succeeded { "succeeded" } else { "did not succeed" };
            findings.violations.get_mut("run_not_in_any_report").expect("a known kind").push(format!(
                "run {} of {} on {}: {outcome} in the agent's history, in no execution's report",
                run.run_id, run.job, run.agent
            ));
        }
    }
    findings
}

/// The tasks of an execution that did not end well, for a line about it.
fn unfinished(execution: &Execution) -> String {
    let tasks: Vec<String> =
        execution.tasks.iter().filter(|t| t.result != "success").map(|t| format!("{} {}", t.path, t.result)).collect();
    if tasks.is_empty() { "every task succeeded".into() } else { tasks.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(task: &str, run_id: &str, status: &str) -> Child {
        Child { task: task.into(), agent: "agent-0".into(), run_id: run_id.into(), status: status.into() }
    }

    fn run(run_id: &str, succeeded: bool) -> Run {
        Run { agent: "agent-0".into(), job: "nemesis_short".into(), run_id: run_id.into(), succeeded }
    }

    fn execution(id: &str, status: &str, children: Vec<Child>) -> Execution {
        Execution { id: id.into(), status: status.into(), tasks: Vec::new(), children }
    }

    #[test]
    fn a_clean_run_has_no_violations() {
        let records = Records {
            acknowledged: vec!["e1".into()],
            executions: vec![execution(
                "e1",
                "succeeded",
                vec![child("a", "r1", "lost"), child("a", "r2", "succeeded")],
            )],
            runs: vec![run("r1", false), run("r2", true)],
        };
        assert_eq!(check(&records).violation_count(), 0);
    }

    #[test]
    fn each_kind_of_violation_is_found() {
        let records = Records {
            acknowledged: vec!["e1".into(), "e2".into(), "gone".into()],
            executions: vec![
                execution("e1", "running", vec![child("a", "r1", "succeeded"), child("a", "r2", "succeeded")]),
                execution("e2", "ended_unexpectedly", vec![child("b", "r3", "running"), child("c", "r4", "succeeded")]),
            ],
            runs: vec![run("r1", true), run("r2", true), run("r3", false), run("r9", true)],
        };
        let findings = check(&records);
        let count = |kind: &str| findings.violations[kind].len();
        assert_eq!(count("execution_lost"), 1);
        assert_eq!(count("execution_stuck"), 1);
        assert_eq!(count("ended_unexpectedly"), 1);
        assert_eq!(count("child_stuck"), 1);
        assert_eq!(count("two_succeeded_children"), 1);
        assert_eq!(count("succeeded_child_not_in_history"), 1, "r4 is in no history");
        assert_eq!(count("run_not_in_any_report"), 1, "r9 is in no report");
        assert_eq!(findings.violation_count(), 7);
    }
}
