//! Crash safety of the event log and the read model. `opencity import` of the LA 311 extract and
//! `opencity serve` run side by side as child processes, and the test kills them with SIGKILL at
//! random moments and restarts them until the import completes. Afterwards the log must hold
//! exactly the events of one clean import into another database, and every read model must
//! equal a fold of the log from scratch.
//!
//! Importer kills are triggered by progress (a random number of new events in the log) or by
//! time (before the run has written anything), so they land mid-work however fast the machine
//! is. The kills are seeded: each run prints its seed, and `OPENCITY_CRASH_SEED=N` repeats it.

mod child;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{TimeZone, Utc};
use child::{opencity, post_graphql, readyz, KillOutcome, Process};
use opencity_projections::reference::{ReferenceEntity, ReferenceIndex};
use opencity_projections::runner::{ReadModel, TICKET_VIEWS};
use opencity_projections::{fold_from_scratch, overdue_counters, sla_stats, Dimension, StatsFilter, TicketView};
use opencity_replay_tool::source::LogSource;
use opencity_store::integrity::verify_log;
use opencity_store::testing::{temp_postgres, temp_sqlite, TempDatabase};
use opencity_store::{DbPool, LogCheckpoint, Store, StoreConfig, StoredEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

const LA_FILE: &str = "la311_2017_subset_hackforla.csv";

/// Kills of the importer and the server together, per backend.
const MIN_KILLS: usize = 20;

/// Largest share of the clean import's events one importer run may add before it is killed.
const MAX_EVENTS_PER_RUN_DIVISOR: usize = 5;

/// Share of importer runs killed by time rather than by progress, mostly during start-up.
const TIME_KILL_PROBABILITY: f64 = 0.2;

/// Upper bound of each wait for a child, so a stuck process fails the test instead of hanging it.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// Upper bound of the whole kill phase.
const KILL_PHASE_LIMIT: Duration = Duration::from_secs(600);

/// Interval of the loop that watches the log and decides on kills.
const POLL: Duration = Duration::from_millis(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_random_kills() {
    run_scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_random_kills() {
    run_scenario(Backend::Postgres).await;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database the children and the test share: a SQLite data directory or a PostgreSQL
/// database of the test server, removed at the end.
enum Target {
    Sqlite { _dir: TempDir, config: StoreConfig },
    Postgres { database: TempDatabase },
}

impl Target {
    async fn create(backend: Backend) -> Target {
        match backend {
            Backend::Sqlite => {
                let (dir, config) = temp_sqlite();
                Target::Sqlite { _dir: dir, config }
            }
            Backend::Postgres => Target::Postgres { database: temp_postgres().await },
        }
    }

    fn config(&self) -> StoreConfig {
        match self {
            Target::Sqlite { config, .. } => config.clone(),
            Target::Postgres { database } => database.config(),
        }
    }

    /// Returns the store options of the `opencity` command line for this database.
    fn store_args(&self) -> Vec<String> {
        match self.config() {
            StoreConfig::Sqlite { data_dir } => vec!["--data-dir".into(), data_dir.display().to_string()],
            StoreConfig::Postgres { url } => vec!["--database-url".into(), url],
        }
    }

    async fn cleanup(self) {
        if let Target::Postgres { database } = self {
            database.cleanup().await;
        }
    }
}

fn import_command(target: &Target) -> Command {
    let mut command = opencity();
    command
        .args(["import", "--format", "la311"])
        .arg(common::shared_data(LA_FILE))
        .args(target.store_args());
    command
}

/// Returns `opencity serve` without the deadline watcher. The watcher appends a
/// `DeadlinePassed` event for each overdue open ticket, by the wall clock, so with it the log
/// would differ from the clean import by design rather than by a crash.
fn serve_command(target: &Target) -> Command {
    let mut command = opencity();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--deadline-check-interval", "0"])
        .args(target.store_args());
    command
}

/// Facts of the clean, uninterrupted import that the killed one is measured against.
struct CleanImport {
    exit_code: i32,
    events: usize,
    tickets: usize,
    /// Time from the start of the process to the first stored event.
    first_event_after: Duration,
    duration: Duration,
}

async fn run_scenario(backend: Backend) {
    let seed = std::env::var("OPENCITY_CRASH_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64));
    println!("{backend:?}: seed {seed}; OPENCITY_CRASH_SEED={seed} repeats this run");
    let mut rng = StdRng::seed_from_u64(seed);
    let logs = tempfile::tempdir().expect("temporary directory for child output");
    let started = Instant::now();

    // A clean import into a database of its own gives the expected log.
    let reference = Target::create(backend).await;
    let reference_store = Store::open(&reference.config()).await.expect("reference store opens");
    let clean = clean_import(&reference, &reference_store, logs.path()).await;
    println!(
        "{backend:?}: clean import of {} tickets, {} events in {:.1} s (first event after {:.1} s), exit code {}",
        clean.tickets,
        clean.events,
        clean.duration.as_secs_f64(),
        clean.first_event_after.as_secs_f64(),
        clean.exit_code
    );

    let target = Target::create(backend).await;
    let store = Store::open(&target.config()).await.expect("store under test opens");
    let kills = tokio::time::timeout(KILL_PHASE_LIMIT, kill_until_imported(&store, &target, &clean, &mut rng, logs.path()))
        .await
        .expect("the import completes between kills within the limit");
    kills.print(backend);
    assert!(kills.records.len() >= MIN_KILLS, "only {} kills", kills.records.len());
    assert!(
        kills.records.iter().any(|kill| kill.process == "import" && kill.mid_work),
        "no importer run was killed before the import was complete"
    );

    // Another run of the import finds every ticket present and appends nothing.
    let mut rerun = Process::spawn(import_command(&target), logs.path(), "import-final");
    let status = rerun.wait_exit(CHILD_LIMIT).await;
    assert_eq!(status.code(), Some(clean.exit_code), "final import run\n{}", rerun.output_tail());
    let report = rerun.stdout_text();
    assert!(report.contains("добавлено событий:      0"), "{report}");
    assert!(report.contains(&format!("уже были в хранилище:   {}", clean.tickets)), "{report}");

    // The log: nothing lost, nothing twice, hash chains intact.
    let log = whole_log(&store).await;
    let reference_log = whole_log(&reference_store).await;
    assert_same_streams(&opened(&store, &log).await, &opened(&reference_store, &reference_log).await);
    assert_eq!(log.len(), clean.events, "events in the log after the kills");
    let findings = verify_log(log.clone(), &[], None);
    assert!(findings.is_empty(), "hash chain findings after the kills: {findings:?}");

    // The read model a restarted server serves, against a fold from scratch.
    let folded = fold(&log);
    let last = log.last().expect("log is not empty").checkpoint();
    check_final_server(&target, &store, &folded, last, logs.path()).await;
    check_stored_read_model(&store, &target.config(), &log, &folded, last).await;

    // The statistics equal those of the clean import.
    assert_same_statistics(&folded, &fold(&reference_log));

    println!("{backend:?}: crash scenario passed in {:.1} s", started.elapsed().as_secs_f64());
    drop(store);
    drop(reference_store);
    target.cleanup().await;
    reference.cleanup().await;
}

/// Runs the importer once without interruption, noting when the first event appears.
async fn clean_import(reference: &Target, store: &Store, logs: &Path) -> CleanImport {
    let mut process = Process::spawn(import_command(reference), logs, "import-clean");
    let deadline = Instant::now() + CHILD_LIMIT;
    let mut first_event_after = None;
    let status = loop {
        if first_event_after.is_none() && store.count_events().await.expect("events are countable") > 0 {
            first_event_after = Some(process.elapsed());
        }
        if let Some(status) = process.try_exit() {
            break status;
        }
        assert!(Instant::now() < deadline, "clean import did not finish\n{}", process.output_tail());
        tokio::time::sleep(POLL).await;
    };
    let duration = process.elapsed();
    let report = process.stdout_text();
    let exit_code = status.code().unwrap_or_else(|| panic!("clean import killed: {status}\n{}", process.output_tail()));
    assert!(exit_code == 0 || exit_code == 3, "clean import exit code {exit_code}\n{}", process.output_tail());
    let tickets = report_number(&report, "импортировано заявок:");
    let events = store.count_events().await.expect("events are countable") as usize;
    assert_eq!(report_number(&report, "добавлено событий:"), events, "{report}");
    assert!(tickets > 9_000, "{report}");
    CleanImport { exit_code, events, tickets, first_event_after: first_event_after.unwrap_or(duration), duration }
}

/// Reads the number after `label` in the importer's report.
fn report_number(report: &str, label: &str) -> usize {
    let line = report.lines().find(|line| line.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no «{label}» in\n{report}"));
    line.trim_start()[label.len()..].split_whitespace().next().and_then(|number| number.parse().ok()).unwrap_or_else(|| panic!("no number in «{line}»"))
}

/// One SIGKILL the test sent.
struct KillRecord {
    process: &'static str,
    detail: String,
    /// True when the killed process had work left: events still to import, or events the
    /// projection had not committed yet.
    mid_work: bool,
}

#[derive(Default)]
struct KillLog {
    records: Vec<KillRecord>,
    import_runs: usize,
    server_runs: usize,
}

impl KillLog {
    fn print(&self, backend: Backend) {
        for (number, kill) in self.records.iter().enumerate() {
            println!("{backend:?}: kill {:>2}: {}", number + 1, kill.detail);
        }
        let count = |process: &str, mid_work: bool| {
            self.records.iter().filter(|kill| kill.process == process && (kill.mid_work || !mid_work)).count()
        };
        println!(
            "{backend:?}: {} kills: importer {} ({} mid-import) in {} runs, server {} ({} with events still to project) in {} runs",
            self.records.len(),
            count("import", false),
            count("import", true),
            self.import_runs,
            count("server", false),
            count("server", true),
            self.server_runs
        );
    }
}

/// When the test kills an importer run.
enum ImportTrigger {
    /// At this moment, usually before the run has written anything.
    At(Instant),
    /// Once the log contains this many events.
    Events(usize),
}

/// When the test kills a server run: after `commits` commits of the projection checkpoint, or at
/// `deadline`, whichever comes first.
struct ServerTrigger {
    commits: Option<u32>,
    deadline: Instant,
}

/// Runs the importer and a server side by side and kills both at random moments, restarting
/// them, until the import has completed and at least [`MIN_KILLS`] kills were sent.
async fn kill_until_imported(store: &Store, target: &Target, clean: &CleanImport, rng: &mut StdRng, logs: &Path) -> KillLog {
    let mut log = KillLog::default();
    let max_events_per_run = (clean.events / MAX_EVENTS_PER_RUN_DIVISOR).max(1);
    let start_up_millis = clean.first_event_after.as_millis().max(200) as u64;
    let mut importer: Option<(Process, ImportTrigger)> = None;
    let mut server: Option<(Process, ServerTrigger)> = None;
    let mut server_due = Instant::now();
    let mut import_done = false;
    let mut checkpoint = projection_checkpoint(store.pool()).await;
    let mut checkpoint_commits = 0;

    loop {
        let events = store.count_events().await.expect("events are countable") as usize;
        let current = projection_checkpoint(store.pool()).await;
        if current != checkpoint {
            checkpoint = current;
            checkpoint_commits += 1;
        }

        // The importer: start a run, or see whether the running one finished or is due a kill.
        if !import_done {
            let mut ended = None;
            match importer.as_mut() {
                None => {
                    log.import_runs += 1;
                    let process = Process::spawn(import_command(target), logs, &format!("import-{}", log.import_runs));
                    let trigger = if rng.gen_bool(TIME_KILL_PROBABILITY) {
                        ImportTrigger::At(Instant::now() + Duration::from_millis(rng.gen_range(0..=start_up_millis)))
                    } else {
                        ImportTrigger::Events(events + rng.gen_range(1..=max_events_per_run))
                    };
                    importer = Some((process, trigger));
                }
                Some((process, trigger)) => {
                    let due = match trigger {
                        ImportTrigger::At(moment) => Instant::now() >= *moment,
                        ImportTrigger::Events(count) => events >= *count,
                    };
                    if let Some(status) = process.try_exit() {
                        ended = Some(status);
                    } else if due {
                        match process.sigkill() {
                            KillOutcome::Killed => {
                                log.records.push(KillRecord {
                                    process: "import",
                                    detail: format!(
                                        "import run {} after {:.2} s, {events} of {} events stored",
                                        log.import_runs,
                                        process.elapsed().as_secs_f64(),
                                        clean.events
                                    ),
                                    mid_work: events < clean.events,
                                });
                                importer = None;
                            }
                            KillOutcome::AlreadyExited(status) => ended = Some(status),
                        }
                    }
                }
            }
            if let Some(status) = ended {
                let (process, _) = importer.take().expect("an importer ran");
                assert_eq!(status.code(), Some(clean.exit_code), "importer exited with {status}\n{}", process.output_tail());
                println!("import run {} completed after {:.2} s", log.import_runs, process.elapsed().as_secs_f64());
                import_done = true;
            }
        }

        // The server: start it after a pause, or kill it when its trigger is due.
        match server.as_mut() {
            None if Instant::now() >= server_due => {
                log.server_runs += 1;
                let process = Process::spawn(serve_command(target), logs, &format!("serve-{}", log.server_runs));
                let lifetime = Duration::from_millis(if import_done { rng.gen_range(100..=2_500) } else { rng.gen_range(100..=4_000) });
                let commits = (!import_done && rng.gen_bool(0.5)).then(|| rng.gen_range(1..=3));
                checkpoint_commits = 0;
                server = Some((process, ServerTrigger { commits, deadline: Instant::now() + lifetime }));
            }
            None => {}
            Some((process, trigger)) => {
                if let Some(status) = process.try_exit() {
                    panic!("the server exited by itself with {status}\n{}", process.output_tail());
                }
                let due = Instant::now() >= trigger.deadline || trigger.commits.is_some_and(|commits| checkpoint_commits >= commits);
                if due {
                    let head = store.last_position().await.expect("log head is readable");
                    let elapsed = process.elapsed();
                    if process.sigkill() == KillOutcome::Killed {
                        log.records.push(KillRecord {
                            process: "server",
                            detail: format!(
                                "server run {} after {:.2} s, projection at position {} of log head {head}",
                                log.server_runs,
                                elapsed.as_secs_f64(),
                                checkpoint.1
                            ),
                            mid_work: !import_done || checkpoint.1 < head,
                        });
                    }
                    server = None;
                    let pause = if import_done { 0 } else { rng.gen_range(0..=800) };
                    server_due = Instant::now() + Duration::from_millis(pause);
                }
            }
        }

        if import_done && log.records.len() >= MIN_KILLS {
            if let Some((mut process, _)) = server.take() {
                process.sigkill();
            }
            return log;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Returns the committed checkpoint of the ticket views as `(tx, position)`, or `(0, 0)` before
/// the first server has created the table.
async fn projection_checkpoint(pool: &DbPool) -> (i64, i64) {
    const SELECT: &str = "SELECT tx, position FROM projection_checkpoints WHERE name = $1";
    let row: Result<Option<(i64, i64)>, sqlx::Error> = match pool {
        DbPool::Postgres(pool) => sqlx::query_as(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_as(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await,
    };
    row.ok().flatten().unwrap_or_default()
}

/// Reads the whole log in log order. Every writer has stopped, so the committed log is the log
/// the projections read, and other databases' open transactions cannot hide part of it.
async fn whole_log(store: &Store) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    let mut after = LogCheckpoint::START;
    loop {
        let page = store.read_committed_log(after, 5_000).await.expect("log is readable");
        let Some(last) = page.last() else {
            return events;
        };
        after = last.checkpoint();
        events.extend(page);
    }
}

/// Returns the events with the residents' personal data opened, so that logs of two databases,
/// each sealed with keys of its own, compare by content.
async fn opened(store: &Store, log: &[StoredEvent]) -> Vec<StoredEvent> {
    let mut opened = Vec::with_capacity(log.len());
    for page in log.chunks(1_000) {
        let ring = {
            let payloads: Vec<&Value> = page.iter().map(|event| event.payload.value()).collect();
            store.key_ring(&payloads).await.expect("keys are readable")
        };
        for event in page {
            let mut event = event.clone();
            opencity_store::personal::open_value(&ring, &event.stream_id, &mut event.payload);
            opened.push(event);
        }
    }
    opened
}

/// The parts of an event that do not depend on when and in which order it was written.
type EventContent = (i64, String, String, Value, Value);

fn streams(log: &[StoredEvent]) -> BTreeMap<String, Vec<EventContent>> {
    let mut streams: BTreeMap<String, Vec<EventContent>> = BTreeMap::new();
    for event in log {
        streams.entry(event.stream_id.clone()).or_default().push((
            event.sequence,
            event.event_type.clone(),
            event.event_version.clone(),
            event.payload.value().clone(),
            event.metadata.value().clone(),
        ));
    }
    for events in streams.values_mut() {
        events.sort_by_key(|event| event.0);
    }
    streams
}

/// Asserts that both logs contain the same streams with the same events.
fn assert_same_streams(log: &[StoredEvent], reference_log: &[StoredEvent]) {
    let actual = streams(log);
    let expected = streams(reference_log);
    let missing: Vec<&String> = expected.keys().filter(|id| !actual.contains_key(*id)).collect();
    let extra: Vec<&String> = actual.keys().filter(|id| !expected.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} tickets lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(extra.is_empty(), "{} tickets not in the clean import, e.g. {:?}", extra.len(), &extra[..extra.len().min(5)]);
    let differing: Vec<&String> = expected.keys().filter(|id| actual[*id] != expected[*id]).collect();
    if let Some(first) = differing.first() {
        panic!(
            "{} tickets have other events than in the clean import; first {first}:\nafter kills: {:#?}\nclean: {:#?}",
            differing.len(),
            actual[*first],
            expected[*first]
        );
    }
}

fn fold(log: &[StoredEvent]) -> BTreeMap<Uuid, TicketView> {
    fold_from_scratch(log.iter().map(|event| {
        let ticket_id = Uuid::parse_str(&event.stream_id).expect("ticket stream id is a UUID");
        let decoded = event.ticket_event().expect("ticket event decodes");
        (ticket_id, event.position, decoded)
    }))
}

/// Starts a server that is not killed, waits until its projection has reached the end of the
/// log, and compares what it serves with the fold.
async fn check_final_server(target: &Target, store: &Store, folded: &BTreeMap<Uuid, TicketView>, last: LogCheckpoint, logs: &Path) {
    let token = common::admin_token(store).await;
    let mut server = Process::spawn(serve_command(target), logs, "serve-final");
    let base_url = server.server_base_url(CHILD_LIMIT).await;
    let deadline = Instant::now() + CHILD_LIMIT;
    while projection_checkpoint(store.pool()).await != (last.tx, last.position) {
        assert!(Instant::now() < deadline, "projection did not reach {last:?}\n{}", server.output_tail());
        tokio::time::sleep(POLL).await;
    }

    // The server publishes its checkpoint just after the commit the loop above saw.
    let client = common::authorized_client(&token);
    loop {
        let (status, ready) = readyz(&client, &base_url).await.expect("/readyz responds");
        assert_eq!(status, 200, "{ready}");
        if ready["projectedPosition"] == json!(last.position) {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never reported position {}: {ready}", last.position);
        tokio::time::sleep(POLL).await;
    }

    let query = r#"{ slaStats(groupBy: [ORGANIZATION]) { group { value } received resolved resolvedOnTime cancelled flagged }
        overdueCounters(groupBy: [ORGANIZATION], asOf: "2018-01-15T00:00:00Z") { group { value } open overdue } }"#;
    let (status, response) = post_graphql(&client, &base_url, query, json!({}), None).await.expect("server responds");
    assert_eq!(status, 200, "{response}");
    assert!(response["errors"].is_null(), "{response}");

    let served: BTreeMap<Option<String>, [u64; 5]> = response["data"]["slaStats"]
        .as_array()
        .expect("slaStats rows")
        .iter()
        .map(|row| {
            let counts = ["received", "resolved", "resolvedOnTime", "cancelled", "flagged"].map(|field| row[field].as_u64().expect("count"));
            (row["group"][0]["value"].as_str().map(str::to_string), counts)
        })
        .collect();
    let expected: BTreeMap<Option<String>, [u64; 5]> = sla_stats(folded.values(), &[Dimension::Organization], &StatsFilter::default(), opencity_projections::DEFAULT_TIME_ZONE)
        .into_iter()
        .map(|row| (row.key[0].1.clone(), [row.received, row.resolved, row.resolved_on_time, row.cancelled, row.flagged]))
        .collect();
    assert_eq!(served, expected, "slaStats by organization served after the kills");

    let as_of = Utc.with_ymd_and_hms(2018, 1, 15, 0, 0, 0).unwrap();
    let served: BTreeMap<Option<String>, [u64; 2]> = response["data"]["overdueCounters"]
        .as_array()
        .expect("overdueCounters rows")
        .iter()
        .map(|row| (row["group"][0]["value"].as_str().map(str::to_string), ["open", "overdue"].map(|field| row[field].as_u64().expect("count"))))
        .collect();
    let expected: BTreeMap<Option<String>, [u64; 2]> = overdue_counters(folded.values(), &[Dimension::Organization], as_of, opencity_projections::DEFAULT_TIME_ZONE)
        .into_iter()
        .map(|row| (row.key[0].1.clone(), [row.open, row.overdue]))
        .collect();
    assert_eq!(served, expected, "overdueCounters by organization served after the kills");

    server.sigterm();
    let status = server.wait_exit(CHILD_LIMIT).await;
    assert!(status.success(), "server stopped with {status}\n{}", server.output_tail());
}

/// Compares the stored read model (views, checkpoint, reference entities) with the fold, in
/// process and through the replay tool's `diff`.
async fn check_stored_read_model(store: &Store, config: &StoreConfig, log: &[StoredEvent], folded: &BTreeMap<Uuid, TicketView>, last: LogCheckpoint) {
    let read_model = ReadModel::open(store.clone()).await.expect("stored read model reopens");
    assert_eq!(read_model.checkpoint(), last, "stored projection checkpoint");

    let views = read_model.views().await;
    assert_eq!(views.len(), folded.len(), "stored ticket views");
    let differing: Vec<&Uuid> = folded.keys().filter(|id| views.get(*id) != folded.get(*id)).collect();
    if let Some(first) = differing.first() {
        panic!(
            "{} stored views differ from the fold; first {first}:\nstored: {:#?}\nfolded: {:#?}",
            differing.len(),
            views.get(*first),
            folded.get(*first)
        );
    }
    drop(views);

    let mut expected_reference = ReferenceIndex::default();
    for event in log {
        if let Some(entity) = ReferenceEntity::from_event(&event.ticket_event().expect("ticket event decodes")) {
            expected_reference.insert(entity);
        }
    }
    assert!(*read_model.reference().await == expected_reference, "stored reference entities differ from the log");

    let source = LogSource::open(config).await.expect("replay tool opens the store");
    let report = opencity_replay_tool::diff::diff(&source).await.expect("replay tool diff runs");
    assert!(report.drifts.is_empty(), "replay tool found drift: {:?}", &report.drifts[..report.drifts.len().min(5)]);
    assert_eq!(report.live_views, folded.len());
    assert_eq!(report.replayed_views, folded.len());
    assert_eq!(report.checkpoint_position, last.position);
}

/// Asserts equal SLA statistics and overdue counters over two sets of views.
fn assert_same_statistics(actual: &BTreeMap<Uuid, TicketView>, expected: &BTreeMap<Uuid, TicketView>) {
    let zone = chrono_tz::America::Los_Angeles;
    let groupings: [&[Dimension]; 4] = [&[], &[Dimension::Organization], &[Dimension::Category], &[Dimension::Organization, Dimension::Day]];
    for group_by in groupings {
        let left = sla_stats(actual.values(), group_by, &StatsFilter::default(), zone);
        let right = sla_stats(expected.values(), group_by, &StatsFilter::default(), zone);
        assert_eq!(left, right, "slaStats grouped by {group_by:?} differ from the clean import");
    }
    for as_of in [Utc.with_ymd_and_hms(2017, 12, 29, 12, 0, 0).unwrap(), Utc.with_ymd_and_hms(2018, 6, 1, 0, 0, 0).unwrap()] {
        let left = overdue_counters(actual.values(), &[Dimension::Organization], as_of, zone);
        let right = overdue_counters(expected.values(), &[Dimension::Organization], as_of, zone);
        assert_eq!(left, right, "overdueCounters as of {as_of} differ from the clean import");
    }
}
