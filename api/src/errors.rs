//! The error codes clients match on and the Russian messages users read.

use async_graphql::ErrorExtensions;
use opencity_domain::sla::SlaError;
use opencity_domain::TicketError;
use opencity_store::CommandError;

/// An error returned to an API client: a stable code and a Russian message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    pub fn invalid_id(field: &str, value: &str) -> ApiError {
        ApiError::new(
            "INVALID_ID",
            format!(
                "Поле «{field}»: значение «{value}» не является UUID. Укажите идентификатор вида \
                 3f2b8c1e-5d4a-4b8e-9c7d-1a2b3c4d5e6f."
            ),
        )
    }

    pub fn ticket_not_found(reference: &str) -> ApiError {
        ApiError::new(
            "TICKET_NOT_FOUND",
            format!("Заявка «{reference}» не найдена. Проверьте идентификатор или внешний номер."),
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            "INTERNAL_ERROR",
            "Внутренняя ошибка сервера. Повторите запрос позже; если ошибка повторяется, сообщите администратору.",
        )
    }
}


// ApiError deliberately has no `Display`, so this conversion (which adds the code) is the one
// `?` uses instead of async-graphql's blanket conversion of displayable errors.
impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> async_graphql::Error {
        error.extend()
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code;
        async_graphql::Error::new(self.message.clone()).extend_with(|_, extensions| extensions.set("code", code))
    }
}

/// Translates a domain error into the Russian message a user reads.
pub fn ticket_error(error: &TicketError) -> ApiError {
    let message = match error {
        TicketError::AlreadyRegistered => {
            "Заявка с таким идентификатором уже зарегистрирована. Для повторной отправки используйте тот же ключ идемпотентности.".to_string()
        }
        TicketError::NotRegistered => {
            "Заявка не найдена: по этому идентификатору нет зарегистрированной заявки.".to_string()
        }
        TicketError::InvalidTransition { command, status } => format!(
            "Действие «{}» недопустимо, пока заявка в статусе «{}». {}",
            command_name_ru(command),
            status_name_ru(status.as_str()),
            transition_hint(command)
        ),
        TicketError::AlreadyClosed => "Заявка закрыта: изменить её нельзя. Если проблема повторилась, подайте новую заявку.".to_string(),
        TicketError::AlreadyCancelled => "Заявка отменена: изменить её нельзя. Если проблема актуальна, подайте новую заявку.".to_string(),
        TicketError::AlreadyRated => "Оценка этой заявке уже поставлена; повторно оценить нельзя.".to_string(),
        TicketError::EmptyField { field } => format!("Поле «{field}» не должно быть пустым. Заполните его."),
        TicketError::SelfDuplicate => "Заявку нельзя отменить как дубликат самой себя. Укажите в duplicateOf другую заявку.".to_string(),
        TicketError::NoDeadlinePassed { at } => format!("На момент {at} ни один срок заявки не истёк."),
        TicketError::Sla(sla) => return sla_error(sla),
    };
    ApiError::new(error.code(), message)
}

pub fn sla_error(error: &SlaError) -> ApiError {
    let message = match error {
        SlaError::UnknownCategory { category } => format!(
            "Неизвестная категория «{category}». Выберите код из справочника: запрос `categories {{ code name }}`."
        ),
        SlaError::UnknownTimeZone { time_zone } => format!(
            "Неизвестный часовой пояс «{time_zone}». Укажите имя из базы IANA, например Europe/Moscow или Asia/Novosibirsk."
        ),
        SlaError::CalendarOutOfRange { date } => format!(
            "Производственный календарь не содержит данных на {date}. Добавьте календарь этого года в fixtures/calendars."
        ),
        #[allow(unreachable_patterns)]
        other => format!("Ошибка расчёта срока: {other}"),
    };
    ApiError::new(error.code(), message)
}

pub fn command_error(error: &CommandError) -> ApiError {
    match error {
        CommandError::Domain(domain) => ticket_error(domain),
        CommandError::Conflict => ApiError::new(
            "CONFLICT",
            "Заявку одновременно изменили другие пользователи. Повторите действие.",
        ),
        CommandError::Store(store) => {
            tracing::error!(error.cause_chain = ?store, "store failed while executing a command");
            ApiError::new(
                "STORE_UNAVAILABLE",
                "Хранилище событий недоступно. Повторите запрос позже.",
            )
        }
    }
}

/// Returns the Russian name of a command, as users see it in error messages.
pub fn command_name_ru(command: &str) -> &'static str {
    match command {
        "register" => "регистрация",
        "classify" => "смена категории",
        "route" => "направление исполнителю",
        "accept" => "принятие в работу",
        "assign_contractor" => "назначение подрядчика",
        "start_work" => "начало работ",
        "suspend" => "приостановка",
        "resume" => "возобновление",
        "report_completion" => "отчёт о выполнении",
        "confirm_completion" => "подтверждение выполнения",
        "reject_completion" => "отклонение выполнения",
        "rate" => "оценка",
        "comment" => "комментарий",
        "escalate" => "эскалация",
        "cancel" => "отмена",
        "close" => "закрытие",
        "record_deadline_passed" => "фиксация просрочки",
        _ => "действие",
    }
}

/// Returns the Russian name of a ticket status.
pub fn status_name_ru(status: &str) -> &'static str {
    match status {
        "unregistered" => "не зарегистрирована",
        "new" => "новая",
        "routed" => "направлена исполнителю",
        "accepted" => "принята в работу",
        "assigned" => "назначен подрядчик",
        "in_progress" => "в работе",
        "suspended" => "приостановлена",
        "completion_reported" => "выполнена, ждёт подтверждения жителя",
        "confirmed" => "подтверждена жителем",
        "reopened" => "возвращена на доработку",
        "closed" => "закрыта",
        "cancelled" => "отменена",
        _ => "неизвестен",
    }
}

fn transition_hint(command: &str) -> &'static str {
    match command {
        "accept" => "Сначала направьте заявку организации (routeTicket).",
        "confirm_completion" | "reject_completion" => {
            "Подтвердить или отклонить можно только после отчёта исполнителя о выполнении (reportCompletion)."
        }
        "start_work" => "Сначала примите заявку в работу (acceptTicket).",
        "resume" => "Возобновить можно только приостановленную заявку.",
        "rate" => "Оценку ставят после отчёта о выполнении.",
        "close" => "Закрыть по подтверждению можно после confirmCompletion, без ответа жителя — после reportCompletion.",
        _ => "Проверьте текущий статус заявки запросом ticket { status }.",
    }
}
