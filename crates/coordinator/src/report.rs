//! The Overview report (DESIGN.md §7): an execution's information, the parameters used, one row
//! per task and the child packages it ran, rendered as JSON (the §9 shape), text and an HTML
//! page with a timeline, and carried over gRPC as `ReportPart`s.

mod html;
mod text;
mod timeline;
mod wire;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use switchyard_package::model::TaskResult;

pub use crate::model::Report;

pub use html::{escape, page};
pub use wire::{child_record, child_row, task_record, task_row};

/// Task rows per `ReportPart` when the caller asks for 0 (GetReportRequest.page_size).
pub const DEFAULT_PAGE_SIZE: usize = 500;

impl Report {
    /// The report as DESIGN.md §9's JSON object, plus `caller`: times RFC 3339 UTC with
    /// milliseconds, statuses lower case, null where unknown.
    pub fn to_json(&self) -> Value {
        let execution = &self.execution;
        let parameters: serde_json::Map<String, Value> =
            execution.parameters.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|task| {
                json!({
                    "path": task.path,
                    "kind": task.kind,
                    "result": task.result.as_str(),
                    "started_at": task.started_at.as_ref().map(rfc3339),
                    "duration_ms": task.duration_ms,
                    "agent": task.agent,
                    "message": task.message,
                })
            })
            .collect();
        let children: Vec<Value> = self
            .children
            .iter()
            .map(|child| {
                let mut value = json!({
                    "task": child.task,
                    "agent": child.agent,
                    "job": child.job,
                    "run_id": child.run_id,
                    "package": child.package,
                    "status": child.status.as_str(),
                    "duration_ms": child.duration_ms,
                });
                // Only when the status did not take the agent's late outcome (lost, superseded).
                if let Some(agent_status) = child.agent_status {
                    value["agent_status"] = Value::from(agent_status.as_str());
                }
                value
            })
            .collect();
        json!({
            "execution_id": execution.execution_id,
            "package": execution.package,
            "status": execution.status.as_str(),
            "caller": execution.caller,
            "started_at": rfc3339(&execution.started_at),
            "ended_at": execution.ended_at.as_ref().map(rfc3339),
            "duration_ms": execution.duration_ms,
            "parameters": parameters,
            "tasks": tasks,
            "children": children,
        })
    }

    /// The report as plain text, for a terminal.
    pub fn to_text(&self) -> String {
        text::render(self)
    }

    /// The report as one self-contained HTML page (inline CSS, no external assets) with a
    /// timeline of the tasks that ran.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// The report's sections as HTML, without the page around them: what the coordinator's
    /// live page (`/executions/{id}`) shows inside its own page.
    pub fn to_html_sections(&self) -> String {
        let mut sections = String::with_capacity(4096 + self.tasks.len() * 600);
        html::sections(&mut sections, self);
        sections
    }

    /// Orders the children as the package orders their tasks, then by attempt and start (they
    /// are stored as they arrive); children of tasks not listed keep their order, last.
    pub fn order_children(&mut self) {
        let position: std::collections::HashMap<&str, usize> =
            self.tasks.iter().enumerate().map(|(index, task)| (task.path.as_str(), index)).collect();
        let mut keyed: Vec<(usize, u32, Option<DateTime<Utc>>, usize)> = self
            .children
            .iter()
            .enumerate()
            .map(|(arrival, child)| {
                let task = position.get(child.task.as_str()).copied().unwrap_or(usize::MAX);
                (task, child.attempt, child.started_at, arrival)
            })
            .collect();
        keyed.sort_unstable();
        let mut children: Vec<Option<_>> = std::mem::take(&mut self.children).into_iter().map(Some).collect();
        self.children = keyed.into_iter().filter_map(|(_, _, _, arrival)| children[arrival].take()).collect();
    }

    /// The report as GetReport streams it: the execution first, then task rows, then child rows,
    /// `page_size` rows per part (0: [`DEFAULT_PAGE_SIZE`]) so no message nears gRPC's limit.
    pub fn to_proto_parts(&self, page_size: usize) -> Vec<switchyard_proto::ReportPart> {
        wire::to_parts(self, page_size)
    }

    /// Rebuilds a report from GetReport's parts; the execution must come first, and once.
    pub fn from_proto_parts(parts: Vec<switchyard_proto::ReportPart>) -> Result<Report, String> {
        wire::from_parts(parts)
    }

    /// Tasks that ended with a failure.
    pub fn tasks_failed(&self) -> usize {
        self.tasks.iter().filter(|task| task.result == TaskResult::Failure).count()
    }
}

/// A UTC time as RFC 3339 with milliseconds and `Z`, as every rendering shows it.
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// At most `max` characters of `text`: when it is longer, cut at the last word boundary in its
/// second half (or mid-word when there is none) and ended with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    let at_word = match kept.rfind(char::is_whitespace) {
        Some(space) if space >= kept.len() / 2 => kept[..space].trim_end(),
        _ => kept.as_str(),
    };
    format!("{at_word}…")
}

/// A duration for people: `812ms`, `12.345s`, `3m07.250s`, `1h02m03.000s`.
pub(crate) fn human_duration(ms: u64) -> String {
    let (hours, minutes, seconds, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{seconds}.{millis:03}s"),
        60_000..3_600_000 => format!("{minutes}m{seconds:02}.{millis:03}s"),
        _ => format!("{hours}h{minutes:02}m{seconds:02}.{millis:03}s"),
    }
}

/// A parameter value for people: strings bare, everything else as JSON.
pub(crate) fn parameter_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use switchyard_package::engine::{ChildRecord, ChildStatus, ExecutionStatus, TaskRecord};
    use switchyard_package::expr::Map;

    use super::*;
    use crate::model::{ExecutionRecord, parse_name};

    pub(crate) fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_795_000_000_000 + ms).single().expect("a valid time")
    }

    pub(crate) fn execution() -> ExecutionRecord {
        let mut parameters = Map::new();
        parameters.insert("run_date".into(), json!("2026-11-21"));
        parameters.insert("batch".into(), json!(3));
        ExecutionRecord {
            execution_id: "exec-1".into(),
            request_id: Some("request-1".into()),
            package: "nightly-load".into(),
            package_file: "nightly.toml".into(),
            status: ExecutionStatus::EndedUnexpectedly,
            caller: "alice".into(),
            parameters,
            started_at: at(0),
            ended_at: Some(at(10_000)),
            duration_ms: Some(10_000),
        }
    }

    pub(crate) fn task(path: &str, kind: &'static str, result: TaskResult, start_ms: Option<i64>) -> TaskRecord {
        TaskRecord {
            path: path.into(),
            kind,
            result,
            started_at: start_ms.map(at),
            duration_ms: start_ms.map(|_| 1500),
            agent: (kind == "agent_job").then(|| "server-b".to_owned()),
            message: format!("{path} said\nsecond line"),
            exit_code: (kind == "process").then_some(0),
        }
    }

    pub(crate) fn child(task: &str, status: ChildStatus) -> ChildRecord {
        ChildRecord {
            task: task.into(),
            agent: Some("server-b".into()),
            job: Some("load_orders".into()),
            run_id: Some(format!("run-{}", status.as_str())),
            package: Some("load_orders.toml".into()),
            status,
            duration_ms: (status != ChildStatus::Running).then_some(812),
            agent_status: None,
            tasks: Vec::new(),
            attempt: 0,
            started_at: Some(at(2000)),
        }
    }

    pub(crate) const EVERY_CHILD_STATUS: [ChildStatus; 6] = [
        ChildStatus::Succeeded,
        ChildStatus::Failed,
        ChildStatus::Canceled,
        ChildStatus::Running,
        ChildStatus::Lost,
        ChildStatus::Superseded,
    ];

    pub(crate) fn report() -> Report {
        Report {
            execution: execution(),
            tasks: vec![
                task("Load customers", "agent_job", TaskResult::Success, Some(100)),
                task("Stage/Load orders", "agent_job", TaskResult::Failure, Some(2000)),
                task("Files[0]/Copy", "process", TaskResult::Success, Some(4000)),
                task("Report", "process", TaskResult::NotRun, None),
                task("Cleanup", "sleep", TaskResult::NotRun, None),
            ],
            children: EVERY_CHILD_STATUS.iter().map(|status| child("Stage/Load orders", *status)).collect(),
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn json_has_exactly_the_design_shape() {
        let mut report = report();
        report.execution.ended_at = None;
        report.execution.duration_ms = None;
        let value = report.to_json();

        let mut expected = vec![
            "caller",
            "children",
            "duration_ms",
            "ended_at",
            "execution_id",
            "package",
            "parameters",
            "started_at",
            "status",
            "tasks",
        ];
        expected.sort_unstable();
        assert_eq!(keys(&value), expected);
        assert_eq!(value["execution_id"], "exec-1");
        assert_eq!(value["package"], "nightly-load");
        assert_eq!(value["status"], "ended_unexpectedly");
        assert_eq!(value["caller"], "alice");
        assert_eq!(value["started_at"], "2026-11-18T11:06:40.000Z");
        assert!(value["ended_at"].is_null());
        assert!(value["duration_ms"].is_null());
        assert_eq!(value["parameters"], json!({"run_date": "2026-11-21", "batch": 3}));

        let tasks = value["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 5);
        for task in tasks {
            assert_eq!(keys(task), ["agent", "duration_ms", "kind", "message", "path", "result", "started_at"]);
        }
        assert_eq!(
            tasks[1],
            json!({"path": "Stage/Load orders", "kind": "agent_job", "result": "failure",
                   "started_at": "2026-11-18T11:06:42.000Z", "duration_ms": 1500, "agent": "server-b",
                   "message": "Stage/Load orders said\nsecond line"})
        );
        assert_eq!(tasks[3]["result"], "not_run");
        assert!(tasks[3]["started_at"].is_null() && tasks[3]["duration_ms"].is_null() && tasks[3]["agent"].is_null());
        assert!(tasks[2]["duration_ms"].is_u64() && tasks[2]["started_at"].is_string());

        let children = value["children"].as_array().expect("children");
        let statuses: Vec<&str> = children.iter().map(|child| child["status"].as_str().expect("status")).collect();
        assert_eq!(statuses, ["succeeded", "failed", "canceled", "running", "lost", "superseded"]);
        for child in children {
            assert_eq!(keys(child), ["agent", "duration_ms", "job", "package", "run_id", "status", "task"]);
            assert!(child["agent"].is_string() && child["job"].is_string() && child["run_id"].is_string());
        }
        assert_eq!(children[1]["duration_ms"], 812);
        assert!(children[3]["duration_ms"].is_null(), "a running child has no duration yet");

        report.execution.ended_at = Some(at(1234));
        report.execution.duration_ms = Some(1234);
        let value = report.to_json();
        assert_eq!(value["ended_at"], "2026-11-18T11:06:41.234Z");
        assert_eq!(value["duration_ms"], 1234);
    }

    #[test]
    fn every_status_name_parses_back() {
        for status in [
            ExecutionStatus::Created,
            ExecutionStatus::Running,
            ExecutionStatus::Canceled,
            ExecutionStatus::Failed,
            ExecutionStatus::Pending,
            ExecutionStatus::EndedUnexpectedly,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Stopping,
            ExecutionStatus::Completed,
        ] {
            assert_eq!(parse_name::<ExecutionStatus>(status.as_str()), Some(status));
        }
        for status in EVERY_CHILD_STATUS {
            assert_eq!(parse_name::<ChildStatus>(status.as_str()), Some(status));
        }
        for result in
            [TaskResult::Success, TaskResult::Failure, TaskResult::Completion, TaskResult::Canceled, TaskResult::NotRun]
        {
            assert_eq!(parse_name::<TaskResult>(result.as_str()), Some(result));
        }
        assert_eq!(parse_name::<ExecutionStatus>("Running"), None);
    }

    #[test]
    fn shortened_text_ends_at_a_word_with_an_ellipsis() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("exactly10!", 10), "exactly10!");
        assert_eq!(shorten("the job failed on agent server-b", 20), "the job failed on…");
        assert_eq!(shorten("abcdefghijklmnopqrstuvwxyz", 10), "abcdefghi…");
        assert_eq!(shorten("ééééé ééééé", 8), "ééééé…");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(812), "812ms");
        assert_eq!(human_duration(12_345), "12.345s");
        assert_eq!(human_duration(187_250), "3m07.250s");
        assert_eq!(human_duration(3_723_000), "1h02m03.000s");
    }
}
