//! `start-job --wait`: follow one run through the agent's WatchRuns stream until it finishes,
//! reconnecting from the last event seen when the stream breaks.

use std::time::{Duration, Instant};

use switchyard_proto::{GetRunRequest, RunEvent, RunEventKind, RunStatus, StartJobResponse, WatchRunsRequest};
use tonic::Code;

use super::Failure;
use super::connect::{Agent, CALL_DEADLINE, request, status_text};
use super::format::run_status_name;
use crate::cli::progress::format_ms;

/// Reconnects in a row before giving up; with [`reconnect_delay`] about 10 s in all.
const RECONNECT_ATTEMPTS: u32 = 10;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A [`RunStatus`]: succeeded, failed or canceled.
    pub status: i32,
    /// The job outcome message, as the agent's history records it.
    pub message: String,
    /// How long the run took, measured on the agent.
    pub duration_ms: u64,
}

/// Prints the run's step events on stderr as they come and returns its outcome.
pub async fn wait_for_run(agent: &Agent, started: &StartJobResponse, job: &str) -> Result<Outcome, Failure> {
    let mut watch = Watch {
        agent,
        run_id: &started.run_id,
        after: started.sequence.saturating_sub(1),
        incarnation: started.incarnation.clone(),
        failures: 0,
        clock: Instant::now(),
    };
    loop {
        let why = match watch.follow().await? {
            Followed::Finished(outcome) => return Ok(outcome),
            Followed::Broken(why) => why,
        };
        watch.failures += 1;
        let address = agent.address();
        if watch.failures > RECONNECT_ATTEMPTS {
            return Err(Failure::call(format!(
                "lost the event stream of agent at {address} while waiting for run {} ({why}) and could not \
                 reconnect in {RECONNECT_ATTEMPTS} attempts; the run may still be going: \
                 `switchyard history --agent {address} {job}` shows its outcome",
                started.run_id
            )));
        }
        let delay = reconnect_delay(watch.failures);
        eprintln!(
            "lost the event stream of agent at {address} ({why}); reconnecting in {} ms (attempt {} of {RECONNECT_ATTEMPTS})",
            delay.as_millis(),
            watch.failures
        );
        tokio::time::sleep(delay).await;
    }
}

/// Where the watch stands: the last event seen, and how many reconnects failed in a row.
struct Watch<'a> {
    agent: &'a Agent,
    run_id: &'a str,
    after: u64,
    incarnation: String,
    failures: u32,
    clock: Instant,
}

enum Followed {
    Finished(Outcome),
    /// The stream broke or ended; the reason, for the reconnect message.
    Broken(String),
}

impl Watch<'_> {
    /// One WatchRuns stream from `after`, until the run finishes or the stream breaks.
    async fn follow(&mut self) -> Result<Followed, Failure> {
        let watch =
            WatchRunsRequest { after_sequence: self.after, incarnation: self.incarnation.clone(), kinds: Vec::new() };
        let mut client = self.agent.client();
        // Only opening the stream has a deadline: a run may take hours between events.
        let mut stream = match tokio::time::timeout(CALL_DEADLINE, client.watch_runs(watch)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if is_transient(status.code()) => return Ok(Followed::Broken(status_text(&status))),
            Ok(Err(status)) => return Err(self.agent.explain(&status)),
            Err(_) => return Ok(Followed::Broken(format!("no answer within {} s", CALL_DEADLINE.as_secs()))),
        };
        loop {
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(Followed::Broken("the agent ended the stream".to_string())),
                Err(status) if is_transient(status.code()) => return Ok(Followed::Broken(status_text(&status))),
                Err(status) => return Err(self.agent.explain(&status)),
            };
            self.failures = 0;
            let reset = !self.incarnation.is_empty() && event.incarnation != self.incarnation;
            self.incarnation.clone_from(&event.incarnation);
            self.after = event.sequence;
            if reset {
                // Sequences restarted: the agent's data dir is new, so the run may be gone.
                self.after = event.sequence.saturating_sub(1);
                if let Some(outcome) = self.recheck().await? {
                    return Ok(Followed::Finished(outcome));
                }
                self.after = event.sequence;
            }
            if event.run_id != self.run_id {
                continue;
            }
            if event.kind == RunEventKind::Finished as i32 {
                return Ok(Followed::Finished(Outcome {
                    status: event.status,
                    message: event.message,
                    duration_ms: event.duration_ms,
                }));
            }
            if let Some(line) = event_line(&event) {
                eprintln!("[{:>8.3}s] {line}", self.clock.elapsed().as_secs_f64());
            }
        }
    }

    /// After an incarnation change: the outcome if the run already finished, an error if it is gone.
    async fn recheck(&self) -> Result<Option<Outcome>, Failure> {
        let address = self.agent.address();
        eprintln!("agent at {address} restarted with new data; checking that run {} still exists", self.run_id);
        let get = GetRunRequest { run_id: self.run_id.to_string(), ..Default::default() };
        let run = match self.agent.call(self.agent.client().get_run(request(get))).await {
            Ok(run) => run,
            Err(status) if status.code() == Code::NotFound => {
                return Err(Failure::call(format!(
                    "run {} is no longer known to the agent at {address}: its data was reset while waiting; \
                     `switchyard history --agent {address}` shows what it knows",
                    self.run_id
                )));
            }
            Err(status) => return Err(self.agent.explain(&status)),
        };
        let finished = [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Canceled].map(|s| s as i32);
        let outcome = Outcome { status: run.status, message: run.message, duration_ms: run.duration_ms };
        Ok(finished.contains(&outcome.status).then_some(outcome))
    }
}

/// Codes a broken connection or a restarting agent produce; worth reconnecting for.
fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled | Code::Internal)
}

/// 250 ms, 500 ms, then 1 s, then 1.25 s per attempt: ten attempts span about 10 s.
fn reconnect_delay(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::from_millis(250),
        2 => Duration::from_millis(500),
        3 => Duration::from_secs(1),
        _ => Duration::from_millis(1250),
    }
}

/// The live line for one event of the run; None for events the final outcome covers.
fn event_line(event: &RunEvent) -> Option<String> {
    let step = format!("step {} ({})", event.step_id, event.step_name);
    let message = if event.message.is_empty() { String::new() } else { format!(": {}", event.message) };
    let line = match RunEventKind::try_from(event.kind) {
        Ok(RunEventKind::Accepted) => format!("accepted ({}){message}", run_status_name(event.status)),
        Ok(RunEventKind::Started) => "run started".to_string(),
        Ok(RunEventKind::StepStarted) => format!("{step} started"),
        Ok(RunEventKind::StepFinished) => {
            let code = event.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default();
            let status = run_status_name(event.status);
            format!("{step} {status} in {}{code}{message}", format_ms(event.duration_ms))
        }
        Ok(RunEventKind::StepRetrying) => format!("{step} failed, retrying{message}"),
        Ok(RunEventKind::Finished | RunEventKind::Unspecified) | Err(_) => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: RunEventKind, status: RunStatus) -> RunEvent {
        RunEvent {
            kind: kind as i32,
            status: status as i32,
            step_id: 1,
            step_name: "load".to_string(),
            ..RunEvent::default()
        }
    }

    #[test]
    fn step_events_become_lines() {
        let started = event(RunEventKind::StepStarted, RunStatus::Running);
        assert_eq!(event_line(&started).as_deref(), Some("step 1 (load) started"));
        let finished = RunEvent {
            exit_code: Some(2),
            duration_ms: 520,
            message: "exited with 2".to_string(),
            ..event(RunEventKind::StepFinished, RunStatus::Failed)
        };
        assert_eq!(
            event_line(&finished).as_deref(),
            Some("step 1 (load) failed in 520 ms, exit code 2: exited with 2")
        );
        let retrying = event(RunEventKind::StepRetrying, RunStatus::BetweenRetries);
        assert_eq!(event_line(&retrying).as_deref(), Some("step 1 (load) failed, retrying"));
    }

    #[test]
    fn the_finished_event_is_left_to_the_outcome() {
        assert_eq!(event_line(&event(RunEventKind::Finished, RunStatus::Succeeded)), None);
    }

    #[test]
    fn ten_reconnects_span_about_ten_seconds() {
        let total: Duration = (1..=RECONNECT_ATTEMPTS).map(reconnect_delay).sum();
        assert!(total >= Duration::from_secs(9) && total <= Duration::from_secs(12), "{total:?}");
    }
}
