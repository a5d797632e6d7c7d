//! The command line: `opencity serve`, `opencity import`, `opencity demo`, `opencity
//! checkpoint`, `opencity keys generate`, `opencity projections rebuild`, `opencity tokens`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use opencity_domain::access::Role;
use opencity_domain::TicketServices;
use opencity_fixtures::import::ImportFormat;
use opencity_projections::runner::ReadModel;
use opencity_store::integrity::{self, generate_key_files, public_key_path, KeyFileError, SigningKey};
use opencity_store::{Checkpoint, Store, StoreConfig};

use crate::import::{import_file, load_demo, ImportExit};
use crate::limits::Limits;

/// «Открытый город»: учёт заявок ЖКХ на журнале событий.
#[derive(Parser, Debug)]
#[command(name = "opencity", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Файл справочника SLA (TOML) вместо встроенного; календари, на которые он ссылается,
    /// ищутся относительно его каталога. Так новое постановление вводится без пересборки.
    #[arg(long, global = true, env = "OPENCITY_SLA_CATALOGUE")]
    pub sla_catalogue: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Запустить сервер GraphQL (по умолчанию — на встроенной SQLite в ./data).
    Serve(ServeArgs),
    /// Импортировать заявки из файла (boston311, la311, open311).
    Import(ImportArgs),
    /// Загрузить демонстрационный город в пустое хранилище.
    Demo(DemoArgs),
    /// Записать подписанную контрольную точку журнала (дайджест голов всех потоков).
    Checkpoint(CheckpointArgs),
    /// Ключи Ed25519 для подписи контрольных точек.
    Keys(KeysArgs),
    /// Обслуживание проекций (таблиц чтения).
    Projections(ProjectionsArgs),
    /// Токены доступа к API: выпуск, список, отзыв.
    Tokens(TokensArgs),
    /// Персональные данные жителей: удаление по требованию жителя (152-ФЗ).
    Residents(ResidentsArgs),
}

#[derive(Args, Debug)]
pub struct ResidentsArgs {
    #[command(subcommand)]
    pub command: ResidentsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ResidentsCommand {
    /// Удалить персональные данные жителя: уничтожить его ключи шифрования. Имя, телефон,
    /// e-mail, помещение и тексты его заявок перестают читаться везде; статистика и журнал
    /// не меняются.
    Forget {
        #[command(flatten)]
        store: StoreArgs,
        /// Идентификатор жителя (residentId заявки) или `ticket:<UUID заявки>` для заявки,
        /// поданной без идентификатора жителя.
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Выпустить токен. Секрет печатается в stdout один раз и не хранится: сохраните его.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// Роль: resident, dispatcher, organization, contractor, analyst, auditor, admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// От чьего имени действует токен: идентификатор жителя, организации или подрядчика,
        /// район диспетчера, имя аналитика, аудитора или администратора.
        #[arg(long)]
        subject: String,
        /// Пояснение для списка токенов, например «АДС Вахитовского района, смена 2».
        #[arg(long)]
        label: Option<String>,
        /// Срок действия в днях; без него токен действует до отзыва.
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// Показать все токены (без секретов).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Отозвать токен по идентификатору из списка.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// Идентификатор токена (UUID из `opencity tokens list`).
        id: uuid::Uuid,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    name.parse::<Role>().map_err(|error| error.to_string())
}

#[derive(Args, Debug)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    pub command: ProjectionsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Перестроить проекции из всего журнала в новые таблицы и заменить ими текущие одной
    /// транзакцией; работающие серверы всё это время отвечают по старым таблицам.
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Закрытый ключ Ed25519 (PKCS#8 PEM), созданный командой `opencity keys generate`.
    #[arg(long, env = "OPENCITY_SIGNING_KEY")]
    pub signing_key: PathBuf,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Создать пару ключей: закрытый в FILE (доступ только владельцу), открытый в FILE.pub.
    Generate {
        /// Файл закрытого ключа; существующие файлы не перезаписываются.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Store options: the SQLite data directory or a PostgreSQL URL.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Каталог данных встроенной SQLite (файл opencity.sqlite создаётся при первом запуске).
    #[arg(long, env = "OPENCITY_DATA_DIR", default_value = "data", conflicts_with = "database_url")]
    pub data_dir: PathBuf,
    /// Адрес PostgreSQL вместо SQLite, например postgres://postgres@127.0.0.1:5432/opencity.
    #[arg(long, env = "OPENCITY_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub fn config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres { url: url.clone() },
            None => StoreConfig::Sqlite { data_dir: self.data_dir.clone() },
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Адрес и порт HTTP-сервера.
    #[arg(long, env = "OPENCITY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Если хранилище пусто, загрузить демонстрационный город перед запуском.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub demo_options: DemoOptions,
    /// Закрытый ключ Ed25519 (PKCS#8 PEM): с ним сервер записывает подписанные контрольные
    /// точки журнала по расписанию.
    #[arg(long, env = "OPENCITY_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Период контрольных точек в секундах, если задан --signing-key; 0 — не записывать.
    #[arg(long, env = "OPENCITY_CHECKPOINT_INTERVAL", default_value_t = DEFAULT_CHECKPOINT_INTERVAL_SECONDS)]
    pub checkpoint_interval: u64,
    /// Как часто проверять истёкшие сроки заявок и записывать события «срок истёк», в
    /// секундах; 0 — не проверять. Проверяет только сервер, который ведёт проекции.
    #[arg(long, env = "OPENCITY_DEADLINE_CHECK_INTERVAL", default_value_t = DEFAULT_DEADLINE_CHECK_INTERVAL_SECONDS)]
    pub deadline_check_interval: u64,
    /// Сколько запросов в секунду может в среднем отправлять один токен; 0 — без ограничения.
    #[arg(long, env = "OPENCITY_RATE_LIMIT", default_value_t = Limits::default().requests_per_second)]
    pub rate_limit: u32,
    /// Сколько запросов один токен может отправить подряд, прежде чем действует --rate-limit.
    #[arg(long, env = "OPENCITY_RATE_BURST", default_value_t = Limits::default().burst)]
    pub rate_burst: u32,
    /// Сколько подписок (соединений WebSocket) может держать открытыми один токен; 0 — без ограничения.
    #[arg(long, env = "OPENCITY_MAX_CONNECTIONS_PER_TOKEN", default_value_t = Limits::default().connections_per_token)]
    pub max_connections_per_token: u32,
}

/// Default period of the deadline watcher: one minute.
pub const DEFAULT_DEADLINE_CHECK_INTERVAL_SECONDS: u64 = 60;

/// Default period of scheduled checkpoints: one hour.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECONDS: u64 = 3600;

#[derive(Args, Debug, Clone)]
pub struct DemoOptions {
    /// Число заявок демонстрационного города.
    #[arg(long, default_value_t = 3000)]
    pub demo_tickets: usize,
    /// Начальное значение генератора: один и тот же seed даёт один и тот же город.
    #[arg(long, default_value_t = 2026)]
    pub demo_seed: u64,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub demo_options: DemoOptions,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum FormatArg {
    /// Выгрузка Boston 311 (CSV).
    Boston311,
    /// Выгрузка MyLA311 (CSV).
    La311,
    /// Open311 GeoReport v2 (JSON, с notes).
    Open311,
}

impl From<FormatArg> for ImportFormat {
    fn from(format: FormatArg) -> ImportFormat {
        match format {
            FormatArg::Boston311 => ImportFormat::Boston311,
            FormatArg::La311 => ImportFormat::La311,
            FormatArg::Open311 => ImportFormat::Open311,
        }
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Формат файла.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Файл для импорта.
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let catalogue = match &cli.sla_catalogue {
        Some(path) => opencity_fixtures::sla::load_catalogue(path).map_err(|error| {
            anyhow::anyhow!("справочник SLA {} не загружен [{}]: {error}", path.display(), error.code())
        })?,
        None => opencity_fixtures::sla::default_catalogue()
            .map_err(|error| anyhow::anyhow!("встроенный справочник SLA не загружен [{}]: {error}", error.code()))?,
    };
    let services = TicketServices { sla: Arc::new(catalogue) };

    match cli.command {
        Command::Serve(args) => {
            let store = open_store(&args.store).await?;
            if args.demo {
                if store.last_position().await? == 0 {
                    load_demo(&store, &services, &args.demo_options).await?;
                } else {
                    println!("Хранилище не пусто: демонстрационный город не загружается.");
                }
            }
            let now = chrono::Utc::now();
            let in_force = |token: &opencity_store::tokens::TokenRecord| {
                token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now)
            };
            if !store.list_tokens().await?.iter().any(in_force) {
                println!(
                    "Действующих токенов доступа нет, а без токена сервер отвечает 401. Выпустите первый \
                     в другом терминале: opencity tokens create --role admin --subject <имя> \
                     (с теми же параметрами хранилища)."
                );
            }
            if let Some(path) = &args.signing_key {
                let key = read_signing_key(path)?;
                spawn_checkpoints(store.clone(), key, args.checkpoint_interval);
            }
            let read_model = ReadModel::open(store.clone()).await?;
            let caught_up = read_model.catch_up().await?;
            tracing::info!(events = caught_up, "projections caught up");
            let options = crate::app::ServeOptions {
                listen: args.listen,
                deadline_check_interval: std::time::Duration::from_secs(args.deadline_check_interval),
                limits: Limits {
                    requests_per_second: args.rate_limit,
                    burst: args.rate_burst,
                    connections_per_token: args.max_connections_per_token,
                },
            };
            crate::app::serve(store, services, read_model, options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            let store = open_store(&args.store).await?;
            let exit = import_file(&store, &services, args.format.into(), &args.file).await?;
            Ok(match exit {
                ImportExit::Clean => ExitCode::SUCCESS,
                ImportExit::RecordsRejected => ExitCode::from(3),
                ImportExit::FileRejected => ExitCode::from(2),
            })
        }
        Command::Demo(args) => {
            let store = open_store(&args.store).await?;
            if store.last_position().await? != 0 {
                println!("Хранилище не пусто: демонстрационный город загружается только в пустое хранилище.");
                return Ok(ExitCode::from(2));
            }
            load_demo(&store, &services, &args.demo_options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoint(args) => {
            let key = read_signing_key(&args.signing_key)?;
            let store = open_store(&args.store).await?;
            let checkpoint = store.create_checkpoint(&key).await.map_err(|error| {
                anyhow::anyhow!("контрольная точка не записана ({}): {error}", error.code())
            })?;
            print_checkpoint(&checkpoint);
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections(ProjectionsArgs {
            command: ProjectionsCommand::Rebuild { store },
        }) => {
            let store = open_store(&store).await?;
            rebuild_projections(&store).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens(TokensArgs { command }) => run_tokens(command).await,
        Command::Residents(ResidentsArgs {
            command: ResidentsCommand::Forget { store, id },
        }) => forget_resident(&store, &id).await,
        Command::Keys(KeysArgs {
            command: KeysCommand::Generate { out },
        }) => {
            let public_key = generate_key_files(&out).map_err(|error| {
                anyhow::anyhow!("ключи не созданы ({}): {}", error.code(), describe_key_error(&error))
            })?;
            println!("Закрытый ключ записан в {} (доступ только владельцу).", out.display());
            println!("Открытый ключ записан в {}:", public_key_path(&out).display());
            println!("{public_key}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates, lists or revokes API tokens. `create` prints the secret alone on stdout, so a
/// script can capture it, and the description on stderr.
async fn run_tokens(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create { store, role, subject, label, expires_in_days } => {
            let store = open_store(&store).await?;
            let expires_at = expires_in_days.map(|days| chrono::Utc::now() + chrono::Duration::days(i64::from(days)));
            let issued = store
                .create_token(role, &subject, label.as_deref(), expires_at)
                .await
                .map_err(|error| anyhow::anyhow!("токен не выпущен: {error}"))?;
            let record = &issued.record;
            let until = match record.expires_at {
                Some(at) => format!("до {}", at.format("%Y-%m-%d %H:%M UTC")),
                None => "до отзыва".to_string(),
            };
            eprintln!(
                "Выпущен токен {} (роль «{}», субъект «{}»), действует {until}. \
                 Секрет ниже показывается один раз; передавайте его в заголовке \
                 Authorization: Bearer <секрет>.",
                record.id,
                record.role.russian(),
                record.subject
            );
            println!("{}", issued.secret);
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::List { store } => {
            let store = open_store(&store).await?;
            let tokens = store.list_tokens().await?;
            if tokens.is_empty() {
                println!("Токенов нет. Выпустите первый: opencity tokens create --role admin --subject <имя>.");
            }
            let now = chrono::Utc::now();
            for token in tokens {
                let state = match (token.revoked_at, token.expires_at) {
                    (Some(at), _) => format!("отозван {}", at.format("%Y-%m-%d %H:%M UTC")),
                    (None, Some(at)) if at <= now => format!("истёк {}", at.format("%Y-%m-%d %H:%M UTC")),
                    (None, Some(at)) => format!("действует до {}", at.format("%Y-%m-%d %H:%M UTC")),
                    (None, None) => "действует до отзыва".to_string(),
                };
                println!(
                    "{}  {:<12}  {}  выпущен {}  {state}{}",
                    token.id,
                    token.role.as_str(),
                    token.subject,
                    token.created_at.format("%Y-%m-%d %H:%M UTC"),
                    token.label.map(|label| format!("  «{label}»")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { store, id } => {
            let store = open_store(&store).await?;
            if store.revoke_token(id, chrono::Utc::now()).await? {
                println!("Токен {id} отозван: запросы с ним получают 401.");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("Действующего токена {id} нет: проверьте идентификатор в `opencity tokens list`.");
                Ok(ExitCode::from(2))
            }
        }
    }
}

/// Erases a resident's personal data. Exits 0 when the data is erased now or was before, 2
/// when the id is malformed or has no keys.
async fn forget_resident(args: &StoreArgs, id: &str) -> anyhow::Result<ExitCode> {
    let id = id.trim();
    let malformed_ticket = id
        .strip_prefix("ticket:")
        .is_some_and(|ticket| uuid::Uuid::parse_str(ticket).is_err());
    if id.is_empty() || malformed_ticket {
        eprintln!(
            "Идентификатор «{id}» не подходит: укажите residentId жителя или ticket:<UUID заявки> \
             для заявки без идентификатора жителя."
        );
        return Ok(ExitCode::from(2));
    }
    let store = open_store(args).await?;
    let erasure = store.forget_resident(id, chrono::Utc::now()).await?;
    match (erasure.keys_erased, erasure.erased_at) {
        (0, None) => {
            eprintln!(
                "У «{id}» нет ключей: по нему не подано ни одной заявки с персональными данными. \
                 Проверьте идентификатор: residentId из заявки или ticket:<UUID заявки>."
            );
            Ok(ExitCode::from(2))
        }
        (0, Some(at)) => {
            println!("Персональные данные «{id}» уже удалены {}.", at.format("%Y-%m-%d %H:%M UTC"));
            Ok(ExitCode::SUCCESS)
        }
        (keys, _) => {
            println!(
                "Персональные данные «{id}» удалены: уничтожено ключей — {keys}. Имя, телефон, e-mail, \
                 помещение и тексты заявок теперь везде показываются как «{}». Журнал не изменён, \
                 статистика прежняя, opencity-replay verify проходит. Резервные копии базы, сделанные \
                 раньше, ещё содержат ключи.",
                opencity_store::personal::ERASED
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Rebuilds the read models and prints the progress in Russian, at most once per second and
/// at each phase change.
async fn rebuild_projections(store: &Store) -> anyhow::Result<()> {
    use opencity_projections::rebuild::{rebuild, RebuildProgress};
    let started = std::time::Instant::now();
    let mut last_print: Option<std::time::Instant> = None;
    let mut last_phase = 0u8;
    let report = rebuild(store, |progress| {
        let phase = match progress {
            RebuildProgress::Folding { .. } => 1,
            RebuildProgress::Writing { .. } => 2,
            RebuildProgress::Swapping => 3,
        };
        let finished = match progress {
            RebuildProgress::Folding { done, total } | RebuildProgress::Writing { done, total } => done == total,
            RebuildProgress::Swapping => true,
        };
        let due = last_print.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if !(due || finished || phase != last_phase) {
            return;
        }
        last_print = Some(std::time::Instant::now());
        last_phase = phase;
        match progress {
            RebuildProgress::Folding { done, total } => {
                println!("Чтение журнала: {done} из {total} событий ({}%)", percent(done, total))
            }
            RebuildProgress::Writing { done, total } => {
                println!("Запись новых таблиц: {done} из {total} заявок ({}%)", percent(done, total))
            }
            RebuildProgress::Swapping => {
                println!("Догоняем события, записанные за время перестройки, и подменяем таблицы…")
            }
        }
    })
    .await
    .map_err(|error| anyhow::anyhow!("проекции не перестроены: {error}. Текущие таблицы не изменены."))?;
    println!(
        "Проекции перестроены за {:.1} с: {} событий (из них {} догнано при замене), {} заявок, {} записей справочников; \
         поколение таблиц {}, позиция журнала {}.",
        started.elapsed().as_secs_f64(),
        report.events,
        report.caught_up,
        report.views,
        report.reference_entities,
        report.generation,
        report.checkpoint.position
    );
    println!("Работающие серверы перечитают новые таблицы сами.");
    Ok(())
}

fn percent(done: u64, total: u64) -> u64 {
    if total == 0 { 100 } else { done * 100 / total }
}

fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    integrity::read_signing_key(path).map_err(|error| {
        anyhow::anyhow!("ключ подписи не прочитан ({}): {}", error.code(), describe_key_error(&error))
    })
}

fn describe_key_error(error: &KeyFileError) -> String {
    match error {
        KeyFileError::Read { path, cause } => format!("не удалось прочитать {path}: {cause}"),
        KeyFileError::Write { path, cause } => format!("не удалось записать {path}: {cause}"),
        KeyFileError::Exists { path } => {
            format!("файл {path} уже существует; укажите другой путь или удалите его")
        }
        KeyFileError::Invalid { path, cause } => {
            format!("{path} не является закрытым ключом Ed25519 в PKCS#8 PEM: {cause}")
        }
    }
}

fn print_checkpoint(checkpoint: &Checkpoint) {
    println!("Контрольная точка № {} записана.", checkpoint.id);
    println!("  позиция журнала:  {} (транзакция {})", checkpoint.position, checkpoint.tx);
    println!("  потоков:          {}", checkpoint.stream_count);
    println!("  дайджест голов:   {}", checkpoint.heads_digest);
    println!("  время:            {}", integrity::format_timestamp(checkpoint.created_at));
    println!("  открытый ключ:    {}", checkpoint.public_key);
    println!("  подпись:          {}", checkpoint.signature);
}

/// Records a checkpoint every `interval_seconds` until the process exits; 0 turns it off.
fn spawn_checkpoints(store: Store, key: SigningKey, interval_seconds: u64) {
    if interval_seconds == 0 {
        tracing::info!("scheduled checkpoints are off");
        return;
    }
    tracing::info!(interval_seconds, "scheduled checkpoints are on");
    tokio::spawn(async move {
        let period = std::time::Duration::from_secs(interval_seconds);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = store.create_checkpoint(&key).await {
                tracing::error!(cause = %error, code = error.code(), "scheduled checkpoint failed");
            }
        }
    });
}

async fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let config = args.config();
    Store::open(&config).await.map_err(|error| {
        anyhow::anyhow!(
            "не удалось открыть хранилище событий ({}): {error}. Проверьте, что каталог доступен для записи, \
             а для PostgreSQL — что сервер запущен и база данных существует (createdb).",
            describe(&config)
        )
    })
}

fn describe(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Sqlite { data_dir } => format!("SQLite в каталоге {}", data_dir.display()),
        StoreConfig::Postgres { .. } => "PostgreSQL".to_string(),
    }
}
