//! `pubsub.sqlite`: a durable broker in one SQLite file, tandem's embedded default.
//!
//! Every sidecar on the machine can open the same file (WAL mode, short transactions),
//! so two `tandem run`s exchange messages with nothing installed. The model follows
//! Redis Streams: a topic is an append-only log, each subscribing app a group with a
//! cursor, and each message handed out is *leased* to one sidecar. A lease is extended
//! while the delivery runs and dropped when the app is done; if the sidecar dies, the
//! lease runs out after `processingTimeout` and another delivery takes the message. A
//! message the app asks to retry becomes visible again after a growing backoff.
//!
//! New messages published by this process wake its subscribers at once; messages from
//! other processes are found by polling every `pollInterval`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use tandem_resiliency::exponential_wait;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};
use crate::sqlite::{Database, database_path, now_ms};

pub const METADATA: &[&str] = &[
    "connectionString",
    "consumerID",
    "concurrency",
    "processingTimeout",
    "pollInterval",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pubsub_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    data BLOB NOT NULL,
    published_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pubsub_messages_by_topic ON pubsub_messages (topic, seq);
CREATE TABLE IF NOT EXISTS pubsub_groups (
    topic TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    PRIMARY KEY (topic, consumer_group)
);
CREATE TABLE IF NOT EXISTS pubsub_leases (
    topic TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    holder TEXT NOT NULL,
    PRIMARY KEY (topic, consumer_group, seq)
);
";

pub struct SqlitePubSub {
    database: Database,
    group: String,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    /// Wakes this process's subscribers when it publishes.
    published: Arc<Notify>,
}

impl SqlitePubSub {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let path = database_path(metadata.required("connectionString")?);
        let database = Database::open(path, SCHEMA)
            .await
            .map_err(|error| metadata.field_error("connectionString", error.to_string()))?;
        Ok(Arc::new(Self {
            database,
            group: metadata.required("consumerID")?.to_owned(),
            concurrency: metadata.number_or("concurrency", 10usize)?.max(1),
            lease: metadata
                .duration_or("processingTimeout", Duration::from_secs(10))?
                .max(Duration::from_millis(100)),
            poll_interval: metadata
                .duration_or("pollInterval", Duration::from_millis(50))?
                .max(Duration::from_millis(1)),
            published: Arc::new(Notify::new()),
        }))
    }
}

#[async_trait]
impl PubSub for SqlitePubSub {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        self.database
            .run(move |connection| {
                connection.execute(
                    "INSERT INTO pubsub_messages (topic, data, published_ms) VALUES (?1, ?2, ?3)",
                    params![message.topic, message.data.as_ref(), now_ms()],
                )
            })
            .await
            .map_err(PubSubError::from)?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, PubSubError> {
        let consumer = Consumer {
            database: self.database.clone(),
            topic: subscription.topic,
            group: self.group.clone(),
            lease: self.lease,
            deliver,
            slots: Arc::new(Semaphore::new(self.concurrency)),
            tasks: TaskTracker::new(),
            holder: uuid::Uuid::new_v4().to_string(),
        };
        consumer.join_group().await?;
        let poll_interval = self.poll_interval;
        let published = self.published.clone();
        Ok(tokio::spawn(consumer.run(poll_interval, published, stop)))
    }
}

/// A duration in milliseconds, as leases are stored (saturating: a `processingTimeout`
/// of centuries is a lease that never runs out, not an overflow).
fn lease_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Clone)]
struct Consumer {
    database: Database,
    topic: String,
    group: String,
    lease: Duration,
    deliver: Arc<dyn Deliver>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Who holds a lease: only the holder may extend it or schedule its retry.
    holder: String,
}

impl Consumer {
    /// A new group starts at the beginning of the log, like a Redis group made from "0".
    async fn join_group(&self) -> Result<(), PubSubError> {
        let (topic, group) = (self.topic.clone(), self.group.clone());
        self.database
            .run(move |connection| {
                connection.execute(
                    "INSERT OR IGNORE INTO pubsub_groups (topic, consumer_group, cursor) VALUES (?1, ?2, 0)",
                    params![topic, group],
                )
            })
            .await
            .map_err(PubSubError::from)
            .map(|_| ())
    }

    async fn run(self, poll_interval: Duration, published: Arc<Notify>, stop: CancellationToken) {
        let mut failures = 0u32;
        let mut last_cleanup = std::time::Instant::now();
        loop {
            let wake = published.notified();
            let free = self.slots.available_permits();
            if free == 0 {
                // Every slot is busy: claim again as soon as one delivery finishes.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    slot = self.slots.acquire() => drop(slot),
                }
                continue;
            }
            let idle = match self.claim(free).await {
                Ok(messages) => {
                    failures = 0;
                    let idle = messages.is_empty();
                    for (seq, data) in messages {
                        self.spawn_delivery(seq, data);
                    }
                    idle
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(topic = %self.topic, "reading the embedded broker failed: {error}");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(exponential_wait(failures, Duration::from_millis(100), Duration::from_secs(5))) => {}
                    }
                    continue;
                }
            };
            if last_cleanup.elapsed() > Duration::from_secs(30) {
                last_cleanup = std::time::Instant::now();
                if let Err(error) = self.clean_up().await {
                    tracing::debug!("cleaning the embedded broker failed: {error}");
                }
            }
            if idle {
                // Nothing due: wait for a publish here, or poll for other processes'.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = wake => {}
                    _ = tokio::time::sleep(poll_interval) => {}
                }
            } else if stop.is_cancelled() {
                break;
            }
            // Otherwise there may be more due right now: a backlog is drained at the
            // pace deliveries finish, not one batch per poll.
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Leases up to `limit` messages: first those whose lease ran out or whose retry is
    /// due, then new ones after the group's cursor.
    async fn claim(&self, limit: usize) -> Result<Vec<(i64, Bytes)>, PubSubError> {
        let (topic, group, lease) = (self.topic.clone(), self.group.clone(), lease_ms(self.lease));
        let holder = self.holder.clone();
        self.database
            .run(move |connection| {
                let now = now_ms();
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut claimed = Vec::new();
                {
                    let mut due = transaction.prepare_cached(
                        "SELECT l.seq, m.data FROM pubsub_leases l JOIN pubsub_messages m ON m.seq = l.seq
                         WHERE l.topic = ?1 AND l.consumer_group = ?2 AND l.visible_ms <= ?3
                         ORDER BY l.seq LIMIT ?4",
                    )?;
                    let rows = due.query_map(params![topic, group, now, limit as i64], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                    })?;
                    for row in rows {
                        claimed.push(row?);
                    }
                    let mut extend = transaction.prepare_cached(
                        "UPDATE pubsub_leases SET visible_ms = ?4, attempts = attempts + 1, holder = ?5
                         WHERE topic = ?1 AND consumer_group = ?2 AND seq = ?3",
                    )?;
                    for (seq, _) in &claimed {
                        extend.execute(params![topic, group, seq, now.saturating_add(lease), holder])?;
                    }
                }
                let room = limit.saturating_sub(claimed.len());
                if room > 0 {
                    let cursor: i64 = transaction
                        .query_row(
                            "SELECT cursor FROM pubsub_groups WHERE topic = ?1 AND consumer_group = ?2",
                            params![topic, group],
                            |row| row.get(0),
                        )
                        .optional()?
                        .unwrap_or(0);
                    let mut fresh = Vec::new();
                    {
                        let mut next = transaction.prepare_cached(
                            "SELECT seq, data FROM pubsub_messages WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                        )?;
                        let rows = next.query_map(params![topic, cursor, room as i64], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                        })?;
                        for row in rows {
                            fresh.push(row?);
                        }
                        let mut lease_it = transaction.prepare_cached(
                            "INSERT OR REPLACE INTO pubsub_leases (topic, consumer_group, seq, attempts, visible_ms, holder)
                             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                        )?;
                        for (seq, _) in &fresh {
                            lease_it.execute(params![topic, group, seq, now.saturating_add(lease), holder])?;
                        }
                    }
                    if let Some((last, _)) = fresh.last() {
                        transaction.execute(
                            "INSERT INTO pubsub_groups (topic, consumer_group, cursor) VALUES (?1, ?2, ?3)
                             ON CONFLICT (topic, consumer_group) DO UPDATE SET cursor = excluded.cursor",
                            params![topic, group, last],
                        )?;
                    }
                    claimed.extend(fresh);
                }
                transaction.commit()?;
                Ok(claimed.into_iter().map(|(seq, data)| (seq, Bytes::from(data))).collect())
            })
            .await
            .map_err(PubSubError::from)
    }

    fn spawn_delivery(&self, seq: i64, data: Bytes) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            // Cannot happen: we claim no more than the free slots. Leave it leased;
            // it becomes visible again when the lease runs out.
            return;
        };
        let consumer = self.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            let message = Message {
                topic: consumer.topic.clone(),
                data,
                metadata: Default::default(),
            };
            let delivery = consumer.deliver.deliver(message);
            tokio::pin!(delivery);
            // Keep the lease while the app works, so a slow app is not redelivered to.
            let outcome = loop {
                tokio::select! {
                    outcome = &mut delivery => break outcome,
                    _ = tokio::time::sleep(consumer.lease / 3) => {
                        if let Err(error) = consumer.extend_lease(seq).await {
                            tracing::debug!("extending a lease failed: {error}");
                        }
                    }
                }
            };
            let settled = match outcome {
                Outcome::Done | Outcome::Drop => consumer.settle(seq).await,
                Outcome::Retry => consumer.retry_later(seq).await,
            };
            if let Err(error) = settled {
                tracing::warn!(topic = %consumer.topic, seq, "recording a delivery failed; it will be redelivered: {error}");
            }
        });
    }

    async fn extend_lease(&self, seq: i64) -> Result<(), PubSubError> {
        let (topic, group, lease) = (self.topic.clone(), self.group.clone(), lease_ms(self.lease));
        let holder = self.holder.clone();
        self.database
            .run(move |connection| {
                connection.execute(
                    "UPDATE pubsub_leases SET visible_ms = ?4
                     WHERE topic = ?1 AND consumer_group = ?2 AND seq = ?3 AND holder = ?5",
                    params![topic, group, seq, now_ms().saturating_add(lease), holder],
                )
            })
            .await
            .map_err(PubSubError::from)
            .map(|_| ())
    }

    /// Done (or dropped): the message is no longer this group's business.
    async fn settle(&self, seq: i64) -> Result<(), PubSubError> {
        let (topic, group) = (self.topic.clone(), self.group.clone());
        self.database
            .run(move |connection| {
                connection.execute(
                    "DELETE FROM pubsub_leases WHERE topic = ?1 AND consumer_group = ?2 AND seq = ?3",
                    params![topic, group, seq],
                )
            })
            .await
            .map_err(PubSubError::from)
            .map(|_| ())
    }

    /// Not processed: visible again after a backoff that grows with each attempt.
    async fn retry_later(&self, seq: i64) -> Result<(), PubSubError> {
        let (topic, group, holder) = (self.topic.clone(), self.group.clone(), self.holder.clone());
        self.database
            .run(move |connection| {
                let attempts: Option<i64> = connection
                    .query_row(
                        "SELECT attempts FROM pubsub_leases
                         WHERE topic = ?1 AND consumer_group = ?2 AND seq = ?3 AND holder = ?4",
                        params![topic, group, seq, holder],
                        |row| row.get(0),
                    )
                    .optional()?;
                // Someone else took the message over meanwhile: it is theirs to settle.
                let Some(attempts) = attempts else { return Ok(0) };
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                let wait = exponential_wait(attempts, Duration::from_millis(200), Duration::from_secs(30));
                connection.execute(
                    "UPDATE pubsub_leases SET visible_ms = ?4 WHERE topic = ?1 AND consumer_group = ?2 AND seq = ?3",
                    params![topic, group, seq, now_ms().saturating_add(lease_ms(wait))],
                )
            })
            .await
            .map_err(PubSubError::from)
            .map(|_| ())
    }

    /// Deletes messages every group of the topic has moved past and settled.
    async fn clean_up(&self) -> Result<(), PubSubError> {
        let topic = self.topic.clone();
        self.database
            .run(move |connection| {
                connection.execute(
                    "DELETE FROM pubsub_messages WHERE topic = ?1
                       AND seq <= (SELECT MIN(cursor) FROM pubsub_groups WHERE topic = ?1)
                       AND seq NOT IN (SELECT seq FROM pubsub_leases WHERE topic = ?1)",
                    params![topic],
                )
            })
            .await
            .map_err(PubSubError::from)
            .map(|_| ())
    }
}
