//! Command-line arguments, Russian output and exit codes of `opencity-replay`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand};
use opencity_projections::{Dimension, GroupKey, OverdueRow, SlaStatsRow, DEFAULT_TIME_ZONE};
use opencity_store::StoreConfig;
use serde::Serialize;

use crate::asof::{as_of, AsOfError, AsOfReport, Moment};
use crate::diff::{diff, DiffError, DiffReport};
use crate::export::{export, ExportError};
use crate::history::{history, render, HistoryError};
use crate::replay::replay_all;
use crate::source::{format_time, LogSource, SourceError};
use crate::verify::{verify, VerifyReport};
use opencity_store::integrity::parse_public_key;

/// The log is intact, or the command finished.
pub const EXIT_OK: u8 = 0;
/// `verify` found problems, or `diff` found drift.
pub const EXIT_FINDINGS: u8 = 1;
/// Invalid arguments, a missing database, a connection or read error.
pub const EXIT_USAGE: u8 = 2;

/// Проверка и воспроизведение журнала событий «Открытого города» для аудиторов. Программа
/// только читает базу данных и ничего в неё не записывает.
///
/// Коды завершения: 0 — журнал цел (или команда выполнена), 1 — найдены нарушения или
/// расхождения, 2 — ошибка в аргументах или при подключении к базе.
#[derive(Parser, Debug)]
#[command(name = "opencity-replay", version)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Где хранится журнал.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Каталог данных сервера с файлом opencity.sqlite (если не задан --database-url).
    #[arg(
        long,
        global = true,
        env = "OPENCITY_DATA_DIR",
        default_value = "data",
        conflicts_with = "database_url"
    )]
    pub data_dir: PathBuf,
    /// Адрес PostgreSQL вместо SQLite, например postgres://postgres@127.0.0.1:5432/opencity.
    #[arg(long, global = true, env = "OPENCITY_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// Returns the database configuration the arguments select.
    pub fn config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres { url: url.clone() },
            None => StoreConfig::Sqlite {
                data_dir: self.data_dir.clone(),
            },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Проверить целостность журнала: нумерацию событий в потоках и читаемость каждого события.
    Verify {
        /// Файл открытого ключа для проверки подписей контрольных точек.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Вывести результат в JSON.
        #[arg(long)]
        json: bool,
    },
    /// Показать историю одной заявки: когда, кто, что сделал и состояние SLA после каждого шага.
    History {
        /// Идентификатор заявки (UUID) или её внешний номер.
        ticket: String,
        /// Вывести результат в JSON.
        #[arg(long)]
        json: bool,
    },
    /// Рассчитать статистику SLA и счётчики просрочек на прошлый момент.
    AsOf(AsOfArgs),
    /// Воспроизвести витрины заявок из журнала с нуля и вывести сводку.
    Rebuild {
        /// Вывести воспроизведённые витрины в JSON Lines, по одной заявке в строке.
        #[arg(long)]
        json: bool,
    },
    /// Сравнить рабочие витрины заявок с витринами, воспроизведёнными из журнала.
    Diff {
        /// Вывести результат в JSON.
        #[arg(long)]
        json: bool,
    },
    /// Выгрузить журнал в JSON Lines (формат описан в docs/export-format.md).
    Export {
        /// Первая выгружаемая глобальная позиция (включительно).
        #[arg(long, value_name = "N")]
        from: Option<i64>,
        /// Последняя выгружаемая глобальная позиция (включительно).
        #[arg(long, value_name = "M")]
        to: Option<i64>,
        /// Файл для выгрузки; по умолчанию стандартный вывод.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct AsOfArgs {
    /// Момент в формате RFC 3339, например 2024-03-01T12:00:00Z: учитываются события, записанные
    /// в базу не позже него.
    #[arg(
        value_name = "TIME",
        required_unless_present = "position",
        conflicts_with = "position"
    )]
    pub time: Option<DateTime<Utc>>,
    /// Глобальная позиция: учитываются события журнала до неё включительно.
    #[arg(long, value_name = "N")]
    pub position: Option<i64>,
    /// Момент, на который считаются просрочки (RFC 3339). По умолчанию — TIME, а для
    /// --position — наибольшее время событий, вошедших в расчёт.
    #[arg(long, value_name = "TIME")]
    pub at: Option<DateTime<Utc>>,
    /// Измерения группировки через запятую: organization, contractor, category, priority,
    /// district, building, channel, day, week, month.
    #[arg(long, value_delimiter = ',', value_parser = parse_dimension)]
    pub group_by: Vec<Dimension>,
    /// Часовой пояс для периодов day, week, month (IANA, по умолчанию Europe/Moscow).
    #[arg(long, value_parser = parse_time_zone)]
    pub time_zone: Option<Tz>,
    /// Вывести результат в JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_dimension(name: &str) -> Result<Dimension, String> {
    Dimension::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Dimension::ALL
            .iter()
            .map(|dimension| dimension.as_str())
            .collect();
        format!(
            "неизвестное измерение «{name}»; допустимы: {}",
            known.join(", ")
        )
    })
}

fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.parse().map_err(|_| {
        format!("неизвестный часовой пояс «{name}»; укажите имя IANA, например Europe/Moscow")
    })
}

/// Runs the command and returns the exit code. Errors that reach the caller are unexpected
/// failures; known ones are printed here with their codes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let source = match LogSource::open(&cli.store.config()).await {
        Ok(source) => source,
        Err(error) => return Ok(usage_error(error.code(), &error.to_string())),
    };
    let code = match cli.command {
        Command::Verify { public_key, json } => run_verify(&source, public_key, json).await?,
        Command::History { ticket, json } => match history(&source, &ticket).await {
            Ok(history) if json => print_json(&history)?,
            Ok(history) => {
                print!("{}", render(&history));
                ExitCode::from(EXIT_OK)
            }
            Err(HistoryError::NotFound(_)) => usage_error(
                "TICKET_NOT_FOUND",
                &HistoryError::NotFound(ticket).to_string(),
            ),
            Err(HistoryError::Source(error)) => source_error(&error),
        },
        Command::AsOf(args) => run_as_of(&source, args).await?,
        Command::Rebuild { json } => run_rebuild(&source, json).await?,
        Command::Diff { json } => match diff(&source).await {
            Ok(report) => print_diff(&report, json)?,
            Err(DiffError::NoReadModel) => {
                usage_error("READ_MODEL_NOT_FOUND", &DiffError::NoReadModel.to_string())
            }
            Err(DiffError::Source(error)) => source_error(&error),
        },
        Command::Export { from, to, output } => run_export(&source, from, to, output).await?,
    };
    Ok(code)
}

fn usage_error(code: &str, message: &str) -> ExitCode {
    eprintln!("ошибка [{code}]: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn source_error(error: &SourceError) -> ExitCode {
    usage_error(error.code(), &error.to_string())
}

fn print_json(value: &impl Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::from(EXIT_OK))
}

async fn run_verify(
    source: &LogSource,
    public_key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = match &public_key {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Err(error) => {
                let message = format!(
                    "не удалось прочитать файл ключа {}: {error}",
                    path.display()
                );
                return Ok(usage_error("PUBLIC_KEY_UNREADABLE", &message));
            }
            Ok(text) => match parse_public_key(&text) {
                Ok(key) => Some(key),
                Err(error) => {
                    let message = format!(
                        "файл {} не содержит открытый ключ Ed25519 (64 шестнадцатеричные цифры): {error}",
                        path.display()
                    );
                    return Ok(usage_error("PUBLIC_KEY_INVALID", &message));
                }
            },
        },
    };
    let report = match verify(source, key).await {
        Ok(report) => report,
        Err(error) => return Ok(source_error(&error)),
    };
    let code = if report.is_intact() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_FINDINGS)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_verify(&report));
    }
    Ok(code)
}

/// Renders the verification report in Russian.
pub fn render_verify(report: &VerifyReport) -> String {
    let mut out = format!(
        "Проверено событий: {}, потоков: {}, контрольных точек: {}\n",
        report.events, report.streams, report.checkpoints
    );
    out.push_str("Проверки: нумерация событий в каждом потоке, читаемость и тип каждого события, версия, метаданные, время события.\n");
    if report.hashes_present {
        out.push_str("Проверены цепочки хешей и подписанные контрольные точки.\n");
        if !report.public_key_given && report.checkpoints > 0 {
            out.push_str("Внимание: ключ не указан (--public-key), подписи проверены ключом, записанным в самой контрольной точке; это не защищает от подмены ключа.\n");
        }
    } else {
        out.push_str("Внимание: цепочка хешей и контрольные точки не проверялись: журнал хранится без хешей.\n");
    }
    if report.is_intact() {
        out.push_str("Результат: нарушений не найдено, журнал цел.\n");
        return out;
    }
    out.push_str(&format!(
        "Результат: найдено нарушений — {}\n",
        report.findings.len()
    ));
    for finding in &report.findings {
        let mut place = match finding.stream_id.is_empty() {
            true => String::new(),
            false => format!(
                "поток {}/{}, событие № {}, позиция {}",
                finding.stream_type,
                finding.stream_id,
                finding
                    .sequence
                    .map_or("—".to_string(), |sequence| sequence.to_string()),
                finding
                    .position
                    .map_or("—".to_string(), |position| position.to_string()),
            ),
        };
        if let Some(id) = finding.checkpoint_id {
            if !place.is_empty() {
                place.push_str(", ");
            }
            place.push_str(&format!("контрольная точка № {id}"));
        }
        out.push_str(&format!(
            "- {place}: {} [{}]: {}\n",
            finding.kind.name_ru(),
            serde_json::to_value(finding.kind)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default(),
            finding.detail
        ));
    }
    out
}

async fn run_as_of(source: &LogSource, args: AsOfArgs) -> anyhow::Result<ExitCode> {
    let moment = match (args.position, args.time) {
        (Some(position), _) if position < 0 => {
            return Ok(usage_error(
                "INVALID_POSITION",
                "позиция не может быть отрицательной",
            ));
        }
        (Some(position), _) => Moment::Position(position),
        (None, Some(time)) => Moment::Time(time),
        (None, None) => {
            return Ok(usage_error(
                "MISSING_MOMENT",
                "укажите момент TIME или --position N",
            ));
        }
    };
    let time_zone = args.time_zone.unwrap_or(DEFAULT_TIME_ZONE);
    let report = match as_of(source, moment, args.at, &args.group_by, time_zone).await {
        Ok(report) => report,
        Err(AsOfError::UnknownPosition(position)) => {
            let message = AsOfError::UnknownPosition(position).to_string();
            return Ok(usage_error("POSITION_NOT_FOUND", &message));
        }
        Err(AsOfError::Source(error)) => return Ok(source_error(&error)),
    };
    if args.json {
        return print_json(&report);
    }
    print!("{}", render_as_of(&report));
    Ok(ExitCode::from(EXIT_OK))
}

/// Renders the `as-of` statistics as Russian tables.
pub fn render_as_of(report: &AsOfReport) -> String {
    let mut out = format!(
        "Учтено событий: {} (до позиции {}), заявок: {}\n",
        report.events, report.position, report.tickets
    );

    out.push_str("\nСтатистика SLA\n");
    let header = [
        "Группа",
        "Поступило",
        "Выполнено",
        "В срок",
        "Доля в срок",
        "Медиана принятия, ч",
        "Медиана выполнения, ч",
        "Возвращено",
        "Отменено",
    ];
    let rows: Vec<Vec<String>> = report.sla_stats.iter().map(sla_cells).collect();
    out.push_str(&table(&header, &rows));

    match report.evaluated_at {
        Some(at) => out.push_str(&format!("\nПросрочки на {}\n", format_time(at))),
        None => {
            out.push_str(
                "\nПросрочки не рассчитаны: в выбранной части журнала нет событий заявок.\n",
            );
            return out;
        }
    }
    let header = [
        "Группа",
        "Открыто",
        "Просрочено",
        "По реагированию",
        "По устранению",
    ];
    let rows: Vec<Vec<String>> = report.overdue_counters.iter().map(overdue_cells).collect();
    out.push_str(&table(&header, &rows));
    out
}

fn group_label(key: &GroupKey) -> String {
    if key.is_empty() {
        return "всего".to_string();
    }
    key.iter()
        .map(|(dimension, value)| {
            format!("{}={}", dimension.as_str(), value.as_deref().unwrap_or("—"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sla_cells(row: &SlaStatsRow) -> Vec<String> {
    let hours =
        |seconds: Option<f64>| seconds.map_or("—".to_string(), |s| format!("{:.1}", s / 3600.0));
    vec![
        group_label(&row.key),
        row.received.to_string(),
        row.resolved.to_string(),
        row.resolved_on_time.to_string(),
        row.on_time_share
            .map_or("—".to_string(), |share| format!("{:.1} %", share * 100.0)),
        hours(row.accept_median_seconds),
        hours(row.resolve_median_seconds),
        row.reopened.to_string(),
        row.cancelled.to_string(),
    ]
}

fn overdue_cells(row: &OverdueRow) -> Vec<String> {
    vec![
        group_label(&row.key),
        row.open.to_string(),
        row.overdue.to_string(),
        row.overdue_response.to_string(),
        row.overdue_resolution.to_string(),
    ]
}

/// Lays out rows under a header with columns separated by ` | `, padded by characters.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(header.to_vec());
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|width| "-".repeat(*width))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

async fn run_rebuild(source: &LogSource, json: bool) -> anyhow::Result<ExitCode> {
    let replay = match replay_all(source).await {
        Ok(replay) => replay,
        Err(error) => return Ok(source_error(&error)),
    };
    if json {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        for view in replay.views.values() {
            serde_json::to_writer(&mut out, view)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(ExitCode::from(EXIT_OK));
    }
    let open = replay
        .views
        .values()
        .filter(|view| view.status.is_open())
        .count();
    let flagged = replay
        .views
        .values()
        .filter(|view| !view.flagged.is_empty())
        .count();
    println!("Витрины воспроизведены из журнала с нуля (в базу ничего не записано).");
    println!(
        "Учтено событий заявок: {}, пропущено нечитаемых: {}",
        replay.events, replay.skipped
    );
    println!("Последняя позиция: {}", replay.last.position);
    println!(
        "Заявок: {}, из них открытых: {open}, с аномалиями данных: {flagged}",
        replay.views.len()
    );
    Ok(ExitCode::from(EXIT_OK))
}

fn print_diff(report: &DiffReport, json: bool) -> anyhow::Result<ExitCode> {
    let code = if report.drifts.is_empty() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_FINDINGS)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(code);
    }
    println!(
        "Рабочие витрины актуальны до позиции {}; журнал воспроизведён до той же позиции.",
        report.checkpoint_position
    );
    println!(
        "Заявок в рабочей витрине: {}, в воспроизведении: {}",
        report.live_views, report.replayed_views
    );
    if report.drifts.is_empty() {
        println!("Расхождений нет.");
        return Ok(code);
    }
    println!("Найдено расхождений: {}", report.drifts.len());
    for drift in &report.drifts {
        let external = drift
            .external_id
            .as_deref()
            .map(|id| format!(" (внешний номер {id})"))
            .unwrap_or_default();
        println!(
            "- заявка {}{external}: {}: {}",
            drift.ticket_id,
            drift.kind.name_ru(),
            drift.detail
        );
    }
    Ok(code)
}

async fn run_export(
    source: &LogSource,
    from: Option<i64>,
    to: Option<i64>,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let result = match &output {
        Some(path) => match File::create(path) {
            Ok(file) => export(source, from, to, &mut BufWriter::new(file)).await,
            Err(error) => {
                let message = format!("не удалось создать файл {}: {error}", path.display());
                return Ok(usage_error("OUTPUT_UNWRITABLE", &message));
            }
        },
        None => {
            let stdout = std::io::stdout();
            export(source, from, to, &mut BufWriter::new(stdout.lock())).await
        }
    };
    match result {
        Ok(lines) => {
            if output.is_some() {
                eprintln!("Выгружено событий: {lines}");
            }
            Ok(ExitCode::from(EXIT_OK))
        }
        Err(ExportError::Source(error)) => Ok(source_error(&error)),
        Err(error) => Ok(usage_error("EXPORT_FAILED", &error.to_string())),
    }
}
