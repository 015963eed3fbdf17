//! One StartJob of an `agent_job` attempt: sent with the attempt's idempotency key and the
//! agent's epoch, asked again with the same key while its reply is lost, and its refusal sorted
//! into what the attempt does next.

use tokio::time::Instant;
use tonic::Code;

use switchyard_package::engine::AgentJobRequest;
use switchyard_proto as pb;
use switchyard_proto::convert::struct_from_params;

use super::AgentJobs;
use crate::telemetry::StartOutcome;

/// Why a StartJob did not start anything here.
pub(super) enum Refusal {
    /// Try another agent of the pool (a fixed agent fails the attempt).
    Skip(String),
    /// The agent has no free slot (or its job's queue is full): pending, not a failure.
    Full(String),
    /// Stop trying.
    Fatal(String),
}

impl AgentJobs {
    /// One StartJob, retried with the same key on the same agent while its reply is lost.
    pub(super) async fn start(
        &self,
        agent: &str,
        request: &AgentJobRequest,
        key: &str,
        attempt: u32,
    ) -> Result<pb::StartJobResponse, Refusal> {
        let Some(mut client) = self.registry.client(agent) else {
            return Err(Refusal::Skip(format!("agent \"{agent}\" is not registered")));
        };
        let message = pb::StartJobRequest {
            job: request.task.job.clone(),
            params: Some(struct_from_params(&request.params)),
            idempotency_key: key.to_string(),
            epoch: self.registry.epoch(agent),
            requested_by: self.requested_by.clone(),
            execution_id: request.execution_id.clone(),
            task_path: request.task_path.clone(),
            attempt,
            secret_params: request.secret_params.clone(),
        };
        let telemetry = self.registry.telemetry();
        loop {
            let mut call = tonic::Request::new(message.clone());
            call.set_timeout(self.registry.settings().start_timeout);
            let sent = Instant::now();
            let reply = tokio::select! {
                reply = client.start_job(call) => reply,
                _ = request.cancel.cancelled() => return Err(Refusal::Fatal("canceled while starting".into())),
                _ = self.registry.declared_down(agent) => {
                    // A hung agent may still hold the request and accept it when it resumes:
                    // that run is then stopped as superseded (fencing by key).
                    self.registry.supersede_when_accepted(agent, key);
                    telemetry.job_start(agent, StartOutcome::Unreachable, sent.elapsed());
                    return Err(Refusal::Skip(format!("agent \"{agent}\" was declared down while starting")));
                }
            };
            let outcome = match &reply {
                Ok(_) => StartOutcome::Accepted,
                Err(status) => match status.code() {
                    Code::ResourceExhausted => StartOutcome::Full,
                    Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable | Code::Unknown => {
                        StartOutcome::Unreachable
                    }
                    _ => StartOutcome::Refused,
                },
            };
            telemetry.job_start(agent, outcome, sent.elapsed());
            match reply {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => match status.code() {
                    // The reply was lost or late: the start may have arrived. Ask again with the
                    // same key; the agent answers with the run it already started.
                    Code::DeadlineExceeded | Code::Cancelled if self.registry.is_up(agent) => {
                        tracing::warn!(%agent, key, "start reply missed its deadline; asking again with the same key");
                    }
                    Code::DeadlineExceeded | Code::Cancelled => {
                        self.registry.supersede_when_accepted(agent, key);
                        return Err(Refusal::Skip(format!("agent \"{agent}\" was declared down while starting")));
                    }
                    Code::Unavailable | Code::Unknown => {
                        self.registry.report_unreachable(agent, status.message());
                        return Err(Refusal::Skip(format!(
                            "agent \"{agent}\" cannot be reached: {}",
                            status.message()
                        )));
                    }
                    Code::ResourceExhausted => return Err(Refusal::Full(status.message().to_string())),
                    Code::FailedPrecondition | Code::NotFound => {
                        return Err(Refusal::Skip(status.message().to_string()));
                    }
                    _ => {
                        return Err(Refusal::Skip(format!(
                            "agent \"{agent}\" refused the start: {}",
                            status.message()
                        )));
                    }
                },
            }
        }
    }
}
