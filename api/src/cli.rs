//! The command line: `opencity serve`, `opencity import`, `opencity demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use opencity_domain::TicketServices;
use opencity_fixtures::import::ImportFormat;
use opencity_projections::runner::ReadModel;
use opencity_store::{Store, StoreConfig};

use crate::import::{import_file, load_demo, ImportExit};

/// «Открытый город»: учёт заявок ЖКХ на журнале событий.
#[derive(Parser, Debug)]
#[command(name = "opencity", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Запустить сервер GraphQL (по умолчанию — на встроенной SQLite в ./data).
    Serve(ServeArgs),
    /// Импортировать заявки из файла (boston311, la311, open311).
    Import(ImportArgs),
    /// Загрузить демонстрационный город в пустое хранилище.
    Demo(DemoArgs),
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
}

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
    let catalogue = opencity_fixtures::sla::default_catalogue()
        .map_err(|error| anyhow::anyhow!("справочник SLA не загружен: {error}"))?;
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
            let read_model = ReadModel::open(store.clone()).await?;
            let caught_up = read_model.catch_up().await?;
            tracing::info!(events = caught_up, "projections caught up");
            crate::app::serve(store, services, read_model, args.listen).await?;
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
    }
}

async fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let config = args.config();
    Store::open(&config).await.map_err(|error| {
        anyhow::anyhow!("не удалось открыть хранилище событий ({}): {error}", describe(&config))
    })
}

fn describe(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Sqlite { data_dir } => format!("SQLite в каталоге {}", data_dir.display()),
        StoreConfig::Postgres { .. } => "PostgreSQL".to_string(),
    }
}
