//! `tandem-fuzz`: the fuzz run as a command (`scripts/fuzz` builds and calls it).
//!
//! ```text
//! tandem-fuzz --tandem target/debug/tandem [--requests N] [--seed S] [--case I]
//! ```
//! Exits 0 when nothing was found, 1 when something was, 2 when the run could not start.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rand::RngExt;

#[derive(Parser)]
#[command(
    name = "tandem-fuzz",
    about = "Sends seeded valid and malformed requests to every endpoint of a tandem sidecar and reports panics, 5xx for caller errors, non-Dapr error shapes and leaked secrets."
)]
struct Args {
    /// The tandem binary to fuzz.
    #[arg(long, value_name = "PATH")]
    tandem: PathBuf,
    /// How many cases to send.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// The seed (default: a random one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Send only case I of the seed, and print it and its answer in full.
    #[arg(long = "case", value_name = "I")]
    only_case: Option<u64>,
    /// Cases in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Cases between two health probes.
    #[arg(long, default_value_t = 50)]
    probe_every: usize,
    /// Seconds one case may take.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Keep the scratch folder (sidecar logs, resources) and print where it is.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let mut config = tandem_fuzz::Config::new(args.tandem, seed, args.requests);
    config.only_case = args.only_case;
    config.concurrency = args.concurrency;
    config.probe_every = args.probe_every;
    config.timeout = Duration::from_secs(args.timeout);
    config.keep = args.keep;
    eprintln!(
        "fuzzing {} with seed {seed} ({} cases)",
        config.tandem.display(),
        config.only_case.map_or(config.cases, |_| 1)
    );
    match tandem_fuzz::run(&config).await {
        Ok(report) => {
            print!("{}", report.full_text());
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                println!(
                    "\nreplay a case: tandem-fuzz --tandem {} --seed {seed} --case N",
                    config.tandem.display()
                );
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("the fuzz run could not start: {error}");
            ExitCode::from(2)
        }
    }
}
