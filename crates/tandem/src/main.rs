//! `tandem`: a Dapr-compatible sidecar and the command that runs it next to your app.
//!
//! - `tandem run [flags] -- CMD ARGS...` starts the sidecar in-process, then your app,
//!   with the flags of `dapr run`.
//! - `tandem sidecar [flags]` runs the sidecar alone (the `daprd` role).
//! - `tandem list` and `tandem stop --app-id ID` show and stop the apps running here.
#![forbid(unsafe_code)]

mod apps;
mod cli;
mod run;
mod sidecar;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let code = runtime.block_on(async move {
        match cli.command {
            cli::Command::Run(args) => run::run(args).await,
            cli::Command::Sidecar(args) => sidecar::run_alone(args).await,
            cli::Command::List(args) => apps::list(args),
            cli::Command::Stop(args) => apps::stop(args).await,
        }
    });
    // Don't wait for blocking tasks (a SQLite call) longer than needed on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::ExitCode::from(code)
}
