//! Engine benchmarks on PostgreSQL, each beside a raw-SQL baseline measured in the same run on
//! the same server.
//!
//! Run: `cargo bench -p opencity-api --bench engine [-- SECTION...]` with PostgreSQL on
//! 127.0.0.1:5432 (trust authentication, or the server of `OPENCITY_TEST_PG`). Every round
//! creates its own database and drops it afterwards. `api/benches/run-all.sh` builds the replay
//! tool, raises the file-descriptor limit and runs all sections.
//!
//! Sections (all of them when none is given):
//! - `command`: `Store::execute` of one comment (load, decide, append) at 1, 4 and 16 clients,
//!   against pgbench `command_1.sql` (the same reads and a one-row INSERT per transaction);
//! - `bulk`: the import path (`write_tickets`, i.e. `Store::execute_many`) in events/s against
//!   10-row INSERTs and COPY; then projection catch-up and the replay tool's rebuild over the
//!   imported log, against ordered scans read by a client;
//! - `fanout`: event-to-client latency of `ticketEvents` with many WebSocket subscribers.
//!
//! The mode `subscribers URL COUNT SECONDS` only keeps COUNT subscriptions open on a running
//! server and reports what they received; the load script uses it.
//!
//! Environment variables:
//! - `DURATION`: seconds per timed command run and per pgbench run, default 20;
//! - `REPEATS`: rounds per figure, default 3;
//! - `COMMAND_CLIENTS`: one client count of the command path instead of 1, 4 and 16, for
//!   profiling one of them;
//! - `BULK_TICKETS`: demo tickets per bulk round, default 10000;
//! - `FANOUT_SUBSCRIBERS` (default 1000), `FANOUT_EVENTS` (default 200) and
//!   `FANOUT_INTERVAL_MS` (pause between fan-out events, default 50);
//! - `OPENCITY_REPLAY`: the `opencity-replay` binary; without it the rebuild figure is left out;
//! - `RAW_POSTGRES_DIR`: the directory of `run_raw.sh`, default `../shared/bench/raw-postgres`
//!   beside the workspace;
//! - `RAW_BASELINES=0`: the engine side alone, for profiling. The figures then have no baseline.

mod bulk;
mod command;
mod fanout;
mod raw;
mod report;
mod subscriber;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opencity_domain::TicketServices;

use crate::report::Figure;

/// The allocator of the `opencity` binary (api/src/main.rs), so that the engine is measured
/// as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parameters of one benchmark run, read from the environment.
pub struct Settings {
    pub duration: Duration,
    pub repeats: usize,
    /// The command path's client counts: 1, 4 and 16, or the one `COMMAND_CLIENTS` names.
    pub command_clients: Vec<u32>,
    pub bulk_tickets: usize,
    pub fanout_subscribers: usize,
    pub fanout_events: usize,
    pub fanout_interval: Duration,
    pub replay_binary: Option<PathBuf>,
    /// False when `RAW_BASELINES=0`: the engine side alone, for profiling.
    pub raw_baselines: bool,
    pub services: TicketServices,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let catalogue = opencity_fixtures::sla::default_catalogue()
            .map_err(|error| anyhow::anyhow!("default SLA catalogue failed to load: {error}"))?;
        let replay_binary = std::env::var_os("OPENCITY_REPLAY").map(PathBuf::from);
        if let Some(path) = &replay_binary {
            anyhow::ensure!(path.is_file(), "OPENCITY_REPLAY={} is not a file; build it with `cargo build --release -p opencity-replay-tool`", path.display());
        }
        Ok(Settings {
            duration: Duration::from_secs(env_number("DURATION", 20)?),
            repeats: env_number("REPEATS", 3)?.max(1) as usize,
            command_clients: match env_number("COMMAND_CLIENTS", 0)? {
                0 => vec![1, 4, 16],
                clients => vec![u32::try_from(clients)?],
            },
            bulk_tickets: env_number("BULK_TICKETS", 10_000)? as usize,
            fanout_subscribers: env_number("FANOUT_SUBSCRIBERS", 1_000)? as usize,
            fanout_events: env_number("FANOUT_EVENTS", 200)?.max(1) as usize,
            fanout_interval: Duration::from_millis(env_number("FANOUT_INTERVAL_MS", 50)?),
            replay_binary,
            raw_baselines: env_number("RAW_BASELINES", 1)? != 0,
            services: TicketServices { sla: Arc::new(catalogue) },
        })
    }
}

/// Reads a non-negative integer variable, or returns `default` when it is unset.
fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a non-negative integer")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench` to a binary without the test harness; flags are not ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    if args.first().map(String::as_str) == Some("subscribers") {
        return subscriber::run_standalone(&args[1..]).await;
    }

    let settings = Settings::from_env()?;
    let sections: Vec<&str> = if args.is_empty() {
        vec!["command", "bulk", "fanout"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let raw = raw::RawScripts::locate()?;
    eprintln!(
        "engine bench: sections {sections:?}, DURATION={}s, REPEATS={}",
        settings.duration.as_secs(),
        settings.repeats
    );

    let mut figures: Vec<Figure> = Vec::new();
    for section in sections {
        eprintln!("== {section} (load: {})", report::load_average());
        match section {
            "command" => figures.extend(command::run(&settings, &raw).await?),
            "bulk" => figures.extend(bulk::run(&settings, &raw).await?),
            "fanout" => figures.extend(fanout::run(&settings).await?),
            other => anyhow::bail!("unknown section {other:?}; expected command, bulk or fanout"),
        }
    }
    report::print_table(&figures);
    Ok(())
}
