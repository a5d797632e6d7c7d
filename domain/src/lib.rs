//! Domain model of «Открытый город»: the ticket aggregate, its commands and events,
//! the SLA policy and the working-day calendar. This crate does no I/O.
//!
//! # Layout
//! - [`access`]: the roles a token grants.
//! - [`values`]: validated value types shared by commands and events (channel, priority, rating,
//!   references to buildings, organizations and contractors).
//! - [`ticket`]: the `Ticket` aggregate (cqrs-es), its commands, events and errors.
//! - [`sla`]: the SLA catalogue, the production calendar and the deadline arithmetic.

pub mod access;
pub mod sla;
pub mod ticket;
pub mod values;

pub use ticket::{Ticket, TicketCommand, TicketError, TicketEvent, TicketServices, TicketStatus};
