//! `tandem`: a Dapr-compatible sidecar and the command that runs it next to your app.
//!
//! - `tandem run [flags] -- CMD ARGS...` starts the sidecar in-process, then your app,
//!   with the flags of `dapr run`.
//! - `tandem sidecar [flags]` runs the sidecar alone (the `daprd` role).
//! - `tandem list` and `tandem stop --app-id ID` show and stop the apps running here.
//! - `tandem __guard -- CMD ARGS...` (hidden) is started by `run` to start the app and
//!   to stop it when `run` ends, however it ends (see `guard.rs`).
#![forbid(unsafe_code)]

mod app_id;
mod apps;
mod cli;
mod guard;
mod log_json;
mod run;
mod sidecar;
mod status;

use clap::Parser;
use cli::Command;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let code = match cli.command {
        // The guard only waits: no async runtime, no thread pool.
        Command::Guard(args) => guard::run(&args.command),
        command => with_runtime(command),
    };
    std::process::ExitCode::from(code)
}

fn with_runtime(command: Command) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let code = runtime.block_on(async move {
        match command {
            Command::Run(args) => run::run(args).await,
            Command::Sidecar(args) => sidecar::run_alone(args).await,
            Command::List(args) => apps::list(args),
            Command::Stop(args) => apps::stop(args).await,
            Command::Guard(args) => guard::run(&args.command),
        }
    });
    // Don't wait for blocking tasks (a SQLite call) longer than needed on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
