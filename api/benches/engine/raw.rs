//! The raw PostgreSQL baselines: `run_raw.sh` (pgbench, COPY, ordered scans) run against a
//! database of their own on the same server as the engine.

use std::path::PathBuf;
use std::str::FromStr;

use opencity_store::testing::{try_temp_postgres, TempDatabase, TEST_PG_VARIABLE};
use sqlx::postgres::PgConnectOptions;

/// One TSV line of `run_raw.sh`: figure, clients, repeat, events per second, extra fields.
#[derive(Debug, Clone)]
pub struct RawLine {
    pub figure: String,
    pub clients: u32,
    pub events_per_second: f64,
}

/// Location of the baseline scripts and the server they connect to.
pub struct RawScripts {
    script: PathBuf,
    host: String,
    port: u16,
    user: String,
}

impl RawScripts {
    /// Finds `run_raw.sh` and checks that `psql`, `pgbench` and `python3` run.
    pub fn locate() -> anyhow::Result<RawScripts> {
        let dir = match std::env::var_os("RAW_POSTGRES_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/raw-postgres"),
        };
        let script = dir.join("run_raw.sh");
        anyhow::ensure!(script.is_file(), "{} not found; set RAW_POSTGRES_DIR to the directory of run_raw.sh", script.display());
        for tool in ["psql", "pgbench", "python3"] {
            let found = std::process::Command::new(tool).arg("--version").output().is_ok_and(|output| output.status.success());
            anyhow::ensure!(found, "{tool} is not installed or does not run; the raw baselines need psql and pgbench (PostgreSQL client) and python3");
        }

        let server = std::env::var(TEST_PG_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
        let options = PgConnectOptions::from_str(&server)
            .map_err(|error| anyhow::anyhow!("{TEST_PG_VARIABLE}={server:?} is not a PostgreSQL URL: {error}"))?;
        Ok(RawScripts {
            script,
            host: options.get_host().to_string(),
            port: options.get_port(),
            user: options.get_username().to_string(),
        })
    }

    /// Returns the path of a pgbench script in the `pg` directory beside `run_raw.sh`.
    pub fn pg_script(&self, name: &str) -> PathBuf {
        self.script.with_file_name("pg").join(name)
    }

    /// Creates an empty database for the scripts' own `events` table.
    pub async fn database(&self) -> anyhow::Result<TempDatabase> {
        Ok(try_temp_postgres().await?)
    }

    /// Runs `run_raw.sh ARGS` on `database` and returns its result lines. `DURATION`, `REPEATS`
    /// and `CSV` come from `env`.
    pub async fn run(&self, database: &TempDatabase, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Vec<RawLine>> {
        eprintln!("raw: run_raw.sh {} (load: {})", args.join(" "), crate::report::load_average());
        let output = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &database.name)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stderr(std::process::Stdio::inherit())
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(output.status.success(), "run_raw.sh {} failed with {}: {stdout}", args.join(" "), output.status);

        let mut lines = Vec::new();
        for line in stdout.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')) {
            eprintln!("raw: {line}");
            let fields: Vec<&str> = line.split('\t').collect();
            let parsed = match fields.as_slice() {
                [figure, clients, _repeat, rate, ..] => clients.parse().ok().zip(rate.parse().ok()).map(|(clients, rate)| RawLine {
                    figure: figure.to_string(),
                    clients,
                    events_per_second: rate,
                }),
                _ => None,
            };
            let parsed = parsed.ok_or_else(|| anyhow::anyhow!("run_raw.sh printed a line that is not a result: {line:?}"))?;
            lines.push(parsed);
        }
        Ok(lines)
    }
}

/// Returns the rates of one figure at one client count.
pub fn rates(lines: &[RawLine], figure: &str, clients: u32) -> Vec<f64> {
    lines
        .iter()
        .filter(|line| line.figure == figure && line.clients == clients)
        .map(|line| line.events_per_second)
        .collect()
}
