//! The ticket (заявка) aggregate: one event stream per ticket.

mod aggregate;
mod commands;
mod errors;
mod events;

#[cfg(test)]
mod tests;

pub use aggregate::{Ticket, TicketServices, TicketStatus, SOURCE_DEADLINE_BASIS, TICKET_STREAM_TYPE};
pub use commands::*;
pub use errors::TicketError;
pub use events::*;
