//! `pubsub.jetstream`: NATS JetStream, compatible with Dapr's component.
//!
//! A topic is a NATS subject; its messages live in a stream. With `streamName` the
//! component uses that stream, otherwise the stream whose subjects cover the topic.
//! Dapr requires that stream to exist already; tandem creates it when it is missing
//! (named `streamName`, or else after the topic with every character a stream name may
//! not hold — `.`, `*`, `>`, spaces, slashes — turned into `_`; file storage, the
//! server's default limits), so a fresh `nats-server -js` works out of the box.
//!
//! Each subscribing app is a durable **pull** consumer on that stream, filtered to the
//! topic: `durableName` when set (verbatim, as Dapr names it), otherwise
//! `{queueGroupName or consumerID}-{topic}` with the same characters replaced. Replicas
//! of one app pull from the one consumer and so share its messages; different apps have
//! different consumers and each get every message. (Dapr makes an ephemeral push
//! consumer per sidecar unless `durableName` is set, so its replicas do not share; a pull
//! consumer survives a crash and needs no queue group.)
//!
//! **Nothing acknowledged is lost.** A publish waits for the stream's PubAck, so a
//! success means the stream stored the message; a publish that gets no PubAck within
//! five seconds (the server is down) fails. A CloudEvent's `id` goes with it as
//! `Nats-Msg-Id`, so the stream drops a duplicate of a retried publish, as in Dapr. A
//! delivery is acknowledged only once the app is done with it; a dropped one is
//! *terminated* (`+TERM`: never redelivered, yet not counted as processed — the server
//! announces it as a terminated-message advisory; Dapr acknowledges it); a retry is
//! negatively acknowledged (`-NAK`) with a delay — the `backOff` step for its delivery
//! count, else `ackWait` as Dapr does, else half a second — and comes back until
//! `maxDeliver` is reached. While the app works on a delivery the sidecar reports
//! progress (`+WPI`) every half `ackWait`, so a slow delivery is not handed to another
//! replica meanwhile; a subscriber that dies mid-delivery stops reporting and leaves its
//! message unacknowledged, and JetStream redelivers it after `ackWait`.
//!
//! **Connections come and go.** The client reconnects by itself; each subscription
//! pulls in a loop and, when its pulls fail (idle heartbeats missed, the consumer gone),
//! creates its stream and consumer again and pulls afresh, until `stop` fires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamByNameErrorKind, GetStreamErrorKind, PublishErrorKind,
};
use async_nats::jetstream::{self, AckKind, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};

pub const METADATA: &[&str] = &[
    "natsURL",
    "jwt",
    "seedKey",
    "token",
    "tls_client_cert",
    "tls_client_key",
    "name",
    "streamName",
    "durableName",
    "queueGroupName",
    "consumerID",
    "startSequence",
    "startTime",
    "flowControl",
    "ackWait",
    "maxDeliver",
    "backOff",
    "maxAckPending",
    "replicas",
    "memoryStorage",
    "rateLimit",
    "heartbeat",
    "deliverPolicy",
    "ackPolicy",
    "domain",
    "apiPrefix",
    "concurrency",
];

/// The client library's log target: silent unless debugging, since its errors are
/// reported here in tandem's own words.
pub const CLIENT_LOG_TARGETS: &[&str] = &["async_nats"];

/// How long one server operation (connect, a JetStream API call, a publish's PubAck)
/// may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a retried message waits before redelivery when neither `backOff` nor
/// `ackWait` says, so an app that keeps refusing a message is not flooded with it.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Deliveries in flight per subscription in parallel mode when `maxAckPending` does not
/// say (JetStream's own default for it).
const DEFAULT_PARALLEL: usize = 1000;

/// Messages asked for per pull request, at most: more would sit in the sidecar's memory
/// with their `ackWait` running.
const MAX_BATCH: usize = 100;

/// How the pull loop notices a dead server or consumer: the server sends heartbeats
/// while a pull waits, and each pull expires and is renewed.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// JetStream's `ackWait` when the consumer does not set one.
const SERVER_ACK_WAIT: Duration = Duration::from_secs(30);

/// Pause between attempts to set a subscription up again.
const RESUBSCRIBE_WAIT: Duration = Duration::from_millis(500);

/// Credentials written into `natsURL`.
#[derive(Clone, Debug, PartialEq)]
enum UrlCredentials {
    UserPassword(String, String),
    Token(String),
}

#[derive(Clone)]
enum Credentials {
    /// None besides what `natsURL` may hold.
    None,
    Token(String),
    /// A user JWT and the NKey seed that signs the server's nonce.
    Jwt {
        jwt: String,
        seed: String,
    },
    /// Paths of a PEM client certificate and its key, as in Dapr.
    ClientCertificate {
        cert: String,
        key: String,
    },
}

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    /// `natsURL` without credentials: what the client connects to, and what messages
    /// show.
    address: String,
    /// Credentials `natsURL` held; used unless the metadata gives others.
    url_credentials: Option<UrlCredentials>,
    credentials: Credentials,
    connection_name: String,
    stream_name: Option<String>,
    durable_name: Option<String>,
    /// `queueGroupName`, else `consumerID`: whoever shares a consumer.
    group: Option<String>,
    deliver_policy: DeliverPolicy,
    ack_policy: AckPolicy,
    ack_wait: Option<Duration>,
    max_deliver: i64,
    backoff: Vec<Duration>,
    max_ack_pending: i64,
    replicas: usize,
    memory_storage: bool,
    domain: Option<String>,
    api_prefix: Option<String>,
    parallel: bool,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let url = metadata.required("natsURL")?;
        let (address, url_credentials) = split_url(url).ok_or_else(|| {
            metadata.field_error("natsURL", "is not a URL such as nats://host:4222")
        })?;

        let credentials = match (
            metadata.get("jwt"),
            metadata.get("seedKey"),
            metadata.get("tls_client_cert"),
            metadata.get("tls_client_key"),
        ) {
            (Some(jwt), Some(seed), _, _) => {
                // Checked now so a wrong seed is reported by name, never echoed.
                nkeys::KeyPair::from_seed(seed).map_err(|_| {
                    metadata.field_error("seedKey", "is not an NKey user seed (SU...)")
                })?;
                Credentials::Jwt {
                    jwt: jwt.to_owned(),
                    seed: seed.to_owned(),
                }
            }
            (Some(_), None, _, _) => {
                return Err(metadata.field_error("seedKey", "is required with jwt"));
            }
            (None, Some(_), _, _) => {
                return Err(metadata.field_error("jwt", "is required with seedKey"));
            }
            (None, None, Some(cert), Some(key)) => Credentials::ClientCertificate {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            (None, None, Some(_), None) => {
                return Err(
                    metadata.field_error("tls_client_key", "is required with tls_client_cert")
                );
            }
            (None, None, None, Some(_)) => {
                return Err(
                    metadata.field_error("tls_client_cert", "is required with tls_client_key")
                );
            }
            (None, None, None, None) => match metadata.get("token") {
                Some(token) => Credentials::Token(token.to_owned()),
                None => Credentials::None,
            },
        };

        let start_sequence: u64 = metadata.number_or("startSequence", 0)?;
        let start_time: Option<u64> = match metadata.get("startTime") {
            Some(_) => Some(metadata.number_or("startTime", 0)?),
            None => None,
        };
        let deliver_policy = match metadata.string_or("deliverPolicy", "all").as_str() {
            "all" => DeliverPolicy::All,
            "last" => DeliverPolicy::Last,
            "new" => DeliverPolicy::New,
            "sequence" => {
                if start_sequence == 0 {
                    return Err(metadata.field_error(
                        "startSequence",
                        "is required (1 or more) with deliverPolicy 'sequence'",
                    ));
                }
                DeliverPolicy::ByStartSequence { start_sequence }
            }
            "time" => {
                let seconds = start_time.ok_or_else(|| {
                    metadata.field_error("startTime", "is required with deliverPolicy 'time'")
                })?;
                let start_time = i64::try_from(seconds)
                    .ok()
                    .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
                    .ok_or_else(|| {
                        metadata.field_error(
                            "startTime",
                            format!("'{seconds}' is not a time in Unix seconds"),
                        )
                    })?;
                DeliverPolicy::ByStartTime { start_time }
            }
            other => {
                return Err(metadata.field_error(
                    "deliverPolicy",
                    format!("'{other}' is not one of all, last, new, sequence, time"),
                ));
            }
        };
        // The server refuses a start that its policy does not use; say so by name.
        if start_sequence > 0 && !matches!(deliver_policy, DeliverPolicy::ByStartSequence { .. }) {
            return Err(metadata.field_error(
                "startSequence",
                "is only used with deliverPolicy 'sequence'",
            ));
        }
        if start_time.is_some() && !matches!(deliver_policy, DeliverPolicy::ByStartTime { .. }) {
            return Err(metadata.field_error("startTime", "is only used with deliverPolicy 'time'"));
        }
        // Dapr takes anything else as `explicit`; tandem says what it did not understand.
        let ack_policy = match metadata.string_or("ackPolicy", "explicit").as_str() {
            "explicit" => AckPolicy::Explicit,
            "all" => AckPolicy::All,
            "none" => AckPolicy::None,
            other => {
                return Err(metadata.field_error(
                    "ackPolicy",
                    format!("'{other}' is not one of explicit, all, none"),
                ));
            }
        };
        let parallel = match metadata.string_or("concurrency", "single").as_str() {
            "single" => false,
            "parallel" => true,
            other => {
                return Err(metadata.field_error(
                    "concurrency",
                    format!("'{other}' is not single or parallel"),
                ));
            }
        };
        let ack_wait = metadata.duration_or("ackWait", Duration::ZERO)?;
        let backoff = match metadata.get("backOff") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|step| tandem_spec::parse_duration(step.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| {
                    metadata.field_error(
                        "backOff",
                        format!("'{list}' is not a list of durations such as `1s,5s,30s`: {why}"),
                    )
                })?,
        };
        let max_deliver: i64 = metadata.number_or("maxDeliver", 0)?;
        if max_deliver < 0 {
            return Err(metadata.field_error("maxDeliver", "must be 0 (no limit) or more"));
        }
        if !backoff.is_empty() && max_deliver > 0 && max_deliver <= backoff.len() as i64 {
            // JetStream's own rule: every backOff step must be usable.
            return Err(metadata.field_error(
                "maxDeliver",
                format!("must be more than the {} backOff steps", backoff.len()),
            ));
        }
        let max_ack_pending: i64 = metadata.number_or("maxAckPending", 0)?;
        if max_ack_pending < 0 {
            return Err(
                metadata.field_error("maxAckPending", "must be 0 (the server's default) or more")
            );
        }
        // Push-consumer options: read so a wrong value is still reported, but a pull
        // consumer has no use for them (see the module documentation).
        metadata.bool_or("flowControl", false)?;
        metadata.number_or::<u64>("rateLimit", 0)?;
        metadata.duration_or("heartbeat", Duration::ZERO)?;

        Ok(Self {
            address,
            credentials,
            connection_name: metadata.string_or("name", "dapr.io - pubsub.jetstream"),
            stream_name: jetstream_name(metadata, "streamName")?,
            durable_name: jetstream_name(metadata, "durableName")?,
            group: metadata
                .get("queueGroupName")
                .or_else(|| metadata.get("consumerID"))
                .map(str::to_owned),
            deliver_policy,
            ack_policy,
            ack_wait: (!ack_wait.is_zero()).then_some(ack_wait),
            max_deliver,
            backoff,
            max_ack_pending,
            replicas: metadata.number_or("replicas", 0)?,
            memory_storage: metadata.bool_or("memoryStorage", false)?,
            domain: metadata.get("domain").map(str::to_owned),
            api_prefix: metadata.get("apiPrefix").map(str::to_owned),
            parallel,
            url_credentials,
        })
    }

    fn error(
        &self,
        action: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> PubSubError {
        PubSubError::Nats {
            address: self.address.clone(),
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// Runs one server operation with [`OPERATION_TIMEOUT`].
    async fn timed<T, E>(
        &self,
        action: impl Into<String>,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, PubSubError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let action = action.into();
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(result) => result.map_err(|source| self.error(action, source)),
            Err(_) => Err(PubSubError::NatsTimeout {
                address: self.address.clone(),
                action,
                after: OPERATION_TIMEOUT,
            }),
        }
    }

    async fn connect(&self) -> Result<async_nats::Client, PubSubError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.connection_name)
            .connection_timeout(OPERATION_TIMEOUT)
            .request_timeout(Some(OPERATION_TIMEOUT))
            // Reconnect for ever, soon after a restart: at most two seconds apart.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(200).min(2000))
            });
        match &self.credentials {
            Credentials::None => match &self.url_credentials {
                Some(UrlCredentials::UserPassword(user, password)) => {
                    options = options.user_and_password(user.clone(), password.clone());
                }
                Some(UrlCredentials::Token(token)) => options = options.token(token.clone()),
                None => {}
            },
            Credentials::Token(token) => options = options.token(token.clone()),
            Credentials::Jwt { jwt, seed } => {
                let key = Arc::new(
                    nkeys::KeyPair::from_seed(seed)
                        .map_err(|source| self.error("read the seedKey", source))?,
                );
                options = options.jwt(jwt.clone(), move |nonce| {
                    let key = key.clone();
                    async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
                });
            }
            Credentials::ClientCertificate { cert, key } => {
                // As in Dapr (nats.go's ClientCert): a client certificate means TLS, even
                // with a `nats://` URL.
                options = options
                    .add_client_certificate(cert.into(), key.into())
                    .require_tls(true);
            }
        }
        self.timed("connect", options.connect(self.address.as_str()))
            .await
    }

    fn context(&self, client: async_nats::Client) -> jetstream::Context {
        let builder = jetstream::ContextBuilder::new().timeout(OPERATION_TIMEOUT);
        match (&self.domain, &self.api_prefix) {
            (Some(domain), _) => builder.domain(domain).build(client),
            (None, Some(prefix)) => builder.api_prefix(prefix).build(client),
            (None, None) => builder.build(client),
        }
    }

    /// The durable consumer `topic`'s subscribers share.
    fn consumer_name(&self, topic: &str) -> Option<String> {
        if let Some(name) = &self.durable_name {
            return Some(name.clone());
        }
        let group = self.group.as_ref()?;
        Some(safe_name(&format!("{group}-{topic}")))
    }

    fn consumer_config(&self, name: String, topic: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(name),
            filter_subject: topic.to_owned(),
            deliver_policy: self.deliver_policy,
            ack_policy: self.ack_policy,
            ack_wait: self.ack_wait.unwrap_or_default(),
            max_deliver: self.max_deliver,
            backoff: self.backoff.clone(),
            max_ack_pending: self.max_ack_pending,
            num_replicas: self.replicas,
            memory_storage: self.memory_storage,
            ..Default::default()
        }
    }

    /// How often a delivery in progress is reported: half of how long JetStream waits
    /// for an answer (`ackWait`, or the first `backOff` step, which replaces it).
    fn progress_interval(&self) -> Duration {
        let wait = self
            .backoff
            .first()
            .copied()
            .or(self.ack_wait)
            .unwrap_or(SERVER_ACK_WAIT);
        (wait / 2).max(Duration::from_millis(100))
    }

    /// How long a retried delivery waits before it comes again.
    fn retry_delay(&self, delivered: i64) -> Duration {
        if let Some(last) = self.backoff.last() {
            let step = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
            return self.backoff.get(step).copied().unwrap_or(*last);
        }
        self.ack_wait.unwrap_or(RETRY_DELAY)
    }
}

/// A stream or consumer name given in the metadata, which JetStream must accept.
fn jetstream_name(
    metadata: &ComponentMetadata,
    field: &str,
) -> Result<Option<String>, ResourceError> {
    let Some(name) = metadata.get(field) else {
        return Ok(None);
    };
    if safe_name(name) != name {
        return Err(metadata.field_error(
            field,
            format!("'{name}' holds a character JetStream names may not (. * > space / \\)"),
        ));
    }
    Ok(Some(name.to_owned()))
}

/// A stream or consumer name from `text`: the characters JetStream names may not hold
/// (`.`, `*`, `>`, whitespace, slashes) become `_`.
fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '.' | '*' | '>' | '/' | '\\' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// `natsURL` split in the servers to connect to (without user, password or token, so
/// also fit for messages) and the credentials its URLs hold: `user:password@` or a
/// token as `token@`, as NATS clients read them. `None` if it is no URL. Several
/// comma-separated servers are allowed, as in NATS.
fn split_url(value: &str) -> Option<(String, Option<UrlCredentials>)> {
    let mut shown = Vec::new();
    let mut credentials = None;
    for server in value.split(',') {
        let server = server.trim();
        let with_scheme = if server.contains("://") {
            server.to_owned()
        } else {
            format!("nats://{server}")
        };
        let mut url = url::Url::parse(&with_scheme).ok()?;
        url.host_str()?;
        if credentials.is_none() && !url.username().is_empty() {
            let user = percent_decoded(url.username());
            credentials = Some(match url.password() {
                Some(password) => UrlCredentials::UserPassword(user, percent_decoded(password)),
                None => UrlCredentials::Token(user),
            });
        }
        // Neither can fail on a URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        shown.push(url.to_string().trim_end_matches('/').to_owned());
    }
    Some((shown.join(","), credentials))
}

/// A URL's user or password as written before escaping (`%40` is `@`); text that does
/// not decode to UTF-8 is kept as it is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|_| text.to_owned())
}

/// Whether a publish failed because no stream takes its subject.
fn stream_not_found(error: &PubSubError) -> bool {
    let PubSubError::Nats { source, .. } = error else {
        return false;
    };
    source
        .downcast_ref::<jetstream::context::PublishError>()
        .is_some_and(|error| matches!(error.kind(), PublishErrorKind::StreamNotFound))
}

/// The `id` of a CloudEvent, the message's deduplication id.
fn cloud_event_id(data: &[u8]) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(data).ok()?;
    event.get("id")?.as_str().map(str::to_owned)
}

pub struct JetStream {
    settings: Settings,
    context: jetstream::Context,
    /// The stream found or created for each topic published to.
    streams: tokio::sync::Mutex<HashMap<String, String>>,
}

impl JetStream {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let settings = Settings::read(metadata)?;
        for name in ["flowControl", "rateLimit", "heartbeat"] {
            if metadata.get(name).is_some() {
                tracing::warn!(
                    "{}: metadata '{name}' applies to push consumers; tandem's pull consumers ignore it",
                    metadata.component().describe()
                );
            }
        }
        // Connect now: a wrong address or credentials stop start-up with a clear error
        // rather than failing the first publish.
        let client = settings
            .connect()
            .await
            .map_err(|error| metadata.field_error("natsURL", error.to_string()))?;
        let context = settings.context(client);
        Ok(Arc::new(Self {
            settings,
            context,
            streams: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// The stream holding `topic`'s messages, created when there is none.
    async fn stream_for(&self, topic: &str) -> Result<String, PubSubError> {
        if let Some(name) = self.streams.lock().await.get(topic) {
            return Ok(name.clone());
        }
        let name = ensure_stream(&self.settings, &self.context, topic).await?;
        self.streams
            .lock()
            .await
            .insert(topic.to_owned(), name.clone());
        Ok(name)
    }

    async fn try_publish(&self, message: &Message, id: Option<&str>) -> Result<(), PubSubError> {
        let settings = &self.settings;
        let topic = message.topic.clone();
        let sent = match id {
            Some(id) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id);
                settings
                    .timed(
                        format!("publish to '{topic}'"),
                        self.context.publish_with_headers(
                            topic.clone(),
                            headers,
                            message.data.clone(),
                        ),
                    )
                    .await?
            }
            None => {
                settings
                    .timed(
                        format!("publish to '{topic}'"),
                        self.context.publish(topic.clone(), message.data.clone()),
                    )
                    .await?
            }
        };
        settings
            .timed(
                format!("get the stream's acknowledgement for '{topic}'"),
                sent.into_future(),
            )
            .await?;
        Ok(())
    }
}

/// Finds the stream for `topic` — `streamName`, or the one whose subjects cover it —
/// and creates it when there is none.
async fn ensure_stream(
    settings: &Settings,
    context: &jetstream::Context,
    topic: &str,
) -> Result<String, PubSubError> {
    let name = match &settings.stream_name {
        Some(name) => {
            match context.get_stream(name).await {
                Ok(_) => return Ok(name.clone()),
                Err(error) => match error.kind() {
                    GetStreamErrorKind::JetStream(inner)
                        if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {}
                    _ => return Err(settings.error(format!("look up stream '{name}'"), error)),
                },
            }
            name.clone()
        }
        None => match context.stream_by_subject(topic).await {
            Ok(name) => return Ok(name),
            Err(error) if error.kind() == GetStreamByNameErrorKind::NotFound => safe_name(topic),
            Err(error) => {
                return Err(settings.error(format!("find the stream of subject '{topic}'"), error));
            }
        },
    };
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![topic.to_owned()],
        ..Default::default()
    };
    match context.create_stream(config).await {
        Ok(_) => {
            tracing::info!(topic, stream = %name, "created JetStream stream '{name}' for subject '{topic}'");
            Ok(name)
        }
        // Another sidecar created it meanwhile with the same settings: fine.
        Err(error) if matches!(error.kind(), CreateStreamErrorKind::JetStream(ref inner) if inner.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST) => {
            Ok(name)
        }
        Err(error) => Err(settings.error(
            format!("create stream '{name}' for subject '{topic}'"),
            error,
        )),
    }
}

#[async_trait]
impl PubSub for JetStream {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let id = cloud_event_id(&message.data);
        self.stream_for(&message.topic).await?;
        match self.try_publish(&message, id.as_deref()).await {
            // The stream went away since it was found (deleted by an operator, or a
            // server that kept it in memory restarted): find or create it again, once.
            Err(error) if stream_not_found(&error) => {
                self.streams.lock().await.remove(&message.topic);
                self.stream_for(&message.topic).await?;
                self.try_publish(&message, id.as_deref()).await
            }
            result => result,
        }
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, PubSubError> {
        let topic = subscription.topic;
        let consumer_name =
            self.settings
                .consumer_name(&topic)
                .ok_or_else(|| PubSubError::InvalidSubscription {
                    topic: topic.clone(),
                    message: "the component has neither durableName, queueGroupName nor consumerID to name its consumer".into(),
                })?;
        let slots = if self.settings.parallel {
            usize::try_from(self.settings.max_ack_pending)
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_PARALLEL)
        } else {
            1
        };
        let consumer = Consumer {
            settings: self.settings.clone(),
            context: self.context.clone(),
            topic,
            consumer_name,
            deliver,
            slots,
            tasks: TaskTracker::new(),
        };
        // Set up once now, so an error (a consumer of that name with another filter,
        // say) reaches the caller.
        let messages = consumer.pull().await?;
        Ok(tokio::spawn(consumer.run(messages, stop)))
    }
}

/// One subscription's consuming side.
#[derive(Clone)]
struct Consumer {
    settings: Settings,
    context: jetstream::Context,
    topic: String,
    consumer_name: String,
    deliver: Arc<dyn Deliver>,
    /// Deliveries in flight at most.
    slots: usize,
    tasks: TaskTracker,
}

impl Consumer {
    /// Makes sure the stream and the durable consumer exist, and starts pulling.
    async fn pull(&self) -> Result<pull::Stream, PubSubError> {
        let settings = &self.settings;
        let stream = ensure_stream(settings, &self.context, &self.topic).await?;
        let config = settings.consumer_config(self.consumer_name.clone(), &self.topic);
        let consumer = settings
            .timed(
                format!(
                    "create consumer '{}' on stream '{stream}'",
                    self.consumer_name
                ),
                self.context.create_consumer_on_stream(config, &stream),
            )
            .await?;
        settings
            .timed(
                format!("pull from consumer '{}'", self.consumer_name),
                consumer
                    .stream()
                    .max_messages_per_batch(self.slots.min(MAX_BATCH))
                    .heartbeat(PULL_HEARTBEAT)
                    .expires(PULL_EXPIRES)
                    .messages(),
            )
            .await
    }

    async fn run(self, mut messages: pull::Stream, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.slots));
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let slot = tokio::select! {
                        _ = stop.cancelled() => break,
                        slot = slots.clone().acquire_owned() => slot,
                    };
                    let Ok(slot) = slot else { break };
                    let consumer = self.clone();
                    self.tasks.spawn(async move {
                        consumer.handle(message).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(topic = %self.topic, consumer = %self.consumer_name, "pulling from JetStream at {} failed: {error}; subscribing again", self.settings.address);
                    let Some(fresh) = self.resubscribe(&stop).await else {
                        break;
                    };
                    messages = fresh;
                }
                None => {
                    tracing::warn!(topic = %self.topic, consumer = %self.consumer_name, "JetStream at {} ended the pull; subscribing again", self.settings.address);
                    let Some(fresh) = self.resubscribe(&stop).await else {
                        break;
                    };
                    messages = fresh;
                }
            }
        }
        // Stop pulling before waiting, so nothing more is handed to this sidecar.
        drop(messages);
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Sets the subscription up again until it works or `stop` fires.
    async fn resubscribe(&self, stop: &CancellationToken) -> Option<pull::Stream> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(RESUBSCRIBE_WAIT) => {}
            }
            match self.pull().await {
                Ok(messages) => {
                    tracing::info!(topic = %self.topic, consumer = %self.consumer_name, "pulling from JetStream at {} again", self.settings.address);
                    return Some(messages);
                }
                Err(error) => {
                    tracing::debug!(topic = %self.topic, "subscribing to JetStream again failed: {error}");
                }
            }
        }
    }

    async fn handle(&self, message: jetstream::Message) {
        let delivered = message.info().map_or(1, |info| info.delivered);
        let delivery = self.deliver.deliver(Message {
            topic: self.topic.clone(),
            data: message.payload.clone(),
            metadata: Default::default(),
        });
        tokio::pin!(delivery);
        // While the app works, tell JetStream so (`+WPI`) every half `ackWait`, so a slow
        // delivery is not also given to another replica; a dead sidecar stops telling.
        let every = self.settings.progress_interval();
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut delivery => break outcome,
                _ = progress.tick(), if self.settings.ack_policy != AckPolicy::None => {
                    if let Err(error) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!(topic = %self.topic, "telling JetStream a delivery is in progress failed: {error}");
                    }
                }
            }
        };
        if self.settings.ack_policy == AckPolicy::None {
            return;
        }
        let answer = match outcome {
            Outcome::Done => AckKind::Ack,
            Outcome::Drop => AckKind::Term,
            Outcome::Retry => AckKind::Nak(Some(self.settings.retry_delay(delivered))),
        };
        if let Err(error) = message.ack_with(answer).await {
            // Not lost: an unanswered message is redelivered after `ackWait`.
            tracing::warn!(topic = %self.topic, consumer = %self.consumer_name, "answering JetStream failed, the message will be redelivered: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_spec::Component;

    use super::*;

    fn settings(values: &[(&str, &str)]) -> Result<Settings, ResourceError> {
        let all: BTreeMap<String, String> = [("natsURL", "nats://localhost:4222")]
            .iter()
            .chain(values)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::read(&ComponentMetadata::new(
            Component::new("broker", "pubsub.jetstream"),
            all,
        ))
    }

    #[test]
    fn defaults_are_dapr_s() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.connection_name, "dapr.io - pubsub.jetstream");
        assert_eq!(settings.deliver_policy, DeliverPolicy::All);
        assert_eq!(settings.ack_policy, AckPolicy::Explicit);
        assert!(!settings.parallel, "Dapr's default concurrency is single");
        assert_eq!(settings.ack_wait, None);
        assert_eq!(settings.max_deliver, 0);
        assert!(settings.backoff.is_empty());
        assert!(!settings.memory_storage);
        assert!(settings.stream_name.is_none());
        assert_eq!(settings.address, "nats://localhost:4222");
        assert_eq!(settings.retry_delay(1), RETRY_DELAY);
        assert_eq!(settings.progress_interval(), Duration::from_secs(15));
    }

    #[test]
    fn consumers_are_named_after_the_group_and_topic() {
        let by_app = settings(&[("consumerID", "orders-app")]).unwrap();
        assert_eq!(
            by_app.consumer_name("eu.orders.*").as_deref(),
            Some("orders-app-eu_orders__")
        );
        let by_group = settings(&[("consumerID", "a"), ("queueGroupName", "g")]).unwrap();
        assert_eq!(by_group.consumer_name("t").as_deref(), Some("g-t"));
        let durable = settings(&[("consumerID", "a"), ("durableName", "mine")]).unwrap();
        assert_eq!(durable.consumer_name("t").as_deref(), Some("mine"));
        assert_eq!(settings(&[]).unwrap().consumer_name("t"), None);
    }

    #[test]
    fn the_address_never_shows_credentials() {
        let settings = settings(&[("natsURL", "nats://user:hunter2@n1:4222, n2:4223")]).unwrap();
        assert_eq!(settings.address, "nats://n1:4222,nats://n2:4223");
        assert_eq!(
            settings.url_credentials,
            Some(UrlCredentials::UserPassword(
                "user".into(),
                "hunter2".into()
            ))
        );
        let (address, credentials) = split_url("nats://s3cr%40t+1@host:4222").unwrap();
        assert_eq!(address, "nats://host:4222");
        assert_eq!(credentials, Some(UrlCredentials::Token("s3cr@t+1".into())));
    }

    #[test]
    fn policies_durations_and_retries_are_read() {
        let settings = settings(&[
            ("deliverPolicy", "sequence"),
            ("startSequence", "7"),
            ("ackPolicy", "all"),
            ("ackWait", "2s"),
            ("maxDeliver", "5"),
            ("backOff", "1s, 5s"),
            ("concurrency", "parallel"),
        ])
        .unwrap();
        assert_eq!(
            settings.deliver_policy,
            DeliverPolicy::ByStartSequence { start_sequence: 7 }
        );
        assert_eq!(settings.ack_policy, AckPolicy::All);
        assert_eq!(settings.ack_wait, Some(Duration::from_secs(2)));
        assert!(settings.parallel);
        assert_eq!(settings.retry_delay(1), Duration::from_secs(1));
        assert_eq!(settings.retry_delay(9), Duration::from_secs(5));
        let by_time =
            super::tests::settings(&[("deliverPolicy", "time"), ("startTime", "1700000000")])
                .unwrap();
        assert!(matches!(
            by_time.deliver_policy,
            DeliverPolicy::ByStartTime { .. }
        ));
        let nak_after_ack_wait = super::tests::settings(&[("ackWait", "3s")]).unwrap();
        assert_eq!(nak_after_ack_wait.retry_delay(1), Duration::from_secs(3));
    }

    #[test]
    fn wrong_values_are_refused_by_name_without_echoing_secrets() {
        let missing = Settings::read(&ComponentMetadata::new(
            Component::new("broker", "pubsub.jetstream"),
            BTreeMap::new(),
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(missing.contains("natsURL"), "{missing}");
        for (values, field) in [
            (vec![("natsURL", "::not a url::")], "natsURL"),
            (vec![("deliverPolicy", "oldest")], "deliverPolicy"),
            (vec![("deliverPolicy", "sequence")], "startSequence"),
            (vec![("deliverPolicy", "time")], "startTime"),
            (vec![("startSequence", "3")], "startSequence"),
            (vec![("ackPolicy", "some")], "ackPolicy"),
            (vec![("concurrency", "many")], "concurrency"),
            (vec![("ackWait", "soon")], "ackWait"),
            (vec![("maxDeliver", "-2")], "maxDeliver"),
            (
                vec![("maxDeliver", "2"), ("backOff", "1s,2s")],
                "maxDeliver",
            ),
            (vec![("backOff", "1s,later")], "backOff"),
            (vec![("maxAckPending", "many")], "maxAckPending"),
            (vec![("replicas", "-1")], "replicas"),
            (vec![("memoryStorage", "maybe")], "memoryStorage"),
            (vec![("flowControl", "maybe")], "flowControl"),
            (vec![("jwt", "eyJhbGciOi")], "seedKey"),
            (vec![("jwt", "eyJ"), ("seedKey", "SUhunter2")], "seedKey"),
            (vec![("seedKey", "SUhunter2")], "jwt"),
            (vec![("tls_client_cert", "/c.pem")], "tls_client_key"),
            (vec![("streamName", "orders.eu")], "streamName"),
            (vec![("durableName", "my durable")], "durableName"),
        ] {
            let error = settings(&values).err().unwrap().to_string();
            assert!(error.contains(field), "{values:?}: {error}");
            assert!(!error.contains("hunter2"), "{values:?}: {error}");
        }
    }

    #[test]
    fn cloud_event_ids_become_message_ids() {
        assert_eq!(
            cloud_event_id(br#"{"id":"abc","data":1}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(cloud_event_id(b"plain"), None);
    }
}
