//! The nemesis's workload: its jobs, its parent package, and a submitter that starts a parent
//! every few hundred ms over gRPC with a request id, and retries a failed submission (the
//! coordinator may be dead) with the same id until it is acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_proto::coordinator_client::CoordinatorClient;
use switchyard_proto::{PackageFile, StartExecutionRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::schedule::Rng;

/// The agents' label, and the parents' `pool`.
pub const POOL: &str = "nemesis";

/// The jobs of every agent: short commands (0.1 to 0.5 s), any number at once. Every job name
/// starts with `nemesis_`, so runs of the workload are told apart in an agent's history.
pub const JOBS: [(&str, &str); 3] =
    [("nemesis_short.toml", JOB_SHORT), ("nemesis_mid.toml", JOB_MID), ("nemesis_long.toml", JOB_LONG)];

const JOB_SHORT: &str = "name = \"nemesis_short\"\nconcurrency = \"allow\"\nmax_running = 1000\n\n\
[[steps]]\nname = \"work\"\ncommand = [\"sleep\", \"0.1\"]\n";
const JOB_MID: &str = "name = \"nemesis_mid\"\nconcurrency = \"allow\"\nmax_running = 1000\n\n\
[[steps]]\nname = \"work\"\ncommand = [\"sleep\", \"0.3\"]\nretry_attempts = 1\nretry_interval = \"100ms\"\n";
const JOB_LONG: &str = "name = \"nemesis_long\"\nconcurrency = \"allow\"\nmax_running = 1000\n\n\
[[steps]]\nname = \"work\"\ncommand = [\"sleep\", \"0.5\"]\n";

/// The parent package: waited-for agent jobs with retries, a fire-and-forget one, a foreach of
/// three waited-for jobs, and a process task at the end. Six agent runs when nothing fails.
pub const PACKAGE: &str = r#"[package]
name = "nemesis"

[parameters]
items = ["a", "b", "c"]

[[tasks]]
name = "first"
kind = "agent_job"
pool = "nemesis"
job = "nemesis_short"
wait = true
retries = 3

[[tasks]]
name = "notify"
kind = "agent_job"
pool = "nemesis"
job = "nemesis_short"
retries = 2
after = ["first"]

[[tasks]]
name = "fan"
kind = "foreach"
items = "{{ params.items }}"
var = "item"
parallel = 3
after = ["first"]

  [[tasks.tasks]]
  name = "work"
  kind = "agent_job"
  pool = "nemesis"
  job = "nemesis_mid"
  wait = true
  retries = 3

[[tasks]]
name = "last"
kind = "agent_job"
pool = "nemesis"
job = "nemesis_long"
wait = true
retries = 3
after = ["fan"]

[[tasks]]
name = "done"
kind = "process"
command = ["true"]
after = ["last", { task = "notify", on = "completion" }]
"#;

/// Time between two submissions, in ms.
const PACE_MS: (u64, u64) = (200, 800);
/// A bound on one StartExecution call: a call to a coordinator killed meanwhile fails at once,
/// this only covers one that hangs.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two tries of one submission.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// A submission not acknowledged within this long is given up (and counted).
const GIVE_UP: Duration = Duration::from_secs(60);

/// What the submitter did.
#[derive(Debug, Default, Clone)]
pub struct Submissions {
    /// Execution ids the coordinator acknowledged, in submission order.
    pub acknowledged: Vec<String>,
    /// Tries that failed and were repeated with the same request id.
    pub retries: u64,
    /// Submissions never acknowledged within [`GIVE_UP`].
    pub given_up: u64,
    /// Acknowledgements that said the request id was already known (a retry of a submission
    /// the coordinator had recorded before its reply was lost).
    pub existing: u64,
}

/// A client of the coordinator at `url` that reconnects by itself after a restart.
pub fn coordinator_client(url: &str) -> CoordinatorClient<Channel> {
    let endpoint = Endpoint::from_shared(url.to_string()).expect("a valid URL");
    let channel = endpoint.connect_timeout(Duration::from_secs(2)).timeout(CALL_TIMEOUT).connect_lazy();
    CoordinatorClient::new(channel)
}

/// Submits parents until `stop` fires, then returns once the submission under way (if any) is
/// acknowledged or given up; request ids are `nemesis-SEED-N`.
pub async fn submit(url: String, seed: u64, stop: CancellationToken, out: Arc<Mutex<Submissions>>) {
    let mut client = coordinator_client(&url);
    // Its own stream, apart from the fault schedule's: the pace never shifts the faults.
    let mut rng = Rng::new(seed ^ 0x0005_EED0_F5AB_u64);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let request = StartExecutionRequest {
            request_id: format!("nemesis-{seed}-{n}"),
            package: "nemesis.toml".into(),
            files: vec![PackageFile { path: "nemesis.toml".into(), content: PACKAGE.into() }],
            caller: "nemesis".into(),
            ..StartExecutionRequest::default()
        };
        let began = Instant::now();
        loop {
            match client.start_execution(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let mut out = out.lock().expect("submissions lock");
                    out.existing += u64::from(response.existing);
                    out.acknowledged.push(response.execution_id);
                    break;
                }
                Err(_) if began.elapsed() < GIVE_UP => {
                    out.lock().expect("submissions lock").retries += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    eprintln!("  submission {} given up: {e}", request.request_id);
                    out.lock().expect("submissions lock").given_up += 1;
                    break;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(rng.millis(PACE_MS.0, PACE_MS.1)) => {}
        }
    }
}
