//! The human-readable table, the targets' PASS/MISS, and the JSON summary.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::round3;
use crate::{Phase, Results};

/// Targets from the issue.
const RATE_RATIO_MIN: f64 = 0.6;
const P99_MAX_MS: f64 = 1.0;
const READY_MAX_MS: f64 = 50.0;
const IDLE_RSS_MAX_KIB: u64 = 10 * 1024;

/// The machine the run happened on.
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |text| text.trim().to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            cpu,
            kernel,
        }
    }
}

/// The run's settings, echoed in the report.
pub struct Config {
    pub starts: usize,
    pub poll_ms: f64,
    pub clients: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub payload_bytes: usize,
    pub single_client_s: f64,
    pub grpc_shared_channel: bool,
    pub load_threads: usize,
    pub rounds: usize,
}

/// One target's verdict.
pub struct Verdict {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub limit: String,
    pub pass: bool,
    /// Shown for context; not one of the targets.
    pub informational: bool,
}

fn verdicts(results: &Results) -> Vec<Verdict> {
    let direct = results.direct.outcome.rate();
    let mut all = Vec::new();
    for (name, phase) in [("HTTP", &results.http), ("gRPC", &results.grpc)] {
        let ratio = phase.outcome.rate() / direct;
        all.push(Verdict {
            name: format!("{name} publish rate / direct rate"),
            value: ratio,
            unit: "x",
            limit: format!(">= {RATE_RATIO_MIN}x"),
            pass: ratio >= RATE_RATIO_MIN,
            informational: false,
        });
    }
    for (name, phase) in [("HTTP", &results.http), ("gRPC", &results.grpc)] {
        let p99 = phase.outcome.latencies.percentile_ms(99.0);
        all.push(Verdict {
            name: format!("{name} publish p99 ({} clients)", phase.outcome.clients),
            value: p99,
            unit: "ms",
            limit: format!("<= {P99_MAX_MS} ms"),
            pass: p99 <= P99_MAX_MS,
            informational: false,
        });
    }
    if let Some([http, grpc, _]) = &results.single {
        for (name, phase) in [("HTTP", http), ("gRPC", grpc)] {
            let p99 = phase.outcome.latencies.percentile_ms(99.0);
            all.push(Verdict {
                name: format!("{name} publish p99 (1 client)"),
                value: p99,
                unit: "ms",
                limit: format!("<= {P99_MAX_MS} ms"),
                pass: p99 <= P99_MAX_MS,
                informational: true,
            });
        }
    }
    let ready_p99 = results.starts.ready.percentile_ms(99.0);
    all.push(Verdict {
        name: "start-to-ready p99".into(),
        value: ready_p99,
        unit: "ms",
        limit: format!("<= {READY_MAX_MS} ms"),
        pass: ready_p99 <= READY_MAX_MS,
        informational: false,
    });
    let rss = results
        .idle_rss_kib
        .map_or(f64::NAN, |kib| kib as f64 / 1024.0);
    all.push(Verdict {
        name: "idle RSS".into(),
        value: rss,
        unit: "MiB",
        limit: format!("<= {} MiB", IDLE_RSS_MAX_KIB / 1024),
        pass: results
            .idle_rss_kib
            .is_some_and(|kib| kib <= IDLE_RSS_MAX_KIB),
        informational: false,
    });
    if let Some(state) = &results.state {
        all.extend(crate::state::verdicts(state));
    }
    if let Some(invoke) = &results.invoke {
        all.extend(crate::invoke::verdicts(invoke));
    }
    all
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".into(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    )
}

fn cpu(seconds: Option<f64>, window: f64) -> String {
    seconds.map_or_else(|| "-".into(), |s| format!("{:.0}%", 100.0 * s / window))
}

/// CPU microseconds per successful publish: sidecar, redis, load generator.
fn per_publish_us(phase: &Phase) -> [String; 3] {
    let ok = phase.outcome.ok.max(1) as f64;
    std::array::from_fn(|i| {
        phase.outcome.cpu_seconds[i].map_or_else(|| "-".into(), |s| format!("{:.1}", s * 1e6 / ok))
    })
}

fn publish_row(out: &mut String, label: &str, phase: &Phase, direct_rate: f64) {
    let o = &phase.outcome;
    let l = &o.latencies;
    let window = o.window.as_secs_f64();
    let _ = writeln!(
        out,
        "  {label:<22} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6} {:>6.2}x {:>10} {:>6} {:>5} {:>5} {:>5}",
        o.rate(),
        l.percentile_ms(50.0),
        l.percentile_ms(90.0),
        l.percentile_ms(99.0),
        l.max_ms(),
        o.errors,
        o.rate() / direct_rate,
        mib(o.sidecar_rss_peak_kib),
        cpu(o.cpu_seconds[0], window),
        cpu(o.cpu_seconds[1], window),
        cpu(o.cpu_seconds[2], window),
        cpu(o.cpu_seconds[3], window),
    );
}

const PUBLISH_HEADER: &str = "  path                     req/s  p50 ms  p90 ms  p99 ms  max ms errors vs direct  peak RSS  CPU: tandem redis bench  rest";

/// The report printed on stdout.
pub fn table(machine: &Machine, config: &Config, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "tandem-bench — {} ({} cores), kernel {}",
        machine.cpu, machine.cores, machine.kernel
    );
    let _ = writeln!(
        out,
        "load generator, sidecar and redis-server share these cores; load generator: {} async worker threads",
        config.load_threads
    );
    if let Some(cores) = results.background_cpu {
        let _ = writeln!(
            out,
            "CPU busy before the run (other processes): {:.0}% of one core",
            cores * 100.0
        );
    }
    let _ = writeln!(out);
    let s = &results.starts;
    let _ = writeln!(
        out,
        "Start-to-ready ({} starts, polled every {} ms)      min     p50     p99     max",
        config.starts, config.poll_ms
    );
    for (label, l) in [
        ("/v1.0/healthz/outbound 204", &s.outbound),
        ("/v1.0/healthz 204", &s.ready),
    ] {
        let _ = writeln!(
            out,
            "  {label:<46} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  ms",
            l.min_ms(),
            l.percentile_ms(50.0),
            l.percentile_ms(99.0),
            l.max_ms()
        );
    }
    let _ = writeln!(
        out,
        "Idle RSS (1 s after ready): {}   (VmHWM so far {})",
        mib(results.idle_rss_kib),
        mib(results.idle_hwm_kib)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Publish: {} B JSON payload ({} B CloudEvent in Redis), {} clients, {} s measured per path in {} interleaved rounds ({} s warm-up first); gRPC: {}",
        config.payload_bytes,
        results.event_bytes,
        config.clients,
        config.duration_s,
        config.rounds,
        config.warmup_s,
        if config.grpc_shared_channel {
            "one channel shared by all clients"
        } else {
            "one channel (HTTP/2 connection) per client"
        }
    );
    let _ = writeln!(out, "{PUBLISH_HEADER}");
    let direct_rate = results.direct.outcome.rate();
    publish_row(&mut out, "HTTP via sidecar", &results.http, direct_rate);
    publish_row(&mut out, "gRPC via sidecar", &results.grpc, direct_rate);
    publish_row(
        &mut out,
        "XADD direct (redis-rs)",
        &results.direct,
        direct_rate,
    );
    let _ = writeln!(
        out,
        "  CPU: % of one core in the measured window (2 cores = 200%); rest: busy time not charged to those three"
    );
    for (label, phase) in [
        ("HTTP", &results.http),
        ("gRPC", &results.grpc),
        ("direct", &results.direct),
    ] {
        let [tandem, redis, bench] = per_publish_us(phase);
        let _ = writeln!(
            out,
            "  {label}: CPU per publish: tandem {tandem}, redis {redis}, load generator {bench} (µs)"
        );
    }
    for (label, phase) in [("HTTP", &results.http), ("gRPC", &results.grpc)] {
        let _ = writeln!(
            out,
            "  {label}: sidecar RSS 1 s after all load {}; {} entries written to Redis (warm-ups included)",
            mib(phase.rss_after_kib),
            phase
                .stream_entries
                .map_or_else(|| "?".into(), |n| n.to_string())
        );
    }
    if let Some([http, grpc, direct]) = &results.single {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Single client (no concurrency), {} s measured",
            config.single_client_s
        );
        let _ = writeln!(out, "{PUBLISH_HEADER}");
        let direct_rate = direct.outcome.rate();
        publish_row(&mut out, "HTTP via sidecar", http, direct_rate);
        publish_row(&mut out, "gRPC via sidecar", grpc, direct_rate);
        publish_row(&mut out, "XADD direct (redis-rs)", direct, direct_rate);
    }
    if let Some(delivery) = &results.delivery {
        crate::delivery::table(&mut out, delivery);
    }
    if let Some(bulk) = &results.bulk {
        crate::bulk::table(&mut out, bulk);
    }
    if let Some(state) = &results.state {
        crate::state::table(&mut out, state);
    }
    if let Some(invoke) = &results.invoke {
        crate::invoke::table(&mut out, invoke);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Targets");
    for verdict in verdicts(results) {
        let _ = writeln!(
            out,
            "  {:<44} {:>9.3} {:<4} (target {:<10}) {}{}",
            verdict.name,
            verdict.value,
            verdict.unit,
            verdict.limit,
            if verdict.pass { "PASS" } else { "MISS" },
            if verdict.informational {
                "  (context, not a target)"
            } else {
                ""
            }
        );
    }
    out
}

fn number(value: f64) -> Value {
    if value.is_finite() {
        json!(round3(value))
    } else {
        Value::Null
    }
}

fn phase_json(phase: &Phase, direct_rate: f64) -> Value {
    let o = &phase.outcome;
    let window = o.window.as_secs_f64();
    let share = |s: Option<f64>| s.map_or(Value::Null, |s| number(s / window));
    json!({
        "requests": o.ok,
        "errors": o.errors,
        "first_error": o.first_error,
        "requests_per_second": number(o.rate()),
        "ratio_to_direct": number(o.rate() / direct_rate),
        "latency": o.latencies.to_json(),
        "sidecar_rss_peak_kib": o.sidecar_rss_peak_kib,
        "sidecar_rss_after_kib": phase.rss_after_kib,
        "stream_entries": phase.stream_entries,
        "cpu_cores_used": {
            "sidecar": share(o.cpu_seconds[0]),
            "redis": share(o.cpu_seconds[1]),
            "load_generator": share(o.cpu_seconds[2]),
            "sidecar_us_per_publish": o.cpu_seconds[0].map(|s| number(s * 1e6 / o.ok.max(1) as f64)),
            "redis_us_per_publish": o.cpu_seconds[1].map(|s| number(s * 1e6 / o.ok.max(1) as f64)),
            "load_generator_us_per_publish": o.cpu_seconds[2].map(|s| number(s * 1e6 / o.ok.max(1) as f64)),
            "rest": share(o.cpu_seconds[3]),
            "machine_irq_softirq": share(o.machine_irq_steal[0]),
            "machine_steal": share(o.machine_irq_steal[1]),
        },
    })
}

/// The JSON summary written by `--json`.
pub fn json(machine: &Machine, config: &Config, results: &Results) -> Value {
    let direct_rate = results.direct.outcome.rate();
    let single = results.single.as_ref().map(|[http, grpc, direct]| {
        let rate = direct.outcome.rate();
        json!({
            "http": phase_json(http, rate),
            "grpc": phase_json(grpc, rate),
            "direct": phase_json(direct, rate),
        })
    });
    let targets: Vec<Value> = verdicts(results)
        .into_iter()
        .map(|v| {
            json!({ "name": v.name, "value": number(v.value), "unit": v.unit,
                    "target": v.limit, "pass": v.pass, "informational": v.informational })
        })
        .collect();
    json!({
        "machine": {
            "cores": machine.cores,
            "cpu": machine.cpu,
            "kernel": machine.kernel,
            "background_cpu_cores_before": results.background_cpu.map(round3),
        },
        "config": {
            "starts": config.starts,
            "poll_ms": config.poll_ms,
            "clients": config.clients,
            "warmup_s": config.warmup_s,
            "duration_s": config.duration_s,
            "payload_bytes": config.payload_bytes,
            "cloudevent_bytes": results.event_bytes,
            "single_client_s": config.single_client_s,
            "grpc_channels": if config.grpc_shared_channel { "shared" } else { "per-client" },
            "load_generator_threads": config.load_threads,
            "rounds": config.rounds,
        },
        "start": {
            "outbound_ready": results.starts.outbound.to_json(),
            "ready": results.starts.ready.to_json(),
        },
        "idle_rss_kib": results.idle_rss_kib,
        "idle_hwm_kib": results.idle_hwm_kib,
        "publish": {
            "http": phase_json(&results.http, direct_rate),
            "grpc": phase_json(&results.grpc, direct_rate),
            "direct": phase_json(&results.direct, direct_rate),
        },
        "single_client": single,
        "delivery": results.delivery.as_ref().map(crate::delivery::json),
        "bulk_publish": results.bulk.as_ref().map(crate::bulk::json),
        "state_get": results.state.as_ref().map(crate::state::json),
        "invoke": results.invoke.as_ref().map(crate::invoke::json),
        "targets": targets,
        "all_targets_met": verdicts(results)
            .iter()
            .all(|v| v.pass || v.informational),
    })
}
