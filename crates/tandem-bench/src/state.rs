//! State GET: a 1 KiB value read through a sidecar's `state.redis` store (over HTTP and
//! gRPC, with the first-level cache off and on) against the same Redis hash field read
//! straight from Rust (`HGET <app-id>||<key> data`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::load::{self, Outcome, Shape, Target, Watch};
use crate::procs::{self, SidecarSpec};
use crate::report::Verdict;
use crate::startup;

/// The store without, and with, the first-level cache.
const STORE: &str = "bench-state";
const STORE_CACHED: &str = "bench-state-cached";
const APP_ID: &str = "bench-state";
const KEY: &str = "k";

const CACHE_OFF_MIN: f64 = 0.6;
const CACHE_ON_MIN: f64 = 1.0;

pub struct StateResults {
    pub value_bytes: usize,
    pub http_off: Outcome,
    pub grpc_off: Outcome,
    pub http_on: Outcome,
    pub grpc_on: Outcome,
    pub direct: Outcome,
}

/// The sidecar's GET request, complete, for the keep-alive client.
fn get_request(port: u16, store: &str) -> Vec<u8> {
    format!("GET /v1.0/state/{store}/{KEY} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes()
}

/// A JSON string value of exactly `size` bytes.
fn value(size: usize) -> String {
    let fill = size.saturating_sub(2);
    format!("\"{}\"", "v".repeat(fill))
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &tokio::runtime::Runtime,
    tandem: &Path,
    scratch: &Path,
    redis_port: u16,
    redis_pid: u32,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    poll: Duration,
) -> Result<StateResults> {
    let resources = scratch.join("state-resources");
    let home = scratch.join("state-home");
    std::fs::create_dir_all(&resources)?;
    std::fs::create_dir_all(&home)?;
    let component = |name: &str, extra: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
             spec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    \
             value: 127.0.0.1:{redis_port}\n{extra}"
        )
    };
    std::fs::write(
        resources.join("state.yaml"),
        format!(
            "{}---\n{}",
            component(STORE, ""),
            component(STORE_CACHED, "  - name: cacheTTL\n    value: 60s\n")
        ),
    )?;
    let spec = SidecarSpec {
        binary: tandem.to_path_buf(),
        resources,
        home,
        log: scratch.join("state-sidecar.log"),
        app_id: APP_ID.into(),
        extra_args: Vec::new(),
    };
    let (_, _, sidecar) = startup::start_one(&spec, poll)?;

    let value = value(1024);
    let body = format!(r#"[{{"key":"{KEY}","value":{value}}}]"#);
    let status = procs::http_request(
        sidecar.http_port,
        "POST",
        &format!("/v1.0/state/{STORE}"),
        body.as_bytes(),
    )?;
    if status != 204 && status != 200 {
        bail!(
            "saving the state value answered {status}; see {}",
            spec.log.display()
        );
    }
    let redis_key = format!("{APP_ID}||{KEY}");

    let http = |store: &str| Target::Raw {
        port: sidecar.http_port,
        request: Arc::new(get_request(sidecar.http_port, store)),
        expect: 200,
    };
    let grpc = |store: &str| Target::GrpcGetState {
        port: sidecar.grpc_port,
        store: store.into(),
        key: KEY.into(),
    };
    let shape = Shape {
        clients,
        warmup,
        duration,
    };
    let with_sidecar = Watch {
        sidecar: Some(sidecar.pid()),
        redis: Some(redis_pid),
    };
    let direct_watch = Watch {
        sidecar: None,
        redis: Some(redis_pid),
    };
    let one = |label: &str, target: Target, watch: Watch| -> Result<Outcome> {
        crate::progress(&format!(
            "state GET: {label} — {clients} clients, {warmup:?} warm-up + {duration:?} measured"
        ));
        let outcome = runtime.block_on(load::run(&target, shape, watch))?;
        if outcome.ok == 0 {
            bail!(
                "state GET {label}: nothing succeeded ({} errors; first: {})",
                outcome.errors,
                outcome.first_error.as_deref().unwrap_or("none")
            );
        }
        Ok(outcome)
    };
    let http_off = one("HTTP, cache off", http(STORE), with_sidecar)?;
    let grpc_off = one("gRPC, cache off", grpc(STORE), with_sidecar)?;
    let http_on = one("HTTP, cache on", http(STORE_CACHED), with_sidecar)?;
    let grpc_on = one("gRPC, cache on", grpc(STORE_CACHED), with_sidecar)?;
    let direct = one(
        "HGET direct",
        Target::Hget {
            port: redis_port,
            key: redis_key,
        },
        direct_watch,
    )?;
    sidecar.stop();
    Ok(StateResults {
        value_bytes: value.len(),
        http_off,
        grpc_off,
        http_on,
        grpc_on,
        direct,
    })
}

fn rows(results: &StateResults) -> [(&'static str, &Outcome, bool); 5] {
    [
        ("HTTP via sidecar, cache off", &results.http_off, false),
        ("gRPC via sidecar, cache off", &results.grpc_off, false),
        ("HTTP via sidecar, cache on", &results.http_on, true),
        ("gRPC via sidecar, cache on", &results.grpc_on, true),
        ("HGET direct (redis-rs)", &results.direct, false),
    ]
}

pub fn verdicts(results: &StateResults) -> Vec<Verdict> {
    let direct = results.direct.rate();
    rows(results)
        .into_iter()
        .take(4)
        .map(|(label, outcome, cached)| {
            let ratio = outcome.rate() / direct;
            let min = if cached { CACHE_ON_MIN } else { CACHE_OFF_MIN };
            Verdict {
                name: format!("state GET {} / direct", label.replace(" via sidecar", "")),
                value: ratio,
                unit: "x",
                limit: format!(">= {min}x"),
                pass: ratio >= min,
                informational: false,
            }
        })
        .collect()
}

fn cpu(seconds: Option<f64>, window: f64) -> String {
    seconds.map_or_else(|| "-".into(), |s| format!("{:.0}%", 100.0 * s / window))
}

pub fn table(out: &mut String, results: &StateResults) {
    let clients = results.direct.clients;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "State GET: {} B value in a state.redis store, {clients} clients (keep-alive HTTP/1.1 or one gRPC channel each), {:.0} s measured per path",
        results.value_bytes,
        results.direct.window.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  path                           req/s  p50 ms  p90 ms  p99 ms  max ms errors vs direct  peak RSS  CPU: tandem redis bench"
    );
    let direct = results.direct.rate();
    for (label, o, _) in rows(results) {
        let l = &o.latencies;
        let window = o.window.as_secs_f64();
        let _ = writeln!(
            out,
            "  {label:<28} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6} {:>6.2}x {:>10} {:>6} {:>5} {:>5}",
            o.rate(),
            l.percentile_ms(50.0),
            l.percentile_ms(90.0),
            l.percentile_ms(99.0),
            l.max_ms(),
            o.errors,
            o.rate() / direct,
            o.sidecar_rss_peak_kib
                .map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            cpu(o.cpu_seconds[0], window),
            cpu(o.cpu_seconds[1], window),
            cpu(o.cpu_seconds[2], window),
        );
    }
}

pub fn json(results: &StateResults) -> Value {
    let direct = results.direct.rate();
    let mut paths = serde_json::Map::new();
    for (key, (_, o, _)) in [
        "http_cache_off",
        "grpc_cache_off",
        "http_cache_on",
        "grpc_cache_on",
        "direct_hget",
    ]
    .into_iter()
    .zip(rows(results))
    {
        paths.insert(
            key.into(),
            json!({
                "requests": o.ok,
                "errors": o.errors,
                "first_error": o.first_error,
                "requests_per_second": crate::stats::round3(o.rate()),
                "ratio_to_direct": crate::stats::round3(o.rate() / direct),
                "latency": o.latencies.to_json(),
                "sidecar_rss_peak_kib": o.sidecar_rss_peak_kib,
            }),
        );
    }
    json!({
        "value_bytes": results.value_bytes,
        "clients": results.direct.clients,
        "duration_s": results.direct.window.as_secs_f64(),
        "paths": paths,
    })
}
