//! The `opencity` binary as a child process, for the tests that kill, restart or outlive it: a
//! guard that kills the child when a test fails, its output in files, and plain HTTP helpers for
//! a server started this way.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Interval of the loops that wait for a child.
const POLL: Duration = Duration::from_millis(50);

/// Returns a command that runs the `opencity` binary, with the store and server settings of the
/// environment removed so that only the test's arguments count.
pub fn opencity() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opencity-under-test"));
    command.env("RUST_LOG", "info,sqlx=warn");
    for variable in [
        "OPENCITY_DATA_DIR",
        "OPENCITY_DATABASE_URL",
        "OPENCITY_LISTEN",
        "OPENCITY_SLA_CATALOGUE",
        "OPENCITY_SIGNING_KEY",
        "OPENCITY_CHECKPOINT_INTERVAL",
        "OPENCITY_DEADLINE_CHECK_INTERVAL",
    ] {
        command.env_remove(variable);
    }
    command
}

/// How a kill request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The process was running and got SIGKILL.
    Killed,
    /// The process had already exited with this status.
    AlreadyExited(ExitStatus),
}

/// A child process whose stdout and stderr go to files. Dropping it kills the process, so a
/// failing test leaves no server or importer behind.
pub struct Process {
    pub name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with its output in `<logs>/<name>.out` and `<logs>/<name>.err`.
    pub fn spawn(mut command: Command, logs: &Path, name: &str) -> Process {
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let child = command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file is created"))
            .stderr(File::create(&stderr).expect("stderr file is created"))
            .spawn()
            .unwrap_or_else(|error| panic!("{name}: the opencity binary does not start: {error}"));
        Process { name: name.to_string(), child, stdout, stderr, started: Instant::now(), exit: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Returns the exit status once the process has ended, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("child status is readable");
        }
        self.exit
    }

    /// Sends SIGKILL unless the process has already exited, and reaps it.
    pub fn sigkill(&mut self) -> KillOutcome {
        if let Some(status) = self.try_exit() {
            return KillOutcome::AlreadyExited(status);
        }
        // `Child::kill` sends SIGKILL on Unix. If the process exits between the check above
        // and the signal, the signal is lost and `wait` returns its own exit status.
        let _ = self.child.kill();
        let status = self.child.wait().expect("killed child is reaped");
        self.exit = Some(status);
        match std::os::unix::process::ExitStatusExt::signal(&status) {
            Some(_) => KillOutcome::Killed,
            None => KillOutcome::AlreadyExited(status),
        }
    }

    /// Sends SIGTERM, on which the server shuts down gracefully.
    pub fn sigterm(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "{}: SIGTERM could not be sent", self.name);
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {limit:?}\n{}", self.name, self.output_tail());
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Returns the last lines of both outputs, for assertion messages.
    pub fn output_tail(&self) -> String {
        format!(
            "--- {} stdout (end) ---\n{}\n--- {} stderr (end) ---\n{}",
            self.name,
            last_lines(&self.stdout_text(), 20),
            self.name,
            last_lines(&self.stderr_text(), 40)
        )
    }

    /// Waits until the server prints its address ("Сервер запущен: http://ADDR/graphql") and
    /// returns `http://ADDR`. Fails when the process exits first or `limit` passes.
    pub async fn server_base_url(&mut self, limit: Duration) -> String {
        const PREFIX: &str = "Сервер запущен: http://";
        let deadline = Instant::now() + limit;
        loop {
            let stdout = self.stdout_text();
            if let Some(start) = stdout.find(PREFIX) {
                let rest = &stdout[start + PREFIX.len()..];
                if let Some(end) = rest.find("/graphql") {
                    return format!("http://{}", &rest[..end]);
                }
            }
            if let Some(status) = self.try_exit() {
                panic!("{} exited with {status} before listening\n{}", self.name, self.output_tail());
            }
            assert!(Instant::now() < deadline, "{} did not listen within {limit:?}\n{}", self.name, self.output_tail());
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the server's stderr contains one of `needles` and returns the one found.
    pub async fn wait_for_log(&mut self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let stderr = self.stderr_text();
            if let Some(found) = needles.iter().find(|needle| stderr.contains(*needle)) {
                return found.to_string();
            }
            if let Some(status) = self.try_exit() {
                panic!("{} exited with {status} while a log line {needles:?} was awaited\n{}", self.name, self.output_tail());
            }
            assert!(Instant::now() < deadline, "{} logged none of {needles:?} within {limit:?}\n{}", self.name, self.output_tail());
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Returns a port of 127.0.0.1 that was free a moment ago. Another process may take it before
/// the caller binds it; the tests use it only for servers that cannot be given port 0.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

/// Posts a GraphQL request, with an `Idempotency-Key` header when `idempotency_key` is given,
/// and returns the HTTP status and the JSON body.
pub async fn post_graphql(
    client: &reqwest::Client,
    base_url: &str,
    query: &str,
    variables: Value,
    idempotency_key: Option<&str>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = client
        .post(format!("{base_url}/graphql"))
        .json(&serde_json::json!({ "query": query, "variables": variables }));
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// Calls `/readyz` and returns the HTTP status and the JSON body.
pub async fn readyz(client: &reqwest::Client, base_url: &str) -> Result<(u16, Value), reqwest::Error> {
    let response = client.get(format!("{base_url}/readyz")).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// Returns the code of the first GraphQL error, if any.
pub fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}
