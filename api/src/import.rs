//! File import and the demo city: parsed records become ticket streams through the store.

use std::path::Path;

use futures::stream::{self, StreamExt, TryStreamExt};
use opencity_domain::TicketServices;
use opencity_fixtures::import::{parse_file, ImportFormat, ImportedTicket};
use opencity_store::{BulkItem, CommandError, CommandMetadata, CommandOutcome, Store};

use crate::cli::DemoOptions;
use crate::errors::command_error;

/// Tickets appended in one store transaction.
const IMPORT_BATCH: usize = 100;
/// Batches written at once; PostgreSQL gains from parallel transactions, SQLite serializes them.
const IMPORT_CONCURRENCY: usize = 8;

/// Outcome of an import, which sets the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportExit {
    /// Every record was imported or was already present.
    Clean,
    /// Some records were rejected; the rest were imported.
    RecordsRejected,
    /// The file could not be read as a whole; nothing was imported.
    FileRejected,
}

/// Counts of one import run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub records: usize,
    pub imported: usize,
    pub already_present: usize,
    pub events: usize,
    pub rejected: usize,
    pub flagged: usize,
}

/// Imports one file and prints a Russian report: each rejected record with its line, then the
/// counts.
pub async fn import_file(
    store: &Store,
    services: &TicketServices,
    format: ImportFormat,
    path: &Path,
) -> anyhow::Result<ImportExit> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("Ошибка: не удалось прочитать файл {}: {error}. Проверьте путь и права доступа.", path.display());
            return Ok(ImportExit::FileRejected);
        }
    };
    let mut parsed = match parse_file(format, &bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("Ошибка [{}] в файле {}: {}", error.code(), path.display(), error.message_ru());
            return Ok(ImportExit::FileRejected);
        }
    };

    let refitted = parsed.fit_to_catalogue(&services.sla);
    if refitted > 0 {
        println!(
            "Заявок без действующего правила SLA на дату регистрации: {refitted}; им назначена резервная категория «{}».",
            services.sla.fallback_category().code
        );
    }
    for error in &parsed.errors {
        let record = error.record_id.as_deref().map(|id| format!(" (запись {id})")).unwrap_or_default();
        eprintln!("Строка {}{record}: [{}] {}", error.line, error.code, error.message);
    }
    let mut summary = write_tickets(store, services, parsed.tickets, "import").await?;
    summary.rejected += parsed.errors.len();
    summary.records += parsed.errors.len();

    print_summary(path, &summary);
    Ok(if summary.rejected == 0 { ImportExit::Clean } else { ImportExit::RecordsRejected })
}

/// Loads the demo city into the store.
pub async fn load_demo(store: &Store, services: &TicketServices, options: &DemoOptions) -> anyhow::Result<ImportSummary> {
    let city = opencity_fixtures::demo::demo_city(options.demo_seed, options.demo_tickets, chrono::Utc::now());
    println!("Загрузка демонстрационного города: {} заявок…", city.tickets.len());
    let summary = write_tickets(store, services, city.tickets, "demo").await?;
    println!(
        "Демонстрационный город загружен: {} заявок, {} событий.",
        summary.imported, summary.events
    );
    Ok(summary)
}

/// Writes each ticket's whole history atomically. A ticket already in the store (same source
/// record id) is skipped, so a second run appends nothing.
pub async fn write_tickets(
    store: &Store,
    services: &TicketServices,
    tickets: Vec<ImportedTicket>,
    source: &str,
) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary { records: tickets.len(), ..ImportSummary::default() };
    let batches: Vec<Vec<ImportedTicket>> = tickets
        .chunks(IMPORT_BATCH)
        .map(<[ImportedTicket]>::to_vec)
        .collect();
    // Each batch runs on a task of its own, so that deciding, sealing and hashing the events of
    // concurrent batches uses every core instead of the one polling them all.
    let batch_results: Vec<Vec<(ImportedTicket, Result<CommandOutcome, CommandError>)>> = stream::iter(batches)
        .map(|batch| {
            let store = store.clone();
            let services = services.clone();
            let source = source.to_string();
            tokio::spawn(async move {
                let items: Vec<BulkItem> = batch
                    .iter()
                    .map(|ticket| {
                        let metadata = CommandMetadata {
                            idempotency_key: Some(format!("{source}:{}", ticket.external_id)),
                            channel: Some(source.clone()),
                            actor: Some(format!("{source}-loader")),
                            ..CommandMetadata::default()
                        };
                        (ticket.ticket_id, ticket.commands.clone(), metadata)
                    })
                    .collect();
                let outcomes = store.execute_many(items, &services).await;
                batch.into_iter().zip(outcomes).collect()
            })
        })
        .buffer_unordered(IMPORT_CONCURRENCY)
        .try_collect()
        .await
        .map_err(|error| anyhow::anyhow!("пакет импорта прерван внутренней ошибкой: {error}. Запустите импорт снова: уже загруженные записи будут пропущены"))?;
    let results = batch_results.into_iter().flatten();

    for (ticket, result) in results {
        match result {
            Ok(outcome) if outcome.replayed => summary.already_present += 1,
            Ok(outcome) => {
                summary.imported += 1;
                summary.events += outcome.appended;
                if ticket.closed_before_created {
                    summary.flagged += 1;
                }
            }
            Err(CommandError::Store(error)) => {
                return Err(anyhow::anyhow!("хранилище событий недоступно: {error}"));
            }
            Err(error) => {
                summary.rejected += 1;
                let api_error = command_error(&error);
                eprintln!(
                    "Строка {} (запись {}): [{}] {}",
                    ticket.line, ticket.external_id, api_error.code, api_error.message
                );
            }
        }
    }
    Ok(summary)
}

fn print_summary(path: &Path, summary: &ImportSummary) {
    println!("Импорт файла {} завершён.", path.display());
    println!("  записей в файле:        {}", summary.records);
    println!("  импортировано заявок:   {}", summary.imported);
    println!("  добавлено событий:      {}", summary.events);
    println!("  уже были в хранилище:   {}", summary.already_present);
    println!("  отклонено записей:      {}", summary.rejected);
    println!("  помечено как аномалии:  {} (закрыты раньше, чем созданы)", summary.flagged);
}
