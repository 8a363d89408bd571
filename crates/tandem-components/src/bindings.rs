//! Bindings: an app's doors to outside systems. An *output* binding does an operation
//! (`create`, `get`, `query`, `exec`, ...) on the system when the app asks; an *input*
//! binding hands the app what the system produces (a cron tick, a queue's message).
//!
//! One component may be both, as in Dapr: [`Binding::operations`] is empty for an
//! input-only component and [`Binding::reads`] false for an output-only one. The runtime
//! decides whether to read at all (the `direction` metadata, or whether the app
//! answers for the binding) and what the app's answer means; a component only reads,
//! invokes, and honours [`Outcome`]: an event is acknowledged to its source only once
//! the app took it.

mod aws_s3;
mod aws_sqs;
mod cron;
mod http;
mod influx;
mod kafka;
mod localstorage;
mod mqtt3;
pub(crate) mod mysql;
mod postgresql;
mod rabbitmq;
mod redis;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::{Entry, Registry};

pub use crate::pubsub::Outcome;

/// Metadata names the runtime reads for every binding, whatever its type.
pub const SHARED_METADATA: &[&str] = &["direction", "route"];

/// One call of an output binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvokeRequest {
    /// What to do: one of the component's [`Binding::operations`].
    pub operation: String,
    pub data: Bytes,
    /// The request's metadata (`key`, `fileName`, `sql`, `ttlInSeconds`, ...).
    pub metadata: HashMap<String, String>,
}

/// What an output binding answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvokeResponse {
    pub data: Bytes,
    /// Returned to the app as `metadata.{key}` headers (HTTP) or the response's map
    /// (gRPC).
    pub metadata: HashMap<String, String>,
}

/// One event an input binding read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputEvent {
    pub data: Bytes,
    /// Handed to the app as headers (HTTP) or the request's map (gRPC).
    pub metadata: HashMap<String, String>,
}

/// Where an input binding's events go: the runtime's delivery to the app.
#[async_trait]
pub trait Handle: Send + Sync {
    async fn handle(&self, event: InputEvent) -> Outcome;
}

/// Why a binding could not do what was asked. `Invalid` is the caller's fault (a
/// missing `key`, an unknown operation's argument); the rest are the system's.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The request cannot be done as asked: a field is missing or wrong.
    #[error("{0}")]
    Invalid(String),
    /// The operation is not one this binding offers.
    #[error("binding does not support operation {operation}. supported operations: {}", supported.join(" "))]
    UnsupportedOperation {
        operation: String,
        supported: Vec<&'static str>,
    },
    /// The component is not an input binding.
    #[error("the binding cannot be read: it is an output binding only")]
    NotInput,
    /// The system behind the binding failed or could not be reached.
    #[error("{action}: {source}")]
    Failed {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BindingError {
    /// A failure of the system behind the binding while doing `action`.
    pub fn failed(
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Failed {
            action: action.into(),
            source: source.into(),
        }
    }
}

/// A binding component.
#[async_trait]
pub trait Binding: Send + Sync {
    /// The operations it offers as an output binding; empty for an input-only one.
    fn operations(&self) -> &'static [&'static str] {
        &[]
    }

    /// Does one operation. Only called with one of [`Self::operations`]. `None`: the
    /// operation has no answer at all (the HTTP API then answers 204).
    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        Err(BindingError::UnsupportedOperation {
            operation: request.operation,
            supported: self.operations().to_vec(),
        })
    }

    /// Whether it is an input binding.
    fn reads(&self) -> bool {
        false
    }

    /// Starts handing events to `handler` until `stop` fires. Returns once reading is
    /// set up; the returned task ends after `stop` fires and the events in flight were
    /// answered.
    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        let _ = (handler, stop);
        Err(BindingError::NotInput)
    }
}

/// A TTL from a binding's metadata, read as Dapr's `TryGetTTL` reads it: a whole number
/// of seconds above zero, or a Go duration (a negative one, like a bare `0`, is zero).
/// `name` is the field, for the message.
pub(crate) fn dapr_ttl(name: &str, value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let whole = value.strip_prefix(['-', '+']).unwrap_or(value);
    if !whole.is_empty() && whole.bytes().all(|byte| byte.is_ascii_digit()) {
        // Go reads `0` as a duration, every other bare number as seconds.
        if whole.bytes().all(|byte| byte == b'0') {
            return Ok(Duration::ZERO);
        }
        return match value.parse::<i64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds.unsigned_abs())),
            Ok(seconds) => Err(format!(
                "{name} value must be higher than zero: actual is '{seconds}'"
            )),
            Err(_) => Err(format!(
                "{name} value must be a valid integer: actual is '{value}'"
            )),
        };
    }
    if value.starts_with('-') && tandem_spec::parse_duration(&value[1..]).is_ok() {
        return Ok(Duration::ZERO);
    }
    tandem_spec::parse_duration(value)
        .map_err(|_| format!("{name} value must be a valid integer: actual is '{value}'"))
}

/// The binding components tandem offers.
pub fn registry() -> Registry<dyn Binding> {
    Registry::new(
        "bindings",
        vec![
            Entry {
                kind: "bindings.aws.s3",
                versions: &["v1"],
                metadata: aws_s3::METADATA,
                build: |metadata| Box::pin(aws_s3::S3Binding::build(metadata)),
            },
            Entry {
                kind: "bindings.aws.sqs",
                versions: &["v1"],
                metadata: aws_sqs::METADATA,
                build: |metadata| Box::pin(aws_sqs::SqsBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.cron",
                versions: &["v1"],
                metadata: cron::METADATA,
                build: |metadata| Box::pin(cron::Cron::build(metadata)),
            },
            Entry {
                kind: "bindings.kafka",
                versions: &["v1"],
                metadata: kafka::METADATA,
                build: |metadata| Box::pin(kafka::KafkaBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.mqtt3",
                versions: &["v1"],
                metadata: mqtt3::METADATA,
                build: |metadata| Box::pin(mqtt3::Mqtt3Binding::build(metadata)),
            },
            // daprd's other name for it.
            Entry {
                kind: "bindings.mqtt",
                versions: &["v1"],
                metadata: mqtt3::METADATA,
                build: |metadata| Box::pin(mqtt3::Mqtt3Binding::build(metadata)),
            },
            Entry {
                kind: "bindings.rabbitmq",
                versions: &["v1"],
                metadata: rabbitmq::METADATA,
                build: |metadata| Box::pin(rabbitmq::RabbitMqBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.localstorage",
                versions: &["v1"],
                metadata: localstorage::METADATA,
                build: |metadata| Box::pin(localstorage::LocalStorage::build(metadata)),
            },
            Entry {
                kind: "bindings.redis",
                versions: &["v1"],
                metadata: redis::METADATA,
                build: |metadata| Box::pin(redis::RedisBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.postgresql",
                versions: &["v1"],
                metadata: postgresql::METADATA,
                build: |metadata| Box::pin(postgresql::PostgresBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.http",
                versions: &["v1"],
                metadata: http::METADATA,
                build: |metadata| Box::pin(http::HttpBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.influx",
                versions: &["v1"],
                metadata: influx::METADATA,
                build: |metadata| Box::pin(influx::InfluxBinding::build(metadata)),
            },
            Entry {
                kind: "bindings.mysql",
                versions: &["v1"],
                metadata: mysql::METADATA,
                build: |metadata| Box::pin(mysql::MySqlBinding::build(metadata)),
            },
            // Dapr registers the component under both names.
            Entry {
                kind: "bindings.postgres",
                versions: &["v1"],
                metadata: postgresql::METADATA,
                build: |metadata| Box::pin(postgresql::PostgresBinding::build(metadata)),
            },
        ],
    )
    .with_shared_metadata(SHARED_METADATA)
}
