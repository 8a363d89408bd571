//! The bounded fuzz run (docs/reliability.md): a few thousand seeded valid and malformed
//! requests over every HTTP route, every gRPC method and the internal port of a real
//! `tandem sidecar`, judged by `tandem-fuzz`'s oracle — no panic, still answering, Dapr's
//! error shape, no 5xx or gRPC `INTERNAL` for a caller's mistake, no secret where it
//! does not belong. A failure lists the findings grouped by kind and answer, each with
//! the endpoints it showed on and one request to replay:
//! `scripts/fuzz --seed 16 --case N`.

use tandem_fuzz::{Config, run};

/// Fixed, so every run sends the same cases and a failure replays exactly.
const SEED: u64 = 16;
/// Enough to reach every endpoint with most kinds of malformed input, and quick: about
/// 20 s on two cores with the debug build.
const CASES: u64 = 2500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_fuzz_run_over_every_endpoint_finds_nothing() {
    let config = Config::new(env!("CARGO_BIN_EXE_tandem"), SEED, CASES);
    let report = run(&config).await.expect("the fuzz run could not start");
    assert!(
        report.is_clean(),
        "\n{}\n{}",
        report.headline(),
        report.findings_text()
    );
}
