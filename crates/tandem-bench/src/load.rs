//! Closed-loop publish load: N concurrent clients, each sending its next request as soon
//! as the previous one is answered, for a warm-up and then a measured window. Every
//! request completed inside the window is timed; RSS and CPU of the watched processes are
//! sampled alongside.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tandem_proto::runtime::dapr_client::DaprClient;
use tandem_proto::runtime::{GetStateRequest, PublishEventRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::procs;
use crate::stats::Latencies;

/// What the clients publish to.
#[derive(Clone)]
pub enum Target {
    /// `POST /v1.0/publish/{pubsub}/{topic}` over keep-alive HTTP/1.1, one connection per client.
    Http {
        port: u16,
        pubsub: String,
        topic: String,
        payload: Arc<Vec<u8>>,
    },
    /// `Dapr/PublishEvent` over gRPC; one HTTP/2 channel per client, or one shared by all.
    Grpc {
        port: u16,
        pubsub: String,
        topic: String,
        payload: Arc<Vec<u8>>,
        shared_channel: bool,
    },
    /// `XADD topic * data <event>` straight to Redis, one multiplexed connection per client.
    Direct {
        port: u16,
        topic: String,
        event: Arc<Vec<u8>>,
    },
    /// A fixed, complete HTTP/1.1 request over keep-alive, one connection per client;
    /// succeeds when the answer has status `expect`.
    Raw {
        port: u16,
        request: Arc<Vec<u8>>,
        expect: u16,
    },
    /// `Dapr/GetState` over gRPC, one channel per client; succeeds on a non-empty value.
    GrpcGetState {
        port: u16,
        store: String,
        key: String,
    },
    /// `HGET key data` straight to Redis, one multiplexed connection per client;
    /// succeeds on a non-empty value.
    Hget { port: u16, key: String },
    /// A pub/sub component used in this process, without a sidecar: the same client the
    /// sidecar runs, shared by all clients as the sidecar shares it.
    InProcess {
        pubsub: Arc<dyn tandem_components::pubsub::PubSub>,
        topic: String,
        event: Arc<Vec<u8>>,
    },
}

/// The shape of one run.
#[derive(Clone, Copy)]
pub struct Shape {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Processes whose CPU time (and, for the sidecar, RSS) is sampled during the run.
#[derive(Clone, Copy, Default)]
pub struct Watch {
    pub sidecar: Option<u32>,
    pub redis: Option<u32>,
}

/// What one run measured.
pub struct Outcome {
    pub clients: usize,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latencies: Latencies,
    pub window: Duration,
    /// Peak sidecar VmRSS over samples every 100 ms (warm-up included), KiB.
    pub sidecar_rss_peak_kib: Option<u64>,
    /// CPU used during the measured window, in seconds: sidecar, redis, this load
    /// generator, and the rest of the machine's busy time (other processes, and
    /// interrupt work not charged to a process).
    pub cpu_seconds: [Option<f64>; 4],
    /// The whole machine during the measured window, in seconds: softirq+irq, steal.
    pub machine_irq_steal: [Option<f64>; 2],
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// Two runs of the same path as one: counts, windows and CPU add up, latencies pool,
    /// the peak RSS is the higher.
    pub fn merge(self, other: Outcome) -> Outcome {
        fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            }
        }
        Outcome {
            clients: self.clients,
            ok: self.ok + other.ok,
            errors: self.errors + other.errors,
            first_error: self.first_error.or(other.first_error),
            latencies: self.latencies.merge(other.latencies),
            window: self.window + other.window,
            sidecar_rss_peak_kib: self.sidecar_rss_peak_kib.max(other.sidecar_rss_peak_kib),
            cpu_seconds: std::array::from_fn(|i| add(self.cpu_seconds[i], other.cpu_seconds[i])),
            machine_irq_steal: std::array::from_fn(|i| {
                add(self.machine_irq_steal[i], other.machine_irq_steal[i])
            }),
        }
    }
}

/// A gRPC client and the request it sends again and again.
struct GrpcClient {
    client: DaprClient<Channel>,
    request: PublishEventRequest,
}

/// One client's connection.
enum Client {
    Http(HttpConnection),
    Grpc(Box<GrpcClient>),
    Direct {
        connection: redis::aio::MultiplexedConnection,
        topic: String,
        event: Arc<Vec<u8>>,
    },
    GetState {
        client: Box<DaprClient<Channel>>,
        request: GetStateRequest,
    },
    Hget {
        connection: redis::aio::MultiplexedConnection,
        key: String,
    },
    InProcess {
        pubsub: Arc<dyn tandem_components::pubsub::PubSub>,
        message: tandem_components::pubsub::Message,
    },
}

impl Client {
    /// One request; `Ok` when it got the expected answer.
    pub async fn publish(&mut self) -> Result<(), String> {
        match self {
            Client::GetState { client, request } => match client.get_state(request.clone()).await {
                Ok(answer) if !answer.get_ref().data.is_empty() => Ok(()),
                Ok(_) => Err("GetState: empty value".into()),
                Err(status) => Err(format!("gRPC {:?}: {}", status.code(), status.message())),
            },
            Client::Hget { connection, key } => match redis::cmd("HGET")
                .arg(key.as_str())
                .arg("data")
                .query_async::<Option<Vec<u8>>>(connection)
                .await
            {
                Ok(Some(value)) if !value.is_empty() => Ok(()),
                Ok(_) => Err(format!("HGET {key} data: no value")),
                Err(error) => Err(format!("HGET: {error}")),
            },
            Client::Http(connection) => connection.publish().await,
            Client::InProcess { pubsub, message } => pubsub
                .publish(message.clone())
                .await
                .map_err(|error| error.to_string()),
            Client::Grpc(grpc) => grpc
                .client
                .publish_event(grpc.request.clone())
                .await
                .map(|_| ())
                .map_err(|status| format!("gRPC {:?}: {}", status.code(), status.message())),
            Client::Direct {
                connection,
                topic,
                event,
            } => redis::cmd("XADD")
                .arg(topic.as_str())
                .arg("*")
                .arg("data")
                .arg(event.as_slice())
                .query_async::<redis::Value>(connection)
                .await
                .map(|_| ())
                .map_err(|error| format!("XADD: {error}")),
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client for one fixed request: one write per request,
/// and a read of the status line, headers and body (`Content-Length` or chunked) of the
/// answer, which must have status `expect`.
pub struct HttpConnection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    request: Arc<Vec<u8>>,
    expect: u16,
    buffer: Vec<u8>,
    head_end: usize,
}

impl HttpConnection {
    pub async fn connect(address: SocketAddr, request: Arc<Vec<u8>>, expect: u16) -> Result<Self> {
        let mut connection = Self {
            address,
            stream: None,
            request,
            expect,
            buffer: Vec::with_capacity(4096),
            head_end: 0,
        };
        connection.stream = Some(connection.open().await?);
        Ok(connection)
    }

    async fn open(&self) -> Result<TcpStream> {
        let stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("cannot connect to {}", self.address))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Sends `request` from now on (a benchmark that calls a new URL each time).
    pub fn set_request(&mut self, request: Arc<Vec<u8>>) {
        self.request = request;
    }

    /// The value of header `name` (lower case) in the last answer.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let head = std::str::from_utf8(&self.buffer[..self.head_end]).ok()?;
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub async fn publish(&mut self) -> Result<(), String> {
        let result = self.exchange().await;
        if result.is_err() {
            // Start afresh on the next request.
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self) -> Result<(), String> {
        if self.stream.is_none() {
            self.stream = Some(self.open().await.map_err(|e| format!("{e:#}"))?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(&self.request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buffer.clear();
        let mut chunk = [0u8; 2048];
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            read_more(
                stream,
                &mut chunk,
                &mut self.buffer,
                "the server closed the connection",
            )
            .await?;
        };
        self.head_end = head_end;
        let head = &self.buffer[..head_end];
        let status = procs::parse_status(head).ok_or("bad status line")?;
        let mut body_len = 0usize;
        let mut chunked = false;
        let mut close = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = std::str::from_utf8(line).unwrap_or("").trim_end();
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.parse().map_err(|_| "bad Content-Length")?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        if chunked {
            // Read until the last chunk's `0\r\n\r\n`; the body is not inspected.
            loop {
                let body = &self.buffer[head_end..];
                if body.starts_with(b"0\r\n\r\n") || find(body, b"\r\n0\r\n\r\n").is_some() {
                    break;
                }
                read_more(
                    stream,
                    &mut chunk,
                    &mut self.buffer,
                    "the server closed the connection mid-body",
                )
                .await?;
            }
            body_len = self.buffer.len() - head_end;
        }
        while self.buffer.len() < head_end + body_len {
            read_more(
                stream,
                &mut chunk,
                &mut self.buffer,
                "the server closed the connection mid-body",
            )
            .await?;
        }
        if close {
            self.stream = None;
        }
        if status == self.expect {
            Ok(())
        } else {
            let body = String::from_utf8_lossy(&self.buffer[head_end..head_end + body_len]);
            Err(format!("HTTP {status}: {body}"))
        }
    }
}

/// Reads what the server sent next onto `buffer`; `closed` says what an early end means.
async fn read_more(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    buffer: &mut Vec<u8>,
    closed: &str,
) -> Result<(), String> {
    let n = stream.read(chunk).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err(closed.into());
    }
    buffer.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn http_request(port: u16, pubsub: &str, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /v1.0/publish/{pubsub}/{topic} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(payload);
    request
}

async fn grpc_channel(port: u16) -> Result<Channel> {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot open a gRPC channel to port {port}"))
}

/// Opens every client's connection before any load starts.
async fn connect_all(target: &Target, clients: usize) -> Result<Vec<Client>> {
    let mut all = Vec::with_capacity(clients);
    match target {
        Target::Http {
            port,
            pubsub,
            topic,
            payload,
        } => {
            let request = Arc::new(http_request(*port, pubsub, topic, payload));
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            for _ in 0..clients {
                all.push(Client::Http(
                    HttpConnection::connect(address, request.clone(), 204).await?,
                ));
            }
        }
        Target::Raw {
            port,
            request,
            expect,
        } => {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            for _ in 0..clients {
                all.push(Client::Http(
                    HttpConnection::connect(address, request.clone(), *expect).await?,
                ));
            }
        }
        Target::GrpcGetState { port, store, key } => {
            let request = GetStateRequest {
                store_name: store.clone(),
                key: key.clone(),
                ..Default::default()
            };
            for _ in 0..clients {
                all.push(Client::GetState {
                    client: Box::new(DaprClient::new(grpc_channel(*port).await?)),
                    request: request.clone(),
                });
            }
        }
        Target::Hget { port, key } => {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
            for _ in 0..clients {
                all.push(Client::Hget {
                    connection: client
                        .get_multiplexed_async_connection()
                        .await
                        .context("cannot connect to Redis")?,
                    key: key.clone(),
                });
            }
        }
        Target::Grpc {
            port,
            pubsub,
            topic,
            payload,
            shared_channel,
        } => {
            let request = PublishEventRequest {
                pubsub_name: pubsub.clone(),
                topic: topic.clone(),
                data: payload.as_ref().clone(),
                data_content_type: "application/json".into(),
                metadata: HashMap::new(),
            };
            let shared = if *shared_channel {
                Some(grpc_channel(*port).await?)
            } else {
                None
            };
            for _ in 0..clients {
                let channel = match &shared {
                    Some(channel) => channel.clone(),
                    None => grpc_channel(*port).await?,
                };
                all.push(Client::Grpc(Box::new(GrpcClient {
                    client: DaprClient::new(channel),
                    request: request.clone(),
                })));
            }
        }
        Target::InProcess {
            pubsub,
            topic,
            event,
        } => {
            let message = tandem_components::pubsub::Message {
                topic: topic.clone(),
                data: event.as_ref().clone().into(),
                metadata: HashMap::new(),
            };
            for _ in 0..clients {
                all.push(Client::InProcess {
                    pubsub: pubsub.clone(),
                    message: message.clone(),
                });
            }
        }
        Target::Direct { port, topic, event } => {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
            for _ in 0..clients {
                all.push(Client::Direct {
                    connection: client
                        .get_multiplexed_async_connection()
                        .await
                        .context("cannot connect to Redis")?,
                    topic: topic.clone(),
                    event: event.clone(),
                });
            }
        }
    }
    Ok(all)
}

struct ClientResult {
    nanos: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn drive(
    mut client: Client,
    measure_from: Instant,
    end: Instant,
    expected: usize,
) -> ClientResult {
    let mut result = ClientResult {
        nanos: Vec::with_capacity(expected),
        errors: 0,
        first_error: None,
    };
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let answer = client.publish().await;
        let finished = Instant::now();
        let counted = started >= measure_from && finished <= end;
        match answer {
            Ok(()) if counted => result.nanos.push((finished - started).as_nanos() as u64),
            Ok(()) => {}
            Err(error) => {
                if counted {
                    result.errors += 1;
                }
                result.first_error.get_or_insert(error);
                // Don't spin on a failing server.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    result
}

/// Runs `shape.clients` clients against `target`; see the module docs.
pub async fn run(target: &Target, shape: Shape, watch: Watch) -> Result<Outcome> {
    let clients = connect_all(target, shape.clients).await?;
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    // Room for ~50k requests/s per client run without reallocating.
    let expected = (shape.duration.as_secs_f64() * 50_000.0 / shape.clients as f64) as usize;

    let sampler = tokio::spawn(async move {
        let mut peak = None::<u64>;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticker.tick().await;
            if let Some(kib) = watch.sidecar.and_then(procs::rss_kib) {
                peak = Some(peak.map_or(kib, |p| p.max(kib)));
            }
            if Instant::now() >= end {
                break;
            }
        }
        peak
    });
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        cpu_snapshot(watch)
    });
    let cpu_at_end = tokio::spawn(async move {
        tokio::time::sleep_until(end.into()).await;
        cpu_snapshot(watch)
    });

    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(drive(client, measure_from, end, expected)))
        .collect();
    let mut nanos = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.context("a client task panicked")?;
        nanos.extend_from_slice(&result.nanos);
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    let peak = sampler.await?;
    let cpu0 = cpu_at_start.await?;
    let cpu1 = cpu_at_end.await?;
    let ticks_per_second = procs::clock_ticks_per_second() as f64;
    let seconds = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks_per_second),
        _ => None,
    };
    let used: [Option<f64>; 3] = std::array::from_fn(|i| seconds(cpu0.0[i], cpu1.0[i]));
    let known: f64 = used.iter().flatten().sum();
    let busy = seconds(cpu0.1.map(|m| m.busy), cpu1.1.map(|m| m.busy));
    let cpu_seconds = [
        used[0],
        used[1],
        used[2],
        busy.map(|busy| (busy - known).max(0.0)),
    ];
    let machine_irq_steal = [
        seconds(cpu0.1.map(|m| m.irq), cpu1.1.map(|m| m.irq)),
        seconds(cpu0.1.map(|m| m.steal), cpu1.1.map(|m| m.steal)),
    ];
    Ok(Outcome {
        clients: shape.clients,
        ok: nanos.len() as u64,
        errors,
        first_error,
        latencies: Latencies::from_nanos(nanos),
        window: shape.duration,
        sidecar_rss_peak_kib: peak,
        cpu_seconds,
        machine_irq_steal,
    })
}

/// CPU ticks of the sidecar, redis and this process; and of the whole machine.
fn cpu_snapshot(watch: Watch) -> ([Option<u64>; 3], Option<procs::MachineTicks>) {
    (
        [
            watch.sidecar.and_then(|pid| procs::cpu_ticks(Some(pid))),
            watch.redis.and_then(|pid| procs::cpu_ticks(Some(pid))),
            procs::cpu_ticks(None),
        ],
        procs::machine_ticks(),
    )
}

/// What one open-loop (paced) run measured.
pub struct Paced {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the moment each request was actually written to its answer.
    pub from_send: Latencies,
    /// From the moment each request was scheduled to its answer (includes the timer's
    /// lateness and any queueing behind a slow answer on the same connection).
    pub from_schedule: Latencies,
    pub window: Duration,
}

/// Open-loop load: `clients` connections share `rate` requests/s, each sending on its
/// own fixed schedule (every `clients / rate` s, staggered by `1 / rate` s); a late
/// answer delays that connection's next send but not the schedule.
pub async fn run_paced(
    target: &Target,
    clients: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<Paced> {
    let all = connect_all(target, clients).await?;
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let tasks: Vec<_> = all
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut scheduled_nanos = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                for k in 0u64.. {
                    let offset = (index as f64 + (k * clients as u64) as f64) / rate;
                    let scheduled = start + Duration::from_secs_f64(offset);
                    if scheduled >= end {
                        break;
                    }
                    tokio::time::sleep_until(scheduled.into()).await;
                    let actual = Instant::now();
                    let answer = client.publish().await;
                    let finished = Instant::now();
                    if scheduled < measure_from {
                        continue;
                    }
                    match answer {
                        Ok(()) => {
                            sent.push((finished - actual).as_nanos() as u64);
                            scheduled_nanos.push((finished - scheduled).as_nanos() as u64);
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (sent, scheduled_nanos, errors, first_error)
            })
        })
        .collect();
    let mut from_send = Vec::new();
    let mut from_schedule = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (sent, scheduled, e, first) = task.await.context("a client task panicked")?;
        from_send.extend(sent);
        from_schedule.extend(scheduled);
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    Ok(Paced {
        ok: from_send.len() as u64,
        errors,
        first_error,
        from_send: Latencies::from_nanos(from_send),
        from_schedule: Latencies::from_nanos(from_schedule),
        window: duration,
    })
}

/// CPU used by each of `pids` between `from` and `to`, and their peak VmRSS sampled
/// every 100 ms from now until `to`.
pub struct ProcUsage {
    pub cpu_seconds: Vec<Option<f64>>,
    pub rss_peak_kib: Vec<Option<u64>>,
}

/// Samples `pids` in the background; await the handle after `to`.
pub fn watch_procs(
    pids: Vec<u32>,
    from: Instant,
    to: Instant,
) -> tokio::task::JoinHandle<ProcUsage> {
    tokio::spawn(async move {
        let mut peaks: Vec<Option<u64>> = vec![None; pids.len()];
        let mut before: Option<Vec<Option<u64>>> = None;
        loop {
            let now = Instant::now();
            if before.is_none() && now >= from {
                before = Some(pids.iter().map(|&p| procs::cpu_ticks(Some(p))).collect());
            }
            for (peak, &pid) in peaks.iter_mut().zip(&pids) {
                if let Some(kib) = procs::rss_kib(pid) {
                    *peak = Some(peak.map_or(kib, |p| p.max(kib)));
                }
            }
            if now >= to {
                break;
            }
            let mut next = (now + Duration::from_millis(100)).min(to);
            if before.is_none() {
                next = next.min(from);
            }
            tokio::time::sleep_until(next.into()).await;
        }
        let after: Vec<Option<u64>> = pids.iter().map(|&p| procs::cpu_ticks(Some(p))).collect();
        let per_second = procs::clock_ticks_per_second() as f64;
        let before = before.unwrap_or_else(|| vec![None; pids.len()]);
        ProcUsage {
            cpu_seconds: before
                .iter()
                .zip(&after)
                .map(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(*a) as f64 / per_second),
                    _ => None,
                })
                .collect(),
            rss_peak_kib: peaks,
        }
    })
}
