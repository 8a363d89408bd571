//! Service invocation: an echo app behind a `callee` sidecar, called through a `caller`
//! sidecar (`POST /v1.0/invoke/callee/method/echo`) against calling the app directly —
//! at a fixed 1000 requests/s (added latency, both sidecars' CPU and RSS) and at full
//! speed — and a 200 ms `HTTPEndpoint` behind a cache policy: the miss, then first-level hits.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};

use crate::load::{self, HttpConnection, Outcome, Paced, ProcUsage, Shape, Target, Watch};
use crate::procs::{self, SidecarSpec};
use crate::report::Verdict;
use crate::startup;
use crate::stats::{Latencies, round3};

const ADDED_P50_MAX_MS: f64 = 0.2;
const ADDED_P99_MAX_MS: f64 = 0.5;
const SIDECAR_RSS_MAX_KIB: u64 = 20 * 1024;
const SLOW_MS: u64 = 200;

pub struct InvokeResults {
    pub payload_bytes: usize,
    pub rate: f64,
    pub connections: usize,
    pub paced_sidecar: Paced,
    pub paced_direct: Paced,
    /// caller, callee: CPU seconds over the sidecar path's paced window and peak RSS.
    pub paced_usage: ProcUsage,
    /// caller, callee VmHWM after the paced run.
    pub hwm_kib: [Option<u64>; 2],
    pub full_sidecar: Outcome,
    pub full_direct: Outcome,
    /// caller, callee over the full-speed sidecar run.
    pub full_usage: ProcUsage,
    pub slow_origin: Duration,
    pub slow_miss: Duration,
    pub slow_miss_source: Option<String>,
    pub slow_hits: Latencies,
    pub slow_not_hits: u64,
}

/// Serves the echo app (`POST /echo` answers its body) and the slow app (anything,
/// answered after 200 ms) on free ports; returns (echo port, slow port).
fn start_apps(runtime: &tokio::runtime::Runtime) -> Result<(u16, u16)> {
    runtime.block_on(async {
        let echo = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let slow = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let ports = (echo.local_addr()?.port(), slow.local_addr()?.port());
        let echo_app = Router::new().route("/echo", post(|body: Bytes| async move { body }));
        let slow_app = Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
            r#"{"price":42}"#
        });
        tokio::spawn(async move { axum::serve(echo, echo_app).await });
        tokio::spawn(async move { axum::serve(slow, slow_app).await });
        Ok::<_, anyhow::Error>(ports)
    })
}

fn post_request(port: u16, path: &str, payload: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(payload);
    request
}

fn get_request(port: u16, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes()
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &tokio::runtime::Runtime,
    tandem: &Path,
    scratch: &Path,
    payload: Arc<Vec<u8>>,
    clients: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    hits: usize,
    poll: Duration,
) -> Result<InvokeResults> {
    // The apps get their own small runtime so the load generator's does not delay them
    // any more on one path than on the other.
    let apps = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (echo_port, slow_port) = start_apps(&apps)?;

    let home = scratch.join("invoke-home");
    let caller_resources = scratch.join("invoke-caller-resources");
    let callee_resources = scratch.join("invoke-callee-resources");
    for dir in [&home, &caller_resources, &callee_resources] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        caller_resources.join("slow.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata: {{name: slow}}\n\
             spec: {{baseUrl: \"http://127.0.0.1:{slow_port}\"}}\n---\n\
             apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {{name: caching}}\nspec:\n  \
             policies:\n    caches:\n      slow-answers: {{ttl: 60s}}\n  targets:\n    apps:\n      \
             slow: {{cache: slow-answers}}\n"
        ),
    )?;
    let spec = |app_id: &str, resources: &Path, extra_args: Vec<String>| SidecarSpec {
        binary: tandem.to_path_buf(),
        resources: resources.to_path_buf(),
        home: home.clone(),
        log: scratch.join(format!("invoke-{app_id}.log")),
        app_id: app_id.into(),
        extra_args,
    };
    let callee_spec = spec(
        "callee",
        &callee_resources,
        vec!["--app-port".into(), echo_port.to_string()],
    );
    let caller_spec = spec("caller", &caller_resources, Vec::new());
    let (_, _, callee) = startup::start_one(&callee_spec, poll)?;
    let (_, _, caller) = startup::start_one(&caller_spec, poll)?;
    let pids = vec![caller.pid(), callee.pid()];

    let via_sidecar = Target::Raw {
        port: caller.http_port,
        request: Arc::new(post_request(
            caller.http_port,
            "/v1.0/invoke/callee/method/echo",
            &payload,
        )),
        expect: 200,
    };
    let direct = Target::Raw {
        port: echo_port,
        request: Arc::new(post_request(echo_port, "/echo", &payload)),
        expect: 200,
    };
    let status = procs::http_request(
        caller.http_port,
        "POST",
        "/v1.0/invoke/callee/method/echo",
        &payload,
    )?;
    if status != 200 {
        bail!(
            "a first invocation through the sidecars answered {status}; see {} and {}",
            caller_spec.log.display(),
            callee_spec.log.display()
        );
    }

    // a. Open loop at a fixed rate.
    crate::progress(&format!(
        "invoke at {rate:.0} req/s over {clients} connections: via sidecars, then direct — {warmup:?} warm-up + {duration:?} measured each"
    ));
    let (paced_sidecar, paced_usage) = runtime.block_on(async {
        let from = Instant::now() + Duration::from_millis(20) + warmup;
        let watch = load::watch_procs(pids.clone(), from, from + duration);
        let paced = load::run_paced(&via_sidecar, clients, rate, warmup, duration).await?;
        Ok::<_, anyhow::Error>((paced, watch.await?))
    })?;
    let hwm_kib = [procs::hwm_kib(caller.pid()), procs::hwm_kib(callee.pid())];
    let paced_direct =
        runtime.block_on(load::run_paced(&direct, clients, rate, warmup, duration))?;
    for (label, paced) in [("via sidecars", &paced_sidecar), ("direct", &paced_direct)] {
        if paced.ok == 0 {
            bail!(
                "paced invoke {label}: nothing succeeded ({} errors; first: {})",
                paced.errors,
                paced.first_error.as_deref().unwrap_or("none")
            );
        }
    }

    // b. Closed loop at full speed.
    crate::progress(&format!(
        "invoke at full speed, {clients} clients: via sidecars, then direct — {warmup:?} warm-up + {duration:?} measured each"
    ));
    let shape = Shape {
        clients,
        warmup,
        duration,
    };
    let (full_sidecar, full_usage) = runtime.block_on(async {
        let from = Instant::now() + warmup;
        let watch = load::watch_procs(pids.clone(), from, from + duration);
        let outcome = load::run(&via_sidecar, shape, Watch::default()).await?;
        Ok::<_, anyhow::Error>((outcome, watch.await?))
    })?;
    let full_direct = runtime.block_on(load::run(&direct, shape, Watch::default()))?;

    // c. The cached slow call.
    crate::progress(&format!(
        "cached slow call: origin, the miss, then {hits} sequential first-level hits"
    ));
    let (slow_origin, slow_miss, slow_miss_source, slow_hits, slow_not_hits) =
        runtime.block_on(async {
            let mut origin = HttpConnection::connect(
                SocketAddr::from((Ipv4Addr::LOCALHOST, slow_port)),
                Arc::new(get_request(slow_port, "/price")),
                200,
            )
            .await?;
            let started = Instant::now();
            origin.publish().await.map_err(anyhow::Error::msg)?;
            let slow_origin = started.elapsed();
            let mut connection = HttpConnection::connect(
                SocketAddr::from((Ipv4Addr::LOCALHOST, caller.http_port)),
                Arc::new(get_request(
                    caller.http_port,
                    "/v1.0/invoke/slow/method/price",
                )),
                200,
            )
            .await?;
            let started = Instant::now();
            connection
                .publish()
                .await
                .map_err(anyhow::Error::msg)
                .context("the first cached call")?;
            let miss = started.elapsed();
            let miss_source = connection.last_header("x-tandem-cache");
            let mut nanos = Vec::with_capacity(hits);
            let mut not_hits = 0;
            for _ in 0..hits {
                let started = Instant::now();
                connection.publish().await.map_err(anyhow::Error::msg)?;
                nanos.push(started.elapsed().as_nanos() as u64);
                if connection.last_header("x-tandem-cache").as_deref() != Some("hit-l1") {
                    not_hits += 1;
                }
            }
            Ok::<_, anyhow::Error>((
                slow_origin,
                miss,
                miss_source,
                Latencies::from_nanos(nanos),
                not_hits,
            ))
        })?;

    caller.stop();
    callee.stop();
    drop(apps);
    Ok(InvokeResults {
        payload_bytes: payload.len(),
        rate,
        connections: clients,
        paced_sidecar,
        paced_direct,
        paced_usage,
        hwm_kib,
        full_sidecar,
        full_direct,
        full_usage,
        slow_origin,
        slow_miss,
        slow_miss_source,
        slow_hits,
        slow_not_hits,
    })
}

fn added(results: &InvokeResults, p: f64) -> f64 {
    results.paced_sidecar.from_send.percentile_ms(p)
        - results.paced_direct.from_send.percentile_ms(p)
}

pub fn verdicts(results: &InvokeResults) -> Vec<Verdict> {
    let mut all = Vec::new();
    for (p, max) in [(50.0, ADDED_P50_MAX_MS), (99.0, ADDED_P99_MAX_MS)] {
        let value = added(results, p);
        all.push(Verdict {
            name: format!("invoke added latency p{p:.0} @{:.0}/s", results.rate),
            value,
            unit: "ms",
            limit: format!("<= {max} ms"),
            pass: value <= max,
            informational: false,
        });
    }
    for (name, kib) in ["caller", "callee"]
        .into_iter()
        .zip(&results.paced_usage.rss_peak_kib)
    {
        all.push(Verdict {
            name: format!("invoke {name} sidecar peak RSS @{:.0}/s", results.rate),
            value: kib.map_or(f64::NAN, |k| k as f64 / 1024.0),
            unit: "MiB",
            limit: format!("<= {} MiB", SIDECAR_RSS_MAX_KIB / 1024),
            pass: kib.is_some_and(|k| k <= SIDECAR_RSS_MAX_KIB),
            informational: false,
        });
    }
    all
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn cpu(seconds: Option<f64>, window: Duration) -> String {
    seconds.map_or_else(
        || "-".into(),
        |s| format!("{:.0}%", 100.0 * s / window.as_secs_f64()),
    )
}

pub fn table(out: &mut String, r: &InvokeResults) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Service invocation: {} B JSON POST echoed by an axum app; caller sidecar -> callee sidecar -> app vs. the app directly",
        r.payload_bytes
    );
    let _ = writeln!(
        out,
        "a. open loop at {:.0} req/s over {} keep-alive connections (each on its own fixed schedule), {:.0} s measured per path",
        r.rate,
        r.connections,
        r.paced_sidecar.window.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "   latency from the actual send (from the scheduled send, which adds timer lateness, in brackets)"
    );
    let _ = writeln!(
        out,
        "  path                     sent/s  p50 ms  p90 ms  p99 ms  max ms errors   [p50 ms  p99 ms from schedule]"
    );
    for (label, paced) in [
        ("via caller+callee", &r.paced_sidecar),
        ("app directly", &r.paced_direct),
    ] {
        let l = &paced.from_send;
        let _ = writeln!(
            out,
            "  {label:<22} {:>8.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6}   [{:>6.3} {:>7.3}]",
            paced.ok as f64 / paced.window.as_secs_f64(),
            l.percentile_ms(50.0),
            l.percentile_ms(90.0),
            l.percentile_ms(99.0),
            l.max_ms(),
            paced.errors,
            paced.from_schedule.percentile_ms(50.0),
            paced.from_schedule.percentile_ms(99.0),
        );
    }
    let _ = writeln!(
        out,
        "  added by the two sidecars: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms",
        added(r, 50.0),
        added(r, 90.0),
        added(r, 99.0)
    );
    let window = r.paced_sidecar.window;
    for (i, name) in ["caller", "callee"].iter().enumerate() {
        let _ = writeln!(
            out,
            "  {name} sidecar: CPU {} of one core, peak VmRSS {} (sampled every 100 ms; VmHWM {})",
            cpu(r.paced_usage.cpu_seconds[i], window),
            mib(r.paced_usage.rss_peak_kib[i]),
            mib(r.hwm_kib[i]),
        );
    }
    let _ = writeln!(
        out,
        "b. closed loop at full speed, {} clients, {:.0} s measured per path",
        r.full_direct.clients,
        r.full_direct.window.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  path                      req/s  p50 ms  p90 ms  p99 ms  max ms errors vs direct"
    );
    let direct = r.full_direct.rate();
    for (label, o) in [
        ("via caller+callee", &r.full_sidecar),
        ("app directly", &r.full_direct),
    ] {
        let l = &o.latencies;
        let _ = writeln!(
            out,
            "  {label:<22} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6} {:>6.2}x",
            o.rate(),
            l.percentile_ms(50.0),
            l.percentile_ms(90.0),
            l.percentile_ms(99.0),
            l.max_ms(),
            o.errors,
            o.rate() / direct,
        );
    }
    let full_window = r.full_sidecar.window;
    let _ = writeln!(
        out,
        "  sidecars at full speed: caller CPU {}, callee CPU {}; peak VmRSS caller {}, callee {}",
        cpu(r.full_usage.cpu_seconds[0], full_window),
        cpu(r.full_usage.cpu_seconds[1], full_window),
        mib(r.full_usage.rss_peak_kib[0]),
        mib(r.full_usage.rss_peak_kib[1]),
    );
    let _ = writeln!(
        out,
        "c. cached slow call (HTTPEndpoint `slow`, {SLOW_MS} ms origin, cache policy ttl 60s, GET, one keep-alive connection)"
    );
    let _ = writeln!(
        out,
        "  origin directly {:.1} ms; first call via sidecar {:.1} ms (X-Tandem-Cache: {})",
        r.slow_origin.as_secs_f64() * 1e3,
        r.slow_miss.as_secs_f64() * 1e3,
        r.slow_miss_source.as_deref().unwrap_or("-")
    );
    let h = &r.slow_hits;
    let _ = writeln!(
        out,
        "  {} sequential hits: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} not hit-l1); p50 is {:.0}x faster than the origin",
        h.len(),
        h.percentile_ms(50.0),
        h.percentile_ms(90.0),
        h.percentile_ms(99.0),
        h.max_ms(),
        r.slow_not_hits,
        r.slow_origin.as_secs_f64() * 1e3 / h.percentile_ms(50.0),
    );
}

fn paced_json(paced: &Paced) -> Value {
    json!({
        "requests": paced.ok,
        "errors": paced.errors,
        "first_error": paced.first_error,
        "latency_from_send": paced.from_send.to_json(),
        "latency_from_schedule": paced.from_schedule.to_json(),
    })
}

pub fn json(r: &InvokeResults) -> Value {
    let direct = r.full_direct.rate();
    let full = |o: &Outcome| {
        json!({
            "requests": o.ok,
            "errors": o.errors,
            "first_error": o.first_error,
            "requests_per_second": round3(o.rate()),
            "ratio_to_direct": round3(o.rate() / direct),
            "latency": o.latencies.to_json(),
        })
    };
    let usage = |u: &ProcUsage, window: Duration| {
        json!({
            "caller_cpu_cores": u.cpu_seconds[0].map(|s| round3(s / window.as_secs_f64())),
            "callee_cpu_cores": u.cpu_seconds[1].map(|s| round3(s / window.as_secs_f64())),
            "caller_rss_peak_kib": u.rss_peak_kib[0],
            "callee_rss_peak_kib": u.rss_peak_kib[1],
        })
    };
    json!({
        "payload_bytes": r.payload_bytes,
        "paced": {
            "rate": r.rate,
            "connections": r.connections,
            "duration_s": r.paced_sidecar.window.as_secs_f64(),
            "via_sidecars": paced_json(&r.paced_sidecar),
            "direct": paced_json(&r.paced_direct),
            "added_ms": {
                "p50": round3(added(r, 50.0)),
                "p90": round3(added(r, 90.0)),
                "p99": round3(added(r, 99.0)),
            },
            "sidecars": usage(&r.paced_usage, r.paced_sidecar.window),
            "caller_hwm_kib": r.hwm_kib[0],
            "callee_hwm_kib": r.hwm_kib[1],
        },
        "full_speed": {
            "clients": r.full_direct.clients,
            "via_sidecars": full(&r.full_sidecar),
            "direct": full(&r.full_direct),
            "sidecars": usage(&r.full_usage, r.full_sidecar.window),
        },
        "cached_slow_call": {
            "origin_ms": round3(r.slow_origin.as_secs_f64() * 1e3),
            "first_call_ms": round3(r.slow_miss.as_secs_f64() * 1e3),
            "first_call_source": r.slow_miss_source,
            "hits": r.slow_hits.to_json(),
            "not_hit_l1": r.slow_not_hits,
        },
    })
}
