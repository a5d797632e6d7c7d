//! Queries: tickets, SLA statistics, overdue counters, contractor ratings and reference data.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use opencity_domain::sla::SlaCatalogue;
use opencity_projections::reference::ReferenceIndex;
use opencity_projections::{Dimension, StatsFilter, TicketView};

use super::consistency::wait_for_position;
use super::mutation::parse_named_id;
use super::types::*;
use super::{ApiState, MAX_PAGE_SIZE};
use crate::access;
use crate::errors::ApiError;

/// Измерение группировки статистики.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Dimension")]
pub enum DimensionGql {
    /// Организация (УК, ТСЖ, РСО).
    Organization,
    /// Подрядчик.
    Contractor,
    /// Категория.
    Category,
    /// Приоритет.
    Priority,
    /// Район.
    District,
    /// Дом.
    Building,
    /// Канал подачи.
    Channel,
    /// День регистрации.
    Day,
    /// Неделя регистрации (ISO).
    Week,
    /// Месяц регистрации.
    Month,
}

impl From<DimensionGql> for Dimension {
    fn from(dimension: DimensionGql) -> Dimension {
        match dimension {
            DimensionGql::Organization => Dimension::Organization,
            DimensionGql::Contractor => Dimension::Contractor,
            DimensionGql::Category => Dimension::Category,
            DimensionGql::Priority => Dimension::Priority,
            DimensionGql::District => Dimension::District,
            DimensionGql::Building => Dimension::Building,
            DimensionGql::Channel => Dimension::Channel,
            DimensionGql::Day => Dimension::Day,
            DimensionGql::Week => Dimension::Week,
            DimensionGql::Month => Dimension::Month,
        }
    }
}

/// Отбор заявок для статистики и списков; пустые поля не ограничивают.
#[derive(InputObject, Default, Clone)]
pub struct TicketFilterInput {
    /// Организация.
    pub organization_id: Option<String>,
    /// Подрядчик.
    pub contractor_id: Option<String>,
    /// Код категории.
    pub category: Option<String>,
    /// Приоритет: emergency, routine, appeal.
    pub priority: Option<String>,
    /// Район.
    pub district: Option<String>,
    /// Дом.
    pub building_id: Option<String>,
    /// Статус (для списка заявок).
    pub status: Option<String>,
    /// Зарегистрированы не раньше (включительно).
    pub registered_from: Option<DateTime<Utc>>,
    /// Зарегистрированы раньше (не включительно).
    pub registered_to: Option<DateTime<Utc>>,
}

impl TicketFilterInput {
    fn to_stats_filter(&self) -> Result<StatsFilter, ApiError> {
        let priority = match &self.priority {
            Some(name) => Some(opencity_domain::values::Priority::parse(name).ok_or_else(|| {
                ApiError::new(
                    "INVALID_PRIORITY",
                    format!("Поле «filter.priority»: неизвестный приоритет «{name}». Допустимо: emergency, routine, appeal."),
                )
            })?),
            None => None,
        };
        Ok(StatsFilter {
            organization_id: self.organization_id.clone(),
            contractor_id: self.contractor_id.clone(),
            category: self.category.clone(),
            priority,
            district: self.district.clone(),
            building_id: self.building_id.clone(),
            channel: None,
            registered_from: self.registered_from,
            registered_to: self.registered_to,
        })
    }
}

/// Страница списка заявок.
#[derive(SimpleObject)]
pub struct TicketConnection {
    /// Заявки страницы с курсорами.
    pub edges: Vec<TicketEdge>,
    /// Сведения о странице.
    pub page_info: PageInfo,
    /// Всего заявок под отбором.
    pub total_count: i64,
}

/// Заявка и её курсор.
#[derive(SimpleObject)]
pub struct TicketEdge {
    /// Курсор для параметра `after`.
    pub cursor: String,
    /// Заявка.
    pub node: TicketGql,
}

/// Сведения о странице.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Есть ли следующая страница.
    pub has_next_page: bool,
    /// Курсор последней заявки страницы.
    pub end_cursor: Option<String>,
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// Заявка по идентификатору или по номеру во внешней системе (укажите одно из двух).
    async fn ticket(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        external_id: Option<String>,
        #[graphql(desc = "Ждать, пока проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<TicketGql> {
        let state = ctx.data::<ApiState>()?;
        wait_for_position(state, after_position, wait_timeout_ms).await?;
        let ticket_id = match (&id, &external_id) {
            (Some(id), _) => parse_named_id("id", id)?,
            (None, Some(external)) => state
                .read_model
                .id_for_external(external)
                .await
                .ok_or_else(|| ApiError::ticket_not_found(external))?,
            (None, None) => {
                return Err(ApiError::new(
                    "MISSING_ARGUMENT",
                    "Укажите аргумент id или externalId заявки.",
                )
                .into())
            }
        };
        let view = state.read_model.view(ticket_id).await.filter(|view| access::visible(ctx, view));
        view.map(TicketGql).ok_or_else(|| ApiError::ticket_not_found(&ticket_id.to_string()).into())
    }

    /// Список заявок, новые первыми, с постраничным курсором.
    async fn tickets(
        &self,
        ctx: &Context<'_>,
        filter: Option<TicketFilterInput>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        #[graphql(desc = "Ждать, пока проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<TicketConnection> {
        let state = ctx.data::<ApiState>()?;
        wait_for_position(state, after_position, wait_timeout_ms).await?;
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::new(
                "INVALID_PAGE_SIZE",
                format!("Аргумент «first» = {first}: укажите число от 1 до {MAX_PAGE_SIZE}."),
            )
            .into());
        }
        let filter = filter.unwrap_or_default();
        let stats_filter = filter.to_stats_filter()?;
        let after = after.as_deref().map(decode_cursor).transpose()?;

        let views = state.read_model.views().await;
        let mut matching: Vec<&TicketView> = views
            .values()
            .filter(|view| access::visible(ctx, view))
            .filter(|view| stats_filter.matches_current(view))
            .filter(|view| filter.status.as_deref().is_none_or(|status| view.status.as_str() == status))
            .collect();
        matching.sort_by(|a, b| b.registered_at.cmp(&a.registered_at).then(b.id.cmp(&a.id)));
        let total_count = matching.len() as i64;

        let start = match &after {
            Some((registered_at, id)) => matching
                .iter()
                .position(|view| (view.registered_at, view.id) < (*registered_at, *id))
                .unwrap_or(matching.len()),
            None => 0,
        };
        let page: Vec<&TicketView> = matching.iter().skip(start).take(first as usize).copied().collect();
        let has_next_page = start + page.len() < matching.len();
        let edges: Vec<TicketEdge> = page
            .into_iter()
            .map(|view| TicketEdge { cursor: encode_cursor(view), node: TicketGql(view.clone()) })
            .collect();
        let end_cursor = edges.last().map(|edge| edge.cursor.clone());
        Ok(TicketConnection { edges, page_info: PageInfo { has_next_page, end_cursor }, total_count })
    }

    /// Статистика SLA с группировкой по измерениям. Периоды (day, week, month) считаются в
    /// часовом поясе `timeZone` (по умолчанию Europe/Moscow).
    async fn sla_stats(
        &self,
        ctx: &Context<'_>,
        group_by: Vec<DimensionGql>,
        filter: Option<TicketFilterInput>,
        time_zone: Option<String>,
        #[graphql(desc = "Ждать, пока проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<Vec<SlaStatsRowGql>> {
        access::require_statistics(ctx, "slaStats")?;
        let state = ctx.data::<ApiState>()?;
        wait_for_position(state, after_position, wait_timeout_ms).await?;
        let time_zone = parse_time_zone(time_zone.as_deref())?;
        let filter = filter.unwrap_or_default().to_stats_filter()?;
        let dimensions: Vec<Dimension> = group_by.into_iter().map(Into::into).collect();
        // The index guard is released before the reference lock is taken.
        let rows = state.read_model.stats().await.sla_stats(&dimensions, &filter, time_zone);
        let reference = state.read_model.reference().await;
        Ok(rows.into_iter().map(|row| sla_row(row, &reference, &state.services.sla)).collect())
    }

    /// Счётчики просроченных заявок на момент `asOf` (по умолчанию — сейчас).
    async fn overdue_counters(
        &self,
        ctx: &Context<'_>,
        group_by: Option<Vec<DimensionGql>>,
        as_of: Option<DateTime<Utc>>,
        time_zone: Option<String>,
        #[graphql(desc = "Ждать, пока проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<Vec<OverdueRowGql>> {
        access::require_statistics(ctx, "overdueCounters")?;
        let state = ctx.data::<ApiState>()?;
        wait_for_position(state, after_position, wait_timeout_ms).await?;
        let time_zone = parse_time_zone(time_zone.as_deref())?;
        let group_by = group_by.unwrap_or_default();
        Ok(compute_overdue(state, &group_by, as_of.unwrap_or_else(Utc::now), time_zone).await)
    }

    /// Рейтинги подрядчиков.
    async fn contractor_ratings(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Ждать, пока проекции учтут эту позицию журнала (поле position ответа мутации).")]
        after_position: Option<i64>,
        #[graphql(desc = "Сколько ждать afterPosition, мс: по умолчанию 5000, не больше 30000.")]
        wait_timeout_ms: Option<i32>,
    ) -> Result<Vec<ContractorRatingGql>> {
        access::require_statistics(ctx, "contractorRatings")?;
        let state = ctx.data::<ApiState>()?;
        wait_for_position(state, after_position, wait_timeout_ms).await?;
        let views = state.read_model.views().await;
        let ratings = opencity_projections::contractor_ratings(views.values());
        Ok(ratings
            .into_iter()
            .map(|rating| ContractorRatingGql {
                contractor_id: rating.contractor_id,
                name: rating.name,
                tickets: rating.tickets as i64,
                on_time_share: rating.on_time_share,
                first_time_fix_share: rating.first_time_fix_share,
                confirmation_share: rating.confirmation_share,
                mean_rating: rating.mean_rating,
                score: rating.score,
                unreliable: rating.unreliable,
                reasons: rating.reasons,
            })
            .collect())
    }

    /// Справочник категорий SLA.
    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<CategoryGql>> {
        let state = ctx.data::<ApiState>()?;
        Ok(state
            .services
            .sla
            .categories()
            .map(|rule| CategoryGql {
                code: rule.code.clone(),
                name: rule.name.clone(),
                priority: rule.priority.as_str().to_string(),
                basis: rule.basis.clone(),
            })
            .collect())
    }

    /// Дома, упомянутые в заявках.
    async fn buildings(&self, ctx: &Context<'_>) -> Result<Vec<BuildingGql>> {
        let state = ctx.data::<ApiState>()?;
        let reference = state.read_model.reference().await;
        Ok(reference
            .buildings
            .values()
            .map(|b| BuildingGql {
                id: b.id.clone(),
                address: b.address.clone(),
                district: b.district.clone(),
                time_zone: b.time_zone.clone(),
                region: b.region.clone(),
            })
            .collect())
    }

    /// Организации, которым направлялись заявки.
    async fn organizations(&self, ctx: &Context<'_>) -> Result<Vec<OrganizationGql>> {
        let state = ctx.data::<ApiState>()?;
        let reference = state.read_model.reference().await;
        Ok(reference
            .organizations
            .values()
            .map(|o| OrganizationGql { id: o.id.clone(), name: o.name.clone(), kind: o.kind.as_str().to_string() })
            .collect())
    }

    /// Подрядчики, назначавшиеся на заявки.
    async fn contractors(&self, ctx: &Context<'_>) -> Result<Vec<ContractorGql>> {
        let state = ctx.data::<ApiState>()?;
        let reference = state.read_model.reference().await;
        Ok(reference.contractors.values().map(|c| ContractorGql { id: c.id.clone(), name: c.name.clone() }).collect())
    }

    /// Позиция журнала, до которой проекции учли события.
    async fn projected_position(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(ctx.data::<ApiState>()?.read_model.checkpoint().position)
    }

    /// Кто и когда читал персональные данные жителей (заявителя, описания, комментарии), новые
    /// первыми. Чтения самим жителем и аналитиком (ему данные скрыты) не записываются. Только для
    /// аудиторов и администраторов.
    async fn personal_data_reads(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Только чтения этой заявки.")] ticket_id: Option<ID>,
        #[graphql(default = 100, desc = "Сколько записей вернуть: от 1 до 1000.")] first: i32,
    ) -> Result<Vec<PersonalDataReadGql>> {
        access::require_audit(ctx, "personalDataReads")?;
        let state = ctx.data::<ApiState>()?;
        let max = opencity_store::audit::MAX_READS_PER_PAGE as i32;
        if !(1..=max).contains(&first) {
            return Err(ApiError::new("INVALID_PAGE_SIZE", format!("Аргумент «first» = {first}: укажите число от 1 до {max}.")).into());
        }
        let ticket_id = match &ticket_id {
            Some(id) => Some(super::mutation::parse_named_id("ticketId", id)?),
            None => None,
        };
        let reads = state.store.personal_data_reads(ticket_id, first as usize).await.map_err(|error| {
            tracing::error!(%error, "reading the personal data reads failed");
            ApiError::internal()
        })?;
        Ok(reads
            .into_iter()
            .map(|read| PersonalDataReadGql {
                read_at: read.read_at,
                token_id: ID(read.token_id.to_string()),
                role: read.role.as_str().to_string(),
                subject: read.subject,
                ticket_id: ID(read.ticket_id.to_string()),
                field: read.field,
            })
            .collect())
    }
}

/// Чтение персональных данных жителя.
#[derive(async_graphql::SimpleObject)]
pub struct PersonalDataReadGql {
    /// Когда прочитаны данные.
    pub read_at: DateTime<Utc>,
    /// Идентификатор токена читавшего (из opencity tokens list).
    pub token_id: ID,
    /// Роль токена: dispatcher, organization, contractor, auditor, admin.
    pub role: String,
    /// Субъект токена: организация, подрядчик, район, имя.
    pub subject: String,
    /// Заявка, данные которой прочитаны.
    pub ticket_id: ID,
    /// Поле, через которое прочитаны данные: Ticket.events или Subscription.ticketEvents.
    pub field: String,
}

/// Computes overdue counters from the statistics index of the read model.
pub async fn compute_overdue(state: &ApiState, group_by: &[DimensionGql], as_of: DateTime<Utc>, time_zone: Tz) -> Vec<OverdueRowGql> {
    let dimensions: Vec<Dimension> = group_by.iter().copied().map(Into::into).collect();
    let rows = state.read_model.stats().await.overdue_counters(&dimensions, &StatsFilter::default(), as_of, time_zone);
    let reference = state.read_model.reference().await;
    rows.into_iter()
        .map(|row| OverdueRowGql {
            group: group_keys(&row.key, &reference, &state.services.sla),
            open: row.open as i64,
            overdue: row.overdue as i64,
            overdue_response: row.overdue_response as i64,
            overdue_resolution: row.overdue_resolution as i64,
        })
        .collect()
}

pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, ApiError> {
    let Some(name) = name else {
        return Ok(opencity_projections::DEFAULT_TIME_ZONE);
    };
    name.parse::<Tz>().map_err(|_| {
        ApiError::new(
            "UNKNOWN_TIME_ZONE",
            format!("Аргумент «timeZone»: неизвестный часовой пояс «{name}». Укажите имя из базы IANA, например Europe/Moscow."),
        )
    })
}

/// Turns a row's group key into GraphQL values with Russian labels: names of organizations and
/// contractors, addresses, category names.
fn group_keys(key: &opencity_projections::GroupKey, reference: &ReferenceIndex, catalogue: &SlaCatalogue) -> Vec<GroupKeyGql> {
    key.iter()
        .map(|(dimension, value)| GroupKeyGql {
            dimension: dimension.as_str().to_string(),
            label: group_label(*dimension, value.as_deref(), reference, catalogue),
            value: value.clone(),
        })
        .collect()
}

fn group_label(dimension: Dimension, value: Option<&str>, reference: &ReferenceIndex, catalogue: &SlaCatalogue) -> String {
    let Some(value) = value else {
        return match dimension {
            Dimension::Organization => "организация не назначена",
            Dimension::Contractor => "подрядчик не назначен",
            Dimension::District => "район не указан",
            _ => "не указано",
        }
        .to_string();
    };
    let label = match dimension {
        Dimension::Organization => reference.organizations.get(value).map(|o| o.name.clone()),
        Dimension::Contractor => reference.contractors.get(value).map(|c| c.name.clone()),
        Dimension::Building => reference.buildings.get(value).map(|b| b.address.clone()),
        Dimension::Category => catalogue.category(value).map(|rule| rule.name.clone()),
        Dimension::Priority => Some(
            match value {
                "emergency" => "аварийная",
                "routine" => "плановая",
                "appeal" => "письменное обращение",
                other => other,
            }
            .to_string(),
        ),
        Dimension::Channel => Some(channel_name_ru(value).to_string()),
        Dimension::District | Dimension::Day | Dimension::Week | Dimension::Month => None,
    };
    label.unwrap_or_else(|| value.to_string())
}

fn channel_name_ru(channel: &str) -> &str {
    match channel {
        "call_center" => "единый call-центр",
        "web" => "сайт",
        "mobile" => "мобильное приложение",
        "portal" => "городской портал",
        "open311" => "Open311",
        "gis_zhkh" => "ГИС ЖКХ",
        "walk_in" => "личный визит",
        other => other,
    }
}

fn sla_row(row: opencity_projections::SlaStatsRow, reference: &ReferenceIndex, catalogue: &SlaCatalogue) -> SlaStatsRowGql {
    SlaStatsRowGql {
        group: group_keys(&row.key, reference, catalogue),
        received: row.received as i64,
        resolved: row.resolved as i64,
        resolved_on_time: row.resolved_on_time as i64,
        on_time_share: row.on_time_share,
        accept_median_seconds: row.accept_median_seconds,
        accept_p90_seconds: row.accept_p90_seconds,
        resolve_median_seconds: row.resolve_median_seconds,
        resolve_p90_seconds: row.resolve_p90_seconds,
        reopened: row.reopened as i64,
        reopened_share: row.reopened_share,
        confirmed: row.confirmed as i64,
        confirmed_share: row.confirmed_share,
        rating_mean: row.rating_mean,
        rating_count: row.rating_count as i64,
        cancelled: row.cancelled as i64,
        flagged: row.flagged as i64,
    }
}

fn encode_cursor(view: &TicketView) -> String {
    format!("{}_{}", view.registered_at.timestamp_micros(), view.id)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, uuid::Uuid), ApiError> {
    let invalid = || {
        ApiError::new(
            "INVALID_CURSOR",
            format!("Аргумент «after»: курсор «{cursor}» не распознан. Передайте endCursor из предыдущей страницы."),
        )
    };
    let (micros, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let registered_at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((registered_at, id))
}
