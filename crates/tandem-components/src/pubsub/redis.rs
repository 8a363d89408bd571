//! `pubsub.redis`: Redis Streams, compatible with Dapr's component.
//!
//! A topic is a stream; each subscribing app is a consumer group named by its
//! `consumerID` (the app id by default), so replicas of one app share the work and
//! different apps each get every message. A message is `XACK`ed only after the app is
//! done with it. Messages left pending — the app asked for a retry, or a sidecar died
//! mid-delivery — are claimed again with `XPENDING`/`XCLAIM` once they have been
//! pending for `processingTimeout`, checked every `redeliverInterval`.
//!
//! **Redelivery drains the backlog.** Each check walks the whole pending list, page
//! after page, until nothing eligible is left — not one page per interval, which would
//! take hours to redeliver what piled up while the app was down. It is paced by the
//! delivery slots (`concurrency`): a page is only read once slots are free, and never
//! asks for more entries than there are free slots. Messages still being delivered by
//! this process are skipped, however long they take.
//!
//! Connections come and go: publishing goes through a reconnecting connection manager,
//! and each subscription's reader reconnects and re-creates its group (`NOGROUP` after a
//! Redis restart) by itself, so delivery resumes without restarting the sidecar.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};
use tandem_resiliency::exponential_wait;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::redis_connection;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};

pub const METADATA: &[&str] = &[
    "redisHost",
    "redisPassword",
    "redisUsername",
    "redisDB",
    "enableTLS",
    "consumerID",
    "concurrency",
    "queueDepth",
    "processingTimeout",
    "redeliverInterval",
    "maxLenApprox",
    "dialTimeout",
];

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    group: String,
    concurrency: usize,
    queue_depth: usize,
    processing_timeout: Duration,
    redeliver_interval: Duration,
    max_len_approx: Option<usize>,
}

pub struct RedisStreams {
    client: Client,
    publisher: ConnectionManager,
    settings: Settings,
    host: String,
}

impl RedisStreams {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let (client, host) = redis_connection::client(metadata)?;
        let publisher = redis_connection::connection_manager(
            metadata,
            client.clone(),
            &host,
            2,
            Duration::from_secs(1),
        )
        .await?;
        let max_len: usize = metadata.number_or("maxLenApprox", 0)?;
        let settings = Settings {
            group: metadata.required("consumerID")?.to_owned(),
            concurrency: metadata.number_or("concurrency", 10usize)?.max(1),
            queue_depth: metadata.number_or("queueDepth", 100usize)?.max(1),
            processing_timeout: metadata
                .duration_or("processingTimeout", Duration::from_secs(15))?,
            redeliver_interval: metadata
                .duration_or("redeliverInterval", Duration::from_secs(60))?,
            max_len_approx: (max_len > 0).then_some(max_len),
        };
        Ok(Arc::new(Self {
            client,
            publisher,
            settings,
            host,
        }))
    }
}

#[async_trait]
impl PubSub for RedisStreams {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let mut command = redis::cmd("XADD");
        command.arg(&message.topic);
        if let Some(max_len) = self.settings.max_len_approx {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command.arg("*").arg("data").arg(message.data.as_ref());
        let mut connection = self.publisher.clone();
        command
            .query_async::<Value>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|source| PubSubError::Redis {
                host: self.host.clone(),
                action: format!("XADD {}", message.topic),
                source,
            })
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, PubSubError> {
        let reader = Reader {
            client: self.client.clone(),
            acks: self.publisher.clone(),
            stream: subscription.topic,
            settings: self.settings.clone(),
            deliver,
            slots: Arc::new(Semaphore::new(self.settings.concurrency)),
            in_flight: Arc::default(),
            tasks: TaskTracker::new(),
            host: self.host.clone(),
        };
        // Create the group now so a setup error reaches the caller.
        let mut connection = reader.connect().await?;
        reader.create_group(&mut connection).await?;
        Ok(tokio::spawn(reader.run(connection, stop)))
    }
}

/// One subscription's reading side.
#[derive(Clone)]
struct Reader {
    client: Client,
    /// Acknowledgements and claims go over the shared, reconnecting connection.
    acks: ConnectionManager,
    stream: String,
    settings: Settings,
    deliver: Arc<dyn Deliver>,
    slots: Arc<Semaphore>,
    /// IDs being delivered right now, so the reclaimer never redelivers a message that
    /// is merely slow in this very process.
    in_flight: Arc<Mutex<HashSet<String>>>,
    tasks: TaskTracker,
    host: String,
}

impl Reader {
    async fn connect(&self) -> Result<MultiplexedConnection, PubSubError> {
        // `XREADGROUP BLOCK` holds the connection, so the reader has its own, without
        // the client's default response timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| PubSubError::RedisConnect {
                host: self.host.clone(),
                source,
            })
    }

    async fn create_group(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), PubSubError> {
        // From "0": a new group also gets what was published before it existed.
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(source) => Err(PubSubError::Redis {
                host: self.host.clone(),
                action: format!("XGROUP CREATE {} {}", self.stream, self.settings.group),
                source,
            }),
        }
    }

    async fn run(self, mut connection: MultiplexedConnection, stop: CancellationToken) {
        let reclaimer = tokio::spawn(self.clone().reclaim_forever(stop.clone()));
        let mut failures = 0u32;
        loop {
            // Wait for a free slot before reading, and read no more than the free
            // slots, so nothing read sits undelivered. (The slots are not held while
            // the read blocks: the reclaimer may need them meanwhile.)
            let Ok(first_slot) = self.slots.clone().acquire_owned().await else {
                break;
            };
            drop(first_slot);
            let count = self
                .slots
                .available_permits()
                .clamp(1, self.settings.queue_depth);
            let read = tokio::select! {
                _ = stop.cancelled() => break,
                read = self.read_new(&mut connection, count) => read,
            };
            match read {
                Ok(entries) => {
                    failures = 0;
                    for (id, data) in entries {
                        self.spawn_delivery(id, data).await;
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if error.code() == Some("NOGROUP") {
                        tracing::warn!(stream = %self.stream, group = %self.settings.group, "consumer group is gone (Redis restarted?); creating it again");
                    } else {
                        tracing::warn!(stream = %self.stream, "reading from Redis at {} failed: {error}; retrying", self.host);
                    }
                    let wait = exponential_wait(
                        failures,
                        Duration::from_millis(100),
                        Duration::from_secs(5),
                    );
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if let Ok(fresh) = self.connect().await {
                        connection = fresh;
                        if let Err(error) = self.create_group(&mut connection).await {
                            tracing::warn!("{error}");
                        }
                    }
                }
            }
        }
        reclaimer.abort();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// `XREADGROUP ... STREAMS stream >`: messages never delivered to the group.
    async fn read_new(
        &self,
        connection: &mut MultiplexedConnection,
        count: usize,
    ) -> redis::RedisResult<Vec<(String, Option<Bytes>)>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.group)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(2000)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(connection)
            .await?;
        // Reply: [[stream, [[id, [field, value, ...]], ...]]] or nil on timeout (RESP2).
        let mut entries = Vec::new();
        if let Value::Array(streams) = reply {
            for stream in streams {
                if let Value::Array(mut parts) = stream
                    && parts.len() == 2
                    && let Value::Array(items) = parts.remove(1)
                {
                    entries.extend(items.into_iter().filter_map(parse_entry));
                }
            }
        }
        Ok(entries)
    }

    /// Delivers one entry once a delivery slot is free.
    async fn spawn_delivery(&self, id: String, data: Option<Bytes>) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        self.deliver_in(slot, id, data).await;
    }

    /// Delivers one entry in `slot`, which it holds until the app has answered.
    async fn deliver_in(&self, slot: OwnedSemaphorePermit, id: String, data: Option<Bytes>) {
        let Some(data) = data else {
            // The entry was trimmed away (or has no `data` field): nothing to deliver.
            self.ack(&id).await;
            return;
        };
        self.in_flight.lock().insert(id.clone());
        let reader = self.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            let message = Message {
                topic: reader.stream.clone(),
                data,
                metadata: Default::default(),
            };
            match reader.deliver.deliver(message).await {
                Outcome::Done | Outcome::Drop => reader.ack(&id).await,
                // Left pending: the reclaimer redelivers it after `processingTimeout`.
                Outcome::Retry => {}
            }
            reader.in_flight.lock().remove(&id);
        });
    }

    async fn ack(&self, id: &str) {
        let mut connection = self.acks.clone();
        let acked: redis::RedisResult<Value> = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.settings.group)
            .arg(id)
            .query_async(&mut connection)
            .await;
        if let Err(error) = acked {
            // Not lost: it stays pending and is delivered again.
            tracing::warn!(stream = %self.stream, id, "XACK failed, the message will be redelivered: {error}");
        }
    }

    async fn reclaim_forever(self, stop: CancellationToken) {
        if self.settings.redeliver_interval.is_zero() || self.settings.processing_timeout.is_zero()
        {
            return; // "0" disables redelivery, as in Dapr.
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.redeliver_interval) => {}
            }
            if let Err(error) = self.reclaim_all().await {
                tracing::debug!(stream = %self.stream, "checking pending messages failed: {error}");
            }
        }
    }

    /// Claims and redelivers every message pending for longer than
    /// `processingTimeout`, page by page through the pending list, each page no larger
    /// than the delivery slots free for it.
    async fn reclaim_all(&self) -> redis::RedisResult<()> {
        let mut connection = self.acks.clone();
        let min_idle =
            u64::try_from(self.settings.processing_timeout.as_millis()).unwrap_or(u64::MAX);
        // Where the next page starts: the beginning, then just after the last entry seen.
        let mut start = "-".to_owned();
        loop {
            // Wait for a free slot, then take every other free one (up to a page).
            let Ok(first) = self.slots.clone().acquire_owned().await else {
                return Ok(());
            };
            let mut slots = vec![first];
            while slots.len() < self.settings.queue_depth {
                match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => slots.push(slot),
                    Err(_) => break,
                }
            }
            let page = slots.len();
            let pending: Value = redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.settings.group)
                .arg("IDLE")
                .arg(min_idle)
                .arg(&start)
                .arg("+")
                .arg(page)
                .query_async(&mut connection)
                .await?;
            let Value::Array(rows) = pending else {
                return Ok(());
            };
            let listed: Vec<String> = rows
                .into_iter()
                .filter_map(|row| match row {
                    Value::Array(fields) => fields.into_iter().next().and_then(value_to_string),
                    _ => None,
                })
                .collect();
            let Some(last) = listed.last() else {
                return Ok(()); // nothing eligible is left
            };
            start = format!("({last}");
            let end_reached = listed.len() < page;
            let ids: Vec<String> = {
                let in_flight = self.in_flight.lock();
                listed
                    .into_iter()
                    .filter(|id| !in_flight.contains(id))
                    .collect()
            };
            if !ids.is_empty() {
                // Still idle that long: nobody else claimed them meanwhile.
                let claimed: Value = redis::cmd("XCLAIM")
                    .arg(&self.stream)
                    .arg(&self.settings.group)
                    .arg(&self.settings.group)
                    .arg(min_idle)
                    .arg(&ids)
                    .query_async(&mut connection)
                    .await?;
                if let Value::Array(items) = claimed {
                    for (id, data) in items.into_iter().filter_map(parse_entry) {
                        let Some(slot) = slots.pop() else {
                            // More entries than asked for: cannot happen, but never
                            // deliver past the free slots.
                            self.spawn_delivery(id, data).await;
                            continue;
                        };
                        self.deliver_in(slot, id, data).await;
                    }
                }
            }
            if end_reached {
                return Ok(());
            }
        }
    }
}

/// `[id, [field, value, ...]]` → `(id, value of "data")`.
fn parse_entry(entry: Value) -> Option<(String, Option<Bytes>)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = value_to_string(parts.pop()?)?;
    let mut data = None;
    if let Value::Array(fields) = fields {
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if value_to_string(name).as_deref() == Some("data")
                && let Value::BulkString(bytes) = value
            {
                data = Some(Bytes::from(bytes));
            }
        }
    }
    Some((id, data))
}

fn value_to_string(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}
