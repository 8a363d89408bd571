//! `tandem`: a Dapr-compatible sidecar and the command that runs it next to your app.
//!
//! - `tandem run [flags] -- CMD ARGS...` starts the sidecar in-process, then your app,
//!   with the flags of `dapr run`.
//! - `tandem sidecar [flags]` runs the sidecar alone (the `daprd` role).
//! - `tandem run -f dapr.yaml` starts every app of a run file (see `runfile.rs`).
//! - `tandem list` and `tandem stop --app-id ID` show and stop the apps running here.
//! - `tandem publish` and `tandem invoke` publish an event and call a method through a
//!   running app's sidecar; `tandem version` prints the versions.
//! - Invoked as `dapr` (a symlink), it answers the same commands as the Dapr CLI does
//!   (see `personality.rs`).
//! - `tandem __guard -- CMD ARGS...` (hidden) is started by `run` to start the app and
//!   to stop it when `run` ends, however it ends (see `guard.rs`).
#![forbid(unsafe_code)]

mod app_id;
mod apps;
mod cli;
mod client;
mod guard;
mod log_json;
mod personality;
mod run;
mod runfile;
mod sidecar;
mod status;

use cli::Command;
use personality::Parsed;

fn main() -> std::process::ExitCode {
    let cli = match personality::parse(std::env::args_os().collect()) {
        Parsed::Cli(cli) => *cli,
        Parsed::Done(code) => return std::process::ExitCode::from(code),
    };
    personality::use_log_format(&cli);
    let code = match cli.command {
        _ if cli.version => personality::print_version(),
        None => personality::print_help(),
        // The guard only waits: no async runtime, no thread pool.
        Some(Command::Guard(args)) => guard::run(&args.command),
        // Before any other thread starts: the local time zone is read safely only then.
        Some(Command::List(args)) => apps::list(&args),
        Some(Command::Version(args)) => personality::version(&args),
        Some(command) => with_runtime(command),
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
            Command::List(args) => apps::list(&args),
            Command::Stop(args) => apps::stop(args).await,
            Command::Publish(args) => client::publish(args).await,
            Command::Invoke(args) => client::invoke(args).await,
            Command::Version(args) => personality::version(&args),
            Command::Guard(args) => guard::run(&args.command),
        }
    });
    // Don't wait for blocking tasks (a SQLite call) longer than needed on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
