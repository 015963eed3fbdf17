//! Following an execution through WatchExecution: one progress line per event on stderr (as a
//! local run prints them), reconnecting from the last event seen when the stream breaks, until
//! the execution has finished.

use std::time::{Duration, Instant};

use switchyard_proto::{Execution, ExecutionEvent, GetExecutionRequest, WatchExecutionRequest};
use tonic::{Code, Status};

use super::connect::{CALL_DEADLINE, Coordinator, is_transient, request, status_text};
use super::format::date_time;
use super::{Failure, is_finished};
use crate::cli::live::{Live, TaskStep};
use crate::cli::progress::format_ms;

/// Reconnects in a row before giving up; with [`reconnect_delay`] about 15 s in all, which
/// covers a coordinator restart.
const RECONNECT_ATTEMPTS: u32 = 10;

/// Prints the execution's events on stderr as they come and returns it once it has finished.
pub async fn follow_execution(
    coordinator: &Coordinator,
    execution_id: &str,
    live: &Live,
) -> Result<Execution, Failure> {
    let mut watch = Watch { coordinator, execution_id, after: 0, failures: 0, clock: EventClock::default(), live };
    loop {
        let why = match watch.follow().await? {
            Followed::Ended => match watch.finished_execution().await? {
                Ok(execution) => return Ok(execution),
                Err(why) => why,
            },
            Followed::Broken(why) => why,
        };
        watch.failures += 1;
        let address = coordinator.address();
        if watch.failures > RECONNECT_ATTEMPTS {
            return Err(Failure::call(format!(
                "lost the coordinator at {address} while following execution {execution_id} ({why}) and could not \
                 reconnect in {RECONNECT_ATTEMPTS} attempts; the execution may still be going: \
                 `switchyard watch {execution_id}` follows it again, `switchyard report {execution_id}` shows it"
            )));
        }
        let delay = reconnect_delay(watch.failures);
        live.println(&format!(
            "lost the event stream of the coordinator at {address} ({why}); reconnecting in {} ms (attempt {} of \
             {RECONNECT_ATTEMPTS})",
            delay.as_millis(),
            watch.failures
        ));
        tokio::time::sleep(delay).await;
    }
}

/// The progress line for one event, without the elapsed-time prefix.
pub fn event_line(event: &ExecutionEvent) -> String {
    let duration = format_ms(event.duration_ms);
    let line = match event.kind.as_str() {
        "package_started" => match event.message.as_str() {
            "" => "package started".to_string(),
            name => format!("package \"{name}\" started"),
        },
        "package_finished" => format!("package {} in {duration}", event.result),
        "task_started" => match event.task_kind.as_str() {
            "" => format!("{:<9} {}", "started", event.path),
            kind => format!("{:<9} {} ({kind})", "started", event.path),
        },
        "task_finished" => match event.message.as_str() {
            "" => format!("{:<9} {} in {duration}", event.result, event.path),
            message => format!("{:<9} {} in {duration}: {message}", event.result, event.path),
        },
        "task_not_run" => format!("{:<9} {}: {}", "not run", event.path, event.message),
        "resumed" => event.message.clone(),
        "not_resumed" => format!("not resumed: {}", event.message),
        other => {
            let words = [other, event.path.as_str(), event.result.as_str(), event.message.as_str()];
            words.into_iter().filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
        }
    };
    // A child package run in process starts and finishes at its task's path.
    let path_is_child = !event.path.is_empty() && matches!(event.kind.as_str(), "package_started" | "package_finished");
    if path_is_child { format!("{line} [{}]", event.path) } else { line }
}

/// What a task event means for the live counts.
fn task_step(event: &ExecutionEvent) -> Option<TaskStep<'_>> {
    match event.kind.as_str() {
        "task_started" => Some(TaskStep::Started { kind: &event.task_kind }),
        "task_finished" => Some(TaskStep::Finished {
            kind: &event.task_kind,
            agent: (!event.agent.is_empty()).then_some(event.agent.as_str()),
            result: &event.result,
        }),
        "task_not_run" => Some(TaskStep::NotRun),
        _ => None,
    }
}

/// Where the watch stands: the last event seen, and how many reconnects failed in a row.
struct Watch<'a> {
    coordinator: &'a Coordinator,
    execution_id: &'a str,
    after: u64,
    failures: u32,
    clock: EventClock,
    live: &'a Live,
}

enum Followed {
    /// The stream ended or the execution reported its end: check that it has finished.
    Ended,
    /// The stream broke; the reason, for the reconnect message.
    Broken(String),
}

impl Watch<'_> {
    /// One WatchExecution stream from `after`, until the execution ends or the stream breaks.
    async fn follow(&mut self) -> Result<Followed, Failure> {
        let watch = WatchExecutionRequest { execution_id: self.execution_id.to_string(), after_sequence: self.after };
        let mut client = self.coordinator.client();
        // Only opening the stream has a deadline: an execution may go hours between events.
        let mut stream = match tokio::time::timeout(CALL_DEADLINE, client.watch_execution(watch)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return self.broken_or_fatal(&status),
            Err(_) => return Ok(Followed::Broken(format!("no answer within {} s", CALL_DEADLINE.as_secs()))),
        };
        loop {
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(Followed::Ended),
                Err(status) => return self.broken_or_fatal(&status),
            };
            self.failures = 0;
            if event.sequence <= self.after && event.sequence != 0 {
                continue; // a replay after a reconnect
            }
            self.after = self.after.max(event.sequence);
            let elapsed = self.clock.elapsed(&event);
            self.live.println(&format!("[{elapsed:>8.3}s] {}", event_line(&event)));
            if let Some(step) = task_step(&event) {
                self.live.record(step);
            }
            if event.path.is_empty() && event.kind == "package_finished" {
                return Ok(Followed::Ended);
            }
        }
    }

    /// The execution, when it has finished; otherwise why following must go on.
    async fn finished_execution(&self) -> Result<Result<Execution, String>, Failure> {
        let get = GetExecutionRequest { execution_id: self.execution_id.to_string() };
        match self.coordinator.call(self.coordinator.client().get_execution(request(get))).await {
            Ok(execution) if is_finished(&execution.status) => Ok(Ok(execution)),
            Ok(execution) => Ok(Err(format!("the stream ended while the execution is {}", execution.status))),
            Err(status) => match self.broken_or_fatal(&status)? {
                Followed::Broken(why) => Ok(Err(why)),
                Followed::Ended => Ok(Err("the execution is not readable yet".to_string())),
            },
        }
    }

    fn broken_or_fatal(&self, status: &Status) -> Result<Followed, Failure> {
        match status.code() {
            code if is_transient(code) || code == Code::Internal => Ok(Followed::Broken(status_text(status))),
            Code::NotFound => Err(Failure::call(format!(
                "the coordinator at {} knows no execution {}; `switchyard executions` lists them",
                self.coordinator.address(),
                self.execution_id
            ))),
            _ => Err(self.coordinator.explain(status)),
        }
    }
}

/// Seconds since the first event, by the coordinator's clock when events carry times (so a
/// watch that joins late shows when things happened), else by this process's clock.
#[derive(Default)]
struct EventClock {
    first_at: Option<chrono::DateTime<chrono::Utc>>,
    local: Option<Instant>,
}

impl EventClock {
    fn elapsed(&mut self, event: &ExecutionEvent) -> f64 {
        let local = *self.local.get_or_insert_with(Instant::now);
        match date_time(event.at.as_ref()) {
            Some(at) => {
                let first = *self.first_at.get_or_insert(at);
                (at - first).num_milliseconds().max(0) as f64 / 1000.0
            }
            None => local.elapsed().as_secs_f64(),
        }
    }
}

/// 200 ms doubling to at most 2 s between reconnects.
fn reconnect_delay(failures: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << failures.saturating_sub(1).min(4)).min(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, path: &str, result: &str, message: &str) -> ExecutionEvent {
        ExecutionEvent {
            kind: kind.to_string(),
            path: path.to_string(),
            result: result.to_string(),
            message: message.to_string(),
            duration_ms: 12,
            task_kind: "process".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn lines_read_like_a_local_run() {
        assert_eq!(event_line(&event("package_started", "", "", "nightly")), "package \"nightly\" started");
        assert_eq!(event_line(&event("package_finished", "", "succeeded", "")), "package succeeded in 12 ms");
        assert_eq!(event_line(&event("task_started", "Stage/Load", "", "")), "started   Stage/Load (process)");
        assert_eq!(
            event_line(&event("task_finished", "Stage/Load", "failure", "exit code 1")),
            "failure   Stage/Load in 12 ms: exit code 1"
        );
        assert_eq!(
            event_line(&event("task_not_run", "Report", "not_run", "its constraints were not met")),
            "not run   Report: its constraints were not met"
        );
        assert_eq!(
            event_line(&event("package_finished", "Run child", "failed", "")),
            "package failed in 12 ms [Run child]"
        );
        assert_eq!(event_line(&event("agent_lost", "Load", "", "server-b down")), "agent_lost Load server-b down");
    }

    #[test]
    fn elapsed_time_follows_the_coordinators_clock() {
        let mut clock = EventClock::default();
        let mut first = event("package_started", "", "", "");
        first.at = Some(prost_types::Timestamp { seconds: 100, nanos: 0 });
        let mut later = event("task_started", "A", "", "");
        later.at = Some(prost_types::Timestamp { seconds: 101, nanos: 500_000_000 });
        assert_eq!(clock.elapsed(&first), 0.0);
        assert_eq!(clock.elapsed(&later), 1.5);
    }

    #[test]
    fn reconnects_back_off_to_two_seconds() {
        assert_eq!(reconnect_delay(1), Duration::from_millis(200));
        assert_eq!(reconnect_delay(2), Duration::from_millis(400));
        assert_eq!(reconnect_delay(4), Duration::from_millis(1600));
        assert_eq!(reconnect_delay(9), Duration::from_secs(2));
    }
}
