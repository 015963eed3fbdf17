//! The report's timeline: an SVG Gantt chart, drawn on the server (no script). The package's
//! tasks come first, then the child packages by the agent that ran them (every attempt, lost and
//! superseded ones marked), then child packages run in process. The axis starts where a bar
//! starting with the execution starts, and is labelled at round intervals.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use switchyard_package::engine::{ChildRecord, ChildStatus, TaskRecord};

use super::html::escape;
use super::{Report, human_duration, shorten};

/// Rows drawn at most: past this the chart says how many it left out (the tables list every
/// task and child), so a page of 100,000 tasks stays a page.
pub const MAX_ROWS: usize = 5_000;

/// Where the track starts, in SVG units (pixels): the label column is to its left.
const TRACK_LEFT: f64 = 300.0;
/// The track's width.
const TRACK_WIDTH: f64 = 760.0;
/// One row's height, and the bar's within it.
const ROW: f64 = 18.0;
const BAR: f64 = 12.0;
/// Room above the first row for the axis labels.
const AXIS: f64 = 22.0;
/// The narrowest bar, so a task of a millisecond in an hour still shows.
const MIN_BAR: f64 = 2.0;
/// A label is cut to this many characters (the full text is in its tooltip).
const LABEL_CHARS: usize = 42;

/// One row of the chart.
struct Row {
    label: String,
    /// Milliseconds from the execution's start; None: it never started.
    offset: u64,
    /// None while it runs (or when it was lost): the bar reaches the end of the chart.
    duration: Option<u64>,
    class: &'static str,
    title: String,
    /// Drawn as a group's heading instead of a bar.
    heading: bool,
}

/// Writes the chart (or a line saying nothing ran) into `page`.
pub(super) fn render(page: &mut String, report: &Report) {
    let rows = rows(report);
    if rows.iter().all(|row| row.heading) {
        page.push_str("<p class=\"none\">No task ran.</p>\n");
        return;
    }
    let last_end = rows.iter().filter(|row| !row.heading).map(|row| row.offset + row.duration.unwrap_or(0)).max();
    let span = report.execution.duration_ms.unwrap_or(0).max(last_end.unwrap_or(0)).max(1);
    let left_out = rows.len().saturating_sub(MAX_ROWS);
    let drawn = &rows[..rows.len().min(MAX_ROWS)];
    let height = AXIS + ROW * drawn.len() as f64 + 4.0;
    let width = TRACK_LEFT + TRACK_WIDTH + 40.0;
    let _ = writeln!(
        page,
        "<div class=\"timeline\"><svg class=\"gantt\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline of {} rows over {}\">",
        drawn.len(),
        human_duration(span)
    );
    axis(page, span, height);
    for (index, row) in drawn.iter().enumerate() {
        let y = AXIS + ROW * index as f64;
        if index % 2 == 1 {
            let _ = writeln!(page, "<rect class=\"stripe\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{ROW}\"/>");
        }
        let text_y = y + ROW - 5.0;
        let label = escape(&shorten(&row.label, LABEL_CHARS));
        if row.heading {
            let _ = writeln!(page, "<text class=\"group\" x=\"4\" y=\"{text_y}\">{label}</text>");
            continue;
        }
        let x = TRACK_LEFT + row.offset as f64 / span as f64 * TRACK_WIDTH;
        let bar_width = match row.duration {
            Some(duration) => (duration as f64 / span as f64 * TRACK_WIDTH).max(MIN_BAR),
            None => (TRACK_LEFT + TRACK_WIDTH - x).max(MIN_BAR),
        };
        let _ = writeln!(
            page,
            "<g class=\"row\"><title>{title}</title><text class=\"label\" x=\"12\" y=\"{text_y}\">{label}</text>\
             <rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{bar_y}\" width=\"{bar_width:.1}\" height=\"{BAR}\" rx=\"2\"/>{mark}</g>",
            title = escape(&row.title),
            class = row.class,
            bar_y = y + (ROW - BAR) / 2.0,
            mark = mark(row.class, x + bar_width + 3.0, text_y),
        );
    }
    page.push_str("</svg></div>\n");
    if left_out > 0 {
        let _ = writeln!(
            page,
            "<p class=\"none\">{left_out} more rows are not drawn (the chart stops at {MAX_ROWS}); the tables below \
             list every task and child.</p>"
        );
    }
}

/// The tasks that ran, then a group per agent with its children, then children run in process.
fn rows(report: &Report) -> Vec<Row> {
    let origin = report.execution.started_at;
    let mut rows = vec![Row::heading("Tasks")];
    rows.extend(report.tasks.iter().filter_map(|task| task_row(task, origin)));
    let mut by_agent: BTreeMap<&str, Vec<&ChildRecord>> = BTreeMap::new();
    let mut in_process = Vec::new();
    for child in &report.children {
        match &child.agent {
            Some(agent) => by_agent.entry(agent).or_default().push(child),
            None => in_process.push(child),
        }
    }
    for (agent, children) in by_agent {
        rows.push(Row::heading(&format!("Agent {agent}")));
        rows.extend(children.into_iter().filter_map(|child| child_row(child, origin)));
    }
    if !in_process.is_empty() {
        rows.push(Row::heading("Child packages run in process"));
        rows.extend(in_process.into_iter().filter_map(|child| child_row(child, origin)));
    }
    rows
}

fn task_row(task: &TaskRecord, origin: DateTime<Utc>) -> Option<Row> {
    let offset = offset_ms(task.started_at?, origin);
    let class = match task.duration_ms {
        Some(_) => task.result.as_str(),
        None => "running",
    };
    let result = if task.duration_ms.is_some() { task.result.as_str() } else { "running" };
    let mut title = format!("{} ({}): {result}, started +{}", task.path, task.kind, human_duration(offset));
    if let Some(duration) = task.duration_ms {
        let _ = write!(title, ", ran {}", human_duration(duration));
    }
    if let Some(agent) = &task.agent {
        let _ = write!(title, ", on agent {agent}");
    }
    Some(Row { label: task.path.clone(), offset, duration: task.duration_ms, class, title, heading: false })
}

fn child_row(child: &ChildRecord, origin: DateTime<Utc>) -> Option<Row> {
    let offset = offset_ms(child.started_at?, origin);
    let status = child.status;
    // A lost or superseded child has no end the coordinator trusts: a short bar with its mark.
    let duration = match status {
        ChildStatus::Lost | ChildStatus::Superseded => Some(child.duration_ms.unwrap_or(0)),
        _ => child.duration_ms,
    };
    let label = match child.attempt {
        0 => child.task.clone(),
        attempt => format!("{} (attempt {})", child.task, attempt + 1),
    };
    let mut title = format!("{label}: {}", status.as_str());
    if let Some(agent_status) = child.agent_status {
        let _ = write!(title, " (agent: {})", agent_status.as_str());
    }
    for (what, value) in [("job", &child.job), ("package", &child.package), ("run", &child.run_id)] {
        if let Some(value) = value {
            let _ = write!(title, ", {what} {value}");
        }
    }
    let _ = write!(title, ", started +{}", human_duration(offset));
    if let Some(duration) = child.duration_ms {
        let _ = write!(title, ", ran {}", human_duration(duration));
    }
    Some(Row { label, offset, duration, class: status.as_str(), title, heading: false })
}

impl Row {
    fn heading(label: &str) -> Row {
        Row { label: label.to_owned(), offset: 0, duration: None, class: "", title: String::new(), heading: true }
    }
}

/// The axis: a tick and a label at each round interval, the first at the track's left edge.
fn axis(page: &mut String, span: u64, height: f64) {
    let step = tick_step(span);
    let mut at = 0;
    while at <= span {
        let x = TRACK_LEFT + at as f64 / span as f64 * TRACK_WIDTH;
        let label = if at == 0 { "0".to_owned() } else { human_duration(at) };
        let _ = writeln!(
            page,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{height}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"12\" text-anchor=\"middle\">{label}</text>",
            top = AXIS - 6.0,
        );
        at += step;
    }
}

/// A round step (1, 2 or 5 times a power of ten milliseconds, or a round number of seconds or
/// minutes) giving at most ten ticks over `span`.
fn tick_step(span: u64) -> u64 {
    const STEPS: [u64; 24] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000,
    ];
    STEPS.into_iter().find(|step| span / step <= 10).unwrap_or(span.div_ceil(10).max(1))
}

/// A mark after the bar of a child whose end is in doubt.
fn mark(class: &str, x: f64, y: f64) -> String {
    match class {
        "lost" => format!("<text class=\"mark lost\" x=\"{x:.1}\" y=\"{y}\">lost</text>"),
        "superseded" => format!("<text class=\"mark superseded\" x=\"{x:.1}\" y=\"{y}\">superseded</text>"),
        _ => String::new(),
    }
}

fn offset_ms(at: DateTime<Utc>, origin: DateTime<Utc>) -> u64 {
    (at - origin).num_milliseconds().max(0) as u64
}
