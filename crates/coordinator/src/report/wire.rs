//! The report on the wire: `Execution`, `TaskRow` and `ChildRow` to the domain records and back,
//! and a report cut into `ReportPart`s and put together again. Wire types stop here.
//!
//! What the wire cannot carry: an execution's request id and package file (not in `Execution`;
//! they read back as None and empty), parameter order (a `Struct` is a map; they read back by
//! name), and the tasks of children run in process (not in `ChildRow`). An empty string stands
//! for an absent agent, job, run id or package.

use switchyard_package::engine::{ChildRecord, TaskRecord};
use switchyard_package::model::TaskKind;
use switchyard_proto::convert::{from_timestamp, params_from_struct, struct_from_params, timestamp};
use switchyard_proto::{self as pb, report_part::Part};

use super::{DEFAULT_PAGE_SIZE, Report};
use crate::model::{ExecutionRecord, parse_name};

impl From<&ExecutionRecord> for pb::Execution {
    /// The execution without task counts (a [`Report`] fills them in).
    fn from(execution: &ExecutionRecord) -> pb::Execution {
        pb::Execution {
            execution_id: execution.execution_id.clone(),
            package: execution.package.clone(),
            status: execution.status.as_str().to_owned(),
            caller: execution.caller.clone(),
            started_at: Some(timestamp(execution.started_at)),
            ended_at: execution.ended_at.map(timestamp),
            duration_ms: execution.duration_ms.unwrap_or(0),
            parameters: Some(struct_from_params(&execution.parameters)),
            tasks_total: 0,
            tasks_failed: 0,
        }
    }
}

impl TryFrom<pb::Execution> for ExecutionRecord {
    type Error = String;

    /// The execution; its duration is known once it has ended (`ended_at` is set).
    fn try_from(execution: pb::Execution) -> Result<ExecutionRecord, String> {
        let started_at = execution
            .started_at
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| "execution.started_at is missing or out of range".to_owned())?;
        let ended_at = match &execution.ended_at {
            Some(at) => Some(from_timestamp(at).ok_or_else(|| "execution.ended_at is out of range".to_owned())?),
            None => None,
        };
        Ok(ExecutionRecord {
            status: parse_name(&execution.status)
                .ok_or_else(|| format!("execution.status: unknown execution status {:?}", execution.status))?,
            execution_id: execution.execution_id,
            request_id: None,
            package: execution.package,
            package_file: String::new(),
            caller: execution.caller,
            parameters: params_from_struct(execution.parameters),
            started_at,
            duration_ms: ended_at.map(|_| execution.duration_ms),
            ended_at,
        })
    }
}

/// A task record as a wire row.
pub fn task_row(task: &TaskRecord) -> pb::TaskRow {
    pb::TaskRow {
        path: task.path.clone(),
        kind: task.kind.to_owned(),
        result: task.result.as_str().to_owned(),
        started_at: task.started_at.map(timestamp),
        duration_ms: task.duration_ms,
        agent: task.agent.clone().unwrap_or_default(),
        message: task.message.clone(),
        exit_code: task.exit_code,
    }
}

/// A wire row as a task record; an unknown kind or result is an error naming the field.
pub fn task_record(row: pb::TaskRow) -> Result<TaskRecord, String> {
    Ok(TaskRecord {
        kind: TaskKind::static_name(&row.kind).ok_or_else(|| format!("kind: unknown task kind {:?}", row.kind))?,
        result: parse_name(&row.result).ok_or_else(|| format!("result: unknown task result {:?}", row.result))?,
        started_at: match &row.started_at {
            Some(at) => Some(from_timestamp(at).ok_or_else(|| "started_at is out of range".to_owned())?),
            None => None,
        },
        duration_ms: row.duration_ms,
        agent: present(row.agent),
        message: row.message,
        exit_code: row.exit_code,
        path: row.path,
    })
}

/// A child record as a wire row (without the tasks of a child run in process).
pub fn child_row(child: &ChildRecord) -> pb::ChildRow {
    pb::ChildRow {
        task: child.task.clone(),
        agent: child.agent.clone().unwrap_or_default(),
        job: child.job.clone().unwrap_or_default(),
        run_id: child.run_id.clone().unwrap_or_default(),
        package: child.package.clone().unwrap_or_default(),
        status: child.status.as_str().to_owned(),
        duration_ms: child.duration_ms,
        agent_status: child.agent_status.map(|status| status.as_str().to_owned()).unwrap_or_default(),
        attempt: child.attempt,
        started_at: child.started_at.map(timestamp),
    }
}

/// A wire row as a child record; an unknown status is an error naming the field.
pub fn child_record(row: pb::ChildRow) -> Result<ChildRecord, String> {
    Ok(ChildRecord {
        status: parse_name(&row.status).ok_or_else(|| format!("status: unknown child status {:?}", row.status))?,
        agent_status: match row.agent_status.as_str() {
            "" => None,
            name => Some(
                parse_name(name).ok_or_else(|| format!("agent_status: unknown child status {:?}", row.agent_status))?,
            ),
        },
        task: row.task,
        agent: present(row.agent),
        job: present(row.job),
        run_id: present(row.run_id),
        package: present(row.package),
        duration_ms: row.duration_ms,
        tasks: Vec::new(),
        attempt: row.attempt,
        started_at: match &row.started_at {
            Some(at) => Some(from_timestamp(at).ok_or_else(|| "started_at is out of range".to_owned())?),
            None => None,
        },
    })
}

pub(super) fn to_parts(report: &Report, page_size: usize) -> Vec<pb::ReportPart> {
    let page_size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size };
    let mut execution = pb::Execution::from(&report.execution);
    execution.tasks_total = u32::try_from(report.tasks.len()).unwrap_or(u32::MAX);
    execution.tasks_failed = u32::try_from(report.tasks_failed()).unwrap_or(u32::MAX);
    let part = |part| pb::ReportPart { part: Some(part) };
    let tasks = report
        .tasks
        .chunks(page_size)
        .map(|page| Part::Tasks(pb::TaskRows { rows: page.iter().map(task_row).collect() }));
    let children = report
        .children
        .chunks(page_size)
        .map(|page| Part::Children(pb::ChildRows { rows: page.iter().map(child_row).collect() }));
    std::iter::once(Part::Execution(execution)).chain(tasks).chain(children).map(part).collect()
}

pub(super) fn from_parts(parts: Vec<pb::ReportPart>) -> Result<Report, String> {
    let mut parts = parts.into_iter().enumerate();
    let execution = match parts.next() {
        Some((_, pb::ReportPart { part: Some(Part::Execution(execution)) })) => ExecutionRecord::try_from(execution)?,
        Some(_) => return Err("report part 0: the execution must come first".to_owned()),
        None => return Err("the report has no parts".to_owned()),
    };
    let (mut tasks, mut children) = (Vec::new(), Vec::new());
    for (index, part) in parts {
        match part.part {
            Some(Part::Tasks(page)) => {
                for row in page.rows {
                    let row_number = tasks.len();
                    tasks.push(task_record(row).map_err(|error| format!("task row {row_number}: {error}"))?);
                }
            }
            Some(Part::Children(page)) => {
                for row in page.rows {
                    let row_number = children.len();
                    children.push(child_record(row).map_err(|error| format!("child row {row_number}: {error}"))?);
                }
            }
            Some(Part::Execution(_)) => return Err(format!("report part {index}: a second execution")),
            None => return Err(format!("report part {index} is empty")),
        }
    }
    Ok(Report { execution, tasks, children })
}

fn present(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use switchyard_package::model::TaskResult;

    use super::super::tests::{at, report, task};
    use super::*;

    /// gRPC's default message limit.
    const MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

    fn same_tasks(left: &[TaskRecord], right: &[TaskRecord]) -> bool {
        let json = |tasks: &[TaskRecord]| serde_json::to_value(tasks).expect("tasks serialize");
        json(left) == json(right)
    }

    #[test]
    fn a_report_of_ten_thousand_tasks_round_trips_in_small_parts() {
        let mut report = report();
        let results = [TaskResult::Success, TaskResult::Failure, TaskResult::NotRun, TaskResult::Canceled];
        report.tasks = (0..10_000)
            .map(|i| {
                let result = results[i % results.len()];
                let start = (result != TaskResult::NotRun).then_some(i as i64);
                let mut task = task(&format!("Files[{i}]/Copy"), "process", result, start);
                task.message = "x".repeat(200);
                task
            })
            .collect();
        let parts = report.to_proto_parts(500);

        assert_eq!(parts.len(), 1 + 20 + 1, "execution, 20 pages of tasks, one of children");
        assert!(matches!(parts[0].part, Some(Part::Execution(_))));
        assert!(matches!(parts[1].part, Some(Part::Tasks(_))) && matches!(parts[21].part, Some(Part::Children(_))));
        for part in &parts {
            let size = part.encoded_len();
            assert!(size < MESSAGE_LIMIT / 8, "a part of {size} bytes is too close to the limit");
        }
        let Some(Part::Execution(execution)) = &parts[0].part else { unreachable!() };
        assert_eq!((execution.tasks_total, execution.tasks_failed), (10_000, 2_500));

        let back = Report::from_proto_parts(parts).expect("the parts make a report");
        let mut expected = report.execution.clone();
        expected.request_id = None;
        expected.package_file = String::new();
        expected.parameters.sort_keys();
        assert_eq!(back.execution, expected);
        assert!(same_tasks(&back.tasks, &report.tasks), "tasks differ");
        assert_eq!(back.tasks[3].exit_code, Some(0));
        assert_eq!(
            serde_json::to_value(&back.children).expect("json"),
            serde_json::to_value(&report.children).expect("json")
        );
        assert_eq!(back.to_json(), Report { execution: expected, ..report }.to_json());
    }

    #[test]
    fn a_running_execution_keeps_unknown_end_and_duration() {
        let mut report = report();
        report.execution.ended_at = None;
        report.execution.duration_ms = None;
        report.children.clear();
        let back = Report::from_proto_parts(report.to_proto_parts(0)).expect("report");
        assert_eq!(back.execution.ended_at, None);
        assert_eq!(back.execution.duration_ms, None);
        assert!(back.children.is_empty());
        assert_eq!(back.tasks[3].started_at, None);
        assert_eq!(back.tasks[0].started_at, Some(at(100)));
    }

    #[test]
    fn malformed_parts_are_refused_naming_what_is_wrong() {
        let parts = report().to_proto_parts(2);
        let error = Report::from_proto_parts(parts[1..].to_vec()).expect_err("no execution first");
        assert!(error.contains("execution must come first"), "{error}");
        let mut doubled = parts.clone();
        doubled.push(parts[0].clone());
        assert!(Report::from_proto_parts(doubled).expect_err("two executions").contains("second execution"));
        assert!(Report::from_proto_parts(Vec::new()).is_err());

        let mut bad_kind = parts.clone();
        if let Some(Part::Tasks(page)) = &mut bad_kind[2].part {
            page.rows[1].kind = "teleport".into();
        }
        let error = Report::from_proto_parts(bad_kind).expect_err("unknown kind");
        assert_eq!(error, "task row 3: kind: unknown task kind \"teleport\"");

        let mut bad_status = parts;
        if let Some(Part::Execution(execution)) = &mut bad_status[0].part {
            execution.status = "Running".into();
        }
        assert!(Report::from_proto_parts(bad_status).expect_err("bad status").contains("execution.status"));
    }
}
