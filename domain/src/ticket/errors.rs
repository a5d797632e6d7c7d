//! Errors of the ticket aggregate. Messages are English and lowercase; the api maps each
//! variant's `code()` to a Russian message.

use crate::sla::SlaError;
use crate::ticket::TicketStatus;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket is already registered")]
    AlreadyRegistered,
    #[error("ticket is not registered")]
    NotRegistered,
    #[error("command `{command}` is not allowed while the ticket is {status}")]
    InvalidTransition { command: &'static str, status: TicketStatus },
    #[error("ticket is closed")]
    AlreadyClosed,
    #[error("ticket is cancelled")]
    AlreadyCancelled,
    #[error("ticket is already rated")]
    AlreadyRated,
    #[error("field `{field}` must not be empty")]
    EmptyField { field: &'static str },
    #[error("a ticket cannot be a duplicate of itself")]
    SelfDuplicate,
    #[error("no deadline has passed at {at}")]
    NoDeadlinePassed { at: chrono::DateTime<chrono::Utc> },
    #[error(transparent)]
    Sla(#[from] SlaError),
}

impl TicketError {
    /// Returns the stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::AlreadyRegistered => "TICKET_ALREADY_REGISTERED",
            TicketError::NotRegistered => "TICKET_NOT_FOUND",
            TicketError::InvalidTransition { .. } => "INVALID_TRANSITION",
            TicketError::AlreadyClosed => "TICKET_CLOSED",
            TicketError::AlreadyCancelled => "TICKET_CANCELLED",
            TicketError::AlreadyRated => "TICKET_ALREADY_RATED",
            TicketError::EmptyField { .. } => "EMPTY_FIELD",
            TicketError::SelfDuplicate => "SELF_DUPLICATE",
            TicketError::NoDeadlinePassed { .. } => "NO_DEADLINE_PASSED",
            TicketError::Sla(error) => error.code(),
        }
    }
}
