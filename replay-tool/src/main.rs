use std::process::ExitCode;

use clap::Parser;
use opencity_replay_tool::cli::{run, Cli, EXIT_USAGE};

/// mimalloc instead of the system allocator: the engine allocates many small JSON values, and
/// glibc's malloc and free took about a fifth of the CPU time of imports and catch-up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ошибка [RUNTIME]: не удалось запустить среду выполнения: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ошибка: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
