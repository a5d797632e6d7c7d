//! The GraphQL API: schema, queries, mutations and subscriptions.

mod consistency;
mod inputs;
pub mod localize;
mod mutation;
mod query;
mod subscription;
pub(crate) mod types;

use std::sync::Arc;

use async_graphql::Schema;
use opencity_domain::TicketServices;
use opencity_projections::runner::ReadModel;
use opencity_store::Store;

pub use mutation::{HeaderIdempotencyKey, MutationRoot, MAX_IDEMPOTENCY_KEY_BYTES};
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// Maximum page size of list queries.
pub const MAX_PAGE_SIZE: i32 = 500;

pub type OpenCitySchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Shared state every resolver reads.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub services: TicketServices,
    pub read_model: Arc<ReadModel>,
}

/// Builds the schema with its limits and state.
pub fn build_schema(state: ApiState) -> OpenCitySchema {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(state)
        .limit_depth(12)
        .limit_complexity(5_000)
        .finish()
}
