//! The coordinator's pages (DESIGN.md §12, issue 14): the execution page (the Overview report
//! with its timeline) of an execution of 10,000 tasks, each with a child on one of 3 agents,
//! rendered as `/executions/{id}` and as the standalone HTML report; and the dashboard with 50
//! executions and 1,000 agents. Target: each under a second. Figures are medians.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use switchyard_coordinator::http::{dashboard_page, execution_page};
use switchyard_coordinator::model::{ExecutionRecord, Report};
use switchyard_coordinator::registry::{AgentSnapshot, AgentSource, AgentState};
use switchyard_coordinator::store::TaskCounts;
use switchyard_package::engine::{ChildRecord, ChildStatus, ExecutionStatus, TaskRecord};
use switchyard_package::model::TaskResult;

const TASKS: usize = 10_000;
const AGENTS: usize = 1_000;
const EXECUTIONS: usize = 50;

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let report = report();
    let executions: Vec<ExecutionRecord> = (0..EXECUTIONS).map(|i| execution(&format!("exec-{i}"))).collect();
    let agents: Vec<AgentSnapshot> = (0..AGENTS).map(agent).collect();
    let counts = |_: &str| Some(TaskCounts { total: TASKS as u32, failed: 3 });
    println!("pages: median of {runs} runs (target: under 1 s each)");
    println!("{:<28} {:>10} {:>12}", "page", "ms", "KiB");
    let mut json = serde_json::Map::new();
    let mut measure = |name: &str, render: &dyn Fn() -> String| {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            size = render().len();
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let ms = crate::median(&mut times);
        println!("{name:<28} {ms:>10.1} {:>12}", size / 1024);
        json.insert(name.to_owned(), serde_json::json!({ "ms": ms, "bytes": size }));
    };
    measure("execution page, 10k tasks", &|| execution_page(&report, false));
    measure("html report, 10k tasks", &|| report.to_html());
    measure("text report, 10k tasks", &|| report.to_text());
    measure("dashboard, 1k agents", &|| {
        dashboard_page(&agents, &executions[..3], &executions, &counts, std::time::Instant::now())
    });
    println!("{}", serde_json::Value::Object(json));
}

fn report() -> Report {
    let execution = ExecutionRecord {
        status: ExecutionStatus::Failed,
        ended_at: Some(at(TASKS as i64 * 10 + 500)),
        duration_ms: Some(TASKS as u64 * 10 + 500),
        ..execution("exec-10k")
    };
    let tasks = (0..TASKS)
        .map(|i| TaskRecord {
            path: format!("Load files[{i}]/Copy"),
            kind: "agent_job",
            result: if i % 1000 == 7 { TaskResult::Failure } else { TaskResult::Success },
            started_at: Some(at(i as i64 * 10)),
            duration_ms: Some(400),
            agent: Some(format!("server-{}", i % 3)),
            message: format!("job \"copy\" succeeded on agent \"server-{}\": The job succeeded.", i % 3),
            exit_code: None,
        })
        .collect();
    let children = (0..TASKS)
        .map(|i| ChildRecord {
            task: format!("Load files[{i}]/Copy"),
            agent: Some(format!("server-{}", i % 3)),
            job: Some("copy".into()),
            run_id: Some(format!("run-{i}")),
            package: Some("copy.toml".into()),
            status: if i % 1000 == 7 { ChildStatus::Failed } else { ChildStatus::Succeeded },
            duration_ms: Some(380),
            agent_status: None,
            tasks: Vec::new(),
            attempt: 0,
            started_at: Some(at(i as i64 * 10 + 5)),
        })
        .collect();
    Report { execution, tasks, children }
}

fn execution(id: &str) -> ExecutionRecord {
    ExecutionRecord {
        execution_id: id.into(),
        request_id: None,
        package: "nightly-load".into(),
        package_file: "nightly.toml".into(),
        status: ExecutionStatus::Running,
        caller: "alice".into(),
        parameters: Default::default(),
        started_at: at(0),
        ended_at: None,
        duration_ms: None,
    }
}

fn agent(index: usize) -> AgentSnapshot {
    AgentSnapshot {
        name: format!("server-{index}"),
        address: format!("http://10.0.{}.{}:7601", index / 250, index % 250),
        state: if index.is_multiple_of(50) { AgentState::Down } else { AgentState::Up },
        labels: vec!["etl".into()],
        running: 2,
        queued: 0,
        slots: 4,
        inflight: 0,
        incarnation: "incarnation".into(),
        epoch: 3,
        source: AgentSource::Config,
        version: "0.1.0".into(),
        last_seen: Some(Instant::now()),
        last_error: None,
        outbox_lag: 0,
    }
}

fn at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(1_795_000_000_000 + ms).single().expect("a valid time")
}
