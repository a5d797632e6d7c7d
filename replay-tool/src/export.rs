//! `export`: the log as JSON Lines, byte-identical for the same log (see `docs/export-format.md`).

use std::collections::HashSet;
use std::io::Write;

use serde::Serialize;
use uuid::Uuid;

use crate::source::{format_time, LogEvent, LogSource, SourceError};

/// One exported line. Field order is the order of the keys in the line.
#[derive(Serialize)]
struct ExportLine<'a> {
    position: i64,
    stream_type: &'a str,
    stream_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    occurred_at: String,
    recorded_at: String,
    /// The payload's JSON text exactly as stored, as a JSON string, because the hash covers
    /// those bytes and re-encoding could change them.
    payload: &'a str,
    metadata: &'a str,
    prev_hash: Option<&'a str>,
    hash: Option<&'a str>,
    /// `encrypted` when the payload has sealed personal data, `erased` when any of it was
    /// erased, `None` when it has none.
    personal_data: Option<&'static str>,
}

/// Returns the state of a payload's sealed personal data now, `None` when it has none.
pub fn personal_data_state(event: &LogEvent, erased_keys: &HashSet<Uuid>) -> Option<&'static str> {
    let payload = event.payload.as_ref().ok()?;
    let keys = opencity_store::personal::sealed_key_ids(payload);
    if keys.is_empty() {
        None
    } else if keys.iter().any(|key| erased_keys.contains(key)) {
        Some("erased")
    } else {
        Some("encrypted")
    }
}

/// Failures of `export`.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("не удалось записать выгрузку: {0}")]
    Output(#[from] std::io::Error),
    #[error("не удалось сформировать строку выгрузки: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Writes the events with `from <= position <= to`, in log order, one JSON object per line.
/// Returns the number of lines written.
pub async fn export(
    source: &LogSource,
    from: Option<i64>,
    to: Option<i64>,
    output: &mut impl Write,
) -> Result<u64, ExportError> {
    let erased_keys = source.erased_key_ids().await?;
    let mut written = 0_u64;
    let mut failure: Option<ExportError> = None;
    source
        .scan(|event| {
            if from.is_some_and(|from| event.position < from)
                || to.is_some_and(|to| event.position > to)
            {
                return true;
            }
            match write_line(&event, &erased_keys, output) {
                Ok(()) => {
                    written += 1;
                    true
                }
                Err(error) => {
                    failure = Some(error);
                    false
                }
            }
        })
        .await?;
    if let Some(error) = failure {
        return Err(error);
    }
    output.flush()?;
    Ok(written)
}

fn write_line(event: &LogEvent, erased_keys: &HashSet<Uuid>, output: &mut impl Write) -> Result<(), ExportError> {
    let line = ExportLine {
        position: event.position,
        stream_type: &event.stream_type,
        stream_id: &event.stream_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        occurred_at: format_time(event.occurred_at),
        recorded_at: format_time(event.recorded_at),
        payload: &event.payload_text,
        metadata: &event.metadata_text,
        prev_hash: event.prev_hash.as_deref(),
        hash: event.hash.as_deref(),
        personal_data: personal_data_state(event, erased_keys),
    };
    serde_json::to_writer(&mut *output, &line)?;
    output.write_all(b"\n")?;
    Ok(())
}
