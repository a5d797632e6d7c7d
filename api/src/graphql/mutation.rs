//! Mutations: one per ticket command. Each returns the ticket id and the global position of the
//! ticket's last event.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::Utc;
use opencity_domain::ticket::*;
use opencity_domain::values::{
    ticket_id_for_key, BuildingRef, ContractorRef, OrganizationKind, OrganizationRef, Rating,
    Requester,
};
use opencity_store::CommandMetadata;
use uuid::Uuid;

use super::inputs::*;
use super::ApiState;
use crate::errors::{command_error, ApiError};

/// Результат команды над заявкой.
#[derive(SimpleObject)]
pub struct CommandResult {
    /// Идентификатор заявки.
    pub ticket_id: ID,
    /// Глобальная позиция последнего события заявки в журнале.
    pub position: i64,
    /// Сколько событий добавлено этой командой.
    pub appended: i32,
    /// true, если команда с этим ключом идемпотентности уже была выполнена и ничего не добавлено.
    pub replayed: bool,
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Зарегистрировать заявку. Сроки рассчитываются по справочнику SLA в момент регистрации.
    async fn register_ticket(&self, ctx: &Context<'_>, input: RegisterTicketInput) -> Result<CommandResult> {
        let state = ctx.data::<ApiState>()?;
        let ticket_id = match input.idempotency_key.as_deref().or(input.external_id.as_deref()) {
            Some(key) => ticket_id_for_key(key),
            None => Uuid::new_v4(),
        };
        let building = resolve_building(state, input.building).await?;
        let command = TicketCommand::Register(RegisterTicket {
            ticket_id,
            external_id: input.external_id,
            channel: input.channel.into(),
            requester: Requester {
                name: input.requester.name,
                phone: input.requester.phone,
                email: input.requester.email,
                resident_id: input.requester.resident_id,
            },
            building,
            premises: input.premises,
            category: input.category,
            description: input.description,
            resolution_deadline_override: None,
            at: Utc::now(),
        });
        run(ctx, ticket_id, command, input.idempotency_key).await
    }

    /// Сменить категорию заявки; сроки пересчитываются от времени регистрации.
    async fn classify_ticket(&self, ctx: &Context<'_>, id: ID, category: String, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::Classify(ClassifyTicket { category, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Направить заявку организации (УК, ТСЖ, РСО).
    async fn route_ticket(&self, ctx: &Context<'_>, id: ID, organization: OrganizationInput, idempotency_key: Option<String>) -> Result<CommandResult> {
        let state = ctx.data::<ApiState>()?;
        let organization = resolve_organization(state, organization).await?;
        let command = TicketCommand::Route(RouteTicket { organization, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Принять заявку в работу.
    async fn accept_ticket(&self, ctx: &Context<'_>, id: ID, idempotency_key: Option<String>) -> Result<CommandResult> {
        run(ctx, parse_id(&id)?, TicketCommand::Accept(AcceptTicket { at: Utc::now() }), idempotency_key).await
    }

    /// Назначить подрядчика.
    async fn assign_contractor(&self, ctx: &Context<'_>, id: ID, contractor: ContractorInput, idempotency_key: Option<String>) -> Result<CommandResult> {
        let state = ctx.data::<ApiState>()?;
        let contractor = resolve_contractor(state, contractor).await?;
        let command = TicketCommand::AssignContractor(AssignContractor { contractor, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Начать работы.
    async fn start_work(&self, ctx: &Context<'_>, id: ID, idempotency_key: Option<String>) -> Result<CommandResult> {
        run(ctx, parse_id(&id)?, TicketCommand::StartWork(StartWork { at: Utc::now() }), idempotency_key).await
    }

    /// Приостановить работы (например, нет доступа в квартиру); часы SLA останавливаются.
    async fn suspend_work(&self, ctx: &Context<'_>, id: ID, reason: String, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::Suspend(SuspendWork { reason, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Возобновить работы; сроки сдвигаются на время приостановки.
    async fn resume_work(&self, ctx: &Context<'_>, id: ID, idempotency_key: Option<String>) -> Result<CommandResult> {
        run(ctx, parse_id(&id)?, TicketCommand::Resume(ResumeWork { at: Utc::now() }), idempotency_key).await
    }

    /// Отчитаться о выполнении работ.
    async fn report_completion(&self, ctx: &Context<'_>, id: ID, note: Option<String>, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::ReportCompletion(ReportCompletion { note, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Подтвердить выполнение (житель).
    async fn confirm_completion(&self, ctx: &Context<'_>, id: ID, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::ConfirmCompletion(ConfirmCompletion { at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Отклонить выполнение (житель): заявка возвращается на доработку с новым сроком.
    async fn reject_completion(&self, ctx: &Context<'_>, id: ID, reason: String, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::RejectCompletion(RejectCompletion { reason, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Оценить результат по шкале от 1 до 5 (житель).
    async fn rate_ticket(&self, ctx: &Context<'_>, id: ID, rating: i32, idempotency_key: Option<String>) -> Result<CommandResult> {
        let rating = Rating::parse(rating.into()).ok_or_else(|| {
            ApiError::new(
                "INVALID_RATING",
                format!("Поле «rating»: оценка {rating} вне допустимого диапазона. Укажите целое число от 1 до 5."),
            )
        })?;
        run(ctx, parse_id(&id)?, TicketCommand::Rate(RateTicket { rating, at: Utc::now() }), idempotency_key).await
    }

    /// Добавить комментарий.
    async fn comment_ticket(&self, ctx: &Context<'_>, id: ID, author: String, text: String, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::Comment(CommentTicket { author, text, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Эскалировать заявку на следующий уровень.
    async fn escalate_ticket(&self, ctx: &Context<'_>, id: ID, reason: String, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::Escalate(EscalateTicket { reason, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Отменить заявку (дубликат, спам, отзыв заявителем).
    async fn cancel_ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: CancelReasonGql,
        duplicate_of: Option<ID>,
        note: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<CommandResult> {
        let duplicate_of = match duplicate_of {
            Some(duplicate) => Some(parse_named_id("duplicateOf", &duplicate)?),
            None => None,
        };
        let command = TicketCommand::Cancel(CancelTicket { reason: reason.into(), duplicate_of, note, at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }

    /// Закрыть заявку.
    async fn close_ticket(&self, ctx: &Context<'_>, id: ID, reason: CloseReasonGql, idempotency_key: Option<String>) -> Result<CommandResult> {
        let command = TicketCommand::Close(CloseTicket { reason: reason.into(), at: Utc::now() });
        run(ctx, parse_id(&id)?, command, idempotency_key).await
    }
}

fn parse_id(id: &ID) -> Result<Uuid, ApiError> {
    parse_named_id("id", id)
}

pub(crate) fn parse_named_id(field: &str, id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.trim()).map_err(|_| ApiError::invalid_id(field, id))
}

/// Executes one command and maps its outcome or error for the client.
async fn run(
    ctx: &Context<'_>,
    ticket_id: Uuid,
    command: TicketCommand,
    idempotency_key: Option<String>,
) -> Result<CommandResult> {
    let state = ctx.data::<ApiState>()?;
    let command_name = command.name();
    let metadata = CommandMetadata {
        idempotency_key: idempotency_key.filter(|key| !key.trim().is_empty()),
        channel: Some("graphql".to_string()),
        ..CommandMetadata::default()
    };
    let outcome = state
        .store
        .execute(ticket_id, vec![command], &metadata, &state.services)
        .await
        .map_err(|error| {
            tracing::debug!(%ticket_id, command = command_name, error = %error, "command rejected");
            command_error(&error)
        })?;
    tracing::info!(%ticket_id, command = command_name, position = outcome.last_position, replayed = outcome.replayed, "command executed");
    Ok(CommandResult {
        ticket_id: ID(outcome.ticket_id.to_string()),
        position: outcome.last_position,
        appended: if outcome.replayed { 0 } else { outcome.appended as i32 },
        replayed: outcome.replayed,
    })
}

/// Completes a building from one already known to the read model when only its id is given.
async fn resolve_building(state: &ApiState, input: BuildingInput) -> Result<BuildingRef, ApiError> {
    if let (Some(address), Some(time_zone)) = (input.address.clone(), input.time_zone.clone()) {
        if time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(crate::errors::sla_error(&opencity_domain::sla::SlaError::UnknownTimeZone { time_zone }));
        }
        return Ok(BuildingRef { id: input.id, address, district: input.district, time_zone, region: input.region });
    }
    let known = state.read_model.reference().await.building(&input.id);
    known.ok_or_else(|| {
        ApiError::new(
            "UNKNOWN_BUILDING",
            format!(
                "Дом «{}» не найден в справочнике. Укажите для нового дома поля building.address и building.timeZone.",
                input.id
            ),
        )
    })
}

async fn resolve_organization(state: &ApiState, input: OrganizationInput) -> Result<OrganizationRef, ApiError> {
    if let Some(name) = input.name {
        let kind = input.kind.map(Into::into).unwrap_or(OrganizationKind::ManagementCompany);
        return Ok(OrganizationRef { id: input.id, name, kind });
    }
    state.read_model.reference().await.organization(&input.id).ok_or_else(|| {
        ApiError::new(
            "UNKNOWN_ORGANIZATION",
            format!("Организация «{}» не найдена. Для новой организации укажите organization.name.", input.id),
        )
    })
}

async fn resolve_contractor(state: &ApiState, input: ContractorInput) -> Result<ContractorRef, ApiError> {
    if let Some(name) = input.name {
        return Ok(ContractorRef { id: input.id, name });
    }
    state.read_model.reference().await.contractor(&input.id).ok_or_else(|| {
        ApiError::new(
            "UNKNOWN_CONTRACTOR",
            format!("Подрядчик «{}» не найден. Для нового подрядчика укажите contractor.name.", input.id),
        )
    })
}
