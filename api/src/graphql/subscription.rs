//! Subscriptions over WebSocket (`graphql-transport-ws`): ticket events as the projections apply
//! them, and overdue counters recomputed after each change.

use std::time::Duration;

use async_graphql::{Context, InputObject, Result, Subscription};
use chrono::Utc;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::IntervalStream;

use super::consistency::wait_for_position;
use super::query::{compute_overdue, DimensionGql};
use super::types::{EventRecord, OverdueRowGql};
use super::ApiState;
use crate::access;


/// How often `overdueCounters` is recomputed when no event arrives: deadlines pass with time.
const OVERDUE_REFRESH: Duration = Duration::from_secs(30);

/// Отбор событий подписки; пустые поля не ограничивают.
#[derive(InputObject, Default, Clone)]
pub struct TicketEventFilter {
    /// Только события этой заявки.
    pub ticket_id: Option<String>,
    /// Только заявки этой организации.
    pub organization_id: Option<String>,
    /// Только заявки этой категории.
    pub category: Option<String>,
    /// Только события этих типов (например TicketRegistered, TicketClosed).
    pub event_types: Option<Vec<String>>,
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// События заявок по мере их учёта проекциями. С `afterPosition` поток начинается, когда
    /// проекции учли эту позицию; события, учтённые за время ожидания, тоже приходят.
    async fn ticket_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<TicketEventFilter>,
        #[graphql(desc = "Начать после того, как проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<impl Stream<Item = EventRecord>> {
        let state = ctx.data::<ApiState>()?.clone();
        let principal = access::principal(ctx).cloned();
        let filter = filter.unwrap_or_default();
        if let Some(id) = &filter.ticket_id {
            super::mutation::parse_named_id("filter.ticketId", id)?;
        }
        // Follow before waiting, so that no event applied meanwhile is missed.
        let follower = state.read_model.follow();
        wait_for_position(&state, after_position, wait_timeout_ms).await?;
        let applied_events = futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|applied| (applied, follower))
        });
        let stream = applied_events.filter_map(move |applied| {
            let state = state.clone();
            let filter = filter.clone();
            let principal = principal.clone();
            async move {
                if !matches_filter(&state, &filter, &applied).await {
                    return None;
                }
                if let Some(principal) = &principal {
                    // Nothing outside the subscriber's scope is delivered, also when the view
                    // is not there to decide.
                    let view = state.read_model.view(applied.ticket_id).await?;
                    if !access::ticket_in_scope(principal, &view) {
                        return None;
                    }
                }
                // The key lookup and the read record below wait for the database. A subscriber
                // they hold back more than the channel's 4,096 events reads the rest from the log.
                let mut records = [EventRecord::from_stored(&applied.event)];
                // An event whose personal data cannot be opened, or whose read cannot be
                // recorded, is not delivered.
                let field = "Subscription.ticketEvents";
                if access::sees_personal_data(principal.as_ref()) {
                    // Opened once for all subscribers of this server.
                    let (payload, erased) = applied
                        .opened_payload
                        .get_or_try_init(|| async {
                            let mut opened = [EventRecord::from_stored(&applied.event)];
                            access::open_records(&state.store, applied.ticket_id, &mut opened).await?;
                            let [opened] = opened;
                            Ok::<_, crate::errors::ApiError>((opened.payload.0, opened.personal_data_erased))
                        })
                        .await
                        .ok()?;
                    records[0].payload.0 = payload.clone();
                    records[0].personal_data_erased = *erased;
                    access::record_reads_of(&state.store, principal.as_ref(), applied.ticket_id, field, &records).await.ok()?;
                } else {
                    access::disclose(&state.store, principal.as_ref(), applied.ticket_id, field, &mut records).await.ok()?;
                }
                let [record] = records;
                Some(record)
            }
        });
        Ok(stream)
    }

    /// Счётчики просроченных заявок: первое значение сразу, затем после каждого изменения
    /// (не чаще раза в секунду) и каждые 30 секунд, потому что сроки истекают и без событий.
    async fn overdue_counters(
        &self,
        ctx: &Context<'_>,
        group_by: Option<Vec<DimensionGql>>,
        time_zone: Option<String>,
        #[graphql(desc = "Начать после того, как проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<impl Stream<Item = Vec<OverdueRowGql>>> {
        access::require_statistics(ctx, "overdueCounters")?;
        let state = ctx.data::<ApiState>()?.clone();
        wait_for_position(&state, after_position, wait_timeout_ms).await?;
        let group_by = group_by.unwrap_or_default();
        let time_zone = super::query::parse_time_zone(time_zone.as_deref())?;

        let changes = tokio_stream::wrappers::WatchStream::new(state.read_model.watch_checkpoint()).map(|_| ());
        let ticks = IntervalStream::new(tokio::time::interval(OVERDUE_REFRESH)).map(|_| ());
        let triggers = futures::stream::select(changes, ticks);
        let throttled = tokio_stream::StreamExt::throttle(triggers, Duration::from_secs(1));
        let stream = throttled.then(move |_| {
            let state = state.clone();
            let group_by = group_by.clone();
            async move { compute_overdue(&state, &group_by, Utc::now(), time_zone).await }
        });
        Ok(stream)
    }
}

async fn matches_filter(
    state: &ApiState,
    filter: &TicketEventFilter,
    applied: &opencity_projections::runner::AppliedEvent,
) -> bool {
    if let Some(ticket_id) = &filter.ticket_id {
        if ticket_id.trim() != applied.ticket_id.to_string() {
            return false;
        }
    }
    if let Some(types) = &filter.event_types {
        if !types.iter().any(|event_type| event_type == &applied.event.event_type) {
            return false;
        }
    }
    if filter.organization_id.is_none() && filter.category.is_none() {
        return true;
    }
    let Some(view) = state.read_model.view(applied.ticket_id).await else {
        return false;
    };
    if let Some(organization_id) = &filter.organization_id {
        if view.organization_id.as_deref() != Some(organization_id.as_str()) {
            return false;
        }
    }
    if let Some(category) = &filter.category {
        if &view.category != category {
            return false;
        }
    }
    true
}

