//! Mutations: one per ticket command. Each returns the ticket id and the global position of the
//! ticket's last event.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::Utc;
use opencity_domain::ticket::*;
use opencity_domain::values::{
    ticket_id_for_key, BuildingRef, ContractorRef, OrganizationKind, OrganizationRef, Rating,
    Requester,
};
use opencity_domain::access::Role;
use opencity_store::CommandMetadata;
use uuid::Uuid;

use super::inputs::*;
use super::ApiState;
use crate::access;
use crate::errors::{command_error, ApiError};

/// Результат команды над заявкой.
#[derive(SimpleObject)]
pub struct CommandResult {
    /// Идентификатор заявки.
    pub ticket_id: ID,
    /// Глобальная позиция последнего события заявки в журнале.
    pub position: i64,
    /// Сколько событий добавила команда (при повторе с тем же ключом — первая отправка).
    pub appended: i32,
    /// true, если команда с этим ключом идемпотентности уже была выполнена: ничего не добавлено,
    /// остальные поля повторяют первый ответ.
    pub replayed: bool,
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Зарегистрировать заявку. Сроки рассчитываются по справочнику SLA в момент регистрации.
    async fn register_ticket(&self, ctx: &Context<'_>, input: RegisterTicketInput) -> Result<CommandResult> {
        let state = ctx.data::<ApiState>()?;
        let idempotency_key = effective_idempotency_key(ctx, input.idempotency_key)?;
        let ticket_id = match idempotency_key.as_deref().or(input.external_id.as_deref()) {
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
        run(ctx, ticket_id, command, idempotency_key).await
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

/// Maximum length of an idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// The idempotency key of the request's `Idempotency-Key` HTTP header, which the HTTP handler
/// puts into the request data after checking that the request has exactly one mutation.
#[derive(Clone, Debug)]
pub struct HeaderIdempotencyKey(pub String);

/// Returns the key of a mutation: the `idempotencyKey` argument or the `Idempotency-Key`
/// header. Blank keys count as absent; both forms at once must agree.
fn effective_idempotency_key(ctx: &Context<'_>, argument: Option<String>) -> Result<Option<String>, ApiError> {
    let argument = argument.map(|key| key.trim().to_string()).filter(|key| !key.is_empty());
    if let Some(key) = &argument {
        check_idempotency_key("idempotencyKey", key)?;
    }
    let header = ctx.data_opt::<HeaderIdempotencyKey>().map(|header| header.0.clone());
    match (argument, header) {
        (Some(argument), Some(header)) if argument != header => Err(ApiError::new(
            "IDEMPOTENCY_KEY_MISMATCH",
            format!(
                "Ключ идемпотентности в поле «idempotencyKey» («{argument}») не совпадает с заголовком \
                 Idempotency-Key («{header}»). Укажите ключ в одном месте или одинаковый в обоих."
            ),
        )),
        (argument, header) => Ok(argument.or(header)),
    }
}

/// Checks the length of an idempotency key given in `field`.
pub(crate) fn check_idempotency_key(field: &str, key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ApiError::new(
            "IDEMPOTENCY_KEY_INVALID",
            format!(
                "{field}: ключ идемпотентности длиннее {MAX_IDEMPOTENCY_KEY_BYTES} байт. \
                 Используйте короткий ключ, например UUID запроса."
            ),
        ));
    }
    Ok(())
}

/// Executes one command and maps its outcome or error for the client. The result of a
/// replayed command equals the first result apart from `replayed`.
async fn run(
    ctx: &Context<'_>,
    ticket_id: Uuid,
    mut command: TicketCommand,
    idempotency_key: Option<String>,
) -> Result<CommandResult> {
    let state = ctx.data::<ApiState>()?;
    authorize(ctx, state, ticket_id, &mut command).await?;
    let command_name = command.name();
    let idempotency_key = effective_idempotency_key(ctx, idempotency_key)?;
    // The acting subject and role go into every event; a schema executed without the HTTP
    // layer (benchmarks, in-process tools) has no principal.
    let principal = access::principal(ctx);
    let metadata = CommandMetadata {
        idempotency_key,
        channel: Some("graphql".to_string()),
        actor: principal.map(|principal| principal.subject.clone()),
        role: principal.map(|principal| principal.role.as_str().to_string()),
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
        appended: i32::try_from(outcome.appended).unwrap_or(i32::MAX),
        replayed: outcome.replayed,
    })
}

/// Checks that the request's role may run `command` on this ticket. A resident's registration
/// gets the resident's id as the requester's.
async fn authorize(ctx: &Context<'_>, state: &ApiState, ticket_id: Uuid, command: &mut TicketCommand) -> Result<(), ApiError> {
    let Some(principal) = access::principal(ctx) else {
        return Ok(());
    };
    if !access::may_run(principal.role, command) {
        return Err(access::forbidden(principal, ctx.field().name()));
    }
    if principal.role == Role::Admin {
        return Ok(());
    }
    if let TicketCommand::Register(register) = command {
        return match principal.role {
            Role::Resident => match &register.requester.resident_id {
                Some(resident_id) if resident_id != &principal.subject => Err(ApiError::new(
                    access::FORBIDDEN,
                    format!(
                        "Житель подаёт заявку только от своего имени: requester.residentId = «{resident_id}», \
                         а токен выдан жителю «{}». Уберите поле или укажите свой идентификатор.",
                        principal.subject
                    ),
                )),
                _ => {
                    register.requester.resident_id = Some(principal.subject.clone());
                    Ok(())
                }
            },
            Role::Dispatcher if register.building.district.as_deref() != Some(principal.subject.as_str()) => Err(ApiError::new(
                access::FORBIDDEN,
                format!(
                    "Диспетчер района «{}» регистрирует заявки только по домам своего района, а дом «{}» \
                     относится к району «{}». Передайте заявку диспетчеру этого района.",
                    principal.subject,
                    register.building.id,
                    register.building.district.as_deref().unwrap_or("не указан")
                ),
            )),
            _ => Ok(()),
        };
    }
    // The stream, not the read model, decides: a view may lag behind a routing or an assignment
    // made a moment ago.
    // NOTE: `Store::execute` loads the same stream again; a scope check inside the store's
    // decision step would save that second read.
    let events = state
        .store
        .load_stream(opencity_domain::ticket::TICKET_STREAM_TYPE, &ticket_id.to_string())
        .await
        .map_err(|error| {
            tracing::error!(%ticket_id, error.cause_chain = ?error, "loading a ticket stream for an access check failed");
            ApiError::internal()
        })?;
    let decoded = events
        .iter()
        .filter_map(|event| event.ticket_event().ok().map(|decoded| (ticket_id, event.position, decoded)));
    let views = opencity_projections::fold_from_scratch(decoded);
    match views.get(&ticket_id) {
        Some(view) if access::ticket_in_scope(principal, view) => Ok(()),
        _ => {
            tracing::info!(%ticket_id, token = %principal.token_id, role = principal.role.as_str(), "command on a ticket out of scope");
            Err(ApiError::ticket_not_found(&ticket_id.to_string()))
        }
    }
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
