//! `switchyard`: run and validate packages (dtexec), and talk to coordinators and agents.

/// mimalloc: the allocator-heavy paths (gRPC, SQLite rows, the engine) spend markedly less time
/// in it than in glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use std::process::ExitCode;

use clap::Parser;
use switchyard_settings::logging::{self, Verbosity};

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { cli::exit::BAD_COMMAND_LINE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    // A server logs its lifecycle and runs at info; the other commands stay quiet.
    let defaults = if matches!(args.command, cli::Command::Serve(_)) { SERVE_VERBOSITY } else { VERBOSITY };
    logging::init(args.log_format, args.verbose, defaults, rust_log.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    let code = runtime.block_on(cli::dispatch(args));
    ExitCode::from(code)
}

/// Quiet by default (warnings and errors), `-v` for debug, `-vv` for trace; RUST_LOG wins.
const VERBOSITY: Verbosity =
    Verbosity { quiet: "warn", verbose: "info,switchyard=debug,switchyard_package=debug,switchyard_coordinator=debug" };

/// `switchyard serve`: warnings, and the coordinator's executions and child starts at info.
const SERVE_VERBOSITY: Verbosity = Verbosity {
    quiet: "warn,switchyard_coordinator=info",
    verbose: "info,switchyard=debug,switchyard_package=debug,switchyard_coordinator=debug",
};
