//! `/`: the agents (state, load and slots, labels, epoch, when last heard) and the executions
//! (running, then the most recent), each linking to its report.

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use switchyard_package::engine::ExecutionStatus;

use super::{HttpState, failed};
use crate::model::ExecutionRecord;
use crate::registry::AgentSnapshot;
use crate::report::{escape, human_duration, page, rfc3339};
use crate::store::TaskCounts;

/// Recent executions listed.
const RECENT: usize = 50;

/// Keeps the page current: fetches it again every few seconds and swaps its content in.
const SCRIPT: &str = "<script>
setInterval(function () {
  fetch(location.href, { cache: 'no-store' }).then(function (r) { return r.text(); }).then(function (text) {
    var next = new DOMParser().parseFromString(text, 'text/html').getElementById('dashboard');
    if (next) { document.getElementById('dashboard').replaceWith(next); }
  }).catch(function () {});
}, 2000);
</script>
<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>
";

pub(super) async fn handle(State(state): State<HttpState>) -> Response {
    let store = state.executions.store();
    let listed = async {
        let running = store.executions_with_status(&[ExecutionStatus::Running, ExecutionStatus::Stopping]).await?;
        let recent = store.executions(RECENT).await?;
        let ids: Vec<String> = running.iter().chain(&recent).map(|e| e.execution_id.clone()).collect();
        let counts = store.task_counts(&ids).await?;
        Ok::<_, crate::store::StoreError>((running, recent, counts))
    };
    match listed.await {
        Ok((running, recent, counts)) => {
            let agents = state.registry.agents();
            let count = |id: &str| counts.get(id).copied();
            Html(dashboard_page(&agents, &running, &recent, &count, Instant::now())).into_response()
        }
        Err(error) => failed(&format!("the executions cannot be read: {error}")),
    }
}

/// The dashboard as of `now`.
pub fn dashboard_page(
    agents: &[AgentSnapshot],
    running: &[ExecutionRecord],
    recent: &[ExecutionRecord],
    counts: &dyn Fn(&str) -> Option<TaskCounts>,
    now: Instant,
) -> String {
    let mut body = String::with_capacity(8192 + (running.len() + recent.len()) * 400 + agents.len() * 400);
    body.push_str("<main id=\"dashboard\">\n<h1>Switchyard coordinator</h1>\n");
    let up = agents.iter().filter(|agent| agent.state.as_str() == "up").count();
    let _ = writeln!(
        body,
        "<p>{up} of {} agents up &middot; {} running executions &middot; <a href=\"/metrics\">metrics</a></p>",
        agents.len(),
        running.len()
    );
    body.push_str("<section>\n<h2>Agents</h2>\n");
    agents_table(&mut body, agents, now);
    body.push_str("</section>\n<section>\n<h2>Running executions</h2>\n");
    executions_table(&mut body, running, counts);
    body.push_str("</section>\n<section>\n<h2>Recent executions</h2>\n");
    executions_table(&mut body, recent, counts);
    body.push_str("</section>\n</main>\n");
    page("Switchyard coordinator", SCRIPT, &body)
}

fn agents_table(body: &mut String, agents: &[AgentSnapshot], now: Instant) {
    if agents.is_empty() {
        body.push_str(
            "<p class=\"none\">No agent is known yet: name them in coordinator.toml or let them register.</p>\n",
        );
        return;
    }
    body.push_str(
        "<table id=\"agents\">\n<thead><tr><th>Agent</th><th>State</th><th>Load</th><th>Labels</th><th>Epoch</th>\
         <th>Last heard</th><th>Address</th><th>Version</th><th>Last error</th></tr></thead>\n<tbody>\n",
    );
    for agent in agents {
        let heard = agent
            .last_seen
            .map_or_else(|| "never".to_owned(), |seen| format!("{} ago", human_duration(millis(now - seen.min(now)))));
        let _ = writeln!(
            body,
            "<tr data-agent=\"{name}\"><td>{name}</td><td><span class=\"status {state}\">{state}</span></td>\
             <td class=\"number\">{load} / {slots}{inflight}</td><td>{labels}</td><td class=\"number\">{epoch}</td>\
             <td>{heard}</td><td>{address}</td><td>{version}</td><td>{error}</td></tr>",
            name = escape(&agent.name),
            state = agent.state.as_str(),
            load = agent.running + agent.queued,
            slots = agent.slots,
            inflight = if agent.inflight > 0 { format!(" (+{} starting)", agent.inflight) } else { String::new() },
            labels = escape(&agent.labels.join(", ")),
            epoch = agent.epoch,
            address = escape(&agent.address),
            version = escape(&agent.version),
            error = escape(agent.last_error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody>\n</table>\n");
}

fn executions_table(body: &mut String, executions: &[ExecutionRecord], counts: &dyn Fn(&str) -> Option<TaskCounts>) {
    if executions.is_empty() {
        body.push_str("<p class=\"none\">(none)</p>\n");
        return;
    }
    body.push_str(
        "<table class=\"executions\">\n<thead><tr><th>Execution</th><th>Package</th><th>Status</th><th>Caller</th>\
         <th>Started</th><th>Duration</th><th>Tasks</th></tr></thead>\n<tbody>\n",
    );
    let now = Utc::now();
    for execution in executions {
        let duration = match execution.duration_ms {
            Some(ms) => human_duration(ms),
            None => format!("{} so far", human_duration((now - execution.started_at).num_milliseconds().max(0) as u64)),
        };
        let tasks = match counts(&execution.execution_id) {
            Some(TaskCounts { total, failed: 0 }) => total.to_string(),
            Some(TaskCounts { total, failed }) => format!("{total} ({failed} failed)"),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"/executions/{id}\">{id}</a></td><td>{package}</td>\
             <td><span class=\"status {status}\">{status}</span></td><td>{caller}</td><td>{started}</td>\
             <td>{duration}</td><td class=\"number\">{tasks}</td></tr>",
            id = escape(&execution.execution_id),
            package = escape(&execution.package),
            status = execution.status.as_str(),
            caller = escape(&execution.caller),
            started = rfc3339(&execution.started_at),
        );
    }
    body.push_str("</tbody>\n</table>\n");
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
