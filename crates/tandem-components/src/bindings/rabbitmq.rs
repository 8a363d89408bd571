//! `bindings.rabbitmq`: one RabbitMQ queue, written to (`create`) and read from,
//! compatible with Dapr's binding.
//!
//! `create` publishes the data to the queue `queueName` through the default exchange,
//! persistent, with the request's metadata as message headers (`ttlInSeconds` as the
//! message's expiration, `priority`, and `contentType`/`messageID`/`correlationID`/`type`
//! as its properties) — and, unlike Dapr, waits for the broker's publisher confirm, so
//! an answer means RabbitMQ has the message.
//!
//! As an input binding it consumes the queue and acknowledges a message only once the
//! app took it; one the app refused goes back to the queue (after a short pause, so an
//! app that keeps refusing is not flooded), and one in flight when the sidecar dies is
//! requeued by the broker. The consumer reconnects by itself every
//! `reconnectWaitInSeconds` after the connection breaks, declaring the queue again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Binding, BindingError, Handle, InputEvent, InvokeRequest, InvokeResponse, Outcome};
use crate::pubsub::rabbitmq::{parse_uri, tls_settings};
use crate::pubsub::request_value;

pub const METADATA: &[&str] = &[
    "host",
    "queueName",
    "durable",
    "deleteWhenUnused",
    "exclusive",
    "prefetchCount",
    "maxPriority",
    "reconnectWaitInSeconds",
    "ttlInSeconds",
    "caCert",
    "clientCert",
    "clientKey",
    "saslExternal",
];

/// How long one broker operation (connect, declare, publish and its confirm) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused message waits before it goes back to the queue.
const REQUEUE_DELAY: Duration = Duration::from_millis(500);
/// Unacknowledged messages in the sidecar at once when `prefetchCount` is 0.
const DEFAULT_PREFETCH: u16 = 100;

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    /// `host:port/vhost`, for messages: never the credentials.
    address: String,
    queue: String,
    durable: bool,
    delete_when_unused: bool,
    exclusive: bool,
    prefetch: u16,
    max_priority: Option<u8>,
    ttl: Option<Duration>,
    reconnect_wait: Duration,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let host = metadata.required("host")?;
        let mut uri = parse_uri(host).map_err(|why| {
            let why = if why.contains(host) {
                String::new()
            } else {
                format!(": {why}")
            };
            metadata.field_error(
                "host",
                format!("is not an AMQP URI such as amqp://user:password@host:5672{why}"),
            )
        })?;
        let tls = tls_settings(metadata, &mut uri)?;
        let queue = metadata.required("queueName")?.to_owned();
        let max_priority = match metadata.get("maxPriority") {
            None => None,
            Some(text) => {
                let value: u64 = text.trim().parse().map_err(|_| {
                    metadata.field_error("maxPriority", format!("'{text}' is not a number"))
                })?;
                // As Dapr: larger than a byte is the largest byte.
                Some(u8::try_from(value).unwrap_or(u8::MAX))
            }
        };
        let ttl = match metadata.get("ttlInSeconds") {
            None => None,
            Some(text) => Some(ttl(text).map_err(|why| metadata.field_error("ttlInSeconds", why))?),
        };
        // Dapr reads this one as a duration; a bare number is seconds.
        let reconnect_wait = match metadata.get("reconnectWaitInSeconds") {
            Some(text) if text.trim().parse::<u64>().is_ok() => {
                Duration::from_secs(text.trim().parse().unwrap_or(5))
            }
            _ => metadata.duration_or("reconnectWaitInSeconds", Duration::from_secs(5))?,
        };
        let prefetch: u16 = metadata.number_or("prefetchCount", 0)?;
        let mut address = format!("{}:{}", uri.authority.host, uri.authority.port);
        if uri.vhost != "/" {
            address = format!("{address}/{}", uri.vhost);
        }
        Ok(Self {
            uri,
            tls,
            address,
            queue,
            durable: metadata.bool_or("durable", false)?,
            delete_when_unused: metadata.bool_or("deleteWhenUnused", false)?,
            exclusive: metadata.bool_or("exclusive", false)?,
            prefetch: if prefetch == 0 {
                DEFAULT_PREFETCH
            } else {
                prefetch
            },
            max_priority,
            ttl,
            reconnect_wait: reconnect_wait.max(Duration::from_millis(100)),
        })
    }

    fn failed(
        &self,
        action: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BindingError {
        BindingError::failed(
            format!("RabbitMQ at {}: cannot {action}", self.address),
            source,
        )
    }

    async fn timed<T>(
        &self,
        action: &str,
        operation: impl Future<Output = lapin::Result<T>>,
    ) -> Result<T, BindingError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(result) => result.map_err(|source| self.failed(action, source)),
            Err(_) => Err(self.failed(action, format!("no answer within {OPERATION_TIMEOUT:?}"))),
        }
    }

    /// Connects, opens a channel and declares the queue as Dapr does.
    async fn open(&self) -> Result<(Connection, Channel), BindingError> {
        let runtime = lapin::runtime::default_runtime()
            .map_err(|source| self.failed("start the AMQP client", source))?;
        let connection = self
            .timed(
                "connect",
                Connection::connect_uri_with_config(
                    self.uri.clone(),
                    ConnectionProperties::default(),
                    self.tls.clone(),
                    runtime,
                ),
            )
            .await?;
        let channel = self
            .timed("open a channel", connection.create_channel())
            .await?;
        let mut arguments = FieldTable::default();
        if let Some(ttl) = self.ttl {
            let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
        }
        if let Some(priority) = self.max_priority {
            arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(priority));
        }
        self.timed(
            &format!("declare the queue '{}'", self.queue),
            channel.queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: self.durable,
                    auto_delete: self.delete_when_unused,
                    exclusive: self.exclusive,
                    ..Default::default()
                },
                arguments,
            ),
        )
        .await?;
        Ok((connection, channel))
    }
}

/// Dapr's `ttlInSeconds`, as every binding reads a TTL.
fn ttl(text: &str) -> Result<Duration, String> {
    super::dapr_ttl("ttlInSeconds", text)
}

/// The RabbitMQ binding.
pub struct RabbitMqBinding {
    settings: Settings,
    /// The publishing channel (confirms on), opened again when it breaks.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMqBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let settings = Settings::read(metadata)?;
        // Connect now, as Dapr does: a wrong host or password stops the start with the
        // file and field named.
        let publisher = open_publisher(&settings)
            .await
            .map_err(|error| metadata.field_error("host", error.to_string()))?;
        Ok(Arc::new(Self {
            settings,
            publisher: Mutex::new(Some(publisher)),
        }))
    }

    fn properties(
        &self,
        metadata: &HashMap<String, String>,
    ) -> Result<BasicProperties, BindingError> {
        let mut headers = FieldTable::default();
        for (key, value) in metadata {
            headers.insert(
                key.as_str().into(),
                AMQPValue::LongString(value.as_str().into()),
            );
        }
        let property = |name: &str| request_value(metadata, name).map(ShortString::from);
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(property("contentType").unwrap_or_else(|| "text/plain".into()))
            .with_headers(headers);
        if let Some(id) = property("messageID") {
            properties = properties.with_message_id(id);
        }
        if let Some(id) = property("correlationID") {
            properties = properties.with_correlation_id(id);
        }
        if let Some(kind) = property("type") {
            properties = properties.with_type(kind);
        }
        if let Some(text) = metadata.get("ttlInSeconds").filter(|text| !text.is_empty()) {
            let ttl = ttl(text).map_err(BindingError::Invalid)?;
            properties = properties.with_expiration(ttl.as_millis().to_string().as_str().into());
        }
        if let Some(text) = metadata.get("priority").filter(|text| !text.is_empty()) {
            let priority: i64 = text.trim().parse().map_err(|_| {
                BindingError::Invalid(format!(
                    "priority value must be a valid integer: actual is '{text}'"
                ))
            })?;
            properties = properties.with_priority(priority.clamp(0, 255) as u8);
        }
        Ok(properties)
    }

    async fn publish_on(
        &self,
        channel: &Channel,
        request: &InvokeRequest,
        properties: BasicProperties,
    ) -> Result<(), BindingError> {
        let settings = &self.settings;
        let confirm = settings
            .timed(
                "publish",
                channel.basic_publish(
                    "".into(),
                    settings.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &request.data,
                    properties,
                ),
            )
            .await?;
        match settings.timed("publish (confirm)", confirm).await? {
            Confirmation::Nack(_) => Err(settings.failed(
                "publish",
                format!(
                    "the broker refused the message for queue '{}'",
                    settings.queue
                ),
            )),
            _ => Ok(()),
        }
    }
}

async fn open_publisher(settings: &Settings) -> Result<(Connection, Channel), BindingError> {
    let (connection, channel) = settings.open().await?;
    settings
        .timed(
            "turn on publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
    Ok((connection, channel))
}

#[async_trait]
impl Binding for RabbitMqBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let properties = self.properties(&request.metadata)?;
        let mut publisher = self.publisher.lock().await;
        // A broken connection (a broker restart) is opened again once, on demand.
        if let Some((connection, channel)) = publisher.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            match self.publish_on(channel, &request, properties.clone()).await {
                Ok(()) => return Ok(None),
                Err(error) => {
                    tracing::debug!("publishing to RabbitMQ failed, reconnecting once: {error}");
                }
            }
        }
        *publisher = None;
        let (connection, channel) = open_publisher(&self.settings).await?;
        let published = self.publish_on(&channel, &request, properties).await;
        *publisher = Some((connection, channel));
        published.map(|()| None)
    }

    fn reads(&self) -> bool {
        true
    }

    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        let settings = self.settings.clone();
        // The first connection is made here, so a broker that is away fails the start
        // of reading loudly; later breaks are mended by the loop.
        let first = settings.open().await?;
        Ok(tokio::spawn(consume(settings, first, handler, stop)))
    }
}

/// Consumes the queue until `stop` fires, reconnecting whenever the connection breaks.
async fn consume(
    settings: Settings,
    first: (Connection, Channel),
    handler: Arc<dyn Handle>,
    stop: CancellationToken,
) {
    let in_flight = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(usize::from(settings.prefetch)));
    let mut opened = Some(first);
    loop {
        let (connection, channel) = match opened.take() {
            Some(pair) => pair,
            None => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(settings.reconnect_wait) => {}
                }
                match settings.open().await {
                    Ok(pair) => {
                        tracing::info!(queue = %settings.queue, "reconnected to RabbitMQ at {}", settings.address);
                        pair
                    }
                    Err(error) => {
                        tracing::warn!(queue = %settings.queue, "{error}; trying again in {:?}", settings.reconnect_wait);
                        continue;
                    }
                }
            }
        };
        let consumer = match settings
            .timed(
                "set the prefetch count",
                channel.basic_qos(settings.prefetch, BasicQosOptions::default()),
            )
            .await
        {
            Ok(()) => {
                settings
                    .timed(
                        &format!("consume the queue '{}'", settings.queue),
                        channel.basic_consume(
                            settings.queue.as_str().into(),
                            "".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        ),
                    )
                    .await
            }
            Err(error) => Err(error),
        };
        let mut consumer = match consumer {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(queue = %settings.queue, "{error}");
                continue;
            }
        };
        loop {
            let delivery = tokio::select! {
                _ = stop.cancelled() => break,
                delivery = consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    tracing::warn!(queue = %settings.queue, "the connection to RabbitMQ at {} broke: {error}; reconnecting", settings.address);
                    break;
                }
                None => {
                    tracing::warn!(queue = %settings.queue, "RabbitMQ at {} ended the consumer; reconnecting", settings.address);
                    break;
                }
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let handler = handler.clone();
            in_flight.spawn(async move {
                let _slot = slot;
                let mut metadata = HashMap::new();
                if let Some(headers) = delivery.properties.headers() {
                    for (key, value) in headers.inner() {
                        let text = match value {
                            AMQPValue::LongString(text) => text.to_string(),
                            AMQPValue::ShortString(text) => text.to_string(),
                            _ => continue,
                        };
                        metadata.insert(key.to_string(), text);
                    }
                }
                let event = InputEvent {
                    data: delivery.data.clone().into(),
                    metadata,
                };
                let result = match handler.handle(event).await {
                    Outcome::Done | Outcome::Drop => delivery.ack(BasicAckOptions::default()).await,
                    Outcome::Retry => {
                        tokio::time::sleep(REQUEUE_DELAY).await;
                        delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await
                    }
                };
                if let Err(error) = result {
                    // The broker requeues what it never got an answer for.
                    tracing::debug!("answering RabbitMQ about a message failed: {error}");
                }
            });
        }
        drop(consumer);
        let _ = connection.close(200, "reconnecting".into()).await;
        if stop.is_cancelled() {
            break;
        }
    }
    in_flight.close();
    in_flight.wait().await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_spec::Component;

    use super::*;

    fn settings(values: &[(&str, &str)]) -> Result<Settings, ResourceError> {
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::read(&ComponentMetadata::new(
            Component::new("queue", "bindings.rabbitmq"),
            values,
        ))
    }

    #[test]
    fn settings_are_read_as_dapr_reads_them() {
        let read = settings(&[
            ("host", "amqp://guest:s3cret@10.0.0.5:5673/orders"),
            ("queueName", "jobs"),
            ("maxPriority", "300"),
            ("ttlInSeconds", "60"),
            ("reconnectWaitInSeconds", "2"),
        ])
        .unwrap();
        assert_eq!(read.address, "10.0.0.5:5673/orders");
        assert_eq!(read.max_priority, Some(255));
        assert_eq!(read.ttl, Some(Duration::from_secs(60)));
        assert_eq!(read.reconnect_wait, Duration::from_secs(2));
        assert_eq!(read.prefetch, DEFAULT_PREFETCH);
        assert!(!read.durable);
    }

    #[test]
    fn wrong_settings_name_the_field_and_never_the_password() {
        for (values, field) in [
            (vec![("queueName", "q")], "host"),
            (vec![("host", "amqp://localhost")], "queueName"),
            (
                vec![("host", "http://u:s3cret@x"), ("queueName", "q")],
                "host",
            ),
            (
                vec![
                    ("host", "amqp://x"),
                    ("queueName", "q"),
                    ("ttlInSeconds", "-1"),
                ],
                "ttlInSeconds",
            ),
            (
                vec![
                    ("host", "amqp://x"),
                    ("queueName", "q"),
                    ("maxPriority", "hi"),
                ],
                "maxPriority",
            ),
        ] {
            let error = settings(&values).err().unwrap().to_string();
            assert!(error.contains(field), "{field}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
