//! `rebuild` and `diff`: ticket views from a fresh replay, compared with the live read model.

use std::collections::BTreeSet;

use opencity_projections::TicketView;
use serde::Serialize;

use crate::replay::{replay_until, Replay};
use crate::source::{LiveReadModel, LogSource, SourceError};

/// Kind of a difference between the live read model and the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftKind {
    /// The replay has the ticket, the live read model does not.
    MissingView,
    /// The live read model has a ticket the replay does not.
    ExtraView,
    /// The live row's payload does not decode as a ticket view.
    CorruptView,
    /// The live view differs from the replayed one in the listed fields.
    ChangedFields,
    /// The row's `external_id` or `last_position` column disagrees with the replayed view.
    ChangedColumns,
}

impl DriftKind {
    /// Returns the Russian description of the kind.
    pub fn name_ru(self) -> &'static str {
        match self {
            DriftKind::MissingView => "заявки нет в рабочей витрине",
            DriftKind::ExtraView => "в рабочей витрине лишняя заявка",
            DriftKind::CorruptView => "запись витрины не читается",
            DriftKind::ChangedFields => "поля витрины отличаются от воспроизведения",
            DriftKind::ChangedColumns => "столбцы строки витрины отличаются от воспроизведения",
        }
    }
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    /// The `id` column of the row, or the replayed ticket id.
    pub ticket_id: String,
    pub external_id: Option<String>,
    /// Names of differing fields (for `ChangedFields` and `ChangedColumns`).
    pub fields: Vec<String>,
    /// Details in Russian.
    pub detail: String,
}

/// The result of `diff`.
#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// Position of the live checkpoint the replay was folded to.
    pub checkpoint_position: i64,
    pub live_views: usize,
    pub replayed_views: usize,
    pub drifts: Vec<Drift>,
}

/// Failures of `diff` other than database errors.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("в базе данных нет рабочих витрин (таблиц ticket_views и projection_checkpoints); сервер ещё не запускался на этой базе")]
    NoReadModel,
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Folds the log up to the live checkpoint and compares every view.
pub async fn diff(source: &LogSource) -> Result<DiffReport, DiffError> {
    let live = source
        .live_read_model()
        .await?
        .ok_or(DiffError::NoReadModel)?;
    let replay = replay_until(source, live.checkpoint).await?;
    Ok(compare(&live, &replay))
}

/// Compares the live rows with the replayed views, ordered by ticket id.
pub fn compare(live: &LiveReadModel, replay: &Replay) -> DiffReport {
    let mut drifts = Vec::new();
    let ids: BTreeSet<String> = live
        .rows
        .keys()
        .cloned()
        .chain(replay.views.keys().map(|id| id.to_string()))
        .collect();

    for id in ids {
        let replayed = uuid::Uuid::parse_str(&id)
            .ok()
            .and_then(|uuid| replay.views.get(&uuid));
        match (live.rows.get(&id), replayed) {
            (None, Some(view)) => drifts.push(Drift {
                kind: DriftKind::MissingView,
                ticket_id: id,
                external_id: view.external_id.clone(),
                fields: Vec::new(),
                detail: format!("последнее событие заявки — позиция {}", view.last_position),
            }),
            (Some(row), None) => drifts.push(Drift {
                kind: DriftKind::ExtraView,
                ticket_id: id,
                external_id: row.external_id.clone(),
                fields: Vec::new(),
                detail: format!("в строке позиция {}", row.last_position),
            }),
            (Some(row), Some(view)) => match &row.view {
                Err(error) => drifts.push(Drift {
                    kind: DriftKind::CorruptView,
                    ticket_id: id,
                    external_id: row.external_id.clone(),
                    fields: Vec::new(),
                    detail: error.clone(),
                }),
                Ok(live_view) => {
                    let fields = changed_fields(live_view, view);
                    if !fields.is_empty() {
                        drifts.push(Drift {
                            kind: DriftKind::ChangedFields,
                            ticket_id: id.clone(),
                            external_id: view.external_id.clone(),
                            detail: fields.join(", "),
                            fields,
                        });
                    }
                    let mut columns = Vec::new();
                    if row.external_id != view.external_id {
                        columns.push("external_id".to_string());
                    }
                    if row.last_position != view.last_position {
                        columns.push("last_position".to_string());
                    }
                    if !columns.is_empty() {
                        drifts.push(Drift {
                            kind: DriftKind::ChangedColumns,
                            ticket_id: id,
                            external_id: view.external_id.clone(),
                            detail: columns.join(", "),
                            fields: columns,
                        });
                    }
                }
            },
            (None, None) => {}
        }
    }

    DiffReport {
        checkpoint_position: live.checkpoint.position,
        live_views: live.rows.len(),
        replayed_views: replay.views.len(),
        drifts,
    }
}

/// Returns the names of the top-level fields whose JSON values differ.
fn changed_fields(live: &TicketView, replayed: &TicketView) -> Vec<String> {
    if live == replayed {
        return Vec::new();
    }
    let (Ok(serde_json::Value::Object(live)), Ok(serde_json::Value::Object(replayed))) =
        (serde_json::to_value(live), serde_json::to_value(replayed))
    else {
        return vec!["*".to_string()];
    };
    let keys: BTreeSet<&String> = live.keys().chain(replayed.keys()).collect();
    keys.into_iter()
        .filter(|key| live.get(*key) != replayed.get(*key))
        .map(|key| key.to_string())
        .collect()
}
