//! The Overview report as HTML: the text report's sections as tables and the SVG timeline
//! (`timeline.rs`), written once and used twice: as one self-contained page (`switchyard report
//! --html`) and inside the coordinator's live page (`/executions/{id}`, `crate::http`).

use std::fmt::Write as _;

use switchyard_package::engine::{ChildRecord, TaskRecord};

use super::{Report, human_duration, parameter_text, rfc3339, timeline};

/// The stylesheet of every page: the report, the live page and the dashboard.
pub const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2330; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 1em; }
h1 .status { font-size: .6em; vertical-align: middle; padding: .15em .6em; border-radius: 1em; color: #fff; background: #7a8294; }
h2 { font-size: 1.15em; margin: 2em 0 .6em; border-bottom: 1px solid #d8dce5; padding-bottom: .2em; }
nav { margin-bottom: 1em; color: #4a5366; } nav a { margin-right: 1em; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; }
th { font-weight: 600; color: #4a5366; border-bottom: 1px solid #d8dce5; }
table.info th { border: 0; }
td.message { white-space: pre-wrap; max-width: 40em; }
td.number { text-align: right; }
.none { color: #7a8294; font-style: italic; }
.timeline { overflow-x: auto; border: 1px solid #d8dce5; }
svg.gantt { display: block; font: 12px system-ui, sans-serif; }
svg .stripe { fill: #f6f7fa; } svg .tick { stroke: #d8dce5; fill: #7a8294; } svg text.tick { stroke: none; }
svg .group { font-weight: 600; fill: #4a5366; } svg .label { fill: #1d2330; }
svg .mark { font-size: 11px; font-style: italic; }
svg .success, svg .succeeded { fill: #2e9d5b; } svg .failure, svg .failed { fill: #d64541; }
svg .completion { fill: #3c78d8; } svg .canceled, svg .not_run { fill: #9aa1ad; }
svg .running { fill: #3c78d8; fill-opacity: .55; stroke: #3c78d8; stroke-dasharray: 4 2; }
svg .lost { fill: #e08a1e; } svg .superseded { fill: #8e5bb5; fill-opacity: .6; stroke: #8e5bb5; stroke-dasharray: 2 2; }
td.success, td.succeeded { color: #2e9d5b; font-weight: 600; } td.failure, td.failed { color: #d64541; font-weight: 600; }
td.completion, td.running { color: #3c78d8; font-weight: 600; } td.canceled, td.not_run { color: #7a8294; font-weight: 600; }
td.lost { color: #e08a1e; font-weight: 600; } td.superseded { color: #8e5bb5; font-weight: 600; }
.status.succeeded, .status.up { background: #2e9d5b; } .status.failed, .status.down, .status.ended_unexpectedly { background: #d64541; }
.status.running, .status.stopping, .status.created, .status.pending { background: #3c78d8; }
.status.completed { background: #3c78d8; } .status.canceled, .status.draining { background: #9aa1ad; } .status.suspect { background: #e08a1e; }
span.status { padding: .1em .5em; border-radius: 1em; color: #fff; background: #7a8294; font-size: .9em; }
";

/// Renders the standalone page.
pub(super) fn render(report: &Report) -> String {
    let execution = &report.execution;
    let title = format!("{} \u{b7} {}", execution.package, execution.execution_id);
    let mut body = String::with_capacity(4096 + report.tasks.len() * 600);
    sections(&mut body, report);
    page(&title, "", &body)
}

/// A whole page: `head` goes inside `<head>` after the stylesheet (scripts, a refresh), `body`
/// is already HTML.
pub fn page(title: &str, head: &str, body: &str) -> String {
    let mut page = String::with_capacity(body.len() + STYLE.len() + 512);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n{head}</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title),
    );
    page
}

/// The report's sections: heading, information, parameters, timeline, tasks, children.
pub(super) fn sections(page: &mut String, report: &Report) {
    let execution = &report.execution;
    let status = execution.status.as_str();
    let _ = writeln!(
        page,
        "<h1>{} <span class=\"status {status}\" id=\"status\">{status}</span></h1>",
        escape(&execution.package),
    );

    page.push_str("<section>\n<h2>Execution Information</h2>\n<table class=\"info\">\n");
    let information = [
        ("Execution ID", execution.execution_id.clone()),
        ("Package", execution.package.clone()),
        ("Status", execution.status.as_str().to_owned()),
        ("Caller", execution.caller.clone()),
        ("Start", rfc3339(&execution.started_at)),
        ("End", execution.ended_at.as_ref().map_or_else(|| "-".to_owned(), rfc3339)),
        ("Duration", optional_duration(execution.duration_ms)),
    ];
    for (label, value) in information {
        let _ = writeln!(page, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    page.push_str("</table>\n</section>\n");

    page.push_str("<section>\n<h2>Parameters Used</h2>\n");
    let rows = execution.parameters.iter().map(|(name, value)| vec![cell(name), cell(&parameter_text(value))]);
    table(page, &["Name", "Value"], rows.collect());
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Timeline</h2>\n");
    timeline::render(page, report);
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Execution Overview</h2>\n");
    let rows = report.tasks.iter().map(|task| {
        vec![
            cell(&task.path),
            cell(task.kind),
            result_cell(task),
            cell(&task.started_at.as_ref().map_or_else(|| "-".to_owned(), rfc3339)),
            cell(&optional_duration(task.duration_ms)),
            cell(task.agent.as_deref().unwrap_or("-")),
            Cell { class: Some("message"), text: escape(&task.message) },
        ]
    });
    table(page, &["Path", "Kind", "Result", "Start", "Duration", "Agent", "Message"], rows.collect());
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Child Packages</h2>\n");
    let rows = report.children.iter().map(|child| {
        let or_dash = |value: &Option<String>| cell(value.as_deref().unwrap_or("-"));
        vec![
            cell(&child.task),
            Cell { class: Some("number"), text: (child.attempt + 1).to_string() },
            or_dash(&child.agent),
            or_dash(&child.job),
            or_dash(&child.run_id),
            or_dash(&child.package),
            status_cell(child),
            cell(&optional_duration(child.duration_ms)),
        ]
    });
    table(page, &["Task", "Attempt", "Agent", "Job", "Run ID", "Package", "Status", "Duration"], rows.collect());
    page.push_str("</section>\n");
}

/// A task's result, coloured; a task that started and has no duration yet is running.
fn result_cell(task: &TaskRecord) -> Cell {
    let result = match (task.started_at, task.duration_ms) {
        (Some(_), None) => "running",
        _ => task.result.as_str(),
    };
    Cell { class: Some(result), text: escape(result) }
}

/// A child's status, coloured, with what its agent reported when the status did not take it.
fn status_cell(child: &ChildRecord) -> Cell {
    Cell { class: Some(child.status.as_str()), text: escape(&super::text::child_status(child)) }
}

/// A table cell: escaped text and an optional class.
struct Cell {
    class: Option<&'static str>,
    text: String,
}

fn cell(text: &str) -> Cell {
    Cell { class: None, text: escape(text) }
}

fn table(page: &mut String, headers: &[&str], rows: Vec<Vec<Cell>>) {
    if rows.is_empty() {
        page.push_str("<p class=\"none\">(none)</p>\n");
        return;
    }
    page.push_str("<table>\n<thead><tr>");
    for header in headers {
        let _ = write!(page, "<th>{header}</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        page.push_str("<tr>");
        for Cell { class, text } in row {
            match class {
                Some(class) => {
                    let _ = write!(page, "<td class=\"{class}\">{text}</td>");
                }
                None => {
                    let _ = write!(page, "<td>{text}</td>");
                }
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
}

fn optional_duration(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), human_duration)
}

/// Text safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use switchyard_package::engine::ChildStatus;
    use switchyard_package::model::TaskResult;

    use super::super::tests::{at, child, report, task};
    use super::super::timeline::MAX_ROWS;

    #[test]
    fn html_has_every_section_escapes_text_and_stands_alone() {
        let mut report = report();
        report.execution.caller = "<script>alert('caller')</script>".into();
        report.tasks.push(task("<script>alert(1)</script>", "process", TaskResult::Failure, Some(50)));
        report.execution.parameters.insert("note".into(), serde_json::json!("a \"quoted\" & <b>bold</b>"));
        let html = report.to_html();
        for section in ["Execution Information", "Parameters Used", "Timeline", "Execution Overview", "Child Packages"]
        {
            assert!(html.contains(&format!("<h2>{section}</h2>")), "{section} missing");
        }
        assert!(!html.contains("<script"), "every string is escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;script&gt;alert(&#39;caller&#39;)&lt;/script&gt;"));
        assert!(html.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<style>"));
        for external in ["<link", "src=", "http://", "https://", "@import", "url("] {
            assert!(!html.contains(external), "{external} would load an external asset");
        }
    }

    #[test]
    fn timeline_draws_a_bar_per_task_and_child_placed_by_start_and_duration() {
        let report = report();
        let html = report.to_html();
        let ran = report.tasks.iter().filter(|task| task.started_at.is_some()).count();
        assert_eq!(ran, 3);
        assert_eq!(html.matches("<rect class=\"bar ").count(), ran + report.children.len(), "{html}");
        // The execution took 10 s over a 760-unit track from x = 300; "Stage/Load orders"
        // started at +2 s and ran 1.5 s.
        assert!(html.contains("<rect class=\"bar failure\" x=\"452.0\" y=\"61\" width=\"114.0\""), "{html}");
        assert!(html.contains("<rect class=\"bar success\" x=\"307.6\""), "{html}");
        assert!(html.contains("<rect class=\"bar success\" x=\"604.0\""), "{html}");
        assert!(html.contains("<text class=\"group\" x=\"4\" y=\"35\">Tasks</text>"), "{html}");
        assert!(html.contains(">Agent server-b</text>"), "children are grouped by agent: {html}");
    }

    /// Issue 14 item 7: the axis had only "0" and an end label, and the "0" sat left of where a
    /// bar starting with the execution starts.
    #[test]
    fn the_axis_is_labelled_at_round_intervals_from_where_the_first_bar_starts() {
        let mut report = report();
        report.tasks[0].started_at = Some(report.execution.started_at);
        let html = report.to_html();
        assert!(html.contains("<rect class=\"bar success\" x=\"300.0\""), "{html}");
        assert!(html.contains("<text class=\"tick\" x=\"300.0\" y=\"12\" text-anchor=\"middle\">0</text>"), "{html}");
        let labels: Vec<&str> = html
            .split("<text class=\"tick\"")
            .skip(1)
            .map(|tick| tick.split('>').nth(1).and_then(|rest| rest.split('<').next()).unwrap_or_default())
            .collect();
        assert_eq!(
            labels,
            ["0", "1.000s", "2.000s", "3.000s", "4.000s", "5.000s", "6.000s", "7.000s", "8.000s", "9.000s", "10.000s"]
        );
        assert!(html.contains("<text class=\"tick\" x=\"1060.0\" y=\"12\" text-anchor=\"middle\">10.000s</text>"));
    }

    /// Issue 14 item 7: a fire-and-forget child that failed was drawn green (its task, which
    /// succeeds once the start is accepted, was all the timeline showed).
    #[test]
    fn a_failed_fire_and_forget_child_is_drawn_and_listed_as_failed() {
        let mut report = report();
        report.tasks = vec![task("Kick off", "agent_job", TaskResult::Success, Some(100))];
        report.tasks[0].duration_ms = Some(3);
        let mut child = child("Kick off", ChildStatus::Failed);
        child.started_at = Some(at(103));
        child.duration_ms = Some(4000);
        report.children = vec![child];
        let html = report.to_html();
        assert!(html.contains("<rect class=\"bar success\" x=\"307.6\""), "the task itself succeeded: {html}");
        assert!(html.contains("<rect class=\"bar failed\" x=\"307.8\""), "its child is red: {html}");
        assert!(html.contains("<td class=\"failed\">failed</td>"), "{html}");
    }

    /// Issue 14 item 7: child rows came in arrival order, without the attempt, status uncoloured.
    #[test]
    fn child_rows_follow_the_tasks_with_their_attempt_and_a_coloured_status() {
        let mut report = report();
        report.tasks = vec![
            task("First", "agent_job", TaskResult::Success, Some(100)),
            task("Second", "agent_job", TaskResult::Success, Some(200)),
        ];
        let mut second_retry = child("Second", ChildStatus::Succeeded);
        second_retry.attempt = 1;
        second_retry.started_at = Some(at(300));
        let mut second_lost = child("Second", ChildStatus::Lost);
        second_lost.started_at = Some(at(250));
        let mut first = child("First", ChildStatus::Superseded);
        first.started_at = Some(at(400));
        report.children = vec![second_retry, first, second_lost];
        report.order_children();
        let order: Vec<(&str, u32)> = report.children.iter().map(|c| (c.task.as_str(), c.attempt)).collect();
        assert_eq!(order, [("First", 0), ("Second", 0), ("Second", 1)]);
        let html = report.to_html();
        let children = html.split("<h2>Child Packages</h2>").nth(1).expect("the children's section");
        assert!(children.contains("<th>Attempt</th>"), "{children}");
        assert!(children.contains("<td>First</td><td class=\"number\">1</td>"), "{children}");
        assert!(children.contains("<td>Second</td><td class=\"number\">2</td>"), "{children}");
        for status in ["superseded", "lost", "succeeded"] {
            assert!(children.contains(&format!("<td class=\"{status}\">{status}</td>")), "{status}: {children}");
        }
        assert!(html.contains(">Second (attempt 2)</text>"), "{html}");
        assert!(html.contains("<text class=\"mark lost\""), "{html}");
        assert!(html.contains("<text class=\"mark superseded\""), "{html}");
    }

    #[test]
    fn a_running_task_reaches_the_end_of_the_timeline_and_no_task_no_bars() {
        let mut report = report();
        report.execution.ended_at = None;
        report.execution.duration_ms = None;
        report.children.clear();
        report.tasks[2].duration_ms = None;
        let html = report.to_html();
        // The span is the latest known end: "Stage/Load orders" ends at 3.5 s; the running task
        // starts at 4 s, which is then the end.
        assert!(html.contains("<rect class=\"bar running\" x=\"1060.0\" y=\"79\" width=\"2.0\""), "{html}");
        assert!(html.contains("<td class=\"running\">running</td>"), "{html}");
        report.tasks.retain(|task| task.started_at.is_none());
        let html = report.to_html();
        assert_eq!(html.matches("<rect class=\"bar ").count(), 0);
        assert!(html.contains("No task ran."));
    }

    #[test]
    fn a_chart_past_its_row_limit_says_how_many_rows_it_left_out() {
        let mut report = report();
        report.children.clear();
        report.tasks =
            (0..MAX_ROWS + 10).map(|i| task(&format!("T{i}"), "process", TaskResult::Success, Some(1))).collect();
        let html = report.to_html();
        assert_eq!(html.matches("<rect class=\"bar ").count(), MAX_ROWS - 1, "the heading takes a row");
        assert!(html.contains("11 more rows are not drawn"), "the heading row pushes one more task out");
    }
}
