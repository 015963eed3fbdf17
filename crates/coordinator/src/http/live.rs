//! `/executions/{id}`: the Overview report inside the coordinator's page, and, while the
//! execution runs, `/executions/{id}/events`: a server-sent event `changed` (at most every
//! [`THROTTLE`]) when its stored events move on, and `end` once its result is stored. The page's
//! script fetches the page again on each and swaps the report in; without script the page
//! refreshes itself every few seconds while the execution runs.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use super::{HttpState, failed, not_found};
use crate::error::Error;
use crate::report::{Report, escape, page as html_page};

/// The most often a live page is told to fetch itself again: a 10,000-task execution moves
/// thousands of times a second, and its page is large.
pub const THROTTLE: Duration = Duration::from_millis(500);

/// Fetches the page again when told, one fetch at a time, and swaps the report in.
const SCRIPT: &str = "<script>
(function () {
  var source = new EventSource(location.pathname.replace(/\\/$/, '') + '/events');
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.pathname, { cache: 'no-store' }).then(function (r) { return r.text(); }).then(function (text) {
      var next = new DOMParser().parseFromString(text, 'text/html').getElementById('report');
      if (next) { document.getElementById('report').replaceWith(next); }
    }).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  source.addEventListener('changed', refresh);
  source.addEventListener('end', function () { source.close(); refresh(); });
})();
</script>
<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>
";

pub(super) async fn page(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match state.executions.report(&id).await {
        Ok(report) => {
            let running = state.executions.subscribe(&id).is_some();
            // A report of 100,000 tasks takes a while to render: off the threads serving requests.
            match tokio::task::spawn_blocking(move || execution_page(&report, running)).await {
                Ok(page) => Html(page).into_response(),
                Err(error) => failed(&format!("rendering the report failed: {error}")),
            }
        }
        Err(Error::UnknownExecution(_)) => not_found(&format!("There is no execution \"{id}\".")),
        Err(error) => failed(&format!("the report of \"{id}\" cannot be read: {error}")),
    }
}

/// The live page of an execution; `running` adds the script that follows it.
pub fn execution_page(report: &Report, running: bool) -> String {
    let execution = &report.execution;
    let title = format!("{} \u{b7} {}", execution.package, execution.execution_id);
    let mut body = String::with_capacity(8192 + report.tasks.len() * 600);
    body.push_str("<nav><a href=\"/\">Dashboard</a></nav>\n<main id=\"report\"");
    body.push_str(if running { " data-live=\"true\">\n" } else { ">\n" });
    body.push_str(&report.to_html_sections());
    body.push_str("</main>\n");
    html_page(&title, if running { SCRIPT } else { "" }, &body)
}

pub(super) async fn events(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let (sender, receiver) = mpsc::channel::<Event>(4);
    match state.executions.subscribe(&id) {
        Some(feed) => {
            tokio::spawn(follow(state, id, feed, sender));
        }
        None => {
            // Not running (ended, or unknown): the page needs no more than one fetch.
            let _ = sender.try_send(Event::default().event("end").data(escape(&id)));
        }
    }
    let stream = ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Tells the page when the execution moved on (throttled) and when it ended; stops when the
/// page goes away or the coordinator shuts down.
async fn follow(
    state: HttpState,
    id: String,
    mut feed: broadcast::Receiver<crate::store::StoredEvent>,
    sender: mpsc::Sender<Event>,
) {
    let finished = state.executions.wait_finished(&id);
    tokio::pin!(finished);
    let mut changed = false;
    let mut feed_open = true;
    let mut next_allowed = Instant::now();
    loop {
        tokio::select! {
            () = &mut finished => {
                let _ = sender.send(Event::default().event("end").data(escape(&id))).await;
                return;
            }
            () = state.shutdown.cancelled() => return,
            () = sender.closed() => return,
            received = feed.recv(), if feed_open => match received {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => changed = true,
                Err(broadcast::error::RecvError::Closed) => feed_open = false,
            },
            () = tokio::time::sleep_until(next_allowed), if changed => {
                if sender.send(Event::default().event("changed").data(escape(&id))).await.is_err() {
                    return;
                }
                changed = false;
                next_allowed = Instant::now() + THROTTLE;
            }
        }
    }
}
