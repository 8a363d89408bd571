//! Bulk publish: 100 entries of the benchmark's payload in one call — HTTP
//! `POST /v1.0/publish/bulk/{pubsub}/{topic}` and gRPC `BulkPublishEvent` — against the
//! same 100 payloads published one call after another on the same connection
//! (`POST /v1.0/publish/...`, `PublishEvent`). One client, the four ways taking turns,
//! each batch timed from the first byte sent to the last answer.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tandem_proto::runtime::dapr_client::DaprClient;
use tandem_proto::runtime::{BulkPublishRequest, BulkPublishRequestEntry, PublishEventRequest};
use tonic::transport::{Channel, Endpoint};

use crate::load::HttpConnection;
use crate::procs::SidecarSpec;
use crate::startup;
use crate::stats::{Latencies, round3};

const TOPIC: &str = "bench-bulk";
/// Batches run, and thrown away, before the measured ones.
const WARMUP_BATCHES: usize = 5;

pub struct BulkResults {
    pub entries: usize,
    pub entry_bytes: usize,
    pub batches: usize,
    /// Time per batch of `entries` events: HTTP bulk, HTTP singles, gRPC bulk, gRPC singles.
    pub ways: [Latencies; 4],
}

fn post(port: u16, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The bulk request body: `entries` entries, each the payload as a JSON event.
fn bulk_body(payload: &[u8], entries: usize) -> Result<Vec<u8>> {
    let event: Value =
        serde_json::from_slice(payload).context("the benchmark's payload is not JSON")?;
    let list: Vec<Value> = (0..entries)
        .map(|i| json!({ "entryId": i.to_string(), "event": event, "contentType": "application/json" }))
        .collect();
    Ok(serde_json::to_vec(&list)?)
}

/// The four ways of publishing a batch, with their connections.
struct Publishers {
    http_bulk: HttpConnection,
    http_single: HttpConnection,
    grpc: DaprClient<Channel>,
    grpc_bulk: BulkPublishRequest,
    grpc_single: PublishEventRequest,
    entries: usize,
}

impl Publishers {
    /// Publishes one batch the `way`th way (see [`BulkResults::ways`]); its duration.
    async fn batch(&mut self, way: usize) -> Result<Duration> {
        let started = Instant::now();
        match way {
            0 => self
                .http_bulk
                .publish()
                .await
                .map_err(anyhow::Error::msg)
                .context("HTTP bulk publish")?,
            1 => {
                for _ in 0..self.entries {
                    self.http_single
                        .publish()
                        .await
                        .map_err(anyhow::Error::msg)
                        .context("HTTP publish")?;
                }
            }
            2 => {
                let answer = self
                    .grpc
                    .bulk_publish_event(self.grpc_bulk.clone())
                    .await
                    .context("gRPC BulkPublishEvent")?;
                if let Some(failed) = answer.get_ref().failed_entries.first() {
                    bail!("gRPC BulkPublishEvent: entry failed: {}", failed.error);
                }
            }
            _ => {
                for _ in 0..self.entries {
                    self.grpc
                        .publish_event(self.grpc_single.clone())
                        .await
                        .context("gRPC PublishEvent")?;
                }
            }
        }
        Ok(started.elapsed())
    }
}

async fn stream_length(connection: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    Ok(redis::cmd("XLEN")
        .arg(TOPIC)
        .query_async::<u64>(connection)
        .await?)
}

async fn unlink(connection: &mut redis::aio::MultiplexedConnection) -> Result<()> {
    redis::cmd("UNLINK")
        .arg(TOPIC)
        .query_async::<redis::Value>(connection)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &tokio::runtime::Runtime,
    spec: &SidecarSpec,
    pubsub: &str,
    payload: Arc<Vec<u8>>,
    redis_port: u16,
    entries: usize,
    batches: usize,
    poll: Duration,
) -> Result<BulkResults> {
    let (_, _, sidecar) = startup::start_one(spec, poll)?;
    let ways = runtime
        .block_on(measure(
            &sidecar, pubsub, &payload, redis_port, entries, batches,
        ))
        .with_context(|| format!("see {}", spec.log.display()));
    sidecar.stop();
    Ok(BulkResults {
        entries,
        entry_bytes: payload.len(),
        batches,
        ways: ways?,
    })
}

async fn measure(
    sidecar: &crate::procs::Sidecar,
    pubsub: &str,
    payload: &[u8],
    redis_port: u16,
    entries: usize,
    batches: usize,
) -> Result<[Latencies; 4]> {
    let port = sidecar.http_port;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let bulk = post(
        port,
        &format!("/v1.0/publish/bulk/{pubsub}/{TOPIC}"),
        &bulk_body(payload, entries)?,
    );
    let single = post(port, &format!("/v1.0/publish/{pubsub}/{TOPIC}"), payload);
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", sidecar.grpc_port))?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("cannot open a gRPC channel to the sidecar")?;
    let mut publishers = Publishers {
        http_bulk: HttpConnection::connect(address, Arc::new(bulk), 204).await?,
        http_single: HttpConnection::connect(address, Arc::new(single), 204).await?,
        grpc: DaprClient::new(channel),
        grpc_bulk: BulkPublishRequest {
            pubsub_name: pubsub.into(),
            topic: TOPIC.into(),
            entries: (0..entries)
                .map(|i| BulkPublishRequestEntry {
                    entry_id: i.to_string(),
                    event: payload.to_vec(),
                    content_type: "application/json".into(),
                    metadata: HashMap::new(),
                })
                .collect(),
            metadata: HashMap::new(),
        },
        grpc_single: PublishEventRequest {
            pubsub_name: pubsub.into(),
            topic: TOPIC.into(),
            data: payload.to_vec(),
            data_content_type: "application/json".into(),
            metadata: HashMap::new(),
        },
        entries,
    };
    let mut redis = crate::redis_connection(redis_port).await?;
    unlink(&mut redis).await?;

    // Each way once, then the stream must hold exactly 4 × entries events.
    for way in 0..4 {
        publishers.batch(way).await?;
    }
    let written = stream_length(&mut redis).await?;
    if written != 4 * entries as u64 {
        bail!(
            "after one batch of {entries} each way, {TOPIC} holds {written} entries, not {}",
            4 * entries
        );
    }
    let mut nanos: [Vec<u64>; 4] = std::array::from_fn(|_| Vec::with_capacity(batches));
    for batch in 0..WARMUP_BATCHES + batches {
        for (way, samples) in nanos.iter_mut().enumerate() {
            let took = publishers.batch(way).await?;
            if batch >= WARMUP_BATCHES {
                samples.push(took.as_nanos() as u64);
            }
        }
        // Redis's memory stays flat; outside the timed calls.
        unlink(&mut redis).await?;
    }
    Ok(nanos.map(Latencies::from_nanos))
}

const WAYS: [&str; 4] = [
    "HTTP bulk, 1 request",
    "HTTP, 100 publishes",
    "gRPC BulkPublishEvent",
    "gRPC, 100 PublishEvent",
];

pub fn table(out: &mut String, r: &BulkResults) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Bulk publish: {} entries x {} B JSON per batch, one client, {} batches each way (taking turns); time per batch",
        r.entries, r.entry_bytes, r.batches
    );
    let _ = writeln!(
        out,
        "  way                        p50 ms  p90 ms  p99 ms  max ms  events/s (from mean)  bulk vs singles"
    );
    for (i, (label, l)) in WAYS.iter().zip(&r.ways).enumerate() {
        let events = r.entries as f64 / (l.mean_ms() / 1e3);
        let speedup = if i % 2 == 0 {
            format!(
                "{:.2}x faster (p50)",
                r.ways[i + 1].percentile_ms(50.0) / l.percentile_ms(50.0)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {label:<25} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>9.0}             {speedup}",
            l.percentile_ms(50.0),
            l.percentile_ms(90.0),
            l.percentile_ms(99.0),
            l.max_ms(),
            events,
        );
    }
}

pub fn json(r: &BulkResults) -> Value {
    let way = |i: usize| {
        let l = &r.ways[i];
        json!({
            "per_batch": l.to_json(),
            "events_per_second": round3(r.entries as f64 / (l.mean_ms() / 1e3)),
        })
    };
    json!({
        "entries": r.entries,
        "entry_bytes": r.entry_bytes,
        "batches": r.batches,
        "http_bulk": way(0),
        "http_singles": way(1),
        "http_bulk_speedup_p50": round3(r.ways[1].percentile_ms(50.0) / r.ways[0].percentile_ms(50.0)),
        "grpc_bulk": way(2),
        "grpc_singles": way(3),
        "grpc_bulk_speedup_p50": round3(r.ways[3].percentile_ms(50.0) / r.ways[2].percentile_ms(50.0)),
    })
}
