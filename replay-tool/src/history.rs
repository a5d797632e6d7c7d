//! `history`: a readable timeline of one ticket stream with the SLA state after each event.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::TicketStatus;
use opencity_projections::{apply_event, TicketView};
use serde::Serialize;

use crate::export::personal_data_state;
use crate::replay::decode_ticket_event;
use crate::source::{format_time, LogSource, SourceError};

/// One step of the timeline.
#[derive(Debug, Serialize)]
pub struct HistoryStep {
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Metadata as stored: actor, role, on_behalf_of, channel, correlation and causation ids.
    pub metadata: BTreeMap<String, String>,
    /// Status after the event, `None` when the event could not be applied.
    pub status: Option<String>,
    /// SLA state after the event, in Russian.
    pub sla: String,
    /// `encrypted` or `erased` when the event has residents' personal data, see
    /// [`personal_data_state`].
    pub personal_data: Option<&'static str>,
}

/// The timeline of one ticket.
#[derive(Debug, Serialize)]
pub struct History {
    pub ticket_id: String,
    pub external_id: Option<String>,
    pub address: Option<String>,
    pub time_zone: Option<String>,
    pub steps: Vec<HistoryStep>,
}

/// Failures of `history` other than database errors.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("заявка «{0}» не найдена: укажите её идентификатор (UUID) или внешний номер")]
    NotFound(String),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Loads the stream of `ticket` (a ticket id or an external number) and folds it step by step.
pub async fn history(source: &LogSource, ticket: &str) -> Result<History, HistoryError> {
    let mut events = source.load_stream(TICKET_STREAM_TYPE, ticket).await?;
    if events.is_empty() {
        if let Some(stream_id) = source.find_by_external_id(ticket).await? {
            events = source.load_stream(TICKET_STREAM_TYPE, &stream_id).await?;
        }
    }
    let Some(first) = events.first() else {
        return Err(HistoryError::NotFound(ticket.to_string()));
    };
    let ticket_id = first.stream_id.clone();
    let uuid = uuid::Uuid::parse_str(&ticket_id).unwrap_or_default();

    let erased_keys = source.erased_key_ids().await?;
    let mut views: BTreeMap<uuid::Uuid, TicketView> = BTreeMap::new();
    let mut steps = Vec::with_capacity(events.len());
    for event in &events {
        let decoded = decode_ticket_event(event);
        if let Some(ticket_event) = &decoded {
            apply_event(&mut views, uuid, event.position, ticket_event);
        }
        let view = views.get(&uuid);
        let (status, sla) = match (&decoded, view) {
            (Some(_), Some(view)) => (Some(view.status.as_str().to_string()), sla_state(view)),
            _ => (
                None,
                "событие не читается; проверьте журнал командой verify".to_string(),
            ),
        };
        steps.push(HistoryStep {
            sequence: event.sequence,
            position: event.position,
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
            metadata: metadata_map(event.metadata.as_ref().ok()),
            status,
            sla,
            personal_data: personal_data_state(event, &erased_keys),
        });
    }

    let view = views.get(&uuid);
    Ok(History {
        ticket_id,
        external_id: view.and_then(|view| view.external_id.clone()),
        address: view.map(|view| view.address.clone()),
        time_zone: view.map(|view| view.time_zone.clone()),
        steps,
    })
}

fn metadata_map(metadata: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    let Some(serde_json::Value::Object(map)) = metadata else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(key, value)| value.as_str().map(|value| (key.clone(), value.to_string())))
        .collect()
}

/// Describes the SLA state of the view at the business time of its last event.
pub fn sla_state(view: &TicketView) -> String {
    let at = view.last_event_at;
    let state = view.current_state();
    match state.status {
        TicketStatus::Closed => {
            return match view.resolution_on_time() {
                Some(true) => "выполнена в срок".to_string(),
                Some(false) => "выполнена с просрочкой".to_string(),
                None => "закрыта, срок выполнения не оценивается".to_string(),
            };
        }
        TicketStatus::Cancelled => return "отменена, SLA не применяется".to_string(),
        _ => {}
    }

    let mut parts = Vec::new();
    let awaiting_acceptance =
        !state.accepted && matches!(state.status, TicketStatus::New | TicketStatus::Routed);
    if let (true, Some(deadline)) = (awaiting_acceptance, state.response_deadline) {
        parts.push(format!("реагирование: {}", time_left(deadline, at)));
    }
    let resolution = match state.status {
        TicketStatus::Suspended => "устранение: часы SLA остановлены".to_string(),
        TicketStatus::CompletionReported | TicketStatus::Confirmed => format!(
            "устранение: ждёт решения жителя, срок {}",
            format_time(state.resolution_deadline)
        ),
        _ => format!("устранение: {}", time_left(state.resolution_deadline, at)),
    };
    parts.push(resolution);
    parts.join("; ")
}

fn time_left(deadline: DateTime<Utc>, at: DateTime<Utc>) -> String {
    if deadline < at {
        format!("просрочено на {}", format_duration(at - deadline))
    } else {
        format!("осталось {}", format_duration(deadline - at))
    }
}

/// Formats a non-negative duration as days, hours and minutes.
pub fn format_duration(duration: Duration) -> String {
    let minutes = duration.num_minutes().max(0);
    let (days, hours, minutes) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} мин"),
        (0, _) => format!("{hours} ч {minutes} мин"),
        _ => format!("{days} д {hours} ч {minutes} мин"),
    }
}

/// Returns the Russian description of an event type.
pub fn event_name_ru(event_type: &str) -> &'static str {
    match event_type {
        "TicketRegistered" => "заявка зарегистрирована",
        "TicketClassified" => "изменена категория",
        "TicketRouted" => "направлена исполнителю",
        "TicketAccepted" => "принята в работу",
        "ContractorAssigned" => "назначен подрядчик",
        "WorkStarted" => "начаты работы",
        "WorkSuspended" => "работы приостановлены",
        "WorkResumed" => "работы возобновлены",
        "CompletionReported" => "исполнитель сообщил о выполнении",
        "CompletionConfirmed" => "житель подтвердил выполнение",
        "CompletionRejected" => "житель вернул заявку на доработку",
        "TicketRated" => "житель оценил работу",
        "TicketCommented" => "добавлен комментарий",
        "TicketEscalated" => "заявка эскалирована",
        "TicketCancelled" => "заявка отменена",
        "TicketClosed" => "заявка закрыта",
        "DeadlinePassed" => "зафиксирована просрочка",
        "DataAnomalyFlagged" => "отмечена аномалия данных",
        _ => "неизвестное событие",
    }
}

/// Renders the timeline as Russian text, with business times in the building's time zone.
pub fn render(history: &History) -> String {
    let zone: Option<Tz> = history
        .time_zone
        .as_deref()
        .and_then(|name| name.parse().ok());
    let mut out = format!("Заявка {}", history.ticket_id);
    if let Some(external_id) = &history.external_id {
        out.push_str(&format!(" (внешний номер {external_id})"));
    }
    out.push('\n');
    if let Some(address) = &history.address {
        out.push_str(&format!("Адрес: {address}\n"));
    }
    if let Some(name) = &history.time_zone {
        out.push_str(&format!(
            "Время событий указано в часовом поясе дома: {name}\n"
        ));
    }
    out.push_str(&format!("Событий: {}\n", history.steps.len()));

    for step in &history.steps {
        let when = match zone {
            Some(zone) => step
                .occurred_at
                .with_timezone(&zone)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            None => format!("{} UTC", step.occurred_at.format("%Y-%m-%d %H:%M:%S")),
        };
        out.push_str(&format!(
            "\n№ {} · позиция {} · {} · записано {} UTC\n",
            step.sequence,
            step.position,
            when,
            step.recorded_at.format("%Y-%m-%d %H:%M:%S")
        ));
        out.push_str(&format!("  Кто: {}\n", who(&step.metadata)));
        out.push_str(&format!(
            "  Что: {} ({})\n",
            event_name_ru(&step.event_type),
            step.event_type
        ));
        if let Some(status) = &step.status {
            out.push_str(&format!(
                "  Статус: {}\n",
                opencity_api::errors::status_name_ru(status)
            ));
        }
        out.push_str(&format!("  SLA: {}\n", step.sla));
        if step.personal_data == Some("erased") {
            out.push_str(&format!("  Персональные данные: {}\n", opencity_store::personal::ERASED));
        }
    }
    out
}

fn who(metadata: &BTreeMap<String, String>) -> String {
    let actor = metadata.get("actor").map_or("не указан", String::as_str);
    let mut details = Vec::new();
    if let Some(role) = metadata.get("role") {
        details.push(format!("роль {role}"));
    }
    if let Some(on_behalf_of) = metadata.get("on_behalf_of") {
        details.push(format!("от имени {on_behalf_of}"));
    }
    if let Some(channel) = metadata.get("channel") {
        details.push(format!("канал {channel}"));
    }
    if let Some(correlation_id) = metadata.get("correlation_id") {
        details.push(format!("запрос {correlation_id}"));
    }
    if details.is_empty() {
        actor.to_string()
    } else {
        format!("{actor} ({})", details.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_duration_picks_units() {
        assert_eq!(format_duration(Duration::minutes(42)), "42 мин");
        assert_eq!(format_duration(Duration::minutes(125)), "2 ч 5 мин");
        assert_eq!(
            format_duration(Duration::minutes(1440 + 61)),
            "1 д 1 ч 1 мин"
        );
        assert_eq!(format_duration(Duration::seconds(-30)), "0 мин");
    }

    #[test]
    fn time_left_reports_overdue_after_deadline() {
        let deadline = DateTime::parse_from_rfc3339("2024-03-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            time_left(deadline, deadline - Duration::hours(3)),
            "осталось 3 ч 0 мин"
        );
        assert_eq!(time_left(deadline, deadline), "осталось 0 мин");
        assert_eq!(
            time_left(deadline, deadline + Duration::minutes(90)),
            "просрочено на 1 ч 30 мин"
        );
    }
}
