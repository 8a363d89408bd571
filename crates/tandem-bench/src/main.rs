//! `tandem-bench`: measures the tandem sidecar on this machine — start-to-ready, idle RSS,
//! publish throughput/latency over HTTP and gRPC against the same payload `XADD`ed
//! straight to Redis, delivery to an HTTP and a gRPC app against a direct `XREADGROUP`
//! reader, bulk against single publishes, state reads and service invocation — against a
//! private `redis-server` it starts and stops itself.
//! Prints a table with the targets' PASS/MISS and, with `--json FILE`, a JSON summary.
//! `scripts/bench` builds the release binaries and runs it.
#![forbid(unsafe_code)]

mod actors;
mod brokers;
mod bulk;
mod delivery;
mod invoke;
mod load;
mod procs;
mod report;
mod startup;
mod state;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::load::{Outcome, Shape, Target, Watch};
use crate::procs::{Redis, ScratchDir, SidecarSpec};

/// The pub/sub component's name in the scratch resources directory.
const PUBSUB: &str = "bench-pubsub";

#[derive(Parser)]
#[command(
    name = "tandem-bench",
    about = "Benchmarks the tandem sidecar: start-to-ready, idle RSS, publish rate and latency vs. direct Redis, delivery to HTTP and gRPC apps vs. a direct reader, bulk publish."
)]
pub struct Args {
    /// The `tandem` binary (default: next to this one, i.e. target/release/tandem).
    #[arg(long, value_name = "PATH")]
    tandem: Option<PathBuf>,
    /// The `redis-server` binary to start a private instance from.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: PathBuf,
    /// How many times to start the sidecar for start-to-ready.
    #[arg(long, default_value_t = 20)]
    starts: usize,
    /// Health polling interval during starts, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    poll_ms: f64,
    /// Concurrent publishing clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Warm-up before each measured publish window, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    warmup: f64,
    /// Measured publish time per path, in seconds (split over the rounds).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// The paths (HTTP, gRPC, direct) take turns this many times; each turn measures
    /// duration/rounds after its own warm-up (the full warm-up first, then at most 0.5 s).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Size of the JSON payload published, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    payload_bytes: usize,
    /// Measured window of the extra single-client latency runs, in seconds (0 skips them).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    single_client_secs: f64,
    /// All gRPC clients share one channel (one HTTP/2 connection) instead of one each.
    #[arg(long)]
    grpc_shared_channel: bool,
    /// Worker threads of the load generator's async runtime (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also write a JSON summary to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Skip the state GET section (cache off/on, HTTP/gRPC, vs. direct HGET).
    #[arg(long)]
    skip_state: bool,
    /// Skip the service invocation section (paced, full speed, cached slow call).
    #[arg(long)]
    skip_invoke: bool,
    /// Skip the actors section (activation at a fixed rate, warm calls, vs. a plain route).
    #[arg(long)]
    skip_actors: bool,
    /// Skip the brokers section (publish through the sidecar vs. the same client
    /// in-process, per broker).
    #[arg(long)]
    skip_brokers: bool,
    /// The brokers of that section, comma separated (rabbitmq, jetstream, mqtt, kafka).
    #[arg(long, default_value = "rabbitmq,jetstream,mqtt,kafka")]
    brokers: String,
    /// Rate of the actor activation run (a new actor id per call), calls/s.
    #[arg(long, default_value_t = 500.0)]
    actor_rate: f64,
    /// Skip the delivery section (sidecar to an HTTP and a gRPC app vs. direct XREADGROUP).
    #[arg(long)]
    skip_delivery: bool,
    /// Events written as fast as possible per delivery path (the throughput run).
    #[arg(long, value_name = "EVENTS", default_value_t = 20_000)]
    delivery_events: u64,
    /// Rate of the paced delivery run (the latency run), events/s.
    #[arg(long, value_name = "PER_SEC", default_value_t = 1000.0)]
    delivery_rate: f64,
    /// Length of the paced delivery run per path, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    delivery_paced_secs: f64,
    /// Skip the bulk publish section (100-entry bulk calls vs. 100 single publishes).
    #[arg(long)]
    skip_bulk: bool,
    /// Entries per bulk publish (and single publishes per batch compared with it).
    #[arg(long, default_value_t = 100)]
    bulk_entries: usize,
    /// Measured batches per way in the bulk publish section.
    #[arg(long, default_value_t = 200)]
    bulk_batches: usize,
    /// Measured time per path of the state GET and invocation sections, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    section_secs: f64,
    /// Warm-up before each measured window of those sections, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    section_warmup: f64,
    /// Fixed request rate of the paced invocation run, requests/s.
    #[arg(long, default_value_t = 1000.0)]
    invoke_rate: f64,
    /// Sequential first-level hits timed in the cached slow call.
    #[arg(long, default_value_t = 1000)]
    cache_hits: usize,
    /// Keep the scratch directory (logs, resources) and print its path.
    #[arg(long)]
    keep_scratch: bool,
}

/// Everything measured, for the report.
pub struct Results {
    /// Cores' worth of CPU busy over 1 s before the benchmark started anything.
    pub background_cpu: Option<f64>,
    pub starts: startup::StartTimes,
    pub idle_rss_kib: Option<u64>,
    pub idle_hwm_kib: Option<u64>,
    pub http: Phase,
    pub grpc: Phase,
    pub direct: Phase,
    pub single: Option<[Phase; 3]>,
    pub event_bytes: usize,
    pub delivery: Option<delivery::DeliveryResults>,
    pub bulk: Option<bulk::BulkResults>,
    pub state: Option<state::StateResults>,
    pub invoke: Option<invoke::InvokeResults>,
}

/// One publish run and what was seen around it.
pub struct Phase {
    pub outcome: Outcome,
    /// Entries found in the topic's stream afterwards (the sidecar's publishes landed).
    pub stream_entries: Option<u64>,
    /// Sidecar VmRSS 1 s after the load stopped, KiB.
    pub rss_after_kib: Option<u64>,
}

impl Phase {
    /// Two slices of the same path as one.
    fn merge(self, other: Phase) -> Phase {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            _ => a.or(b),
        };
        Phase {
            outcome: self.outcome.merge(other.outcome),
            stream_entries: add(self.stream_entries, other.stream_entries),
            rss_after_kib: other.rss_after_kib.or(self.rss_after_kib),
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tandem-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn progress(text: &str) {
    eprintln!("==> {text}");
}

fn payload(size: usize) -> Vec<u8> {
    let head = r#"{"orderId":42,"customer":"bench","note":""#;
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    body.extend(std::iter::repeat_n(b'x', fill));
    body.extend_from_slice(tail.as_bytes());
    body
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag}: {value} is not a duration"))
}

fn run(args: &Args) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let tandem = match &args.tandem {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("tandem"),
    };
    if !tandem.is_file() {
        bail!(
            "{} does not exist; build it (cargo build --release -p tandem) or pass --tandem",
            tandem.display()
        );
    }
    let shape = Shape {
        clients: args.clients,
        warmup: seconds(args.warmup, "--warmup")?,
        duration: seconds(args.duration, "--duration")?,
    };
    if shape.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let poll = seconds(args.poll_ms / 1000.0, "--poll-ms")?;
    let machine = report::Machine::detect();
    progress(&format!(
        "{} | {} cores | kernel {}",
        machine.cpu, machine.cores, machine.kernel
    ));

    let background = background_cpu();
    if let Some(cores) = background {
        progress(&format!(
            "CPU already busy before the run: {:.0}% of one core{}",
            cores * 100.0,
            if cores > 0.2 {
                " — other work is running; figures will be lower and noisier"
            } else {
                ""
            }
        ));
    }

    let mut scratch = ScratchDir::create()?;
    scratch.keep = args.keep_scratch;
    let resources = scratch.path.join("resources");
    let home = scratch.path.join("home");
    std::fs::create_dir_all(&resources)?;
    std::fs::create_dir_all(&home)?;

    let redis = Redis::start(&args.redis_server, &scratch.path)?;
    progress(&format!("redis-server on 127.0.0.1:{}", redis.port));
    std::fs::write(
        resources.join("pubsub.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {PUBSUB}\n\
             spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    \
             value: 127.0.0.1:{}\n",
            redis.port
        ),
    )?;
    let spec = SidecarSpec {
        binary: tandem,
        resources,
        home,
        log: scratch.path.join("sidecar.log"),
        app_id: "bench".into(),
        extra_args: Vec::new(),
    };

    progress(&format!("start-to-ready: {} starts", args.starts));
    let starts = startup::measure(&spec, args.starts.max(1), poll)?;

    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
    } else {
        args.threads
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let payload = Arc::new(payload(args.payload_bytes));

    // Two sidecars, one for each API, so each one's peak RSS is its own. Idle RSS is
    // read from the first before it has served anything.
    let (_, _, http_sidecar) = startup::start_one(&spec, poll)?;
    let (_, _, grpc_sidecar) = startup::start_one(&spec, poll)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_kib = procs::rss_kib(http_sidecar.pid());
    let idle_hwm_kib = procs::hwm_kib(http_sidecar.pid());

    // One publish through the sidecar gives the exact CloudEvent bytes the direct
    // baseline will XADD, and checks the whole path works before any load.
    let status = procs::http_request(
        grpc_sidecar.http_port,
        "POST",
        &format!("/v1.0/publish/{PUBSUB}/bench-direct"),
        &payload,
    )?;
    if status != 204 {
        bail!(
            "a first publish through the sidecar answered {status}; see {}",
            spec.log.display()
        );
    }
    let event = Arc::new(runtime.block_on(first_event(redis.port, "bench-direct"))?);
    runtime.block_on(unlink(redis.port, "bench-direct"))?;

    let http_target = |topic: &str| Target::Http {
        port: http_sidecar.http_port,
        pubsub: PUBSUB.into(),
        topic: topic.into(),
        payload: payload.clone(),
    };
    let grpc_target = |topic: &str| Target::Grpc {
        port: grpc_sidecar.grpc_port,
        pubsub: PUBSUB.into(),
        topic: topic.into(),
        payload: payload.clone(),
        shared_channel: args.grpc_shared_channel,
    };
    let direct_target = |topic: &str| Target::Direct {
        port: redis.port,
        topic: topic.into(),
        event: event.clone(),
    };
    let http_watch = Watch {
        sidecar: Some(http_sidecar.pid()),
        redis: Some(redis.pid()),
    };
    let grpc_watch = Watch {
        sidecar: Some(grpc_sidecar.pid()),
        redis: Some(redis.pid()),
    };
    let direct_watch = Watch {
        sidecar: None,
        redis: Some(redis.pid()),
    };

    // The three paths take turns, `rounds` slices each, so a drift in the machine's
    // speed (other work, the host) weighs on all three alike.
    let rounds = args.rounds.max(1);
    let slice = shape.duration / rounds as u32;
    let mut totals: [Option<Phase>; 3] = [None, None, None];
    for round in 0..rounds {
        let warmup = if round == 0 {
            shape.warmup
        } else {
            shape.warmup.min(Duration::from_millis(500))
        };
        let cut = Shape {
            clients: shape.clients,
            warmup,
            duration: slice,
        };
        progress(&format!(
            "publish round {}/{rounds}: HTTP, gRPC, direct XADD — {} clients, {warmup:?} warm-up + {slice:?} measured each",
            round + 1,
            shape.clients
        ));
        let runs = [
            (http_target("bench-http"), http_watch, "bench-http"),
            (grpc_target("bench-grpc"), grpc_watch, "bench-grpc"),
            (direct_target("bench-direct"), direct_watch, "bench-direct"),
        ];
        for (total, (target, watch, topic)) in totals.iter_mut().zip(runs) {
            let part = runtime.block_on(phase(&target, cut, watch, redis.port, topic))?;
            *total = Some(match total.take() {
                Some(sum) => sum.merge(part),
                None => part,
            });
        }
    }
    let [Some(mut http), Some(mut grpc), Some(direct)] = totals else {
        unreachable!("at least one round ran");
    };

    let single = if args.single_client_secs > 0.0 {
        let one = Shape {
            clients: 1,
            warmup: shape.warmup.min(Duration::from_secs(1)),
            duration: seconds(args.single_client_secs, "--single-client-secs")?,
        };
        progress(&format!(
            "single client: HTTP, gRPC, direct XADD — {:?} warm-up + {:?} measured each",
            one.warmup, one.duration
        ));
        let single_http = runtime.block_on(phase(
            &http_target("bench-1"),
            one,
            http_watch,
            redis.port,
            "bench-1",
        ))?;
        let single_grpc = runtime.block_on(phase(
            &grpc_target("bench-1"),
            one,
            grpc_watch,
            redis.port,
            "bench-1",
        ))?;
        let single_direct = runtime.block_on(phase(
            &direct_target("bench-1"),
            one,
            direct_watch,
            redis.port,
            "bench-1",
        ))?;
        Some([single_http, single_grpc, single_direct])
    } else {
        None
    };

    std::thread::sleep(Duration::from_secs(1));
    http.rss_after_kib = procs::rss_kib(http_sidecar.pid());
    grpc.rss_after_kib = procs::rss_kib(grpc_sidecar.pid());
    http_sidecar.stop();
    grpc_sidecar.stop();

    let delivery = if args.skip_delivery {
        None
    } else {
        Some(delivery::run(
            &runtime,
            &spec.binary,
            &scratch.path,
            &spec.resources,
            PUBSUB,
            &event,
            redis.port,
            redis.pid(),
            &delivery::Settings {
                flood_events: args.delivery_events.max(1),
                paced_rate: args.delivery_rate,
                paced_duration: seconds(args.delivery_paced_secs, "--delivery-paced-secs")?,
                payload_bytes: args.payload_bytes,
            },
            poll,
        )?)
    };
    let bulk = if args.skip_bulk {
        None
    } else {
        progress(&format!(
            "bulk publish: {} entries per call vs. {} single publishes, HTTP and gRPC, {} batches each",
            args.bulk_entries, args.bulk_entries, args.bulk_batches
        ));
        Some(bulk::run(
            &runtime,
            &spec,
            PUBSUB,
            payload.clone(),
            redis.port,
            args.bulk_entries.max(1),
            args.bulk_batches.max(1),
            poll,
        )?)
    };

    let section_warmup = seconds(args.section_warmup, "--section-warmup")?;
    let section = seconds(args.section_secs, "--section-secs")?;
    let state = if args.skip_state {
        None
    } else {
        Some(state::run(
            &runtime,
            &spec.binary,
            &scratch.path,
            redis.port,
            redis.pid(),
            args.clients,
            section_warmup,
            section,
            poll,
        )?)
    };
    let invoke = if args.skip_invoke {
        None
    } else {
        Some(invoke::run(
            &runtime,
            &spec.binary,
            &scratch.path,
            payload.clone(),
            args.clients,
            args.invoke_rate,
            section_warmup,
            section,
            args.cache_hits,
            poll,
        )?)
    };

    let actors = if args.skip_actors {
        None
    } else {
        Some(actors::run(
            &runtime,
            &spec.binary,
            &scratch.path,
            args.clients,
            args.actor_rate,
            section,
            poll,
        )?)
    };

    let brokers = if args.skip_brokers {
        None
    } else {
        Some(brokers::run(
            &args.brokers,
            &spec.binary,
            &scratch.path,
            &runtime,
            Shape {
                clients: args.clients,
                warmup: section_warmup,
                duration: section,
            },
            &payload,
            poll,
        )?)
    };

    let results = Results {
        background_cpu: background,
        starts,
        idle_rss_kib,
        idle_hwm_kib,
        http,
        grpc,
        direct,
        single,
        event_bytes: event.len(),
        delivery,
        bulk,
        state,
        invoke,
    };
    let config = report::Config {
        starts: args.starts.max(1),
        poll_ms: args.poll_ms,
        clients: args.clients,
        warmup_s: shape.warmup.as_secs_f64(),
        duration_s: shape.duration.as_secs_f64(),
        payload_bytes: payload.len(),
        single_client_s: args.single_client_secs,
        grpc_shared_channel: args.grpc_shared_channel,
        load_threads: threads,
        rounds,
    };
    let mut table = report::table(&machine, &config, &results);
    if let Some(actors) = &actors {
        actors::table(&mut table, actors);
    }
    if let Some((brokers, skipped)) = &brokers {
        brokers::table(&mut table, brokers, skipped);
    }
    print!("{table}");
    if let Some(path) = &args.json {
        let json = report::json(&machine, &config, &results);
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        progress(&format!("JSON summary in {}", path.display()));
    }
    if args.keep_scratch {
        progress(&format!("scratch kept in {}", scratch.path.display()));
    }
    drop(redis);
    Ok(())
}

/// How many cores' worth of CPU the machine spends over one second, before we start.
fn background_cpu() -> Option<f64> {
    let before = procs::machine_ticks()?.busy;
    std::thread::sleep(Duration::from_secs(1));
    let after = procs::machine_ticks()?.busy;
    Some(after.saturating_sub(before) as f64 / procs::clock_ticks_per_second() as f64)
}

/// One publish run, then the stream's length; the topic's stream is removed afterwards
/// so Redis's memory does not grow from run to run.
async fn phase(
    target: &Target,
    shape: Shape,
    watch: Watch,
    redis_port: u16,
    topic: &str,
) -> Result<Phase> {
    let outcome = load::run(target, shape, watch).await?;
    if outcome.ok == 0 {
        bail!(
            "no publish succeeded ({} errors; first: {})",
            outcome.errors,
            outcome.first_error.as_deref().unwrap_or("none")
        );
    }
    let mut connection = redis_connection(redis_port).await?;
    let stream_entries = redis::cmd("XLEN")
        .arg(topic)
        .query_async::<u64>(&mut connection)
        .await
        .ok();
    unlink(redis_port, topic).await?;
    // Let Redis free the stream in the background before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Phase {
        outcome,
        stream_entries,
        rss_after_kib: None,
    })
}

async fn redis_connection(port: u16) -> Result<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_multiplexed_async_connection()
        .await
        .context("cannot connect to Redis")
}

async fn unlink(port: u16, topic: &str) -> Result<()> {
    let mut connection = redis_connection(port).await?;
    redis::cmd("UNLINK")
        .arg(topic)
        .query_async::<redis::Value>(&mut connection)
        .await?;
    Ok(())
}

/// The `data` field of the first entry of `topic`'s stream.
async fn first_event(port: u16, topic: &str) -> Result<Vec<u8>> {
    let mut connection = redis_connection(port).await?;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(topic)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut connection)
        .await?;
    reply
        .ids
        .first()
        .and_then(|entry| entry.get::<Vec<u8>>("data"))
        .with_context(|| format!("the sidecar's publish left no `data` entry in stream {topic}"))
}
