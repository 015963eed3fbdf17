//! Text for the coordinator's wire values: RFC 3339 times, parameter structs and aligned tables.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::{Struct, Timestamp};
use switchyard_proto::convert::{from_timestamp, params_from_struct};

/// RFC 3339 in UTC to the second (`2026-11-21T10:00:00Z`), for tables; None when unset or invalid.
pub fn time_text(at: Option<&Timestamp>) -> Option<String> {
    date_time(at).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// RFC 3339 in UTC to the millisecond, for JSON; `null` when unset.
pub fn time_json(at: Option<&Timestamp>) -> serde_json::Value {
    date_time(at).map_or(serde_json::Value::Null, |t| t.to_rfc3339_opts(SecondsFormat::Millis, true).into())
}

/// A parameter struct as a JSON object (absent: empty).
pub fn params_json(params: Option<&Struct>) -> serde_json::Value {
    serde_json::Value::Object(params_from_struct(params.cloned()).into_iter().collect())
}

/// Aligns rows under headers, two spaces apart; the last column is never padded nor cut.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count()) + 2));
            }
        }
        text
    };
    let mut lines = vec![line(headers.to_vec())];
    lines.extend(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())));
    lines
}

/// A timestamp as a UTC time; None when unset or out of range.
pub fn date_time(at: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let at = at?;
    if at.nanos < 0 {
        return None;
    }
    from_timestamp(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc_3339_utc() {
        let at = Timestamp { seconds: 1_795_255_200, nanos: 123_000_000 };
        assert_eq!(time_text(Some(&at)).as_deref(), Some("2026-11-21T10:00:00Z"));
        assert_eq!(time_json(Some(&at)), serde_json::json!("2026-11-21T10:00:00.123Z"));
        assert_eq!(time_text(None), None);
        assert_eq!(time_json(None), serde_json::Value::Null);
    }

    #[test]
    fn tables_align_columns_and_leave_the_last_whole() {
        let rows = vec![vec!["server-a".to_string(), "up".to_string(), "a long last cell".to_string()]];
        let lines = table(&["NAME", "STATE", "LAST SEEN"], &rows);
        assert_eq!(lines, vec!["NAME      STATE  LAST SEEN", "server-a  up     a long last cell"]);
    }
}
