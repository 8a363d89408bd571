//! `pubsub.kafka`: Apache Kafka (or any broker speaking its protocol), compatible with
//! Dapr's component.
//!
//! A topic is a Kafka topic, created by the broker on first use where it allows that (as
//! Dapr's client asks it to). Each subscribing app is a **consumer group**:
//! `consumerGroup`, else `consumerID` (the app id by default), so replicas of one app
//! share a topic's partitions and different apps each get every message.
//!
//! **Nothing acknowledged is lost.** A publish returns once the broker acknowledged the
//! record (`producerRequiredAcks`, all in-sync replicas by default); one that gets no
//! acknowledgement within [`DELIVERY_TIMEOUT`] (the broker is down) fails. A delivery's
//! offset is committed only once the app is done with it (or dropped it), and offsets
//! are committed in order per partition: a partition's messages go to the app one at a
//! time, as in Dapr, while different partitions proceed side by side. A message the app
//! asks to retry is offered again here — after `consumeRetryInterval`, doubling up to
//! [`MAX_RETRY_PAUSE`] — until it is done or dropped (Dapr gives up after its
//! `backOffMaxRetries`; without `consumeRetryEnabled` it even skips the message). A
//! subscriber that dies mid-delivery never commits, and the group hands its partitions
//! and their uncommitted messages to another member once its session times out.
//!
//! Offsets are committed in the background every [`COMMIT_INTERVAL`] and when a
//! subscription stops, so a crash redelivers at most that much work already done: at
//! least once, as with Dapr's client.
//!
//! **Metadata travels as headers**, as in Dapr: a publish's metadata becomes the
//! record's headers (less those `excludeHeaderMetaRegex` matches), `partitionKey` (or
//! `__key`) its key and `partitionNumber` its partition; a delivery's metadata holds the
//! record's headers and `__key`, `__topic`, `__partition`, `__offset` and `__timestamp`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use krafka::auth::{AuthConfig, TlsConfig};
use krafka::consumer::{
    AutoOffsetReset, Consumer, OffsetAndMetadata, PartitionAssignmentStrategy, TopicPartition,
};
use krafka::producer::{Acks, Producer};
use krafka::{Compression, ConsumerRecord, Kafka, KrafkaError, Record};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};

pub const METADATA: &[&str] = &[
    "brokers",
    "consumerGroup",
    "consumerID",
    "clientID",
    "authType",
    "authRequired",
    "saslUsername",
    "saslPassword",
    "saslMechanism",
    "initialOffset",
    "maxMessageBytes",
    "consumeRetryEnabled",
    "consumeRetryInterval",
    "heartbeatInterval",
    "sessionTimeout",
    "version",
    "disableTls",
    "skipVerify",
    "caCert",
    "clientCert",
    "clientKey",
    "escapeHeaders",
    "excludeHeaderMetaRegex",
    "compression",
    "consumerGroupRebalanceStrategy",
    "producerRequiredAcks",
    "producerRetryMax",
    "channelBufferSize",
    "consumerFetchMin",
    "consumerFetchDefault",
    "clientConnectionTopicMetadataRefreshInterval",
    "clientConnectionKeepAliveInterval",
    "dialTimeout",
    "readTimeout",
    "writeTimeout",
    "metadataTimeout",
];

/// The client library's log target: silent unless debugging, since its errors are
/// reported here in tandem's own words.
pub const CLIENT_LOG_TARGETS: &[&str] = &["krafka"];

/// How long a publish may wait for the broker's acknowledgement, retries included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server operation may take when the metadata does not say
/// (`readTimeout`, `dialTimeout`): short enough that an outage fails publishes loudly.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a subscription commits the offsets of what the app has finished.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

/// How long one poll for records waits before the subscription checks on its stop,
/// its commits and its partitions.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// The longest pause between two offers of a message the app keeps refusing.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// How long a new subscription waits to have joined its group, and to know where it
/// starts reading, before it reports itself set up anyway.
const JOIN_WAIT: Duration = Duration::from_secs(15);

/// Pause before polling again after the broker could not be reached.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How the component proves who it is to the brokers (`authType`).
#[derive(Clone)]
enum Authentication {
    None,
    /// SASL: PLAIN, or SCRAM with SHA-256 or SHA-512 (`saslMechanism`).
    Password {
        user: String,
        password: String,
        mechanism: SaslMechanism,
    },
    /// TLS, with a client certificate when `clientCert` and `clientKey` are given.
    Mtls,
    /// TLS trusting `caCert`.
    Certificate,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    brokers: String,
    group: Option<String>,
    client_id: String,
    authentication: Authentication,
    tls: bool,
    skip_verify: bool,
    ca_cert: Option<String>,
    client_cert: Option<(String, String)>,
    initial_offset: AutoOffsetReset,
    max_message_bytes: Option<usize>,
    retry_pause: Duration,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    escape_headers: bool,
    exclude_headers: Option<regex::Regex>,
    compression: Compression,
    rebalance_strategy: PartitionAssignmentStrategy,
    acks: Acks,
    channel_buffer: usize,
    fetch_min: i32,
    fetch_default: i32,
    metadata_refresh: Duration,
    keep_alive: Option<Duration>,
    dial_timeout: Duration,
    read_timeout: Duration,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let brokers = metadata
            .required("brokers")?
            .split(',')
            .map(str::trim)
            .filter(|broker| !broker.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        if brokers.is_empty() {
            return Err(metadata.field_error("brokers", "names no broker (host:port,...)"));
        }

        // Dapr's older `authRequired` stands for `authType` when that is missing.
        let auth_type = match (metadata.get("authType"), metadata.get("authRequired")) {
            (Some(kind), _) => kind.to_ascii_lowercase(),
            (None, Some(_)) => {
                if metadata.bool_or("authRequired", false)? {
                    if metadata.get("saslPassword").is_some() {
                        "password".to_owned()
                    } else {
                        "mtls".to_owned()
                    }
                } else {
                    "none".to_owned()
                }
            }
            (None, None) => {
                return Err(metadata.field_error(
                    "authType",
                    "is required: none, password, mtls or certificate",
                ));
            }
        };
        let ca_cert = pem_field(metadata, "caCert")?;
        let client_cert = pem_field(metadata, "clientCert")?;
        let client_key = pem_field(metadata, "clientKey")?;
        let authentication = match auth_type.as_str() {
            "none" => Authentication::None,
            "password" => {
                let user = metadata.get("saslUsername").ok_or_else(|| {
                    metadata.field_error("saslUsername", "is required with authType 'password'")
                })?;
                let password = metadata.get("saslPassword").ok_or_else(|| {
                    metadata.field_error("saslPassword", "is required with authType 'password'")
                })?;
                // As Dapr: SHA-256 and SHA-512 pick SCRAM, anything else is PLAIN.
                let mechanism = match metadata.get("saslMechanism") {
                    Some("SHA-256") => SaslMechanism::ScramSha256,
                    Some("SHA-512") => SaslMechanism::ScramSha512,
                    _ => SaslMechanism::Plain,
                };
                Authentication::Password {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    mechanism,
                }
            }
            "mtls" => {
                if client_cert.is_some() != client_key.is_some() {
                    let missing = if client_cert.is_some() {
                        "clientKey"
                    } else {
                        "clientCert"
                    };
                    return Err(metadata.field_error(
                        missing,
                        "is required: clientCert and clientKey go together",
                    ));
                }
                Authentication::Mtls
            }
            "certificate" => {
                if ca_cert.is_none() {
                    return Err(
                        metadata.field_error("caCert", "is required with authType 'certificate'")
                    );
                }
                Authentication::Certificate
            }
            "oidc" | "oidc_private_key_jwt" | "awsiam" => {
                return Err(metadata.field_error(
                    "authType",
                    format!("'{auth_type}' is not served by tandem yet: use none, password, mtls or certificate"),
                ));
            }
            other => {
                return Err(metadata.field_error(
                    "authType",
                    format!("'{other}' is not one of none, password, mtls, certificate"),
                ));
            }
        };
        let disable_tls = metadata.bool_or("disableTls", false)?;
        if disable_tls && matches!(authentication, Authentication::Mtls) {
            return Err(metadata.field_error("disableTls", "cannot be true with authType 'mtls'"));
        }
        // As Dapr: every authentication but `none` talks TLS unless `disableTls`.
        let tls = !disable_tls && !matches!(authentication, Authentication::None);

        let initial_offset = match metadata.get("initialOffset") {
            None => AutoOffsetReset::Latest,
            Some(value) if value.eq_ignore_ascii_case("newest") => AutoOffsetReset::Latest,
            Some(value) if value.eq_ignore_ascii_case("oldest") => AutoOffsetReset::Earliest,
            Some(other) => {
                return Err(metadata.field_error(
                    "initialOffset",
                    format!("'{other}' is not newest or oldest"),
                ));
            }
        };
        let max_message_bytes: i64 = metadata.number_or("maxMessageBytes", 0)?;
        let compression = match metadata.string_or("compression", "none").as_str() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => {
                return Err(metadata.field_error(
                    "compression",
                    "'zstd' is not served by tandem (it reads zstd, but writes none, gzip, snappy or lz4)",
                ));
            }
            other => {
                return Err(metadata.field_error(
                    "compression",
                    format!("'{other}' is not one of none, gzip, snappy, lz4"),
                ));
            }
        };
        let rebalance_strategy = match metadata
            .string_or("consumerGroupRebalanceStrategy", "range")
            .to_ascii_lowercase()
            .as_str()
        {
            "range" => PartitionAssignmentStrategy::Range,
            "roundrobin" => PartitionAssignmentStrategy::RoundRobin,
            "sticky" => PartitionAssignmentStrategy::CooperativeSticky,
            other => {
                return Err(metadata.field_error(
                    "consumerGroupRebalanceStrategy",
                    format!("'{other}' is not one of range, sticky, roundrobin"),
                ));
            }
        };
        let acks = match metadata.string_or("producerRequiredAcks", "all").as_str() {
            "all" => Acks::All,
            "local" => Acks::Leader,
            "none" => Acks::None,
            other => {
                return Err(metadata.field_error(
                    "producerRequiredAcks",
                    format!("'{other}' is not one of all, local, none"),
                ));
            }
        };
        let exclude_headers = match metadata.get("excludeHeaderMetaRegex") {
            None => None,
            Some(pattern) => Some(regex::Regex::new(pattern).map_err(|why| {
                metadata.field_error(
                    "excludeHeaderMetaRegex",
                    format!("is not a regular expression: {why}"),
                )
            })?),
        };
        if let Some(version) = metadata.get("version")
            && !version
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(metadata.field_error(
                "version",
                format!("'{version}' is not a Kafka version such as 2.0.0"),
            ));
        }
        for unserved in ["schemaRegistryURL", "valueSchemaType"] {
            if metadata.get(unserved).is_some() {
                return Err(metadata
                    .field_error(unserved, "schema registries are not served by tandem yet"));
            }
        }
        // Read so a wrong value is reported by name; tandem's behaviour does not need them.
        metadata.bool_or("consumeRetryEnabled", true)?;
        metadata.number_or::<i64>("producerRetryMax", 5)?;
        metadata.duration_or("writeTimeout", OPERATION_TIMEOUT)?;
        metadata.duration_or("metadataTimeout", Duration::ZERO)?;

        let channel_buffer: usize = metadata.number_or("channelBufferSize", 256)?;
        let keep_alive =
            metadata.duration_or("clientConnectionKeepAliveInterval", Duration::ZERO)?;
        Ok(Self {
            brokers,
            group: metadata
                .get("consumerGroup")
                .or_else(|| metadata.get("consumerID"))
                .map(str::to_owned),
            client_id: metadata.string_or("clientID", "tandem"),
            authentication,
            tls,
            skip_verify: metadata.bool_or("skipVerify", false)?,
            ca_cert,
            client_cert: client_cert.zip(client_key),
            initial_offset,
            max_message_bytes: usize::try_from(max_message_bytes)
                .ok()
                .filter(|bytes| *bytes > 0),
            retry_pause: retry_interval(metadata)?,
            heartbeat_interval: metadata
                .duration_or("heartbeatInterval", Duration::from_secs(3))?,
            session_timeout: metadata.duration_or("sessionTimeout", Duration::from_secs(10))?,
            escape_headers: metadata.bool_or("escapeHeaders", false)?,
            exclude_headers,
            compression,
            rebalance_strategy,
            acks,
            channel_buffer: channel_buffer.max(1),
            fetch_min: metadata.number_or("consumerFetchMin", 1)?,
            fetch_default: metadata.number_or("consumerFetchDefault", 1024 * 1024)?,
            metadata_refresh: metadata.duration_or(
                "clientConnectionTopicMetadataRefreshInterval",
                Duration::from_secs(8 * 60),
            )?,
            keep_alive: (!keep_alive.is_zero()).then_some(keep_alive),
            dial_timeout: metadata.duration_or("dialTimeout", OPERATION_TIMEOUT)?,
            read_timeout: metadata.duration_or("readTimeout", OPERATION_TIMEOUT)?,
        })
    }

    /// The connection settings every client of the component shares.
    fn security(&self) -> AuthConfig {
        let tls = || {
            let mut config = if self.skip_verify {
                TlsConfig::insecure()
            } else {
                TlsConfig::new()
            };
            if let Some(ca) = &self.ca_cert {
                config = config.with_ca_cert_pem(ca.as_bytes().to_vec());
            }
            if let Some((cert, key)) = &self.client_cert {
                config =
                    config.with_client_cert_pem(cert.as_bytes().to_vec(), key.as_bytes().to_vec());
            }
            config
        };
        let sasl = match &self.authentication {
            Authentication::Password {
                user,
                password,
                mechanism,
            } => Some(match mechanism {
                SaslMechanism::Plain => AuthConfig::sasl_plain(user, password),
                SaslMechanism::ScramSha256 => AuthConfig::sasl_scram_sha256(user, password),
                SaslMechanism::ScramSha512 => AuthConfig::sasl_scram_sha512(user, password),
            }),
            _ => None,
        };
        match (sasl, self.tls) {
            (Some(sasl), true) => sasl.with_tls(tls()),
            (Some(sasl), false) => sasl,
            (None, true) => AuthConfig::ssl(tls()),
            (None, false) => AuthConfig::plaintext(),
        }
    }

    async fn connect(&self) -> Result<Kafka, PubSubError> {
        Kafka::builder(self.brokers.clone())
            .client_id(self.client_id.clone())
            .security(self.security())
            .connect_timeout(self.dial_timeout)
            .request_timeout(self.read_timeout)
            .metadata_max_age(self.metadata_refresh)
            .tcp_keepalive(self.keep_alive)
            // As Dapr's client: a topic published or subscribed to is created by the
            // broker where it allows that.
            .allow_auto_create_topics(true)
            .connect()
            .await
            .map_err(|source| self.error("connect", source))
    }

    fn error(&self, action: impl Into<String>, source: KrafkaError) -> PubSubError {
        PubSubError::Kafka {
            brokers: self.brokers.clone(),
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// The metadata a delivery carries, as Dapr's component gives it.
    fn delivery_metadata(&self, record: &ConsumerRecord) -> HashMap<String, String> {
        let mut metadata = HashMap::with_capacity(record.headers.len() + 5);
        let escape = |text: &[u8]| {
            if self.escape_headers {
                query_escape(text)
            } else {
                String::from_utf8_lossy(text).into_owned()
            }
        };
        if let Some(key) = &record.key {
            metadata.insert("__key".to_owned(), escape(key));
        }
        metadata.insert("__offset".to_owned(), record.offset.to_string());
        metadata.insert("__topic".to_owned(), record.topic.to_string());
        metadata.insert("__timestamp".to_owned(), record.timestamp.to_string());
        metadata.insert("__partition".to_owned(), record.partition.to_string());
        for (name, value) in &record.headers {
            if self.excluded(name) {
                continue;
            }
            let value = value.as_deref().unwrap_or_default();
            metadata.insert(name.clone(), escape(value));
        }
        metadata
    }

    fn excluded(&self, name: &str) -> bool {
        self.exclude_headers
            .as_ref()
            .is_some_and(|pattern| pattern.is_match(name))
    }
}

/// `consumeRetryInterval`: a duration, or — as Dapr reads it — a bare number of
/// milliseconds.
fn retry_interval(metadata: &ComponentMetadata) -> Result<Duration, ResourceError> {
    match metadata.get("consumeRetryInterval") {
        Some(value) if value.chars().all(|c| c.is_ascii_digit()) => value
            .parse::<u32>()
            .map(|millis| Duration::from_millis(millis.into()))
            .map_err(|_| {
                metadata.field_error(
                    "consumeRetryInterval",
                    format!("'{value}' is too large a number of milliseconds"),
                )
            }),
        _ => metadata.duration_or("consumeRetryInterval", Duration::from_millis(100)),
    }
}

/// A PEM field (`caCert`, `clientCert`, `clientKey`), which holds the PEM text itself.
fn pem_field(metadata: &ComponentMetadata, field: &str) -> Result<Option<String>, ResourceError> {
    let Some(value) = metadata.get(field) else {
        return Ok(None);
    };
    if !value.contains("-----BEGIN ") {
        // Never echo the value: it may be a key.
        return Err(metadata.field_error(
            field,
            "is not PEM text (-----BEGIN ...): the field holds the PEM itself, not a path",
        ));
    }
    Ok(Some(value.to_owned()))
}

/// Go's `url.QueryEscape`, which Dapr applies to delivered headers with `escapeHeaders`.
fn query_escape(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(byte as char);
            }
            b' ' => escaped.push('+'),
            _ => escaped.push_str(&format!("%{byte:02X}")),
        }
    }
    escaped
}

/// The Kafka component.
pub struct KafkaPubSub {
    settings: Arc<Settings>,
    kafka: Kafka,
    producer: Producer,
}

impl KafkaPubSub {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        Ok(Arc::new(Self::open(metadata).await?))
    }

    /// The component itself, for the Kafka binding built on it.
    pub(crate) async fn open(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let settings = Settings::read(metadata)?;
        Self::start(settings, metadata).await
    }

    /// `consumerGroup`, else `consumerID`: the group subscriptions join.
    pub(crate) fn group(&self) -> Option<&str> {
        self.settings.group.as_deref()
    }

    /// Connects and checks the brokers answer, so a wrong address or credentials stop
    /// start-up with a clear error rather than failing the first publish.
    async fn start(
        settings: Settings,
        metadata: &ComponentMetadata,
    ) -> Result<Self, ResourceError> {
        let reject = |error: PubSubError| metadata.field_error("brokers", error.to_string());
        let kafka = settings.connect().await.map_err(reject)?;
        let listed = tokio::time::timeout(
            settings.read_timeout,
            kafka
                .admin()
                .list_topics(krafka::admin::ListTopicsOptions::default()),
        )
        .await
        .unwrap_or_else(|_| Err(KrafkaError::timeout("listing the topics")));
        listed.map_err(|source| reject(settings.error("reach the brokers", source)))?;
        let mut producer = kafka
            .producer()
            .acks(settings.acks)
            // Not idempotent, as Dapr's client: an idempotent producer is fenced for
            // good when a broker loses its producer state (a restart can), and every
            // publish after would fail. A retried publish may be stored twice, which
            // at-least-once delivery allows.
            .idempotent(false)
            .compression(settings.compression)
            .delivery_timeout(DELIVERY_TIMEOUT)
            .max_block(DELIVERY_TIMEOUT);
        if let Some(bytes) = settings.max_message_bytes {
            producer = producer.max_request_size(bytes);
        }
        let producer = producer
            .build()
            .await
            .map_err(|source| reject(settings.error("start a producer", source)))?;
        Ok(Self {
            settings: Arc::new(settings),
            kafka,
            producer,
        })
    }

    /// The record a publish writes, with Dapr's reading of its metadata.
    fn record(&self, message: Message) -> Result<Record, PubSubError> {
        let mut record = Record::new(message.topic.clone(), message.data);
        let mut names: Vec<&String> = message.metadata.keys().collect();
        // Headers in a stable order (the request's metadata has none).
        names.sort();
        for name in names {
            let value = &message.metadata[name];
            match name.as_str() {
                "partitionKey" | "__key" => record = record.key(value.clone().into_bytes()),
                "partitionNumber" => {
                    let partition = value.parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                        PubSubError::InvalidMessage {
                            topic: message.topic.clone(),
                            message: format!(
                                "metadata partitionNumber '{value}' is not a partition number (0 or more)"
                            ),
                        }
                    })?;
                    record = record.partition(partition);
                }
                _ => {}
            }
            if !self.settings.excluded(name) {
                record = record.header(name.clone(), value.clone().into_bytes());
            }
        }
        Ok(record)
    }

    /// Writes `message` to `topic` and waits for the broker's acknowledgement.
    pub(crate) async fn write(&self, message: Message) -> Result<(), PubSubError> {
        let topic = message.topic.clone();
        let record = self.record(message)?;
        // The producer bounds its own wait (`delivery_timeout`); this bounds a stuck
        // connection besides.
        match tokio::time::timeout(
            DELIVERY_TIMEOUT + OPERATION_TIMEOUT,
            self.producer.send(record),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(self.settings.error(format!("publish to '{topic}'"), source)),
            Err(_) => Err(self.settings.error(
                format!("publish to '{topic}'"),
                KrafkaError::timeout("waiting for the broker's acknowledgement"),
            )),
        }
    }

    /// Starts a consumer-group member reading `topics` for `deliver`.
    pub(crate) async fn read(
        &self,
        group: &str,
        topics: Vec<String>,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, PubSubError> {
        let consumer = self
            .kafka
            .consumer(group)
            .auto_offset_reset(self.settings.initial_offset)
            .enable_auto_commit(false)
            .session_timeout(self.settings.session_timeout)
            .heartbeat_interval(self.settings.heartbeat_interval)
            .partition_assignment_strategy(self.settings.rebalance_strategy)
            .fetch_min_bytes(self.settings.fetch_min)
            .max_partition_fetch_bytes(self.settings.fetch_default)
            .build()
            .await
            .map_err(|source| self.settings.error(format!("join group '{group}'"), source))?;
        let listing = topics.join(", ");
        consumer.subscribe(topics.iter()).await.map_err(|source| {
            self.settings
                .error(format!("subscribe to '{listing}'"), source)
        })?;
        let member = Member {
            settings: self.settings.clone(),
            consumer: Arc::new(consumer),
            deliver,
            finished: Arc::new(parking_lot::Mutex::new(HashMap::new())),
            stop,
            description: format!("group '{group}' on '{listing}'"),
        };
        // Set up means reading: a message published once this returns is one the group
        // reads, even with initialOffset newest (joining happens as the member polls).
        let (joined, has_joined) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(member.run(joined));
        if tokio::time::timeout(JOIN_WAIT, has_joined).await.is_err() {
            tracing::warn!(
                "Kafka group '{group}' on '{listing}': not joined within {JOIN_WAIT:?}; it goes on trying"
            );
        }
        Ok(task)
    }
}

#[async_trait]
impl PubSub for KafkaPubSub {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        self.write(message).await
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, PubSubError> {
        let group = super::request_value(&subscription.metadata, "consumerGroup")
            .map(str::to_owned)
            .or_else(|| self.settings.group.clone())
            .ok_or_else(|| PubSubError::InvalidSubscription {
                topic: subscription.topic.clone(),
                message: "no consumer group: set consumerGroup or consumerID".to_owned(),
            })?;
        self.read(&group, vec![subscription.topic], deliver, stop)
            .await
    }
}

/// One partition's queue of records for the app.
struct Partition {
    records: mpsc::UnboundedSender<ConsumerRecord>,
    queued: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
}

/// A running consumer-group member: polls records, hands each partition's to the app in
/// order, and commits what the app has finished.
struct Member {
    settings: Arc<Settings>,
    consumer: Arc<Consumer>,
    deliver: Arc<dyn Deliver>,
    /// The next offset to commit per partition: one past the last record finished.
    finished: Arc<parking_lot::Mutex<HashMap<TopicPartition, i64>>>,
    stop: CancellationToken,
    description: String,
}

impl Member {
    async fn run(self, joined: tokio::sync::oneshot::Sender<()>) {
        let mut joined = Some(joined);
        let tracker = TaskTracker::new();
        let mut partitions: HashMap<TopicPartition, Partition> = HashMap::new();
        let mut committed: HashMap<TopicPartition, i64> = HashMap::new();
        let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                _ = commit_tick.tick() => self.commit(&mut committed).await,
                polled = self.consumer.poll(POLL_WAIT) => match polled {
                    Ok(records) => {
                        if failing {
                            tracing::info!("Kafka {}: polling again", self.description);
                            failing = false;
                        }
                        for record in records {
                            self.enqueue(record, &mut partitions, &tracker).await;
                        }
                        if joined.is_some() && self.has_joined().await
                            && let Some(joined) = joined.take()
                        {
                            let _ = joined.send(());
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(
                                "Kafka {} at {}: cannot poll: {error}; trying again",
                                self.description, self.settings.brokers
                            );
                            failing = true;
                        }
                        tokio::select! {
                            () = self.stop.cancelled() => break,
                            () = tokio::time::sleep(ERROR_PAUSE) => {}
                        }
                    }
                },
            }
        }
        // Stop taking records; let the deliveries in flight finish, then commit them.
        drop(partitions);
        tracker.close();
        tracker.wait().await;
        self.commit(&mut committed).await;
        if let Err(error) = self.consumer.close().await {
            tracing::debug!("Kafka {}: leaving the group: {error}", self.description);
        }
    }

    /// Whether the member is in its group and knows where each of its partitions starts
    /// (resolving `initialOffset` for those without a committed offset).
    async fn has_joined(&self) -> bool {
        // A generation is given once the group has taken the member in (-1 before).
        let generation = self
            .consumer
            .group_metadata()
            .await
            .map(|group| group.generation_id());
        if generation.is_none_or(|generation| generation < 0) {
            return false;
        }
        for (topic, numbers) in self.consumer.assignment().await {
            for number in numbers {
                if self.consumer.position(&topic, number).await.is_none() {
                    return false;
                }
            }
        }
        true
    }

    /// Queues `record` for its partition's worker, starting one if needed, and pauses
    /// the partition while its queue is full.
    async fn enqueue(
        &self,
        record: ConsumerRecord,
        partitions: &mut HashMap<TopicPartition, Partition>,
        tracker: &TaskTracker,
    ) {
        let key = TopicPartition::new(record.topic.to_string(), record.partition);
        let partition = partitions.entry(key.clone()).or_insert_with(|| {
            let (records, queue) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            let paused = Arc::new(AtomicBool::new(false));
            tracker.spawn(
                Worker {
                    settings: self.settings.clone(),
                    consumer: self.consumer.clone(),
                    deliver: self.deliver.clone(),
                    finished: self.finished.clone(),
                    stop: self.stop.clone(),
                    partition: key,
                    queued: queued.clone(),
                    paused: paused.clone(),
                }
                .run(queue),
            );
            Partition {
                records,
                queued,
                paused,
            }
        });
        let topic = record.topic.clone();
        let number = record.partition;
        if partition.records.send(record).is_err() {
            return; // stopping
        }
        let queued = partition.queued.fetch_add(1, Ordering::SeqCst) + 1;
        if queued >= self.settings.channel_buffer && !partition.paused.swap(true, Ordering::SeqCst)
        {
            self.consumer.pause(&topic, &[number]).await;
        }
    }

    /// Commits the offsets finished since the last commit.
    async fn commit(&self, committed: &mut HashMap<TopicPartition, i64>) {
        let due: Vec<(TopicPartition, OffsetAndMetadata)> = self
            .finished
            .lock()
            .iter()
            .filter(|(partition, offset)| committed.get(*partition) != Some(*offset))
            .map(|(partition, offset)| (partition.clone(), OffsetAndMetadata::new(*offset)))
            .collect();
        if due.is_empty() {
            return;
        }
        match self
            .consumer
            .commit_offsets(due.iter().map(|(p, o)| (p, o)))
            .await
        {
            Ok(()) => {
                for (partition, offset) in due {
                    committed.insert(partition, offset.offset);
                }
            }
            // Kept for the next tick; what was finished is at worst delivered again.
            Err(error) => tracing::debug!("Kafka {}: commit failed: {error}", self.description),
        }
    }
}

/// Hands one partition's records to the app, one at a time, in order.
struct Worker {
    settings: Arc<Settings>,
    consumer: Arc<Consumer>,
    deliver: Arc<dyn Deliver>,
    finished: Arc<parking_lot::Mutex<HashMap<TopicPartition, i64>>>,
    stop: CancellationToken,
    partition: TopicPartition,
    queued: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
}

impl Worker {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<ConsumerRecord>) {
        loop {
            let record = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                record = queue.recv() => match record {
                    Some(record) => record,
                    None => return,
                },
            };
            let offset = record.offset;
            if !self.settle(record).await {
                return; // stopped while waiting to offer it again: left uncommitted
            }
            self.finished
                .lock()
                .insert(self.partition.clone(), offset.saturating_add(1));
            let queued = self.queued.fetch_sub(1, Ordering::SeqCst) - 1;
            if queued <= self.settings.channel_buffer / 2
                && self.paused.swap(false, Ordering::SeqCst)
            {
                self.consumer
                    .resume(&self.partition.topic, &[self.partition.partition])
                    .await;
            }
        }
    }

    /// Offers `record` to the app until it is done with it or drops it; `false` if the
    /// subscription stopped first.
    async fn settle(&self, record: ConsumerRecord) -> bool {
        let message = Message {
            topic: record.topic.to_string(),
            data: record.value.clone().unwrap_or_default(),
            metadata: self.settings.delivery_metadata(&record),
        };
        let mut pause = self.settings.retry_pause;
        loop {
            match self.deliver.deliver(message.clone()).await {
                Outcome::Done | Outcome::Drop => return true,
                Outcome::Retry => {
                    tracing::debug!(
                        topic = %message.topic, partition = record.partition, offset = record.offset,
                        "the app asked to retry a message; it is delivered again in {pause:?}"
                    );
                    tokio::select! {
                        () = self.stop.cancelled() => return false,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_escape_as_go_query_escape() {
        assert_eq!(query_escape(b"a b/c?d=e&f"), "a+b%2Fc%3Fd%3De%26f");
        assert_eq!(query_escape("é".as_bytes()), "%C3%A9");
        assert_eq!(query_escape(b"AZaz09-_.~"), "AZaz09-_.~");
    }
}
