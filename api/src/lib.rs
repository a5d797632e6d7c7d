//! The `opencity` server: GraphQL API over the event store and the projections, plus the
//! command-line entry points (serve, import, demo).
//!
//! # Layout
//! - [`auth`]: bearer tokens on every GraphQL request and subscription.
//! - [`cli`]: the clap command line and what each subcommand runs.
//! - [`access`]: what each role may run and which tickets it can read.
//! - [`app`]: the axum router (GraphQL, GraphiQL, WebSocket subscriptions, health).
//! - [`deadlines`]: the deadline watcher that records passed deadlines as events.
//! - [`graphql`]: schema, queries, mutations and subscriptions.
//! - [`limits`]: per-token request rate and subscription sockets.
//! - [`import`]: file import and the demo city, writing through the store.
//! - [`errors`]: stable error codes and the Russian messages users read.

pub mod access;
pub mod app;
pub mod auth;
pub mod cli;
pub mod deadlines;
pub mod errors;
pub mod graphql;
pub mod import;
pub mod limits;
