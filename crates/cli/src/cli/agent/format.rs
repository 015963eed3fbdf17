//! Text for wire values: status and activity names, RFC 3339 times, HH:MM:SS durations, tables.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;
use switchyard_proto::{HistoryStatus, JobActivity, JobOutcome, RunStatus};

/// A run status in lower case (`between_retries` with an underscore); `unknown` for 0 or new values.
pub fn run_status_name(status: i32) -> &'static str {
    match RunStatus::try_from(status) {
        Ok(RunStatus::Queued) => "queued",
        Ok(RunStatus::Running) => "running",
        Ok(RunStatus::BetweenRetries) => "between_retries",
        Ok(RunStatus::Succeeded) => "succeeded",
        Ok(RunStatus::Failed) => "failed",
        Ok(RunStatus::Canceled) => "canceled",
        Ok(RunStatus::Unspecified) | Err(_) => "unknown",
    }
}

/// A sysjobhistory run_status: failed, succeeded, retry, canceled or in_progress.
pub fn history_status_name(status: i32) -> &'static str {
    match HistoryStatus::try_from(status) {
        Ok(HistoryStatus::Failed) => "failed",
        Ok(HistoryStatus::Succeeded) => "succeeded",
        Ok(HistoryStatus::Retry) => "retry",
        Ok(HistoryStatus::Canceled) => "canceled",
        Ok(HistoryStatus::InProgress) => "in_progress",
        Err(_) => "unknown",
    }
}

/// sp_help_job's current execution status: executing, waiting, between_retries or idle.
pub fn activity_name(activity: i32) -> &'static str {
    match JobActivity::try_from(activity) {
        Ok(JobActivity::Executing) => "executing",
        Ok(JobActivity::Waiting) => "waiting",
        Ok(JobActivity::BetweenRetries) => "between_retries",
        Ok(JobActivity::Idle) => "idle",
        Ok(JobActivity::Unspecified) | Err(_) => "unknown",
    }
}

/// sp_help_job's last run outcome: failed, succeeded, canceled or unknown.
pub fn outcome_name(outcome: i32) -> &'static str {
    match JobOutcome::try_from(outcome) {
        Ok(JobOutcome::Failed) => "failed",
        Ok(JobOutcome::Succeeded) => "succeeded",
        Ok(JobOutcome::Canceled) => "canceled",
        Ok(JobOutcome::Unknown) | Err(_) => "unknown",
    }
}

/// RFC 3339 in UTC to the second (`2026-11-21T10:00:00Z`), for tables; None when unset or invalid.
pub fn time_text(at: Option<&Timestamp>) -> Option<String> {
    date_time(at).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// RFC 3339 in UTC to the millisecond, for JSON; `null` when unset.
pub fn time_json(at: Option<&Timestamp>) -> serde_json::Value {
    date_time(at).map_or(serde_json::Value::Null, |t| t.to_rfc3339_opts(SecondsFormat::Millis, true).into())
}

/// A duration as HH:MM:SS (hours grow past 99 rather than wrap).
pub fn hhmmss(ms: u64) -> String {
    let seconds = ms / 1000;
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// sysjobhistory's packed HHMMSS integer (`10203` is 1 h 2 min 3 s) as HH:MM:SS.
pub fn packed_hhmmss(packed: u32) -> String {
    format!("{:02}:{:02}:{:02}", packed / 10_000, packed / 100 % 100, packed % 100)
}

/// Aligns rows under headers, two spaces apart; the last column is never padded nor cut.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text
    };
    let mut lines = vec![line(&mut headers.iter().copied())];
    lines.extend(rows.iter().map(|row| line(&mut row.iter().map(String::as_str))));
    lines
}

fn date_time(at: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let at = at?;
    let nanos = u32::try_from(at.nanos).ok()?;
    DateTime::from_timestamp(at.seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_hours_minutes_seconds() {
        assert_eq!(hhmmss(0), "00:00:00");
        assert_eq!(hhmmss(999), "00:00:00");
        assert_eq!(hhmmss(61_500), "00:01:01");
        assert_eq!(hhmmss(3_723_000), "01:02:03");
        assert_eq!(hhmmss(100 * 3_600_000), "100:00:00");
        assert_eq!(packed_hhmmss(10_203), "01:02:03");
        assert_eq!(packed_hhmmss(5), "00:00:05");
    }

    #[test]
    fn timestamps_are_rfc_3339_utc() {
        let at = Timestamp { seconds: 1_795_255_200, nanos: 123_000_000 };
        assert_eq!(time_text(Some(&at)).as_deref(), Some("2026-11-21T10:00:00Z"));
        assert_eq!(time_json(Some(&at)), serde_json::json!("2026-11-21T10:00:00.123Z"));
        assert_eq!(time_text(None), None);
        assert_eq!(time_json(None), serde_json::Value::Null);
        assert_eq!(time_text(Some(&Timestamp { seconds: 0, nanos: -1 })), None);
    }

    #[test]
    fn status_names_match_the_design() {
        assert_eq!(run_status_name(RunStatus::BetweenRetries as i32), "between_retries");
        assert_eq!(run_status_name(RunStatus::Canceled as i32), "canceled");
        assert_eq!(run_status_name(0), "unknown");
        assert_eq!(history_status_name(HistoryStatus::InProgress as i32), "in_progress");
        assert_eq!(history_status_name(HistoryStatus::Retry as i32), "retry");
        assert_eq!(history_status_name(0), "failed");
        assert_eq!(activity_name(JobActivity::Waiting as i32), "waiting");
        assert_eq!(outcome_name(JobOutcome::Canceled as i32), "canceled");
        assert_eq!(outcome_name(0), "failed");
        assert_eq!(outcome_name(42), "unknown");
    }

    #[test]
    fn tables_align_columns_and_leave_the_last_whole() {
        let rows = vec![vec!["load_customers".to_string(), "a long last cell".to_string()]];
        let lines = table(&["NAME", "SOURCE"], &rows);
        assert_eq!(lines, vec!["NAME            SOURCE", "load_customers  a long last cell"]);
    }
}
