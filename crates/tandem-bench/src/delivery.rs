//! Delivery: events `XADD`ed straight to a topic's stream in the CloudEvent form tandem
//! itself writes, delivered by a sidecar to an HTTP app (`--app-protocol http`) and to a
//! gRPC app (`--app-protocol grpc`, Dapr's `AppCallback`), against a direct subscriber
//! reading its own stream with `XREADGROUP` + `XACK` — what the sidecar does, minus the
//! hop to the app. Every payload carries its publish time, so each subscriber records the
//! publish-to-delivery latency the moment its handler has the event.
//!
//! Two runs per path: a flood (all events written as fast as Redis takes them; the rate
//! is events delivered over first write to last delivery, and the latencies are mostly
//! queueing) and a paced run at a fixed rate (the latencies are the path's own).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_proto::common::{InvokeRequest, InvokeResponse};
use tandem_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use tandem_proto::runtime::topic_event_response::TopicEventResponseStatus;
use tandem_proto::runtime::{
    BindingEventRequest, BindingEventResponse, ListInputBindingsResponse,
    ListTopicSubscriptionsResponse, TopicEventRequest, TopicEventResponse, TopicRoutes,
    TopicSubscription,
};
use tonic::{Request, Response, Status};

use crate::procs::{self, SidecarSpec};
use crate::startup;
use crate::stats::{Latencies, round3};

const HTTP_TOPIC: &str = "bench-deliver-http";
const GRPC_TOPIC: &str = "bench-deliver-grpc";
const DIRECT_TOPIC: &str = "bench-deliver-direct";
/// The direct subscriber's consumer group (and consumer) name.
const DIRECT_GROUP: &str = "bench-direct";
/// Deliveries in flight, as tandem's `pubsub.redis` (`concurrency`, default 10): the
/// direct subscriber reads at most this many entries at a time.
const IN_FLIGHT: usize = 10;
/// Events written and awaited on each path before anything is measured.
const WARMUP_EVENTS: u64 = 500;
/// `XADD`s sent per pipeline in the flood.
const FLOOD_BATCH: usize = 100;

/// Nanoseconds since the first call, on the monotonic clock this whole process shares:
/// publishers and subscribers live in this process, so their stamps compare.
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What one subscriber has seen of the current run.
#[derive(Default)]
struct Seen {
    nanos: Vec<u64>,
    last: Option<Instant>,
}

/// Where every subscriber (HTTP app, gRPC app, direct reader) records deliveries.
#[derive(Default)]
struct Sink {
    run: AtomicU64,
    expected: AtomicU64,
    seen: Mutex<Seen>,
    done: tokio::sync::Notify,
}

impl Sink {
    /// Starts run `run`, which is complete after `expected` deliveries.
    fn begin(&self, run: u64, expected: u64) {
        let mut seen = self.seen.lock();
        *seen = Seen::default();
        self.expected.store(expected, Ordering::SeqCst);
        self.run.store(run, Ordering::SeqCst);
    }

    /// Records the payload `{"r":run,"t":nanos,...}` delivered now (other runs' stray
    /// events and unreadable payloads are ignored).
    fn record(&self, payload: &Value) {
        let now = now_nanos();
        let (Some(run), Some(stamp)) = (payload["r"].as_u64(), payload["t"].as_u64()) else {
            return;
        };
        if run != self.run.load(Ordering::SeqCst) {
            return;
        }
        let mut seen = self.seen.lock();
        seen.nanos.push(now.saturating_sub(stamp));
        seen.last = Some(Instant::now());
        if seen.nanos.len() as u64 == self.expected.load(Ordering::SeqCst) {
            self.done.notify_one();
        }
    }

    /// Records a whole CloudEvent (its `data` is the payload).
    fn record_cloudevent(&self, bytes: &[u8]) {
        if let Ok(event) = serde_json::from_slice::<Value>(bytes) {
            self.record(&event["data"]);
        }
    }

    fn complete(&self) -> bool {
        let seen = self.seen.lock();
        seen.nanos.len() as u64 >= self.expected.load(Ordering::SeqCst)
    }

    /// Waits until the run is complete or `timeout` has passed; what was seen.
    async fn finish(&self, timeout: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.complete() {
            if tokio::time::timeout_at(deadline, self.done.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        // Anything recorded after this belongs to no run.
        self.run.store(0, Ordering::SeqCst);
        let mut seen = self.seen.lock();
        std::mem::take(&mut *seen)
    }
}

/// The HTTP app: `GET /dapr/subscribe` names [`HTTP_TOPIC`] with route `/events`, and
/// `POST /events` records the CloudEvent and answers `SUCCESS`.
fn http_app(pubsub: &str, sink: Arc<Sink>) -> Router {
    let subscriptions =
        json!([{ "pubsubname": pubsub, "topic": HTTP_TOPIC, "route": "/events" }]).to_string();
    Router::new()
        .route(
            "/dapr/subscribe",
            get(move || {
                let body = subscriptions.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        )
        .route(
            "/events",
            post(move |body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.record_cloudevent(&body);
                    (
                        [("content-type", "application/json")],
                        r#"{"status":"SUCCESS"}"#,
                    )
                }
            }),
        )
}

/// The gRPC app: subscribes to [`GRPC_TOPIC`] and records each `OnTopicEvent`'s data.
struct GrpcApp {
    pubsub: String,
    sink: Arc<Sink>,
}

#[tonic::async_trait]
impl AppCallback for GrpcApp {
    async fn on_invoke(
        &self,
        _: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        Err(Status::unimplemented("no methods"))
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        Ok(Response::new(ListTopicSubscriptionsResponse {
            subscriptions: vec![TopicSubscription {
                pubsub_name: self.pubsub.clone(),
                topic: GRPC_TOPIC.into(),
                routes: Some(TopicRoutes {
                    rules: Vec::new(),
                    default: String::new(),
                }),
                ..Default::default()
            }],
        }))
    }

    async fn on_topic_event(
        &self,
        request: Request<TopicEventRequest>,
    ) -> Result<Response<TopicEventResponse>, Status> {
        if let Ok(payload) = serde_json::from_slice::<Value>(&request.get_ref().data) {
            self.sink.record(&payload);
        }
        Ok(Response::new(TopicEventResponse {
            status: TopicEventResponseStatus::Success as i32,
        }))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListInputBindingsResponse>, Status> {
        Err(Status::unimplemented("no bindings"))
    }

    async fn on_binding_event(
        &self,
        _: Request<BindingEventRequest>,
    ) -> Result<Response<BindingEventResponse>, Status> {
        Err(Status::unimplemented("no bindings"))
    }

    async fn on_bulk_topic_event(
        &self,
        _: Request<tandem_proto::runtime::TopicEventBulkRequest>,
    ) -> Result<Response<tandem_proto::runtime::TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("no bulk subscriptions"))
    }
}

async fn redis_connection(port: u16) -> Result<redis::aio::MultiplexedConnection> {
    // No response timeout: `XREADGROUP BLOCK` holds its connection.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("cannot connect to Redis")
}

/// The direct subscriber: reads at most [`IN_FLIGHT`] new entries of [`DIRECT_TOPIC`]
/// at a time, records each, and acknowledges each with its own `XACK` (concurrently),
/// as the sidecar reads and acknowledges — until `stop`.
async fn direct_subscriber(port: u16, sink: Arc<Sink>, stop: Arc<AtomicBool>) -> Result<()> {
    let mut reads = redis_connection(port).await?;
    let acks = redis_connection(port).await?;
    let created: redis::RedisResult<redis::Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(DIRECT_TOPIC)
        .arg(DIRECT_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut reads)
        .await;
    if let Err(error) = created
        && error.code() != Some("BUSYGROUP")
    {
        return Err(error.into());
    }
    while !stop.load(Ordering::SeqCst) {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(DIRECT_GROUP)
            .arg(DIRECT_GROUP)
            .arg("COUNT")
            .arg(IN_FLIGHT)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(DIRECT_TOPIC)
            .arg(">")
            .query_async(&mut reads)
            .await?;
        let mut pending = tokio::task::JoinSet::new();
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(data) = entry.get::<Vec<u8>>("data") {
                    sink.record_cloudevent(&data);
                }
                let mut acks = acks.clone();
                pending.spawn(async move {
                    redis::cmd("XACK")
                        .arg(DIRECT_TOPIC)
                        .arg(DIRECT_GROUP)
                        .arg(entry.id)
                        .query_async::<redis::Value>(&mut acks)
                        .await
                });
            }
        }
        while let Some(done) = pending.join_next().await {
            done??;
        }
    }
    Ok(())
}

/// A CloudEvent of tandem's making, cut around its `data`, for events of one topic.
struct Envelope {
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Filler so the payload has the size asked for.
    pad: String,
}

impl Envelope {
    /// From `template` (an envelope tandem wrote), for `topic`.
    fn new(template: &[u8], topic: &str, payload_bytes: usize) -> Result<Self> {
        const MARK: &str = "\u{1}bench-data\u{1}";
        let mut event: Value =
            serde_json::from_slice(template).context("the sidecar's CloudEvent is not JSON")?;
        let object = event
            .as_object_mut()
            .context("the sidecar's CloudEvent is not a JSON object")?;
        object.insert("topic".into(), Value::String(topic.into()));
        object.insert("data".into(), Value::String(MARK.into()));
        let text = serde_json::to_string(&event)?;
        let marked = serde_json::to_string(MARK)?;
        let (head, tail) = text
            .split_once(&marked)
            .context("cannot find the data in the CloudEvent")?;
        // `{"r":N,"t":N,"pad":"..."}`: 21 bytes of syntax, a run number of one or two
        // digits and a stamp of about 11, so the payload is within a few bytes of the size.
        let pad = "x".repeat(payload_bytes.saturating_sub(33));
        Ok(Self {
            head: head.as_bytes().to_vec(),
            tail: tail.as_bytes().to_vec(),
            pad,
        })
    }

    /// The event of run `run`, stamped now.
    fn event(&self, run: u64) -> Vec<u8> {
        let payload = format!(r#"{{"r":{run},"t":{},"pad":"{}"}}"#, now_nanos(), self.pad);
        let mut event = Vec::with_capacity(self.head.len() + payload.len() + self.tail.len());
        event.extend_from_slice(&self.head);
        event.extend_from_slice(payload.as_bytes());
        event.extend_from_slice(&self.tail);
        event
    }

    fn payload_len(&self) -> usize {
        format!(r#"{{"r":1,"t":{},"pad":"{}"}}"#, now_nanos(), self.pad).len()
    }
}

/// What one run of one path measured.
pub struct Run {
    pub published: u64,
    pub delivered: u64,
    /// From the first `XADD` to the last one answered.
    pub publish_time: Duration,
    /// From the first `XADD` to the last delivery (or the give-up time).
    pub total: Duration,
    pub latencies: Latencies,
    /// CPU seconds over the run: sidecar (none on the direct path), redis, this process
    /// (publisher, subscriber app and direct subscriber).
    pub cpu_seconds: [Option<f64>; 3],
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.total.as_secs_f64()
    }

    fn cpu_us_per_event(&self, i: usize) -> Option<f64> {
        self.cpu_seconds[i].map(|s| s * 1e6 / self.delivered.max(1) as f64)
    }
}

/// The two runs of one path.
pub struct PathResults {
    pub flood: Run,
    pub paced: Run,
}

pub struct DeliveryResults {
    pub payload_bytes: usize,
    pub event_bytes: usize,
    pub flood_events: u64,
    pub paced_rate: f64,
    pub paced_events: u64,
    /// HTTP app via sidecar, gRPC app via sidecar, direct subscriber.
    pub paths: [PathResults; 3],
}

/// What the benchmark settings are for this section.
pub struct Settings {
    pub flood_events: u64,
    pub paced_rate: f64,
    pub paced_duration: Duration,
    pub payload_bytes: usize,
}

/// One path under test: where to write, who records, whose CPU to read.
struct PathUnderTest<'a> {
    topic: &'a str,
    sink: &'a Sink,
    sidecar: Option<u32>,
}

fn cpu_snapshot(pids: [Option<u32>; 2]) -> [Option<u64>; 3] {
    [
        pids[0].and_then(|pid| procs::cpu_ticks(Some(pid))),
        pids[1].and_then(|pid| procs::cpu_ticks(Some(pid))),
        procs::cpu_ticks(None),
    ]
}

fn cpu_seconds(before: [Option<u64>; 3], after: [Option<u64>; 3]) -> [Option<f64>; 3] {
    let per_second = procs::clock_ticks_per_second() as f64;
    std::array::from_fn(|i| match (before[i], after[i]) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / per_second),
        _ => None,
    })
}

/// Gives up waiting for a run after this long (a path that loses events still reports).
fn patience(events: u64) -> Duration {
    Duration::from_secs(20) + Duration::from_millis(events)
}

/// Writes `count` events of run `run` to `path.topic`: at `rate` per second one by one,
/// or (rate 0) in pipelines of [`FLOOD_BATCH`] as fast as Redis answers; then waits for
/// their delivery.
async fn one_run(
    connection: &mut redis::aio::MultiplexedConnection,
    envelope: &Envelope,
    path: &PathUnderTest<'_>,
    redis_pid: u32,
    run: u64,
    count: u64,
    rate: f64,
) -> Result<Run> {
    path.sink.begin(run, count);
    let pids = [path.sidecar, Some(redis_pid)];
    let cpu_before = cpu_snapshot(pids);
    let start = Instant::now();
    let mut sent = 0u64;
    if rate > 0.0 {
        while sent < count {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
            redis::cmd("XADD")
                .arg(path.topic)
                .arg("*")
                .arg("data")
                .arg(envelope.event(run))
                .query_async::<redis::Value>(connection)
                .await?;
            sent += 1;
        }
    } else {
        while sent < count {
            let batch = (count - sent).min(FLOOD_BATCH as u64);
            let mut pipe = redis::pipe();
            for _ in 0..batch {
                pipe.cmd("XADD")
                    .arg(path.topic)
                    .arg("*")
                    .arg("data")
                    .arg(envelope.event(run))
                    .ignore();
            }
            pipe.query_async::<()>(connection).await?;
            sent += batch;
        }
    }
    let publish_time = start.elapsed();
    let seen = path.sink.finish(patience(count)).await;
    let cpu_after = cpu_snapshot(pids);
    let delivered = seen.nanos.len() as u64;
    let total = if delivered >= count {
        seen.last
            .map_or_else(|| start.elapsed(), |last| last - start)
    } else {
        start.elapsed()
    };
    // Everything is acknowledged now: empty the stream, keeping its consumer group.
    redis::cmd("XTRIM")
        .arg(path.topic)
        .arg("MAXLEN")
        .arg(0)
        .query_async::<redis::Value>(connection)
        .await?;
    Ok(Run {
        published: count,
        delivered,
        publish_time,
        total,
        latencies: Latencies::from_nanos(seen.nanos),
        cpu_seconds: cpu_seconds(cpu_before, cpu_after),
    })
}

/// Warm-up, flood, paced run on one path.
async fn measure_path(
    redis_port: u16,
    redis_pid: u32,
    envelope: &Envelope,
    path: &PathUnderTest<'_>,
    settings: &Settings,
    first_run: u64,
) -> Result<PathResults> {
    let mut connection = redis_connection(redis_port).await?;
    let warm = one_run(
        &mut connection,
        envelope,
        path,
        redis_pid,
        first_run,
        WARMUP_EVENTS,
        0.0,
    )
    .await?;
    if warm.delivered < WARMUP_EVENTS {
        bail!(
            "{}: only {} of {WARMUP_EVENTS} warm-up events were delivered within {:?}",
            path.topic,
            warm.delivered,
            patience(WARMUP_EVENTS)
        );
    }
    let flood = one_run(
        &mut connection,
        envelope,
        path,
        redis_pid,
        first_run + 1,
        settings.flood_events,
        0.0,
    )
    .await?;
    let paced_events = paced_events(settings);
    let paced = one_run(
        &mut connection,
        envelope,
        path,
        redis_pid,
        first_run + 2,
        paced_events,
        settings.paced_rate,
    )
    .await?;
    Ok(PathResults { flood, paced })
}

fn paced_events(settings: &Settings) -> u64 {
    ((settings.paced_rate * settings.paced_duration.as_secs_f64()) as u64).max(1)
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &tokio::runtime::Runtime,
    tandem: &Path,
    scratch: &Path,
    resources: &Path,
    pubsub: &str,
    template: &[u8],
    redis_port: u16,
    redis_pid: u32,
    settings: &Settings,
    poll: Duration,
) -> Result<DeliveryResults> {
    if settings.paced_rate <= 0.0 {
        bail!("--delivery-rate must be positive");
    }
    // The subscribers get their own small runtime, as a separate app process would have
    // its own threads; the publisher runs on the load generator's.
    let apps = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sinks: [Arc<Sink>; 3] = std::array::from_fn(|_| Arc::new(Sink::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (http_port, grpc_port, direct) = apps.block_on(async {
        let http = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let grpc = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let ports = (http.local_addr()?.port(), grpc.local_addr()?.port());
        let router = http_app(pubsub, sinks[0].clone());
        tokio::spawn(async move { axum::serve(http, router).await });
        let service = AppCallbackServer::new(GrpcApp {
            pubsub: pubsub.into(),
            sink: sinks[1].clone(),
        });
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await
        });
        let direct = tokio::spawn(direct_subscriber(
            redis_port,
            sinks[2].clone(),
            stop.clone(),
        ));
        Ok::<_, anyhow::Error>((ports.0, ports.1, direct))
    })?;

    let home = scratch.join("deliver-home");
    std::fs::create_dir_all(&home)?;
    let spec = |app_id: &str, port: u16, protocol: &str| SidecarSpec {
        binary: tandem.to_path_buf(),
        resources: resources.to_path_buf(),
        home: home.clone(),
        log: scratch.join(format!("{app_id}.log")),
        app_id: app_id.into(),
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            protocol.into(),
        ],
    };
    let http_spec = spec("deliver-http", http_port, "http");
    let grpc_spec = spec("deliver-grpc", grpc_port, "grpc");
    let (_, _, http_sidecar) = startup::start_one(&http_spec, poll)?;
    let (_, _, grpc_sidecar) = startup::start_one(&grpc_spec, poll)?;

    let envelopes = [HTTP_TOPIC, GRPC_TOPIC, DIRECT_TOPIC]
        .map(|topic| Envelope::new(template, topic, settings.payload_bytes));
    let [Ok(http_envelope), Ok(grpc_envelope), Ok(direct_envelope)] = envelopes else {
        bail!("cannot build events from the sidecar's CloudEvent");
    };
    let paths = [
        (
            "HTTP app",
            &http_envelope,
            PathUnderTest {
                topic: HTTP_TOPIC,
                sink: &sinks[0],
                sidecar: Some(http_sidecar.pid()),
            },
        ),
        (
            "gRPC app",
            &grpc_envelope,
            PathUnderTest {
                topic: GRPC_TOPIC,
                sink: &sinks[1],
                sidecar: Some(grpc_sidecar.pid()),
            },
        ),
        (
            "direct subscriber",
            &direct_envelope,
            PathUnderTest {
                topic: DIRECT_TOPIC,
                sink: &sinks[2],
                sidecar: None,
            },
        ),
    ];
    let mut results = Vec::with_capacity(3);
    for (index, (label, envelope, path)) in paths.iter().enumerate() {
        crate::progress(&format!(
            "delivery to the {label}: {WARMUP_EVENTS} warm-up events, {} flooded, then {} at {:.0}/s",
            settings.flood_events,
            paced_events(settings),
            settings.paced_rate
        ));
        let first_run = 1 + 10 * index as u64;
        let measured = runtime
            .block_on(measure_path(
                redis_port, redis_pid, envelope, path, settings, first_run,
            ))
            .with_context(|| {
                format!(
                    "see {} and {}",
                    http_spec.log.display(),
                    grpc_spec.log.display()
                )
            })?;
        results.push(measured);
    }

    http_sidecar.stop();
    grpc_sidecar.stop();
    stop.store(true, Ordering::SeqCst);
    if let Ok(Err(error)) = apps.block_on(direct) {
        bail!("the direct subscriber failed: {error:#}");
    }
    drop(apps);
    let Ok(paths) = <[PathResults; 3]>::try_from(results) else {
        unreachable!("three paths measured");
    };
    Ok(DeliveryResults {
        payload_bytes: http_envelope.payload_len(),
        event_bytes: http_envelope.event(1).len(),
        flood_events: settings.flood_events,
        paced_rate: settings.paced_rate,
        paced_events: paced_events(settings),
        paths,
    })
}

const LABELS: [&str; 3] = [
    "HTTP app via sidecar",
    "gRPC app via sidecar",
    "XREADGROUP direct",
];

fn us(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn row(out: &mut String, label: &str, run: &Run, direct_rate: f64) {
    let l = &run.latencies;
    let _ = writeln!(
        out,
        "  {label:<22} {:>9.0} {:>6.2}x {:>7.3} {:>7.3} {:>8.3} {:>8.3} {:>7} {:>7} {:>6} {:>6}",
        run.rate(),
        run.rate() / direct_rate,
        l.percentile_ms(50.0),
        l.percentile_ms(90.0),
        l.percentile_ms(99.0),
        l.max_ms(),
        run.published - run.delivered.min(run.published),
        us(run.cpu_us_per_event(0)),
        us(run.cpu_us_per_event(1)),
        us(run.cpu_us_per_event(2)),
    );
}

const HEADER: &str = "  path                   events/s vs dir  p50 ms  p90 ms   p99 ms   max ms missing  CPU µs/event: tandem redis bench";

pub fn table(out: &mut String, r: &DeliveryResults) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Delivery: {} B JSON payload ({} B CloudEvent) XADDed to the topic's stream; sidecar -> app (HTTP POST / gRPC OnTopicEvent, {IN_FLIGHT} in flight) vs. a direct XREADGROUP COUNT {IN_FLIGHT} + XACK reader",
        r.payload_bytes, r.event_bytes
    );
    let _ = writeln!(
        out,
        "a. flood: {} events written in pipelines of {FLOOD_BATCH} as fast as Redis takes them; events/s = delivered / (first XADD to last delivery); latencies are mostly queueing",
        r.flood_events
    );
    let _ = writeln!(out, "{HEADER}");
    let direct = r.paths[2].flood.rate();
    for (label, path) in LABELS.iter().zip(&r.paths) {
        row(out, label, &path.flood, direct);
    }
    let _ = writeln!(
        out,
        "  writing took: {}",
        LABELS
            .iter()
            .zip(&r.paths)
            .map(|(label, p)| format!("{label} {:.0} ms", p.flood.publish_time.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "b. paced: {} events at {:.0}/s, one XADD each; latency from the XADD's stamp to the subscriber's handler",
        r.paced_events, r.paced_rate
    );
    let _ = writeln!(out, "{HEADER}");
    let direct = r.paths[2].paced.rate();
    for (label, path) in LABELS.iter().zip(&r.paths) {
        row(out, label, &path.paced, direct);
    }
    let direct = &r.paths[2].paced.latencies;
    for (label, path) in LABELS.iter().zip(&r.paths).take(2) {
        let l = &path.paced.latencies;
        let _ = writeln!(
            out,
            "  {label}: added vs direct p50 {:+.3} ms, p99 {:+.3} ms",
            l.percentile_ms(50.0) - direct.percentile_ms(50.0),
            l.percentile_ms(99.0) - direct.percentile_ms(99.0),
        );
    }
    let _ = writeln!(
        out,
        "  CPU per event: bench = this process (publisher, the apps and the direct reader)"
    );
}

fn run_json(run: &Run, direct_rate: f64) -> Value {
    let per = |i: usize| run.cpu_us_per_event(i).map(round3);
    json!({
        "published": run.published,
        "delivered": run.delivered,
        "publish_ms": round3(run.publish_time.as_secs_f64() * 1e3),
        "total_ms": round3(run.total.as_secs_f64() * 1e3),
        "events_per_second": round3(run.rate()),
        "ratio_to_direct": round3(run.rate() / direct_rate),
        "latency": run.latencies.to_json(),
        "cpu_us_per_event": { "sidecar": per(0), "redis": per(1), "bench": per(2) },
    })
}

pub fn json(r: &DeliveryResults) -> Value {
    let flood_direct = r.paths[2].flood.rate();
    let paced_direct = r.paths[2].paced.rate();
    let path = |p: &PathResults| {
        json!({
            "flood": run_json(&p.flood, flood_direct),
            "paced": run_json(&p.paced, paced_direct),
        })
    };
    json!({
        "payload_bytes": r.payload_bytes,
        "cloudevent_bytes": r.event_bytes,
        "in_flight": IN_FLIGHT,
        "flood_events": r.flood_events,
        "paced_rate": r.paced_rate,
        "paced_events": r.paced_events,
        "http_app": path(&r.paths[0]),
        "grpc_app": path(&r.paths[1]),
        "direct": path(&r.paths[2]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_the_envelope_and_carry_run_and_stamp() {
        let template = br#"{"id":"1","source":"bench","type":"com.dapr.event.sent","specversion":"1.0","datacontenttype":"application/json","topic":"elsewhere","pubsubname":"p","data":{"orderId":42}}"#;
        let envelope = Envelope::new(template, "here", 1024).expect("a JSON object");
        let event: Value = serde_json::from_slice(&envelope.event(7)).expect("JSON");
        assert_eq!(event["topic"], "here");
        assert_eq!(event["type"], "com.dapr.event.sent");
        assert_eq!(event["data"]["r"], 7);
        assert!(event["data"]["t"].as_u64().is_some());
        assert!((1000..=1040).contains(&envelope.payload_len()));
    }

    #[test]
    fn the_sink_counts_its_own_run_only() {
        let sink = Sink::default();
        sink.begin(3, 2);
        sink.record(&json!({"r": 2, "t": 0}));
        sink.record_cloudevent(br#"{"data":{"r":3,"t":0}}"#);
        assert!(!sink.complete());
        sink.record(&json!({"r": 3, "t": 0}));
        assert!(sink.complete());
    }
}
