//! One task per agent that keeps its entry current (DESIGN.md §4 Liveness): a WatchRuns stream
//! resumed from the last sequence consumed, and GetLoad every `heartbeat_interval` with a
//! deadline of `down_after`. A broken stream makes the agent suspect and probes it at once: a
//! refused connection means down at once (a crash is seen in milliseconds), no answer within
//! `down_after` means down (a hang or a partition).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Instant;

use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::{GetLoadRequest, GetLoadResponse, RunEvent, RunEventKind, WatchRunsRequest};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::state::{AgentEntry, Consumed, State};
use super::{Inner, RegistrySettings};

/// Whether a failed call never reached the agent because the connection was refused (nothing
/// listens: the process is gone), as opposed to a call that may have been lost on the way.
pub fn is_connection_refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = error.source();
    }
    status.code() == Code::Unavailable && status.message().to_lowercase().contains("connection refused")
}

/// Why a call to the agent failed, for the liveness decision.
#[derive(Debug)]
enum Failure {
    /// Nothing listens there: down at once.
    Refused(String),
    /// No answer, or an error that says nothing about the process: down once nothing was heard
    /// for `down_after`.
    Unanswered(String),
}

/// How the connected phase ended.
enum Exit {
    Stop,
    StreamBroken,
    Down,
}

type LoadCall = Pin<Box<dyn Future<Output = (Instant, Result<GetLoadResponse, Failure>)> + Send>>;

pub(super) struct Monitor {
    inner: Weak<Inner>,
    name: String,
    generation: u64,
    client: AgentClient<Channel>,
    /// `host:port`, for a direct connect check.
    authority: String,
    probe: Arc<Notify>,
    stop: CancellationToken,
    settings: RegistrySettings,
}

impl Monitor {
    /// The monitor holds the registry weakly: dropping the last `Registry` ends it.
    pub(super) fn new(inner: &Arc<Inner>, entry: &AgentEntry) -> Self {
        Self {
            inner: Arc::downgrade(inner),
            name: entry.name.clone(),
            generation: entry.generation,
            client: AgentClient::new(entry.channel.clone()),
            authority: entry.url.split_once("://").map_or(entry.url.as_str(), |(_, rest)| rest).to_string(),
            probe: entry.probe.clone(),
            stop: entry.stop.clone(),
            settings: inner.settings.clone(),
        }
    }

    /// Probes until the agent answers and its stream opens, follows it while connected, and
    /// starts over when the stream breaks; ends when stopped or the entry is no longer its own.
    pub(super) async fn run(self) {
        let mut wait_first = false;
        let mut last_open: Option<Instant> = None;
        // A probe that failed on the connection that just broke is repeated at once (once): the
        // retry dials anew, so a crashed agent is refused in milliseconds, not a heartbeat later.
        let mut redial_now = false;
        let mut last_redial = false;
        loop {
            if wait_first && !std::mem::take(&mut redial_now) {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(self.settings.heartbeat_interval) => {}
                    _ = self.probe.notified() => {}
                }
            }
            if self.stop.is_cancelled() {
                return;
            }
            wait_first = true;
            let (sent, answer) = get_load(self.client.clone(), &self.settings).await;
            let answered = match answer {
                Ok(load) => self.apply_load(load, sent),
                Err(failure) => Err(failure),
            };
            match answered {
                Ok(true) => {}
                Ok(false) => return,
                Err(failure) => {
                    let stale_connection =
                        matches!(&failure, Failure::Unanswered(reason) if is_stale_connection(reason));
                    // The channel may still hold the connection that just broke: a connect of
                    // our own tells at once whether anything listens there any more.
                    let failure = if stale_connection { self.refused_now().await.unwrap_or(failure) } else { failure };
                    match self.failed(failure) {
                        Some(down) => {
                            redial_now = stale_connection && !down && !std::mem::replace(&mut last_redial, true);
                            continue;
                        }
                        None => return,
                    }
                }
            }
            last_redial = false;
            // A stream that keeps breaking right after it opens is reopened once a heartbeat at most.
            if let Some(opened) = last_open {
                let next = tokio::time::Instant::from_std(opened + self.settings.heartbeat_interval);
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
            last_open = Some(Instant::now());
            let stream = match self.open_stream().await {
                Ok(stream) => stream,
                Err(failure) => match self.failed(failure) {
                    Some(_) => continue,
                    None => return,
                },
            };
            let Some(became_up) = self.with_entry(|entry| entry.mark_up(Instant::now())) else { return };
            if became_up {
                self.notify_changed();
                if let Some(inner) = self.inner.upgrade() {
                    super::reconcile::reconcile(&inner, &self.name, self.client.clone()).await;
                }
            }
            match self.connected(stream).await {
                Exit::Stop => return,
                Exit::StreamBroken => wait_first = false,
                Exit::Down => wait_first = true,
            }
        }
    }

    /// Follows the stream and sends GetLoad every heartbeat (or when a probe is asked for)
    /// until the stream breaks or the agent is declared down.
    async fn connected(&self, mut stream: Streaming<RunEvent>) -> Exit {
        let interval = self.settings.heartbeat_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut load_call: Option<LoadCall> = None;
        loop {
            // The stream comes last: a long replay of events must not starve the heartbeat.
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Exit::Stop,
                (sent, answer) = async { load_call.as_mut().expect("guarded").await }, if load_call.is_some() => {
                    load_call = None;
                    if let Some(exit) = self.load_answered(sent, answer) {
                        return exit;
                    }
                }
                _ = ticker.tick(), if load_call.is_none() => {
                    load_call = Some(Box::pin(get_load(self.client.clone(), &self.settings)));
                }
                _ = self.probe.notified(), if load_call.is_none() => {
                    load_call = Some(Box::pin(get_load(self.client.clone(), &self.settings)));
                }
                message = stream.message() => match message {
                    Ok(Some(event)) => {
                        if !self.consume(event) {
                            return Exit::Stop;
                        }
                    }
                    Ok(None) => return self.stream_broke("the agent ended its WatchRuns stream".to_string()),
                    Err(status) => {
                        return self.stream_broke(format!("its WatchRuns stream broke: {}", describe(&status)));
                    }
                },
            }
        }
    }

    /// A heartbeat's GetLoad ended; `Some` when the connected phase ends.
    fn load_answered(&self, sent: Instant, answer: Result<GetLoadResponse, Failure>) -> Option<Exit> {
        let answered = match answer {
            Ok(load) => self.apply_load(load, sent),
            Err(failure) => Err(failure),
        };
        match answered {
            Ok(true) => {
                // Back from suspect (a caller reported it unreachable) while the stream is open.
                let Some(became_up) = self.with_entry(|entry| entry.mark_up(Instant::now())) else {
                    return Some(Exit::Stop);
                };
                if became_up {
                    self.notify_changed();
                }
                None
            }
            Ok(false) => Some(Exit::Stop),
            Err(failure) => match self.failed(failure) {
                None => Some(Exit::Stop),
                Some(true) => Some(Exit::Down),
                Some(false) => None,
            },
        }
    }

    /// The stream ended: suspect, to be probed at once; or down, when nothing was heard for
    /// `down_after` already (a hang that HTTP/2 keepalive noticed).
    fn stream_broke(&self, reason: String) -> Exit {
        let down_after = self.settings.down_after;
        let Some((down, changed)) = self.with_entry(|entry| {
            if entry.last_heard.elapsed() >= down_after {
                (true, entry.mark_down(&format!("{reason}; nothing heard from it for {}", silence(entry))))
            } else {
                (false, entry.mark_suspect(&reason))
            }
        }) else {
            return Exit::Stop;
        };
        if changed {
            self.notify_changed();
        }
        if down { Exit::Down } else { Exit::StreamBroken }
    }

    /// A fresh TCP connection to the agent: `Some(Refused)` when nothing listens there.
    async fn refused_now(&self) -> Option<Failure> {
        let connect = tokio::net::TcpStream::connect(self.authority.as_str());
        match tokio::time::timeout(self.settings.down_after, connect).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some(Failure::Refused(format!("connecting to {} was refused: {e}", self.authority)))
            }
            _ => None,
        }
    }

    /// Opens WatchRuns after the last event consumed; the agent answers with its headers at
    /// once, so no answer within `down_after` is a failure like any other.
    async fn open_stream(&self) -> Result<Streaming<RunEvent>, Failure> {
        let Some((incarnation, after_sequence)) =
            self.with_entry(|entry| (entry.incarnation.clone(), entry.last_sequence))
        else {
            return Err(Failure::Unanswered("removed".to_string()));
        };
        let mut client = self.client.clone();
        // ACCEPTED and FINISHED are all the registry uses (active runs, outcomes): the agent
        // leaves out the progress events in between.
        let kinds = vec![RunEventKind::Accepted as i32, RunEventKind::Finished as i32];
        let request = WatchRunsRequest { after_sequence, incarnation, kinds };
        match tokio::time::timeout(self.settings.down_after, client.watch_runs(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify("WatchRuns", &status)),
            Err(_) => Err(Failure::Unanswered(format!(
                "WatchRuns did not answer within {}",
                humantime::format_duration(self.settings.down_after)
            ))),
        }
    }

    /// Applies a GetLoad answer. `Ok(false)`: the monitor must end; an answer from another agent
    /// than this one is a failure.
    fn apply_load(&self, load: GetLoadResponse, sent: Instant) -> Result<bool, Failure> {
        if load.name != self.name {
            return Err(Failure::Unanswered(format!(
                "the address of agent \"{}\" answers as agent \"{}\"; fix the address or the agent's name",
                self.name, load.name
            )));
        }
        let Some(grew) = self.with_entry(|entry| entry.apply_load(load, sent, Instant::now())) else {
            return Ok(false);
        };
        if grew {
            self.notify_changed();
        }
        Ok(true)
    }

    /// Records a failed call: refused means down at once; otherwise down once nothing was heard
    /// for `down_after`, suspect before that. `Some(down)`, or `None` when the monitor must end.
    fn failed(&self, failure: Failure) -> Option<bool> {
        let down_after = self.settings.down_after;
        let (down, changed) = self.with_entry(|entry| match &failure {
            Failure::Refused(reason) => (true, entry.mark_down(reason)),
            Failure::Unanswered(reason) if entry.last_heard.elapsed() >= down_after => {
                let reason = format!("{reason}; nothing heard from it for {}", silence(entry));
                (true, entry.mark_down(&reason))
            }
            Failure::Unanswered(reason) => (false, entry.mark_suspect(reason)),
        })?;
        if changed {
            self.notify_changed();
        }
        Some(down)
    }

    /// Consumes one event; false when the monitor must end.
    fn consume(&self, event: RunEvent) -> bool {
        let Some(inner) = self.inner.upgrade() else { return false };
        let (renewed, consumed) = {
            let mut state = inner.lock();
            (
                state.is_new_incarnation(&self.name, &event),
                state.consume(&self.name, self.generation, event, Instant::now()),
            )
        };
        if renewed && !matches!(consumed, Consumed::Stale) {
            inner.fence(super::FenceChange::AbandonedStartsForgotten { agent: self.name.clone() });
        }
        match consumed {
            Consumed::Finished(outcome) => {
                // No receiver is fine: nobody follows fire-and-forget children yet.
                let _ = inner.finished.send(*outcome);
                inner.notify_changed();
                true
            }
            Consumed::Superseded(stopped) => {
                let _ = inner.stopped.send(*stopped);
                let client = self.client.clone();
                let name = self.name.clone();
                tokio::spawn(async move { super::reconcile::reconcile(&inner, &name, client).await });
                true
            }
            Consumed::Other => true,
            Consumed::Stale => false,
        }
    }

    /// Runs `f` on this monitor's entry under the lock; `None` when the registry is gone or the
    /// entry is no longer this monitor's.
    fn with_entry<R>(&self, f: impl FnOnce(&mut AgentEntry) -> R) -> Option<R> {
        let inner = self.inner.upgrade()?;
        let mut state = inner.lock();
        let entry = State::entry_mut(&mut state, &self.name, self.generation)?;
        Some(f(entry))
    }

    fn notify_changed(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.notify_changed();
        }
    }
}

/// GetLoad with a deadline of `down_after` (the client enforces it: a stopped agent never
/// would); returns when it was sent too.
fn get_load(
    mut client: AgentClient<Channel>,
    settings: &RegistrySettings,
) -> impl Future<Output = (Instant, Result<GetLoadResponse, Failure>)> + Send + 'static {
    let deadline = settings.down_after;
    async move {
        let sent = Instant::now();
        let mut request = tonic::Request::new(GetLoadRequest {});
        request.set_timeout(deadline);
        let answer = match tokio::time::timeout(deadline, client.get_load(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify("GetLoad", &status)),
            Err(_) => Err(Failure::Unanswered(format!(
                "GetLoad did not answer within {}",
                humantime::format_duration(deadline)
            ))),
        };
        (sent, answer)
    }
}

/// True for failures of a connection that was already dead (reset, closed, canceled by the
/// transport) rather than of the agent: the next call dials anew.
fn is_stale_connection(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["connection reset", "connection closed", "broken pipe", "operation was canceled", "connection error"]
        .iter()
        .any(|needle| reason.contains(needle))
}

fn classify(call: &str, status: &Status) -> Failure {
    let reason = format!("{call} failed: {}", describe(status));
    if is_connection_refused(status) { Failure::Refused(reason) } else { Failure::Unanswered(reason) }
}

/// A status with its causes ("transport error: tcp connect error: Connection refused").
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        let cause = error.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = error.source();
    }
    text
}

/// How long nothing was heard from the agent, in milliseconds ("1s 204ms").
fn silence(entry: &AgentEntry) -> humantime::FormattedDuration {
    humantime::format_duration(std::time::Duration::from_millis(entry.last_heard.elapsed().as_millis() as u64))
}
