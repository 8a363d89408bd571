//! Closed-loop publish load: N concurrent clients, each sending its next request as soon
//! as the previous one is answered, for a warm-up and then a measured window. Every
//! request completed inside the window is timed; RSS and CPU of the watched processes are
//! sampled alongside.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tandem_proto::runtime::PublishEventRequest;
use tandem_proto::runtime::dapr_client::DaprClient;
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
}

impl Client {
    async fn publish(&mut self) -> Result<(), String> {
        match self {
            Client::Http(connection) => connection.publish().await,
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

/// A minimal HTTP/1.1 keep-alive client for one fixed POST: one write per request, and
/// a read of the status line, headers and `Content-Length` body of the answer.
struct HttpConnection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    request: Arc<Vec<u8>>,
    buffer: Vec<u8>,
}

impl HttpConnection {
    async fn connect(address: SocketAddr, request: Arc<Vec<u8>>) -> Result<Self> {
        let mut connection = Self {
            address,
            stream: None,
            request,
            buffer: Vec::with_capacity(4096),
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

    async fn publish(&mut self) -> Result<(), String> {
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
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        };
        let head = &self.buffer[..head_end];
        let status = procs::parse_status(head).ok_or("bad status line")?;
        let mut body_len = 0usize;
        let mut close = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = std::str::from_utf8(line).unwrap_or("").trim_end();
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.parse().map_err(|_| "bad Content-Length")?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked answers are not expected".into());
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        while self.buffer.len() < head_end + body_len {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection mid-body".into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        if close {
            self.stream = None;
        }
        if status == 204 {
            Ok(())
        } else {
            let body = String::from_utf8_lossy(&self.buffer[head_end..head_end + body_len]);
            Err(format!("HTTP {status}: {body}"))
        }
    }
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
                    HttpConnection::connect(address, request.clone()).await?,
                ));
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
