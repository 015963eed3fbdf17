//! The Overview report as plain text: labelled execution information, then aligned tables.

use std::fmt::Write as _;

use switchyard_package::engine::ChildRecord;

use super::{Report, human_duration, parameter_text, rfc3339, shorten};

/// A message column shows at most this many characters of the message's first line (the JSON
/// and HTML reports carry it whole).
pub const MESSAGE_CHARS: usize = 120;

/// Renders the four sections.
pub(super) fn render(report: &Report) -> String {
    let execution = &report.execution;
    let mut out = String::new();

    out.push_str("Execution Information\n");
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
        let _ = writeln!(out, "  {label:<13} {}", cell(&value));
    }

    out.push_str("\nParameters Used\n");
    if execution.parameters.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let rows = execution.parameters.iter().map(|(name, value)| vec![name.clone(), parameter_text(value)]);
        table(&mut out, &["NAME", "VALUE"], rows.collect());
    }

    out.push_str("\nExecution Overview\n");
    let rows = report.tasks.iter().map(|task| {
        vec![
            task.path.clone(),
            task.kind.to_owned(),
            task.result.as_str().to_owned(),
            task.started_at.as_ref().map_or_else(|| "-".to_owned(), rfc3339),
            optional_duration(task.duration_ms),
            task.agent.clone().unwrap_or_else(|| "-".to_owned()),
            shorten(task.message.lines().next().unwrap_or_default(), MESSAGE_CHARS),
        ]
    });
    table(&mut out, &["PATH", "KIND", "RESULT", "START", "DURATION", "AGENT", "MESSAGE"], rows.collect());

    out.push_str("\nChild Packages\n");
    let rows = report.children.iter().map(|child| {
        let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
        vec![
            child.task.clone(),
            (child.attempt + 1).to_string(),
            or_dash(&child.agent),
            or_dash(&child.job),
            or_dash(&child.run_id),
            or_dash(&child.package),
            child_status(child),
            optional_duration(child.duration_ms),
        ]
    });
    table(&mut out, &["TASK", "ATTEMPT", "AGENT", "JOB", "RUN ID", "PACKAGE", "STATUS", "DURATION"], rows.collect());
    out
}

/// A child's status, with what its agent reported when the status did not take it:
/// `superseded (agent: succeeded)`.
pub(super) fn child_status(child: &ChildRecord) -> String {
    match child.agent_status {
        Some(agent) => format!("{} (agent: {})", child.status.as_str(), agent.as_str()),
        None => child.status.as_str().to_owned(),
    }
}

fn optional_duration(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), human_duration)
}

/// Writes `headers` and `rows` as columns two spaces apart; `(none)` when there are no rows.
fn table(out: &mut String, headers: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|value| cell(value)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in &rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let headers: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = String::from(" ");
        for (value, width) in row.iter().zip(&widths) {
            let _ = write!(line, " {value:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// A value on one line: control characters (a newline in a path, a terminal escape in a
/// message) become spaces so they cannot break the layout or the terminal.
fn cell(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use switchyard_package::model::TaskResult;

    use super::super::tests::{report, task};
    use super::MESSAGE_CHARS;

    #[test]
    fn text_has_every_section_and_one_line_per_row() {
        let mut report = report();
        report.tasks.push(task("<script>alert(1)</script>", "process", TaskResult::Failure, Some(50)));
        let text = report.to_text();
        for section in ["Execution Information", "Parameters Used", "Execution Overview", "Child Packages"] {
            assert!(text.contains(section), "{section} missing:\n{text}");
        }
        for header in ["PATH", "KIND", "RESULT", "START", "DURATION", "AGENT", "MESSAGE", "RUN ID", "PACKAGE"] {
            assert!(text.contains(header), "{header} missing:\n{text}");
        }
        assert!(text.contains("ended_unexpectedly") && text.contains("alice") && text.contains("2026-11-21"));
        assert!(text.contains("Stage/Load orders said"), "the message's first line is shown");
        assert!(!text.contains("second line"), "only the message's first line is shown:\n{text}");
        assert!(text.contains("<script>alert(1)</script>"), "text is not escaped, only kept on one line");
        let overview = text.split("Execution Overview\n").nth(1).expect("overview");
        let rows = overview.split("\n\n").next().expect("the table").lines().count();
        assert_eq!(rows, 1 + report.tasks.len());
        assert!(text.contains("superseded") && text.contains("812ms"));
    }

    /// Issue 14 item 7: the text report cut messages mid-word without an ellipsis.
    #[test]
    fn a_long_message_is_cut_at_a_word_with_an_ellipsis() {
        let mut report = report();
        let words = "the child package failed because ".repeat(10);
        report.tasks[0].message = format!("{words}\nsecond line");
        let text = report.to_text();
        let line = text.lines().find(|line| line.contains("Load customers")).expect("the task's row");
        let message = line.split("server-b").nth(1).expect("the message column").trim();
        assert!(
            message.ends_with("failed…") || message.ends_with("because…") || message.ends_with("package…"),
            "{message}"
        );
        assert!(message.chars().count() <= MESSAGE_CHARS, "{message}");
        assert!(words.starts_with(message.trim_end_matches('…')), "{message}");
    }

    #[test]
    fn empty_sections_say_none() {
        let mut report = report();
        report.execution.parameters.clear();
        report.children.clear();
        let text = report.to_text();
        assert_eq!(text.matches("(none)").count(), 2, "{text}");
    }
}
