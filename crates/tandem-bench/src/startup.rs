//! Start-to-ready: spawn `tandem sidecar` and poll its health endpoints over fresh TCP
//! connections until they answer 204, timing from just before the spawn.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::procs::{Sidecar, SidecarSpec};
use crate::stats::Latencies;

/// How long one start may take before the run is called failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Times from spawn to the first 204 of each health endpoint, over `runs` starts.
pub struct StartTimes {
    pub outbound: Latencies,
    pub ready: Latencies,
}

/// Spawns a sidecar and waits for `/v1.0/healthz/outbound`, then `/v1.0/healthz`; returns
/// both times and the (ready) sidecar.
pub fn start_one(spec: &SidecarSpec, poll: Duration) -> Result<(Duration, Duration, Sidecar)> {
    let mut sidecar = spec.spawn()?;
    let outbound = sidecar
        .wait_for("/v1.0/healthz/outbound", poll, START_TIMEOUT)
        .with_context(|| format!("see the sidecar's log in {}", spec.log.display()))?;
    let ready = sidecar
        .wait_for("/v1.0/healthz", poll, START_TIMEOUT)
        .with_context(|| format!("see the sidecar's log in {}", spec.log.display()))?;
    Ok((outbound, ready, sidecar))
}

/// Starts and stops a sidecar `runs` times.
pub fn measure(spec: &SidecarSpec, runs: usize, poll: Duration) -> Result<StartTimes> {
    let mut outbound = Vec::with_capacity(runs);
    let mut ready = Vec::with_capacity(runs);
    for run in 0..runs {
        let (to_outbound, to_ready, sidecar) =
            start_one(spec, poll).with_context(|| format!("start {} of {runs}", run + 1))?;
        outbound.push(to_outbound);
        ready.push(to_ready);
        sidecar.stop();
    }
    Ok(StartTimes {
        outbound: Latencies::from_durations(&outbound),
        ready: Latencies::from_durations(&ready),
    })
}
