//! `pubsub.rabbitmq`: RabbitMQ (AMQP 0-9-1), compatible with Dapr's component.
//!
//! A topic is an exchange (`exchangeKind`, fanout by default) named after it; each
//! subscribing app is a queue bound to it, `{consumerID}-{topic}` (or the subscription's
//! `queueName`), so replicas of one app share the queue's messages and different apps
//! each get every message.
//!
//! **Nothing is lost.** Every publish waits for the broker's confirm, so a success means
//! RabbitMQ has the message. A delivery is acknowledged only once the app is done with
//! it (or dropped it); a retry is negatively acknowledged *with* requeue, so the broker
//! delivers it again — unless `enableDeadLetter` is on and `requeueInFailure` off, in
//! which case it goes to the dead-letter queue `dlq-{queue}`, as in Dapr. (Dapr drops a
//! refused message when neither is set; tandem requeues it.) A consumer that dies
//! mid-delivery leaves its unacknowledged messages to the broker, which requeues them.
//!
//! **Connections come and go.** Each subscription has its own connection and, when it
//! breaks (a broker restart), connects again every `reconnectWaitSeconds` until it can,
//! declaring its exchange, queue and bindings again. Publishing reconnects on demand: a
//! publish that finds the connection broken reconnects once, and fails loudly if the
//! broker is still away.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe, request_value};

pub const METADATA: &[&str] = &[
    "connectionString",
    "host",
    "protocol",
    "hostname",
    "username",
    "password",
    "consumerID",
    "durable",
    "deletedWhenUnused",
    "autoAck",
    "requeueInFailure",
    "deliveryMode",
    "prefetchCount",
    "reconnectWaitSeconds",
    "maxLen",
    "maxLenBytes",
    "exchangeKind",
    "publisherConfirm",
    "enableDeadLetter",
    "concurrencyMode",
    "ttlInSeconds",
    "clientName",
    "heartBeat",
    "caCert",
    "clientCert",
    "clientKey",
    "saslExternal",
];

/// The client library's log target: silent unless debugging, since its errors are
/// reported here in tandem's own words (file, component, field).
pub const CLIENT_LOG_TARGETS: &[&str] = &["lapin"];

/// How long one broker operation (connect, declare, publish and its confirm) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a retried message waits before it is handed back to the broker, so an app
/// that keeps refusing a message is not flooded with it.
const REQUEUE_DELAY: Duration = Duration::from_millis(500);

/// Unacknowledged deliveries per consumer when `prefetchCount` is 0: RabbitMQ would
/// otherwise push a whole backlog into the sidecar's memory at once.
const DEFAULT_PREFETCH: u16 = 1000;

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    client_name: Option<String>,
    /// `host:port/vhost`, for messages: never the credentials.
    address: String,
    consumer_id: String,
    exchange_kind: lapin::ExchangeKind,
    durable: bool,
    delete_when_unused: bool,
    auto_ack: bool,
    requeue_in_failure: bool,
    dead_letter: bool,
    delivery_mode: u8,
    prefetch: u16,
    max_len: Option<i64>,
    max_len_bytes: Option<i64>,
    ttl: Option<Duration>,
    reconnect_wait: Duration,
    parallel: bool,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        // `host` is the deprecated name of `connectionString`.
        let (connection_field, connection_string) = match metadata.get("connectionString") {
            Some(value) => ("connectionString", Some(value)),
            None => ("host", metadata.get("host")),
        };
        let mut uri: AMQPUri = match connection_string {
            Some(value) => parse_uri(value).map_err(|why| {
                // The value may hold a password: say what is wrong, never what it is.
                let why = if why.contains(value) {
                    String::new()
                } else {
                    format!(": {why}")
                };
                metadata.field_error(
                    connection_field,
                    format!("is not an AMQP URI such as amqp://user:password@host:5672{why}"),
                )
            })?,
            None => {
                let mut uri = AMQPUri::default();
                // Dapr puts `hostname` in a URL's host part, so it may carry a port.
                let hostname = metadata.string_or("hostname", "localhost");
                let with_port = hostname
                    .rsplit_once(':')
                    .filter(|(host, _)| !host.contains(':') || host.ends_with(']'))
                    .map(|(host, port)| (host, port.parse::<u16>()));
                match with_port {
                    Some((host, Ok(port))) => {
                        uri.authority.host = host.trim_matches(['[', ']']).to_owned();
                        uri.authority.port = port;
                    }
                    Some((_, Err(_))) => {
                        return Err(metadata.field_error(
                            "hostname",
                            format!("'{hostname}' is not a host name or host:port"),
                        ));
                    }
                    None => uri.authority.host = hostname.trim_matches(['[', ']']).to_owned(),
                }
                if let Some(username) = metadata.get("username") {
                    uri.authority.userinfo.username = username.to_owned();
                    uri.authority.userinfo.password =
                        metadata.get("password").unwrap_or_default().to_owned();
                }
                uri
            }
        };
        if let Some(protocol) = metadata.get("protocol") {
            let scheme: AMQPScheme = protocol.parse().map_err(|_| {
                metadata.field_error("protocol", format!("'{protocol}' is not amqp or amqps"))
            })?;
            if connection_string.is_some() && scheme != uri.scheme.clone() {
                return Err(metadata.field_error(
                    "protocol",
                    format!(
                        "'{protocol}' does not match the {connection_field}, which uses {}",
                        uri.scheme
                    ),
                ));
            }
            if connection_string.is_none() {
                uri.authority.port = scheme.default_port();
                uri.scheme = scheme;
            }
        }
        let heartbeat = metadata.duration_or("heartBeat", Duration::from_secs(10))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(u16::try_from(heartbeat.as_secs()).unwrap_or(u16::MAX));
        }
        let tls = tls_settings(metadata, &mut uri)?;

        let exchange_kind = match metadata.string_or("exchangeKind", "fanout").as_str() {
            "fanout" => lapin::ExchangeKind::Fanout,
            "topic" => lapin::ExchangeKind::Topic,
            "direct" => lapin::ExchangeKind::Direct,
            "headers" => lapin::ExchangeKind::Headers,
            other => {
                return Err(metadata.field_error(
                    "exchangeKind",
                    format!("'{other}' is not one of fanout, topic, direct, headers"),
                ));
            }
        };
        let delivery_mode: u8 = metadata.number_or("deliveryMode", 0)?;
        if delivery_mode > 2 {
            return Err(metadata.field_error(
                "deliveryMode",
                format!("'{delivery_mode}' is not 0, 1 (transient) or 2 (persistent)"),
            ));
        }
        // Dapr's field is a uint8; RabbitMQ itself takes up to 65535.
        let prefetch: u16 = metadata.number_or("prefetchCount", 0)?;
        let parallel = match metadata.string_or("concurrencyMode", "parallel").as_str() {
            "parallel" => true,
            "single" => false,
            other => {
                return Err(metadata.field_error(
                    "concurrencyMode",
                    format!("'{other}' is not parallel or single"),
                ));
            }
        };
        let positive = |name: &str| -> Result<Option<i64>, ResourceError> {
            let value: i64 = metadata.number_or(name, 0)?;
            Ok((value > 0).then_some(value))
        };
        let ttl_seconds: u64 = metadata.number_or("ttlInSeconds", 0)?;
        let mut address = format!(
            "{}://{}:{}",
            uri.scheme, uri.authority.host, uri.authority.port
        );
        if uri.vhost != "/" {
            address = format!("{address}/{}", uri.vhost);
        }
        Ok(Self {
            tls,
            client_name: metadata.get("clientName").map(str::to_owned),
            address,
            consumer_id: metadata.required("consumerID")?.to_owned(),
            exchange_kind,
            durable: metadata.bool_or("durable", true)?,
            // Dapr's default is `true`: the queue — and every message in it — is deleted
            // when its last subscriber disconnects, so a crashed subscriber loses what
            // was queued for it. tandem keeps queues unless asked.
            delete_when_unused: metadata.bool_or("deletedWhenUnused", false)?,
            auto_ack: metadata.bool_or("autoAck", false)?,
            requeue_in_failure: metadata.bool_or("requeueInFailure", false)?,
            dead_letter: metadata.bool_or("enableDeadLetter", false)?,
            delivery_mode,
            prefetch: if prefetch == 0 {
                DEFAULT_PREFETCH
            } else {
                prefetch
            },
            max_len: positive("maxLen")?,
            max_len_bytes: positive("maxLenBytes")?,
            ttl: (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds)),
            reconnect_wait: Duration::from_secs(metadata.number_or("reconnectWaitSeconds", 3u64)?),
            parallel,
            uri,
        })
    }

    fn error(&self, action: impl Into<String>, source: lapin::Error) -> PubSubError {
        PubSubError::RabbitMq {
            address: self.address.clone(),
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// Runs one broker operation with [`OPERATION_TIMEOUT`].
    async fn timed<T>(
        &self,
        action: impl Into<String>,
        operation: impl Future<Output = lapin::Result<T>>,
    ) -> Result<T, PubSubError> {
        let action = action.into();
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(result) => result.map_err(|source| self.error(action, source)),
            Err(_) => Err(PubSubError::RabbitMqTimeout {
                address: self.address.clone(),
                action,
                after: OPERATION_TIMEOUT,
            }),
        }
    }

    async fn connect(&self) -> Result<Connection, PubSubError> {
        let mut properties = ConnectionProperties::default();
        if let Some(name) = &self.client_name {
            properties = properties.with_connection_name(name.as_str().into());
        }
        let runtime = lapin::runtime::default_runtime()
            .map_err(|source| self.error("start the AMQP client", source))?;
        self.timed(
            "connect",
            Connection::connect_uri_with_config(
                self.uri.clone(),
                properties,
                self.tls.clone(),
                runtime,
            ),
        )
        .await
    }

    async fn declare_exchange(
        &self,
        channel: &Channel,
        name: &str,
        kind: lapin::ExchangeKind,
        durable: bool,
    ) -> Result<(), PubSubError> {
        let options = ExchangeDeclareOptions {
            durable,
            auto_delete: self.delete_when_unused,
            ..Default::default()
        };
        self.timed(
            format!("declare exchange '{name}'"),
            channel.exchange_declare(name.into(), kind, options, FieldTable::default()),
        )
        .await
    }
}

/// The publishing side: one connection and confirm-mode channel, made on demand.
struct Publisher {
    connection: Connection,
    channel: Channel,
    /// Exchanges declared on this channel, so each is declared once per connection.
    declared: HashSet<String>,
}

pub struct RabbitMq {
    settings: Settings,
    publisher: tokio::sync::Mutex<Option<Publisher>>,
}

impl RabbitMq {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let settings = Settings::read(metadata)?;
        let broker = Self {
            settings,
            publisher: tokio::sync::Mutex::new(None),
        };
        // Connect now: a wrong address or password stops start-up with a clear error
        // rather than failing the first publish.
        let publisher = broker.open_publisher().await.map_err(|error| {
            let field = if metadata.get("connectionString").is_some() {
                "connectionString"
            } else if metadata.get("host").is_some() {
                "host"
            } else {
                "hostname"
            };
            metadata.field_error(field, error.to_string())
        })?;
        *broker.publisher.lock().await = Some(publisher);
        Ok(Arc::new(broker))
    }

    async fn open_publisher(&self) -> Result<Publisher, PubSubError> {
        let connection = self.settings.connect().await?;
        let channel = self
            .settings
            .timed("open a channel", connection.create_channel())
            .await?;
        self.settings
            .timed(
                "turn on publisher confirms",
                channel.confirm_select(ConfirmSelectOptions::default()),
            )
            .await?;
        Ok(Publisher {
            connection,
            channel,
            declared: HashSet::new(),
        })
    }

    async fn try_publish(
        &self,
        publisher: &mut Publisher,
        message: &Message,
    ) -> Result<(), PubSubError> {
        let settings = &self.settings;
        let topic = &message.topic;
        if !publisher.declared.contains(topic) {
            settings
                .declare_exchange(
                    &publisher.channel,
                    topic,
                    settings.exchange_kind.clone(),
                    settings.durable,
                )
                .await?;
            publisher.declared.insert(topic.clone());
        }
        let routing_key = request_value(&message.metadata, "routingKey").unwrap_or_default();
        let properties = self.properties(message);
        let confirm = settings
            .timed(
                format!("publish to exchange '{topic}'"),
                publisher.channel.basic_publish(
                    topic.as_str().into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    &message.data,
                    properties,
                ),
            )
            .await?;
        match settings
            .timed(format!("confirm the publish to '{topic}'"), confirm)
            .await?
        {
            Confirmation::Nack(_) => Err(PubSubError::RabbitMqRefused {
                address: settings.address.clone(),
                exchange: topic.clone(),
            }),
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        }
    }

    /// The AMQP properties of a published message, from the component's settings and
    /// the request's metadata (`ttlInSeconds`, `priority`, `contentType`, `messageID`,
    /// `correlationID`, `type`), as Dapr sets them.
    fn properties(&self, message: &Message) -> BasicProperties {
        let metadata = &message.metadata;
        let mut properties = BasicProperties::default().with_content_type(
            request_value(metadata, "contentType")
                .unwrap_or("text/plain")
                .into(),
        );
        // 0 means "not set" (transient): RabbitMQ refuses the property with value 0.
        if self.settings.delivery_mode > 0 {
            properties = properties.with_delivery_mode(self.settings.delivery_mode);
        }
        let ttl = request_value(metadata, "ttlInSeconds")
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or(self.settings.ttl);
        if let Some(ttl) = ttl {
            properties = properties.with_expiration(ttl.as_millis().to_string().into());
        }
        if let Some(priority) =
            request_value(metadata, "priority").and_then(|value| value.trim().parse::<u8>().ok())
        {
            properties = properties.with_priority(priority);
        }
        if let Some(id) = request_value(metadata, "messageID") {
            properties = properties.with_message_id(id.into());
        }
        if let Some(id) = request_value(metadata, "correlationID") {
            properties = properties.with_correlation_id(id.into());
        }
        if let Some(kind) = request_value(metadata, "type") {
            properties = properties.with_type(kind.into());
        }
        properties
    }
}

#[async_trait]
impl PubSub for RabbitMq {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let mut publisher = self.publisher.lock().await;
        // Twice at most: a connection that broke since the last publish is replaced
        // once; a broker that is still away fails the publish.
        let mut reconnected = false;
        loop {
            let current = match publisher.as_mut() {
                Some(current) if current.connection.status().connected() => current,
                _ => {
                    *publisher = None;
                    reconnected = true;
                    publisher.insert(self.open_publisher().await?)
                }
            };
            match self.try_publish(current, &message).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    // Whatever failed, the channel may be closed (a refused declare
                    // closes it): start afresh next time.
                    *publisher = None;
                    if reconnected {
                        return Err(error);
                    }
                    reconnected = true;
                    tracing::debug!("publishing to RabbitMQ failed ({error}); reconnecting");
                }
            }
        }
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, PubSubError> {
        let queue = request_value(&subscription.metadata, "queueName").map_or_else(
            || format!("{}-{}", self.settings.consumer_id, subscription.topic),
            str::to_owned,
        );
        let consumer = Consumer {
            settings: self.settings.clone(),
            topic: subscription.topic,
            queue,
            metadata: subscription.metadata,
            deliver,
            tasks: TaskTracker::new(),
        };
        // Set up once now, so an error (a queue declared before with other arguments,
        // say) reaches the caller.
        let connected = consumer.connect().await?;
        Ok(tokio::spawn(consumer.run(connected, stop)))
    }
}

/// One subscription's consuming side.
#[derive(Clone)]
struct Consumer {
    settings: Settings,
    topic: String,
    queue: String,
    /// The subscription's metadata: `routingKey`, `queueType`, `maxPriority`, ...
    metadata: std::collections::HashMap<String, String>,
    deliver: Arc<dyn Deliver>,
    tasks: TaskTracker,
}

/// A consumer's live connection.
struct Connected {
    // Held so the connection stays open as long as the consumer runs.
    _connection: Connection,
    deliveries: lapin::Consumer,
}

impl Consumer {
    /// Connects, declares the exchange, the queue (and its dead-letter queue) and the
    /// bindings, and starts consuming.
    async fn connect(&self) -> Result<Connected, PubSubError> {
        let settings = &self.settings;
        let connection = settings.connect().await?;
        let channel = settings
            .timed("open a channel", connection.create_channel())
            .await?;
        settings
            .declare_exchange(
                &channel,
                &self.topic,
                settings.exchange_kind.clone(),
                settings.durable,
            )
            .await?;
        let mut arguments = FieldTable::default();
        if settings.dead_letter {
            let exchange = format!("dlx-{}", self.queue);
            let queue = format!("dlq-{}", self.queue);
            settings
                .declare_exchange(&channel, &exchange, lapin::ExchangeKind::Fanout, true)
                .await?;
            let mut dead_arguments = self.length_limits();
            dead_arguments.insert("x-queue-mode".into(), string_value("lazy"));
            let options = QueueDeclareOptions {
                durable: true,
                auto_delete: settings.delete_when_unused,
                ..Default::default()
            };
            settings
                .timed(
                    format!("declare dead-letter queue '{queue}'"),
                    channel.queue_declare(queue.as_str().into(), options, dead_arguments),
                )
                .await?;
            settings
                .timed(
                    format!("bind dead-letter queue '{queue}'"),
                    channel.queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    ),
                )
                .await?;
            arguments.insert("x-dead-letter-exchange".into(), string_value(&exchange));
        }
        for (name, value) in &self.length_limits() {
            arguments.insert(name.clone(), value.clone());
        }
        self.subscription_arguments(&mut arguments)?;
        let options = QueueDeclareOptions {
            durable: settings.durable,
            auto_delete: settings.delete_when_unused,
            ..Default::default()
        };
        settings
            .timed(
                format!("declare queue '{}'", self.queue),
                channel.queue_declare(self.queue.as_str().into(), options, arguments),
            )
            .await?;
        // One binding per routing key (`a,b`); no key binds with the empty one.
        let keys = request_value(&self.metadata, "routingKey").unwrap_or_default();
        for key in keys.split(',') {
            settings
                .timed(
                    format!("bind queue '{}' to exchange '{}'", self.queue, self.topic),
                    channel.queue_bind(
                        self.queue.as_str().into(),
                        self.topic.as_str().into(),
                        key.trim().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    ),
                )
                .await?;
        }
        if !settings.auto_ack {
            settings
                .timed(
                    "set the prefetch count",
                    channel.basic_qos(settings.prefetch, BasicQosOptions::default()),
                )
                .await?;
        }
        let options = BasicConsumeOptions {
            no_ack: settings.auto_ack,
            ..Default::default()
        };
        let tag = format!("{}-{}", self.queue, uuid::Uuid::new_v4());
        let deliveries = settings
            .timed(
                format!("consume from queue '{}'", self.queue),
                channel.basic_consume(
                    self.queue.as_str().into(),
                    tag.into(),
                    options,
                    FieldTable::default(),
                ),
            )
            .await?;
        Ok(Connected {
            _connection: connection,
            deliveries,
        })
    }

    /// `x-max-length` and `x-max-length-bytes` from the component's settings.
    fn length_limits(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if let Some(max) = self.settings.max_len {
            arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(max));
        }
        if let Some(max) = self.settings.max_len_bytes {
            arguments.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(max));
        }
        arguments
    }

    /// Queue arguments a subscription's metadata may set, as Dapr reads them.
    fn subscription_arguments(&self, arguments: &mut FieldTable) -> Result<(), PubSubError> {
        let invalid = |name: &str, value: &str, expected: &str| PubSubError::InvalidSubscription {
            topic: self.topic.clone(),
            message: format!("metadata '{name}' is '{value}', which is not {expected}"),
        };
        if let Some(value) = request_value(&self.metadata, "maxPriority") {
            let priority: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("maxPriority", value, "a whole number"))?;
            let priority = u8::try_from(priority).unwrap_or(u8::MAX);
            arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(priority));
        }
        let queue_type = request_value(&self.metadata, "queueType").unwrap_or("classic");
        if queue_type != "classic" && queue_type != "quorum" {
            return Err(invalid("queueType", queue_type, "classic or quorum"));
        }
        arguments.insert("x-queue-type".into(), string_value(queue_type));
        if let Some(value) = request_value(&self.metadata, "singleActiveConsumer")
            && matches!(
                value.to_ascii_lowercase().as_str(),
                "true" | "t" | "1" | "yes" | "y" | "on"
            )
        {
            arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        for (name, argument) in [
            ("maxLen", "x-max-length"),
            ("maxLenBytes", "x-max-length-bytes"),
        ] {
            if let Some(value) = request_value(&self.metadata, name) {
                let limit: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "a whole number"))?;
                arguments.insert(argument.into(), AMQPValue::LongLongInt(limit));
            }
        }
        Ok(())
    }

    async fn run(self, mut connected: Connected, stop: CancellationToken) {
        // Parallel mode: as many deliveries in flight as the prefetch count allows.
        let slots = Arc::new(Semaphore::new(if self.settings.parallel {
            usize::from(self.settings.prefetch)
        } else {
            1
        }));
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = connected.deliveries.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let consumer = self.clone();
                    self.tasks.spawn(async move {
                        consumer.handle(delivery).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(topic = %self.topic, queue = %self.queue, "the connection to RabbitMQ at {} broke: {error}; reconnecting", self.settings.address);
                    let Some(fresh) = self.reconnect(&stop).await else {
                        break;
                    };
                    connected = fresh;
                }
                None => {
                    tracing::warn!(topic = %self.topic, queue = %self.queue, "RabbitMQ at {} ended the consumer; reconnecting", self.settings.address);
                    let Some(fresh) = self.reconnect(&stop).await else {
                        break;
                    };
                    connected = fresh;
                }
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Connects again every `reconnectWaitSeconds` until it works or `stop` fires.
    async fn reconnect(&self, stop: &CancellationToken) -> Option<Connected> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.settings.reconnect_wait.max(Duration::from_millis(100))) => {}
            }
            match self.connect().await {
                Ok(connected) => {
                    tracing::info!(topic = %self.topic, queue = %self.queue, "reconnected to RabbitMQ at {}", self.settings.address);
                    return Some(connected);
                }
                Err(error) => {
                    tracing::debug!(topic = %self.topic, "reconnecting to RabbitMQ failed: {error}");
                }
            }
        }
    }

    async fn handle(&self, delivery: lapin::message::Delivery) {
        let message = Message {
            topic: self.topic.clone(),
            data: Bytes::from(delivery.data),
            metadata: Default::default(),
        };
        let outcome = self.deliver.deliver(message).await;
        if self.settings.auto_ack {
            return;
        }
        let answered = match outcome {
            Outcome::Done | Outcome::Drop => delivery.acker.ack(BasicAckOptions::default()).await,
            Outcome::Retry => {
                // To the dead-letter queue when there is one and requeueing is off, as
                // in Dapr; otherwise back to the queue, never dropped.
                let requeue = self.settings.requeue_in_failure || !self.settings.dead_letter;
                if requeue {
                    tokio::time::sleep(REQUEUE_DELAY).await;
                }
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue,
                        ..Default::default()
                    })
                    .await
            }
        };
        if let Err(error) = answered {
            // Not lost: the broker requeues unacknowledged messages of a closed channel.
            tracing::warn!(topic = %self.topic, queue = %self.queue, "answering RabbitMQ failed, the message will be redelivered: {error}");
        }
    }
}

/// The TLS and SASL EXTERNAL settings Dapr's RabbitMQ components share: `caCert`,
/// `clientCert`/`clientKey` (PEM) and `saslExternal` (which needs all three).
pub(crate) fn tls_settings(
    metadata: &ComponentMetadata,
    uri: &mut AMQPUri,
) -> Result<OwnedTLSConfig, ResourceError> {
    if metadata.bool_or("saslExternal", false)? {
        if ["caCert", "clientCert", "clientKey"]
            .iter()
            .any(|name| metadata.get(name).is_none())
        {
            return Err(metadata.field_error(
                "saslExternal",
                "can only be true when caCert, clientCert and clientKey are all set",
            ));
        }
        uri.query.auth_mechanism = Some(SASLMechanism::External);
    }
    Ok(OwnedTLSConfig {
        cert_chain: metadata.get("caCert").map(str::to_owned),
        identity: match (metadata.get("clientCert"), metadata.get("clientKey")) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: cert.as_bytes().to_vec(),
                key: key.as_bytes().to_vec(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(metadata.field_error("clientKey", "is required with clientCert"));
            }
            (None, Some(_)) => {
                return Err(metadata.field_error("clientCert", "is required with clientKey"));
            }
        },
    })
}

/// Parses an AMQP URI. The host is taken from the URL as written: the AMQP parser only
/// reads domain names and would silently turn `amqp://10.0.0.5` into `localhost`.
pub(crate) fn parse_uri(value: &str) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = value.parse()?;
    let url = url::Url::parse(value).map_err(|why| why.to_string())?;
    if let Some(host) = url.host_str() {
        uri.authority.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
    }
    Ok(uri)
}

fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
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
            .chain([("consumerID".to_owned(), "app".to_owned())])
            .collect();
        Settings::read(&ComponentMetadata::new(
            Component::new("broker", "pubsub.rabbitmq"),
            values,
        ))
    }

    #[test]
    fn the_address_comes_from_the_connection_string_or_the_parts() {
        let from_string =
            settings(&[("connectionString", "amqp://guest:secret@rabbit:5673/orders")]).unwrap();
        assert_eq!(from_string.address, "amqp://rabbit:5673/orders");
        assert_eq!(from_string.uri.authority.userinfo.password, "secret");

        let from_parts = settings(&[
            ("hostname", "rabbit"),
            ("username", "u"),
            ("password", "p"),
            ("protocol", "amqps"),
        ])
        .unwrap();
        assert_eq!(from_parts.address, "amqps://rabbit:5671");
        assert_eq!(from_parts.uri.authority.userinfo.username, "u");
        assert_eq!(from_parts.uri.query.heartbeat, Some(10));

        let deprecated = settings(&[("host", "amqp://h:1")]).unwrap();
        assert_eq!(deprecated.uri.authority.host, "h");
        let by_address = settings(&[("connectionString", "amqp://10.1.2.3:5672")]).unwrap();
        assert_eq!(by_address.uri.authority.host, "10.1.2.3");
    }

    #[test]
    fn wrong_values_are_refused_by_name_without_echoing_secrets() {
        let error = settings(&[("connectionString", "http://u:hunter2@x")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("connectionString"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = settings(&[("connectionString", "amqp://x"), ("protocol", "amqps")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("does not match"), "{error}");
        for (name, value) in [
            ("exchangeKind", "fan"),
            ("deliveryMode", "3"),
            ("concurrencyMode", "many"),
            ("prefetchCount", "70000"),
            ("saslExternal", "true"),
        ] {
            let error = settings(&[(name, value)]).err().unwrap().to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
    }

    #[test]
    fn a_hostname_may_carry_a_port_as_in_dapr() {
        let with_port = settings(&[("hostname", "127.0.0.1:5673"), ("username", "u")]).unwrap();
        assert_eq!(with_port.uri.authority.host, "127.0.0.1");
        assert_eq!(with_port.uri.authority.port, 5673);
        assert_eq!(with_port.address, "amqp://127.0.0.1:5673");
        let without = settings(&[("hostname", "rabbit")]).unwrap();
        assert_eq!(without.uri.authority.port, 5672);
        let error = settings(&[("hostname", "rabbit:amqp")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("hostname"), "{error}");
    }

    #[test]
    fn defaults_are_dapr_s() {
        let settings = settings(&[]).unwrap();
        assert!(settings.durable);
        assert!(
            !settings.delete_when_unused,
            "tandem keeps queues (Dapr: true)"
        );
        assert!(!settings.auto_ack);
        assert!(!settings.requeue_in_failure);
        assert!(settings.parallel);
        assert_eq!(settings.delivery_mode, 0);
        assert_eq!(settings.reconnect_wait, Duration::from_secs(3));
        assert_eq!(settings.address, "amqp://localhost:5672");
    }
}
