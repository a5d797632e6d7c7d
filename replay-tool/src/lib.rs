//! `opencity-replay`: the auditors' read-only tool over the event log of «Открытый город».
//!
//! # Layout
//! - [`source`]: read-only connections to PostgreSQL or SQLite, log scans, the live read model.
//! - [`replay`]: folds of the log into ticket views, as the projection runner folds it.
//! - [`verify`](mod@verify), [`history`](mod@history), [`asof`], [`diff`](mod@diff),
//!   [`export`](mod@export): one module per command.
//! - [`cli`]: arguments, output in Russian and exit codes.

pub mod asof;
pub mod cli;
pub mod diff;
pub mod export;
pub mod history;
pub mod replay;
pub mod source;
pub mod verify;
