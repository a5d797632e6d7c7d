//! Subscriptions over WebSocket (`graphql-transport-ws`): ticket events as the projections apply
//! them, and overdue counters recomputed after each change.

use std::time::Duration;

use async_graphql::{Context, InputObject, Result, Subscription};
use chrono::Utc;
use futures::{Stream, StreamExt};
use opencity_projections::runner::AppliedEvent;
use opencity_store::{personal, Store};
use tokio_stream::wrappers::IntervalStream;
use uuid::Uuid;

use super::consistency::wait_for_position;
use super::query::{compute_overdue, DimensionGql};
use super::types::{EventRecord, OverdueRowGql};
use super::ApiState;
use crate::access;
use crate::auth::Principal;
use crate::errors::ApiError;

/// Events a subscription delivers at most in one batch: each batch costs one key lookup and one
/// write of the read record.
const DELIVERY_BATCH: usize = 256;

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
        let batches = futures::stream::unfold(follower, |mut follower| async move {
            follower.next_batch(DELIVERY_BATCH).await.map(|batch| (batch, follower))
        });
        let stream = batches
            .then(move |batch| {
                let state = state.clone();
                let filter = filter.clone();
                let principal = principal.clone();
                async move { deliver(&state, &filter, principal.as_ref(), batch).await }
            })
            .flat_map(futures::stream::iter);
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

/// Turns a batch of applied events into what one subscriber receives: the events that pass the
/// filter and the subscriber's scope, with personal data opened, or hidden from analysts. The
/// personal data of a batch is opened with one key lookup and its read recorded in one write, so
/// a subscriber that falls behind a write-heavy load waits for the database once per batch, not
/// once per event. A batch whose personal data cannot be opened, or whose read cannot be
/// recorded, is not delivered.
async fn deliver(
    state: &ApiState,
    filter: &TicketEventFilter,
    principal: Option<&Principal>,
    batch: Vec<AppliedEvent>,
) -> Vec<EventRecord> {
    let mut selected = Vec::with_capacity(batch.len());
    for applied in batch {
        if !matches_filter(state, filter, &applied).await {
            continue;
        }
        if let Some(principal) = principal {
            // Nothing outside the subscriber's scope is delivered, also when the view is not
            // there to decide.
            let Some(view) = state.read_model.view(applied.ticket_id).await else {
                continue;
            };
            if !access::ticket_in_scope(principal, &view) {
                continue;
            }
        }
        selected.push(applied);
    }

    let field = "Subscription.ticketEvents";
    if !access::sees_personal_data(principal) {
        let mut records = Vec::with_capacity(selected.len());
        for applied in &selected {
            let mut record = [EventRecord::from_stored(&applied.event)];
            if access::disclose(&state.store, principal, applied.ticket_id, field, &mut record).await.is_ok() {
                let [record] = record;
                records.push(record);
            }
        }
        return records;
    }

    if open_batch(&state.store, &selected).await.is_err() {
        return Vec::new();
    }
    let mut records = Vec::with_capacity(selected.len());
    let mut read = Vec::new();
    for applied in &selected {
        let Some((payload, erased)) = applied.opened_payload.get() else {
            continue;
        };
        let mut record = EventRecord::from_stored(&applied.event);
        record.payload.0 = payload.clone();
        record.personal_data_erased = *erased;
        if access::has_personal_data(&record.payload.0) {
            read.push(applied.ticket_id);
        }
        records.push(record);
    }
    if access::record_reads(&state.store, principal, &read, field).await.is_err() {
        return Vec::new();
    }
    records
}

/// Opens the personal data of the events of `batch` that no subscriber of this server has opened
/// yet, with one key lookup. The opened payload is kept with the event, so a thousand
/// subscribers of one event cost one lookup: the first fills the shared cell and the others wait
/// for it.
async fn open_batch(store: &Store, batch: &[AppliedEvent]) -> Result<(), ApiError> {
    let unopened: Vec<&AppliedEvent> = batch.iter().filter(|applied| applied.opened_payload.get().is_none()).collect();
    let Some((first, rest)) = unopened.split_first() else {
        return Ok(());
    };
    let open_all = || async {
        let payloads: Vec<&serde_json::Value> = unopened.iter().map(|applied| applied.event.payload.value()).collect();
        let ticket_ids: Vec<Uuid> = unopened.iter().map(|applied| applied.ticket_id).collect();
        let ring = access::key_ring(store, &ticket_ids, &payloads).await?;
        for applied in rest {
            let _ = applied.opened_payload.set(open_one(&ring, applied));
        }
        Ok::<_, ApiError>(open_one(&ring, first))
    };
    first.opened_payload.get_or_try_init(open_all).await?;
    // Events that another subscriber's batch was opening at the same moment.
    for applied in rest {
        applied
            .opened_payload
            .get_or_try_init(|| async {
                let ring = access::key_ring(store, &[applied.ticket_id], &[&applied.event.payload]).await?;
                Ok::<_, ApiError>(open_one(&ring, applied))
            })
            .await?;
    }
    Ok(())
}

/// Returns the record payload of an event with its personal data opened, and whether any was
/// erased.
fn open_one(ring: &personal::KeyRing, applied: &AppliedEvent) -> (serde_json::Value, bool) {
    let mut payload = super::types::inner_payload(&applied.event.payload);
    let opened = personal::open_value(ring, &applied.event.stream_id, &mut payload);
    (payload, opened.erased > 0)
}

async fn matches_filter(
    state: &ApiState,
    filter: &TicketEventFilter,
    applied: &AppliedEvent,
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

