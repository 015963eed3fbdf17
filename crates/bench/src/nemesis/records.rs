//! Reading the records back over gRPC once the faults stop: the coordinator's executions and
//! reports (ListExecutions, GetReport), the agents' job outcome rows (JobHistory), and waiting
//! (bounded) for every execution and child to settle.

use std::time::{Duration, Instant};

use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::coordinator_client::CoordinatorClient;
use switchyard_proto::report_part::Part;
use switchyard_proto::{GetReportRequest, HistoryStatus, JobHistoryRequest, ListExecutionsRequest};
use tonic::transport::{Channel, Endpoint};

use super::check::{Child, Execution, Run, Task, is_final};

/// How often the settle loop looks again.
const POLL: Duration = Duration::from_millis(500);
/// More executions than any run submits.
const LIST_LIMIT: u32 = 1_000_000;

/// Waits until every execution the coordinator lists is final and
/// none of their children still runs, or until `deadline`; returns the executions either way.
pub async fn settle(client: &mut CoordinatorClient<Channel>, deadline: Instant) -> Vec<Execution> {
    loop {
        let executions = executions(client).await;
        let settled =
            executions.iter().all(|e| is_final(&e.status) && e.children.iter().all(|c| c.status != "running"));
        if settled || Instant::now() >= deadline {
            return executions;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every execution the coordinator lists, with its report (an acknowledged id it does not list
/// is counted lost by the checks). A call that fails is tried again until it answers:
/// the coordinator is up by now, and a run that cannot read its records has nothing to say.
pub async fn executions(client: &mut CoordinatorClient<Channel>) -> Vec<Execution> {
    let listed = retry(|| {
        let mut client = client.clone();
        async move { client.list_executions(ListExecutionsRequest { limit: LIST_LIMIT }).await }
    })
    .await
    .into_inner()
    .executions;
    let mut out = Vec::with_capacity(listed.len());
    for execution in listed {
        out.push(report(client, &execution.execution_id).await);
    }
    out
}

/// One execution's report.
async fn report(client: &mut CoordinatorClient<Channel>, id: &str) -> Execution {
    let parts = retry(|| {
        let mut client = client.clone();
        let request = GetReportRequest { execution_id: id.to_string(), page_size: 0 };
        async move {
            let mut stream = client.get_report(request).await?.into_inner();
            let mut parts = Vec::new();
            while let Some(part) = stream.message().await? {
                parts.extend(part.part);
            }
            Ok(tonic::Response::new(parts))
        }
    })
    .await
    .into_inner();
    let mut execution = Execution { id: id.to_string(), ..Execution::default() };
    for part in parts {
        match part {
            Part::Execution(e) => execution.status = e.status,
            Part::Tasks(rows) => execution.tasks.extend(rows.rows.into_iter().map(|t| Task {
                path: t.path,
                kind: t.kind,
                result: t.result,
                message: t.message,
            })),
            Part::Children(rows) => execution.children.extend(rows.rows.into_iter().map(|c| Child {
                task: c.task,
                agent: c.agent,
                run_id: c.run_id,
                status: c.status,
            })),
        }
    }
    execution
}

/// The job outcome rows (step 0) of the workload's jobs in the history of the agent `name` at
/// `url`.
pub async fn runs(name: &str, url: &str) -> Vec<Run> {
    let channel = Endpoint::from_shared(url.to_string()).expect("a valid URL").timeout(Duration::from_secs(30));
    let client = AgentClient::new(channel.connect_lazy());
    let rows = retry(|| {
        let mut client = client.clone();
        async move { client.job_history(JobHistoryRequest { limit: LIST_LIMIT, ..JobHistoryRequest::default() }).await }
    })
    .await
    .into_inner()
    .rows;
    rows.into_iter()
        .filter(|r| r.step_id == 0 && r.job.starts_with("nemesis_"))
        .map(|r| Run {
            agent: name.to_string(),
            succeeded: r.run_status == HistoryStatus::Succeeded as i32,
            job: r.job,
            run_id: r.run_id,
        })
        .collect()
}

/// How long a read is tried before the scenario gives up.
const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Calls `call` until it answers, for at most [`READ_DEADLINE`].
async fn retry<T, F, Fut>(mut call: F) -> tonic::Response<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + READ_DEADLINE;
    loop {
        match call().await {
            Ok(response) => return response,
            Err(e) if Instant::now() < deadline => {
                eprintln!("  reading records: {e}; trying again");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => panic!("reading records failed for {} s: {e}", READ_DEADLINE.as_secs()),
        }
    }
}
