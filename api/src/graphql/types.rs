//! Output objects of the GraphQL schema, wrapping the read models.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use opencity_projections::TicketView;
use opencity_store::StoredEvent;

use super::ApiState;
use crate::errors::{status_name_ru, ApiError};

/// Заявка жителя (read model).
pub struct TicketGql(pub TicketView);

#[Object(name = "Ticket")]
impl TicketGql {
    /// Идентификатор заявки (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Номер заявки во внешней системе (для импортированных — номер исходной записи).
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    /// Статус: new, routed, accepted, assigned, in_progress, suspended, completion_reported,
    /// confirmed, reopened, closed, cancelled.
    async fn status(&self) -> &'static str {
        self.0.status.as_str()
    }
    /// Статус по-русски.
    async fn status_name(&self) -> &'static str {
        status_name_ru(self.0.status.as_str())
    }
    /// Код категории.
    async fn category(&self) -> &str {
        &self.0.category
    }
    /// Название категории по справочнику.
    async fn category_name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let state = ctx.data::<ApiState>()?;
        Ok(state.services.sla.category(&self.0.category).map(|rule| rule.name.clone()))
    }
    /// Приоритет: emergency (аварийная), routine (плановая), appeal (письменное обращение).
    async fn priority(&self) -> &'static str {
        self.0.priority.as_str()
    }
    /// Канал подачи.
    async fn channel(&self) -> &'static str {
        self.0.channel.as_str()
    }
    /// Идентификатор дома.
    async fn building_id(&self) -> &str {
        &self.0.building_id
    }
    /// Адрес.
    async fn address(&self) -> &str {
        &self.0.address
    }
    /// Район.
    async fn district(&self) -> Option<&str> {
        self.0.district.as_deref()
    }
    /// Организация-исполнитель.
    async fn organization_id(&self) -> Option<&str> {
        self.0.organization_id.as_deref()
    }
    /// Название организации.
    async fn organization_name(&self) -> Option<&str> {
        self.0.organization_name.as_deref()
    }
    /// Подрядчик.
    async fn contractor_id(&self) -> Option<&str> {
        self.0.contractor_id.as_deref()
    }
    /// Название подрядчика.
    async fn contractor_name(&self) -> Option<&str> {
        self.0.contractor_name.as_deref()
    }
    /// Время регистрации (UTC).
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }
    /// Время принятия в работу.
    async fn accepted_at(&self) -> Option<DateTime<Utc>> {
        self.0.accepted_at
    }
    /// Срок реагирования (для аварийных — локализации), если установлен.
    async fn response_deadline(&self) -> Option<DateTime<Utc>> {
        self.0.response_deadline
    }
    /// Действующий срок устранения.
    async fn resolution_deadline(&self) -> DateTime<Utc> {
        self.0.resolution_deadline
    }
    /// Основание срока (нормативный акт или источник данных).
    async fn deadline_basis(&self) -> &str {
        &self.0.deadline_basis
    }
    /// Время выполнения работ; пусто, пока заявка не выполнена.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Выполнена ли заявка в срок; null, пока заявка открыта или если она отменена.
    async fn resolution_on_time(&self) -> Option<bool> {
        self.0.resolution_on_time()
    }
    /// Время последнего события заявки (деловое время), то есть последнего обновления.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.last_event_at
    }
    /// Время закрытия.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }
    /// Сколько раз житель отклонял выполнение.
    async fn reopen_count(&self) -> i32 {
        self.0.reopen_count as i32
    }
    /// Подтвердил ли житель выполнение; null, если ответа не было.
    async fn confirmed(&self) -> Option<bool> {
        self.0.confirmed
    }
    /// Оценка жителя, 1–5.
    async fn rating(&self) -> Option<i32> {
        self.0.rating.map(i32::from)
    }
    /// Уровень эскалации.
    async fn escalation_level(&self) -> i32 {
        self.0.escalation_level as i32
    }
    /// Отметки о качестве данных, например closed_before_created (закрыта раньше, чем создана).
    async fn flags(&self) -> &[String] {
        &self.0.flagged
    }
    /// Просрочена ли заявка сейчас.
    async fn overdue(&self) -> bool {
        self.0.is_overdue_at(Utc::now())
    }
    /// Позиция последнего учтённого события заявки в журнале.
    async fn last_position(&self) -> i64 {
        self.0.last_position
    }
    /// История событий заявки из журнала, по порядку.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<EventRecord>> {
        let state = ctx.data::<ApiState>()?;
        let events = state
            .store
            .load_stream(opencity_domain::ticket::TICKET_STREAM_TYPE, &self.0.id.to_string())
            .await
            .map_err(|error| {
                tracing::error!(error.cause_chain = ?error, "loading a ticket stream failed");
                ApiError::internal()
            })?;
        let mut records: Vec<EventRecord> = events.iter().map(EventRecord::from_stored).collect();
        let principal = crate::access::principal(ctx);
        crate::access::disclose(&state.store, principal, self.0.id, "Ticket.events", &mut records).await?;
        Ok(records)
    }
}

/// Событие журнала.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct EventRecord {
    /// Глобальная позиция в журнале.
    pub position: i64,
    /// Идентификатор заявки (потока).
    pub ticket_id: ID,
    /// Номер события в потоке заявки.
    pub sequence: i64,
    /// Тип события, например TicketRegistered.
    pub event_type: String,
    /// Версия схемы события.
    pub event_version: String,
    /// Когда это произошло (деловое время).
    pub occurred_at: DateTime<Utc>,
    /// Когда событие записано в журнал.
    pub recorded_at: DateTime<Utc>,
    /// Содержимое события (JSON).
    pub payload: async_graphql::Json<serde_json::Value>,
    /// Метаданные: кто, по какому каналу, ключ идемпотентности (JSON).
    pub metadata: async_graphql::Json<serde_json::Value>,
    /// Персональные данные события удалены по требованию жителя: вместо них в содержимом стоит
    /// отметка «[удалено по требованию жителя]».
    pub personal_data_erased: bool,
}

#[ComplexObject]
impl EventRecord {
    /// Краткое описание события по-русски.
    async fn summary(&self) -> String {
        event_summary_ru(&self.event_type).to_string()
    }
}

impl EventRecord {
    pub fn from_stored(event: &StoredEvent) -> EventRecord {
        EventRecord {
            position: event.position,
            ticket_id: ID(event.stream_id.clone()),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
            payload: async_graphql::Json(inner_payload(&event.payload)),
            metadata: async_graphql::Json(event.metadata.value().clone()),
            personal_data_erased: false,
        }
    }
}

/// Strips the enum tag cqrs-es puts around the payload (`{"TicketRegistered": {...}}`).
pub(crate) fn inner_payload(payload: &serde_json::Value) -> serde_json::Value {
    match payload.as_object() {
        Some(object) if object.len() == 1 => object.values().next().cloned().unwrap_or_default(),
        _ => payload.clone(),
    }
}

fn event_summary_ru(event_type: &str) -> &'static str {
    match event_type {
        "TicketRegistered" => "Заявка зарегистрирована",
        "TicketClassified" => "Изменена категория",
        "TicketRouted" => "Направлена организации",
        "TicketAccepted" => "Принята в работу",
        "ContractorAssigned" => "Назначен подрядчик",
        "WorkStarted" => "Начаты работы",
        "WorkSuspended" => "Работы приостановлены",
        "WorkResumed" => "Работы возобновлены",
        "CompletionReported" => "Исполнитель сообщил о выполнении",
        "CompletionConfirmed" => "Житель подтвердил выполнение",
        "CompletionRejected" => "Житель отклонил выполнение",
        "TicketRated" => "Житель оценил работу",
        "TicketCommented" => "Комментарий",
        "TicketEscalated" => "Эскалация",
        "TicketCancelled" => "Заявка отменена",
        "TicketClosed" => "Заявка закрыта",
        "DeadlinePassed" => "Истёк срок",
        "DataAnomalyFlagged" => "Отмечена аномалия данных",
        _ => "Событие",
    }
}

/// Значение одного измерения группировки.
#[derive(SimpleObject, Clone)]
#[graphql(name = "GroupKey")]
pub struct GroupKeyGql {
    /// Измерение: organization, contractor, category, priority, district, building, channel, day, week, month.
    pub dimension: String,
    /// Значение измерения: идентификатор, код или период (2026-03-01, 2026-W09, 2026-03); пусто — «не указано».
    pub value: Option<String>,
    /// Значение для человека: название организации, адрес дома, название категории.
    pub label: String,
}

/// Строка статистики SLA.
#[derive(SimpleObject, Clone)]
#[graphql(name = "SlaStatsRow")]
pub struct SlaStatsRowGql {
    /// Значения измерений группировки этой строки.
    pub group: Vec<GroupKeyGql>,
    /// Поступило заявок.
    pub received: i64,
    /// Выполнено.
    pub resolved: i64,
    /// Выполнено в срок.
    pub resolved_on_time: i64,
    /// Доля выполненных в срок среди выполненных, 0–1.
    pub on_time_share: Option<f64>,
    /// Медиана времени до принятия в работу, секунды.
    pub accept_median_seconds: Option<f64>,
    /// 90-й перцентиль времени до принятия, секунды.
    pub accept_p90_seconds: Option<f64>,
    /// Медиана времени до выполнения, секунды.
    pub resolve_median_seconds: Option<f64>,
    /// 90-й перцентиль времени до выполнения, секунды.
    pub resolve_p90_seconds: Option<f64>,
    /// Заявок, возвращённых жителем на доработку.
    pub reopened: i64,
    /// Доля возвращённых, 0–1.
    pub reopened_share: Option<f64>,
    /// Подтверждено жителями.
    pub confirmed: i64,
    /// Доля подтверждённых жителями, 0–1.
    pub confirmed_share: Option<f64>,
    /// Средняя оценка жителей.
    pub rating_mean: Option<f64>,
    /// Число оценок.
    pub rating_count: i64,
    /// Отменено.
    pub cancelled: i64,
    /// Заявок с аномалиями данных.
    pub flagged: i64,
}

/// Строка счётчиков просрочки.
#[derive(SimpleObject, Clone, PartialEq)]
#[graphql(name = "OverdueRow")]
pub struct OverdueRowGql {
    /// Значения измерений группировки.
    pub group: Vec<GroupKeyGql>,
    /// Открытых заявок на момент.
    pub open: i64,
    /// Просроченных (по любому сроку).
    pub overdue: i64,
    /// Просрочен срок реагирования.
    pub overdue_response: i64,
    /// Просрочен срок устранения.
    pub overdue_resolution: i64,
}

impl PartialEq for GroupKeyGql {
    fn eq(&self, other: &Self) -> bool {
        self.dimension == other.dimension && self.value == other.value && self.label == other.label
    }
}

/// Рейтинг подрядчика (формула — в docs/ratings.md).
#[derive(SimpleObject, Clone)]
#[graphql(name = "ContractorRating")]
pub struct ContractorRatingGql {
    /// Идентификатор подрядчика.
    pub contractor_id: String,
    /// Название.
    pub name: String,
    /// Заявок в расчёте.
    pub tickets: i64,
    /// Доля выполненных в срок.
    pub on_time_share: Option<f64>,
    /// Доля выполненных с первого раза (без возврата).
    pub first_time_fix_share: Option<f64>,
    /// Доля подтверждённых жителями.
    pub confirmation_share: Option<f64>,
    /// Средняя оценка жителей.
    pub mean_rating: Option<f64>,
    /// Итоговый балл, 0–100, со сглаживанием для малых объёмов.
    pub score: f64,
    /// Ненадёжный подрядчик.
    pub unreliable: bool,
    /// Причины отметки «ненадёжный».
    pub reasons: Vec<String>,
}

/// Категория справочника SLA.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Category")]
pub struct CategoryGql {
    /// Код категории.
    pub code: String,
    /// Название.
    pub name: String,
    /// Приоритет.
    pub priority: String,
    /// Нормативное основание.
    pub basis: String,
}

/// Дом (МКД).
#[derive(SimpleObject, Clone)]
#[graphql(name = "Building")]
pub struct BuildingGql {
    /// Идентификатор дома.
    pub id: String,
    /// Адрес.
    pub address: String,
    /// Район.
    pub district: Option<String>,
    /// Часовой пояс IANA.
    pub time_zone: String,
    /// Код региона ISO 3166-2 для региональных выходных.
    pub region: Option<String>,
}

/// Организация (УК, ТСЖ, РСО).
#[derive(SimpleObject, Clone)]
#[graphql(name = "Organization")]
pub struct OrganizationGql {
    /// Идентификатор организации.
    pub id: String,
    /// Название.
    pub name: String,
    /// Вид: management_company (УК), hoa (ТСЖ), housing_coop (ЖСК), resource_supplier (РСО), municipal.
    pub kind: String,
}

/// Подрядчик.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Contractor")]
pub struct ContractorGql {
    /// Идентификатор подрядчика.
    pub id: String,
    /// Название.
    pub name: String,
}
