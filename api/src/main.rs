use std::process::ExitCode;

use clap::Parser;
use opencity_api::cli::{run, Cli};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: the engine allocates many small JSON values, and
/// glibc's malloc and free took about a fifth of the CPU time of imports and catch-up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Ошибка: {error:#}");
            ExitCode::from(1)
        }
    }
}
