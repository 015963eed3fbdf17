//! Conversions between wire types (switchyard_proto) and the agent's domain records. Wire
//! types stop at the gRPC handler.

use chrono::{Datelike, Timelike};
use switchyard_package::expr::Map;
use switchyard_proto as pb;

use crate::model::{EventKind, HistoryRecord, HistoryStatus, OutboxEvent, RunRecord, RunStatus};

/// A protobuf Struct as a parameter map.
pub fn map_from_struct(s: Option<prost_types::Struct>) -> Map {
    switchyard_proto::convert::params_from_struct(s)
}

/// A parameter map as a protobuf Struct.
pub fn struct_from_map(map: &Map) -> prost_types::Struct {
    switchyard_proto::convert::struct_from_params(map)
}

pub use switchyard_proto::convert::{from_timestamp, timestamp};

/// The wire run status.
pub fn run_status(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::BetweenRetries => pb::RunStatus::BetweenRetries,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Canceled => pb::RunStatus::Canceled,
    }
}

fn history_status(status: HistoryStatus) -> pb::HistoryStatus {
    match status {
        HistoryStatus::Failed => pb::HistoryStatus::Failed,
        HistoryStatus::Succeeded => pb::HistoryStatus::Succeeded,
        HistoryStatus::Retry => pb::HistoryStatus::Retry,
        HistoryStatus::Canceled => pb::HistoryStatus::Canceled,
        HistoryStatus::InProgress => pb::HistoryStatus::InProgress,
    }
}

pub fn event_kind(kind: EventKind) -> pb::RunEventKind {
    match kind {
        EventKind::Accepted => pb::RunEventKind::Accepted,
        EventKind::Started => pb::RunEventKind::Started,
        EventKind::StepStarted => pb::RunEventKind::StepStarted,
        EventKind::StepFinished => pb::RunEventKind::StepFinished,
        EventKind::StepRetrying => pb::RunEventKind::StepRetrying,
        EventKind::Finished => pb::RunEventKind::Finished,
    }
}

/// An outbox event on the wire.
pub fn run_event(e: &OutboxEvent, incarnation: &str) -> pb::RunEvent {
    pb::RunEvent {
        sequence: e.sequence,
        incarnation: incarnation.to_string(),
        run_id: e.run_id.clone(),
        job: e.job.clone(),
        idempotency_key: e.idempotency_key.clone().unwrap_or_default(),
        kind: event_kind(e.kind) as i32,
        status: run_status(e.status) as i32,
        message: e.message.clone(),
        at: Some(timestamp(e.at)),
        step_id: e.step_id,
        step_name: e.step_name.clone(),
        exit_code: e.exit_code,
        duration_ms: e.duration_ms,
        execution_id: e.execution_id.clone(),
        task_path: e.task_path.clone(),
        attempt: e.attempt,
    }
}

/// A run on the wire.
pub fn run(r: &RunRecord) -> pb::Run {
    pb::Run {
        run_id: r.run_id.clone(),
        job: r.job.clone(),
        status: run_status(r.status) as i32,
        accepted_at: Some(timestamp(r.accepted_at)),
        started_at: r.started_at.map(timestamp),
        ended_at: r.ended_at.map(timestamp),
        duration_ms: r.duration_ms.unwrap_or_default(),
        message: r.message.clone(),
        idempotency_key: r.idempotency_key.clone().unwrap_or_default(),
        epoch: r.epoch,
        requested_by: r.requested_by.clone(),
        execution_id: r.execution_id.clone(),
        task_path: r.task_path.clone(),
        attempt: r.attempt,
        params: Some(struct_from_map(&r.params)),
        current_step: r.current_step,
        job_hash: r.job_hash.clone(),
        package_hashes: r.package_hashes.clone(),
        accepted_sequence: r.accepted_sequence,
    }
}

/// A sysjobhistory row on the wire: run_date YYYYMMDD, run_time and run_duration HHMMSS.
pub fn history_row(h: &HistoryRecord, server: &str) -> pb::HistoryRow {
    let at = h.started_at;
    let secs = h.duration_ms / 1000;
    let run_duration = (secs / 3600) * 10_000 + ((secs % 3600) / 60) * 100 + secs % 60;
    pb::HistoryRow {
        instance_id: h.instance_id,
        job: h.job.clone(),
        step_id: h.step_id,
        step_name: h.step_name.clone(),
        run_status: history_status(h.run_status) as i32,
        run_date: (at.year().max(0) as u32) * 10_000 + at.month() * 100 + at.day(),
        run_time: at.hour() * 10_000 + at.minute() * 100 + at.second(),
        run_duration: u32::try_from(run_duration).unwrap_or(u32::MAX),
        started_at: Some(timestamp(at)),
        duration_ms: h.duration_ms,
        message: h.message.clone(),
        run_id: h.run_id.clone(),
        retries_attempted: h.retries_attempted,
        server: server.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn params_survive_a_round_trip_with_integers_kept_whole() {
        let mut map = Map::new();
        map.insert("region".into(), serde_json::json!("emea"));
        map.insert("count".into(), serde_json::json!(5));
        map.insert("ratio".into(), serde_json::json!(0.5));
        map.insert("list".into(), serde_json::json!([1, "a", true]));
        assert_eq!(map_from_struct(Some(struct_from_map(&map))), map);
    }

    #[test]
    fn history_rows_use_sysjobhistory_date_time_and_duration_numbers() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T09:05:07Z").expect("time").with_timezone(&Utc);
        let row = HistoryRecord {
            instance_id: 7,
            job: "j".into(),
            step_id: 0,
            step_name: "(Job outcome)".into(),
            run_status: HistoryStatus::Succeeded,
            started_at: at,
            duration_ms: 3_723_000,
            message: "m".into(),
            run_id: "r".into(),
            retries_attempted: 0,
        };
        let wire = history_row(&row, "a");
        assert_eq!((wire.run_date, wire.run_time, wire.run_duration), (20261121, 90507, 10203));
        assert_eq!(wire.run_status, pb::HistoryStatus::Succeeded as i32);
    }
}
