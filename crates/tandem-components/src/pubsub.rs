//! Pub/sub brokers: publish bytes to a topic, deliver them to a subscriber at least once.
//!
//! The runtime wraps data in CloudEvents and decides what the app's answer means; a
//! component only moves bytes and honours [`Outcome`]: a message is acknowledged to the
//! broker only once it is [`Outcome::Done`] or [`Outcome::Drop`], so a crash or an app
//! that asks for a retry never loses it.

mod in_memory;
mod jetstream;
pub(crate) mod kafka;
pub(crate) mod mqtt3;
pub(crate) mod rabbitmq;
mod redis;
mod snssqs;
mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::{Entry, Registry};

pub use sqlite::SqlitePubSub;

/// Log targets of the brokers' client libraries, whose errors the components report
/// themselves: the sidecar keeps them silent unless debugging.
pub fn client_log_targets() -> impl Iterator<Item = &'static str> {
    rabbitmq::CLIENT_LOG_TARGETS
        .iter()
        .chain(mqtt3::CLIENT_LOG_TARGETS)
        .chain(jetstream::CLIENT_LOG_TARGETS)
        .chain(kafka::CLIENT_LOG_TARGETS)
        .copied()
}

/// A request's metadata value, looked up as Dapr's components do: the name in any case,
/// an empty value the same as none.
pub(crate) fn request_value<'a>(
    metadata: &'a HashMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(key, value)| key.eq_ignore_ascii_case(name) && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

/// A message on its way to or from a broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub data: Bytes,
    /// Request metadata (`metadata.*` query parameters); most brokers ignore it.
    pub metadata: HashMap<String, String>,
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: acknowledge it.
    Done,
    /// Not processed: deliver it again later.
    Retry,
    /// Will never be processed: acknowledge it without processing.
    Drop,
}

/// Where a subscription's messages go: the runtime's delivery to the app.
#[async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, message: Message) -> Outcome;
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub topic: String,
    pub metadata: HashMap<String, String>,
}

/// Why a broker could not do what was asked: it failed or could not be reached.
/// Nothing was published by a failed publish; retrying may succeed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("cannot connect to Redis at {host}: {source}")]
    RedisConnect {
        host: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("Redis at {host}: {action}: {source}")]
    Redis {
        host: String,
        action: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::DatabaseError),
    #[error("RabbitMQ at {address}: cannot {action}: {source}")]
    RabbitMq {
        address: String,
        action: String,
        // Boxed: the AMQP error is large, and errors travel by value.
        #[source]
        source: Box<::lapin::Error>,
    },
    #[error("RabbitMQ at {address}: cannot {action}: no answer within {after:?}")]
    RabbitMqTimeout {
        address: String,
        action: String,
        after: std::time::Duration,
    },
    #[error(
        "RabbitMQ at {address} refused the message for exchange '{exchange}' (negative publisher confirm)"
    )]
    RabbitMqRefused { address: String, exchange: String },
    #[error("MQTT broker at {address}: cannot {action}: {source}")]
    Mqtt {
        address: String,
        action: String,
        // Boxed: the connection error is large, and errors travel by value.
        #[source]
        source: Box<::rumqttc::ConnectionError>,
    },
    #[error("MQTT broker at {address}: cannot {action}: no answer within {after:?}")]
    MqttTimeout {
        address: String,
        action: String,
        after: std::time::Duration,
    },
    /// The broker refused, or the connection was down or broke before it answered.
    #[error("MQTT broker at {address}: cannot {action}: {reason}")]
    MqttFailed {
        address: String,
        action: String,
        reason: String,
    },
    #[error("AWS {service}: cannot {action}: {source}")]
    Aws {
        service: &'static str,
        action: String,
        // Boxed: errors travel by value, and this one holds the service's answer.
        #[source]
        source: Box<crate::aws::AwsError>,
    },
    /// The message cannot be published as it is.
    #[error("cannot publish to '{topic}': {message}")]
    InvalidMessage { topic: String, message: String },
    #[error("NATS at {address}: cannot {action}: {source}")]
    Nats {
        address: String,
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("NATS at {address}: cannot {action}: no answer within {after:?}")]
    NatsTimeout {
        address: String,
        action: String,
        after: std::time::Duration,
    },
    #[error("Kafka at {brokers}: cannot {action}: {source}")]
    Kafka {
        brokers: String,
        action: String,
        // Boxed: errors travel by value, and the client's error is large.
        #[source]
        source: Box<::krafka::KrafkaError>,
    },
    /// A subscription's own metadata cannot be used.
    #[error("subscription to '{topic}': {message}")]
    InvalidSubscription { topic: String, message: String },
}

/// A broker.
#[async_trait]
pub trait PubSub: Send + Sync {
    /// Hands one message to the broker; returns once the broker has it.
    async fn publish(&self, message: Message) -> Result<(), PubSubError>;

    /// Starts delivering `subscription`'s messages to `deliver` until `stop` fires.
    /// Returns once the subscription is set up; the returned task ends after `stop`
    /// fires and the deliveries in flight have finished.
    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, PubSubError>;
}

/// The pub/sub components tandem offers.
pub fn registry() -> Registry<dyn PubSub> {
    Registry::new(
        "pubsub",
        vec![
            Entry {
                kind: "pubsub.redis",
                versions: &["v1"],
                metadata: redis::METADATA,
                build: |metadata| Box::pin(redis::RedisStreams::build(metadata)),
            },
            Entry {
                kind: "pubsub.rabbitmq",
                versions: &["v1"],
                metadata: rabbitmq::METADATA,
                build: |metadata| Box::pin(rabbitmq::RabbitMq::build(metadata)),
            },
            Entry {
                kind: "pubsub.in-memory",
                versions: &["v1"],
                metadata: in_memory::METADATA,
                build: |metadata| Box::pin(in_memory::InMemory::build(metadata)),
            },
            Entry {
                kind: "pubsub.sqlite",
                versions: &["v1"],
                metadata: sqlite::METADATA,
                build: |metadata| Box::pin(sqlite::SqlitePubSub::build(metadata)),
            },
            Entry {
                kind: "pubsub.mqtt3",
                versions: &["v1"],
                metadata: mqtt3::METADATA,
                build: |metadata| Box::pin(mqtt3::Mqtt3::build(metadata)),
            },
            // daprd's other name for it.
            Entry {
                kind: "pubsub.mqtt",
                versions: &["v1"],
                metadata: mqtt3::METADATA,
                build: |metadata| Box::pin(mqtt3::Mqtt3::build(metadata)),
            },
            Entry {
                kind: "pubsub.aws.snssqs",
                versions: &["v1"],
                metadata: snssqs::METADATA,
                build: |metadata| Box::pin(snssqs::SnsSqs::build(metadata)),
            },
            // daprd's other name for it.
            Entry {
                kind: "pubsub.snssqs",
                versions: &["v1"],
                metadata: snssqs::METADATA,
                build: |metadata| Box::pin(snssqs::SnsSqs::build(metadata)),
            },
            Entry {
                kind: "pubsub.jetstream",
                versions: &["v1"],
                metadata: jetstream::METADATA,
                build: |metadata| Box::pin(jetstream::JetStream::build(metadata)),
            },
            Entry {
                kind: "pubsub.kafka",
                versions: &["v1"],
                metadata: kafka::METADATA,
                build: |metadata| Box::pin(kafka::KafkaPubSub::build(metadata)),
            },
        ],
    )
}
