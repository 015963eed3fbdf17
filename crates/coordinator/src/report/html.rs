//! The Overview report as one self-contained HTML page: the text report's sections as tables and
//! a timeline with one bar per task that ran, placed by start and duration within the execution.

use std::fmt::Write as _;

use switchyard_package::engine::TaskRecord;

use super::{Report, human_duration, parameter_text, rfc3339};

/// The narrowest bar, in percent of the timeline, so a task of a few milliseconds in an hour-long
/// execution still shows.
const MIN_BAR_WIDTH: f64 = 0.15;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2330; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 1em; }
h2 { font-size: 1.15em; margin: 2em 0 .6em; border-bottom: 1px solid #d8dce5; padding-bottom: .2em; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; }
th { font-weight: 600; color: #4a5366; border-bottom: 1px solid #d8dce5; }
table.info th { border: 0; }
td.message { white-space: pre-wrap; max-width: 40em; }
.none { color: #7a8294; font-style: italic; }
.timeline { position: relative; border-left: 1px solid #b8bfcc; border-right: 1px solid #b8bfcc; }
.lane { display: flex; align-items: center; height: 1.5em; }
.lane:nth-child(odd) { background: #f6f7fa; }
.label { width: 18em; flex: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 0 .5em; }
.track { position: relative; flex: auto; height: 1em; }
.bar { position: absolute; top: 0; height: 100%; border-radius: 2px; min-width: 1px; }
.axis { display: flex; justify-content: space-between; color: #7a8294; font-size: .85em; margin-left: 18em; }
.success { background: #2e9d5b; } .failure { background: #d64541; } .completion { background: #3c78d8; }
.canceled { background: #9aa1ad; } .not_run { background: #d8dce5; }
.running { background: repeating-linear-gradient(45deg, #3c78d8, #3c78d8 4px, #6d9be6 4px, #6d9be6 8px); }
td.success, td.failure, td.completion, td.canceled, td.not_run, td.running { background: none; font-weight: 600; }
td.success { color: #2e9d5b; } td.failure { color: #d64541; } td.canceled, td.not_run { color: #7a8294; }
";

/// Renders the page.
pub(super) fn render(report: &Report) -> String {
    let execution = &report.execution;
    let mut page = String::with_capacity(4096 + report.tasks.len() * 400);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{} &middot; {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{} <small>{}</small></h1>\n",
        escape(&execution.package),
        escape(&execution.execution_id),
        escape(&execution.package),
        escape(execution.status.as_str()),
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
    table(&mut page, &["Name", "Value"], rows.collect());
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Timeline</h2>\n");
    timeline(&mut page, report);
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Execution Overview</h2>\n");
    let rows = report.tasks.iter().map(|task| {
        vec![
            cell(&task.path),
            cell(task.kind),
            Cell { class: Some(task.result.as_str()), text: escape(task.result.as_str()) },
            cell(&task.started_at.as_ref().map_or_else(|| "-".to_owned(), rfc3339)),
            cell(&optional_duration(task.duration_ms)),
            cell(task.agent.as_deref().unwrap_or("-")),
            Cell { class: Some("message"), text: escape(&task.message) },
        ]
    });
    table(&mut page, &["Path", "Kind", "Result", "Start", "Duration", "Agent", "Message"], rows.collect());
    page.push_str("</section>\n");

    page.push_str("<section>\n<h2>Child Packages</h2>\n");
    let rows = report.children.iter().map(|child| {
        let or_dash = |value: &Option<String>| cell(value.as_deref().unwrap_or("-"));
        vec![
            cell(&child.task),
            or_dash(&child.agent),
            or_dash(&child.job),
            or_dash(&child.run_id),
            or_dash(&child.package),
            cell(&super::text::child_status(child)),
            cell(&optional_duration(child.duration_ms)),
        ]
    });
    table(&mut page, &["Task", "Agent", "Job", "Run ID", "Package", "Status", "Duration"], rows.collect());
    page.push_str("</section>\n</body>\n</html>\n");
    page
}

/// One bar per task that ran, left and width in percent of the execution's span: its duration,
/// or (while it runs, or when a task outlasted it) up to the end of the last task.
fn timeline(page: &mut String, report: &Report) {
    let origin = report.execution.started_at;
    let offset_ms = |task: &TaskRecord| task.started_at.map(|at| (at - origin).num_milliseconds().max(0) as u64);
    let ran: Vec<(&TaskRecord, u64)> =
        report.tasks.iter().filter_map(|task| offset_ms(task).map(|offset| (task, offset))).collect();
    if ran.is_empty() {
        page.push_str("<p class=\"none\">No task ran.</p>\n");
        return;
    }
    let last_end = ran.iter().map(|(task, offset)| offset + task.duration_ms.unwrap_or(0)).max().unwrap_or(0);
    let span = report.execution.duration_ms.unwrap_or(0).max(last_end).max(1) as f64;
    page.push_str("<div class=\"timeline\">\n");
    for (task, offset) in ran {
        // Kept off the right edge so a task starting at the very end still shows.
        let left = (offset as f64 / span * 100.0).min(100.0 - MIN_BAR_WIDTH);
        // A task still running (no duration) runs to the end of what is known.
        let (duration, class) = match task.duration_ms {
            Some(duration) => (duration as f64, task.result.as_str()),
            None => (span - offset as f64, "running"),
        };
        let width = (duration / span * 100.0).max(MIN_BAR_WIDTH).min(100.0 - left);
        let title = format!(
            "{} ({}): {}, started +{}, {}",
            task.path,
            task.kind,
            task.result.as_str(),
            human_duration(offset),
            optional_duration(task.duration_ms),
        );
        let _ = writeln!(
            page,
            "<div class=\"lane\"><div class=\"label\" title=\"{path}\">{path}</div><div class=\"track\">\
             <div class=\"bar {class}\" style=\"left:{left:.3}%;width:{width:.3}%\" title=\"{title}\"></div>\
             </div></div>",
            path = escape(&task.path),
            title = escape(&title),
        );
    }
    let _ =
        writeln!(page, "</div>\n<div class=\"axis\"><span>0</span><span>{}</span></div>", human_duration(span as u64));
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
fn escape(text: &str) -> String {
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
    use switchyard_package::model::TaskResult;

    use super::super::tests::{report, task};

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
    fn timeline_has_one_bar_per_task_that_ran_placed_by_start_and_duration() {
        let report = report();
        let html = report.to_html();
        let ran = report.tasks.iter().filter(|task| task.started_at.is_some()).count();
        assert_eq!(ran, 3);
        assert_eq!(html.matches("<div class=\"bar ").count(), ran);
        // The execution took 10 s; "Stage/Load orders" started at +2 s and ran 1.5 s.
        assert!(html.contains("<div class=\"bar failure\" style=\"left:20.000%;width:15.000%\""), "{html}");
        assert!(html.contains("<div class=\"bar success\" style=\"left:1.000%;width:15.000%\""));
        assert!(html.contains("<div class=\"bar success\" style=\"left:40.000%;width:15.000%\""));
    }

    #[test]
    fn a_running_task_reaches_the_end_of_the_timeline_and_no_task_no_bars() {
        let mut report = report();
        report.execution.ended_at = None;
        report.execution.duration_ms = None;
        report.tasks[2].duration_ms = None;
        let html = report.to_html();
        // The span is the latest known end: the running task's start at 4 s.
        assert!(html.contains("<div class=\"bar running\" style=\"left:99.850%;width:0.150%\""), "{html}");
        assert!(html.contains("<div class=\"bar failure\" style=\"left:50.000%;width:37.500%\""), "{html}");
        report.tasks.retain(|task| task.started_at.is_none());
        let html = report.to_html();
        assert_eq!(html.matches("<div class=\"bar ").count(), 0);
        assert!(html.contains("No task ran."));
    }
}
