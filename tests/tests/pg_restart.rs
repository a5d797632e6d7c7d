//! A PostgreSQL restart under a running `opencity serve`. The test creates its own throwaway
//! cluster (initdb into a temporary directory, a free port of 127.0.0.1, trust authentication)
//! and stops and starts only that cluster, never the shared server the other tests use. While
//! the database is down, `/readyz` must report "not ready" and the server log must record the
//! outage. Afterwards the server must reconnect by itself, accept mutations again and still
//! serve everything committed before.
//!
//! The cluster's binaries come from `OPENCITY_TEST_PG_BIN` (default
//! `/usr/lib/postgresql/15/bin`). initdb refuses to run as root, so as root the test runs them
//! as the `postgres` OS user through runuser(1).

mod child;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use child::{error_code, opencity, post_graphql, readyz, Process};
use opencity_domain::access::Role;
use opencity_store::{Store, StoreConfig};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

const PG_BIN_VARIABLE: &str = "OPENCITY_TEST_PG_BIN";
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Tickets registered before the outage and after it.
const TICKETS_BEFORE: usize = 10;
const TICKETS_AFTER: usize = 5;

/// Upper bound of each wait, so a server that never recovers fails the test instead of hanging.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Log lines of the server that the test waits for.
const READINESS_FAILED: &str = "readiness check failed";
const BATCH_FAILED: &str = "projection batch failed";
const PROJECTIONS_RESUMED: &str = "database reachable again";

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position appended replayed }
}"#;

const COMMENT: &str = r#"mutation($id: ID!) {
  commentTicket(id: $id, author: "диспетчер", text: "Передано мастеру") { position }
}"#;

/// A PostgreSQL cluster in a temporary directory, stopped and removed when dropped.
struct Cluster {
    dir: TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    /// True when the test runs as root and must run the binaries as the `postgres` user.
    as_postgres_user: bool,
}

impl Cluster {
    /// Creates the cluster with initdb and starts it on a free port.
    fn create() -> Cluster {
        let bin = PathBuf::from(std::env::var(PG_BIN_VARIABLE).unwrap_or_else(|_| DEFAULT_PG_BIN.to_string()));
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "initdb and pg_ctl not found in {}; set {PG_BIN_VARIABLE} to the PostgreSQL binaries",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("opencity-pg-").tempdir().expect("temporary cluster directory");
        let as_postgres_user = std::fs::metadata("/proc/self").map(|metadata| metadata.uid() == 0).unwrap_or(false);
        if as_postgres_user {
            let uid = id_of("-u");
            let gid = id_of("-g");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("cluster directory is given to postgres");
        }
        let cluster = Cluster { data: dir.path().join("data"), dir, bin, port: child::free_port(), as_postgres_user };

        let data = cluster.data.display().to_string();
        cluster.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
        cluster.start();
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("{program} does not start: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections. The socket file goes into the
    /// cluster's own directory, and fsync is off because the data is thrown away.
    fn start(&self) {
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off", self.port, self.dir.path().display());
        let data = self.data.display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
    }

    /// Stops the server in fast mode: open sessions are cut off, as in a crash of the database.
    fn stop(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Ignored when the cluster is already stopped; the directory goes with `TempDir`.
        let data = self.data.display().to_string();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

/// Returns the user or group id (`flag` `-u` or `-g`) of the `postgres` OS user.
fn id_of(flag: &str) -> u32 {
    let output = Command::new("id").args([flag, "postgres"]).output().expect("id(1) runs");
    assert!(output.status.success(), "as root the test needs the postgres OS user: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("numeric id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_postgres_restart() {
    let cluster = Cluster::create();
    let logs = tempfile::tempdir().expect("temporary directory for server output");
    let mut command = opencity();
    command.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &cluster.url()]);
    let token = {
        let config = StoreConfig::Postgres { url: cluster.url() };
        let store = Store::open(&config).await.expect("store on the test cluster");
        store.create_token(Role::Admin, "tests", None, None).await.expect("token created").secret
    };
    let mut server = Process::spawn(command, logs.path(), "serve");
    let base_url = server.server_base_url(WAIT_LIMIT).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header value"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .default_headers(headers)
        .build()
        .expect("HTTP client");

    // Given tickets with a comment each, committed and projected before the outage.
    let mut tickets = Vec::new();
    for number in 0..TICKETS_BEFORE {
        tickets.push(register_with_comment(&client, &base_url, &format!("before-{number}")).await);
    }
    wait_until_served(&client, &base_url, &tickets).await;
    let (status, ready) = readyz(&client, &base_url).await.expect("/readyz responds");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(count_events(&cluster.url()).await, 2 * TICKETS_BEFORE as i64);

    // When the database goes down, readiness drops and the projection runner reports failures.
    cluster.stop();
    let not_ready = wait_for_readiness(&client, &base_url, 503).await;
    assert_eq!(not_ready["status"], "not_ready", "{not_ready}");
    assert!(not_ready["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{not_ready}");
    let during = {
        let client = client.clone();
        let base_url = base_url.clone();
        tokio::spawn(async move { post_graphql(&client, &base_url, REGISTER, register_input("during-outage"), None).await })
    };
    server.wait_for_log(&[BATCH_FAILED], WAIT_LIMIT).await;

    // And comes back.
    cluster.start();
    let ready = wait_for_readiness(&client, &base_url, 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    server.wait_for_log(&[PROJECTIONS_RESUMED], WAIT_LIMIT).await;

    // Then the request sent during the outage either failed cleanly or was stored.
    let (_, during) = tokio::time::timeout(WAIT_LIMIT, during)
        .await
        .expect("the request sent during the outage got a response")
        .expect("task ran")
        .expect("server responded to the request sent during the outage");
    let mut expected_events = 2 * (TICKETS_BEFORE + TICKETS_AFTER) as i64;
    match error_code(&during) {
        None => {
            let id = during["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id").to_string();
            tickets.push((id, 1));
            expected_events += 1;
        }
        Some(code) => assert_eq!(code, "STORE_UNAVAILABLE", "{during}"),
    }

    // Mutations work again, and nothing committed before the outage is lost.
    for number in 0..TICKETS_AFTER {
        tickets.push(register_with_comment(&client, &base_url, &format!("after-{number}")).await);
    }
    wait_until_served(&client, &base_url, &tickets).await;
    assert_eq!(count_events(&cluster.url()).await, expected_events);

    let log = server.stderr_text();
    assert!(log.contains(READINESS_FAILED), "no readiness failure in the server log:\n{}", server.output_tail());
    for line in log.lines().filter(|line| line.contains("WARN") || line.contains("ERROR") || line.contains(PROJECTIONS_RESUMED)) {
        println!("server log: {line}");
    }
    println!("request sent during the outage: {during}");
    server.sigterm();
    let status = server.wait_exit(WAIT_LIMIT).await;
    assert!(status.success(), "server stopped with {status}\n{}", server.output_tail());
}

/// Registers a ticket with an idempotency key and comments on it; returns its id and its
/// number of events.
async fn register_with_comment(client: &reqwest::Client, base_url: &str, key: &str) -> (String, usize) {
    let (_, registered) = post_graphql(client, base_url, REGISTER, register_input(key), None).await.expect("server responds");
    assert!(registered["errors"].is_null(), "{registered}");
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id").to_string();
    let (_, commented) = post_graphql(client, base_url, COMMENT, json!({ "id": id }), None).await.expect("server responds");
    assert!(commented["errors"].is_null(), "{commented}");
    (id, 2)
}

/// Waits until the server's read model has every ticket with all its events.
async fn wait_until_served(client: &reqwest::Client, base_url: &str, tickets: &[(String, usize)]) {
    let deadline = Instant::now() + WAIT_LIMIT;
    for (id, events) in tickets {
        let query = format!(r#"{{ ticket(id: "{id}") {{ id events {{ eventType }} }} }}"#);
        loop {
            let (_, response) = post_graphql(client, base_url, &query, json!({}), None).await.expect("server responds");
            let served = response["data"]["ticket"]["events"].as_array().map(Vec::len);
            if served == Some(*events) {
                break;
            }
            assert!(Instant::now() < deadline, "ticket {id} is not served with {events} events: {response}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `/readyz` until it returns `status`, and returns the body.
async fn wait_for_readiness(client: &reqwest::Client, base_url: &str, status: u16) -> Value {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let response = readyz(client, base_url).await;
        if let Ok((actual, body)) = &response {
            if *actual == status {
                return body.clone();
            }
        }
        assert!(Instant::now() < deadline, "/readyz did not return {status} within {WAIT_LIMIT:?}: {response:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count_events(url: &str) -> i64 {
    let mut connection = PgConnection::connect(url).await.expect("test connects to its cluster");
    let count = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut connection).await.expect("events are countable");
    connection.close().await.expect("connection closes");
    count
}

fn register_input(key: &str) -> Value {
    json!({
        "input": {
            "channel": "PORTAL",
            "requester": { "name": "Козлов Олег", "phone": "+7 900 000-00-03" },
            "building": { "id": "kzn-restart-1", "address": "Казань, ул. Островского, 11", "district": "Вахитовский",
                          "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "premises": "21",
            "category": "roof_leak",
            "description": "Протечка после дождя",
            "idempotencyKey": key,
        }
    })
}
