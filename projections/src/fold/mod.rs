//! Pure folds from ticket events to [`TicketView`]s.
//!
//! The runner applies events in global log order, batch after batch, and [`fold_from_scratch`]
//! folds a whole log at once. Both go through [`apply_event`], so a view built incrementally equals the
//! view of one fold from scratch, whatever the batch boundaries.

use std::collections::BTreeMap;

use opencity_domain::TicketEvent;
use uuid::Uuid;

mod state;
mod view;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use state::{StateChange, TicketState};
pub use view::TicketView;

/// Applies the event at global `position` of the ticket stream `ticket_id` to `views`.
///
/// A `TicketRegistered` creates the view. Any other event of a ticket without a view is ignored:
/// the domain never writes one, and without a registration there is nothing to attribute it to.
pub fn apply_event(
    views: &mut BTreeMap<Uuid, TicketView>,
    ticket_id: Uuid,
    position: i64,
    event: &TicketEvent,
) {
    match views.get_mut(&ticket_id) {
        Some(view) => view.apply(event, position),
        None => {
            if let TicketEvent::TicketRegistered(registered) = event {
                views.insert(ticket_id, TicketView::new(registered, position));
            }
        }
    }
}

/// Applies `(ticket_id, position, event)` triples, in log order, to `views`.
pub fn fold_into(
    views: &mut BTreeMap<Uuid, TicketView>,
    events: impl IntoIterator<Item = (Uuid, i64, TicketEvent)>,
) {
    for (ticket_id, position, event) in events {
        apply_event(views, ticket_id, position, &event);
    }
}

/// Folds a whole log, in global order, into the views of its tickets, keyed by ticket id.
pub fn fold_from_scratch(
    events: impl IntoIterator<Item = (Uuid, i64, TicketEvent)>,
) -> BTreeMap<Uuid, TicketView> {
    let mut views = BTreeMap::new();
    fold_into(&mut views, events);
    views
}
