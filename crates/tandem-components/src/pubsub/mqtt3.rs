//! `pubsub.mqtt3`: an MQTT 3.1.1 broker (Mosquitto, EMQX, HiveMQ, ...), compatible with
//! Dapr's component.
//!
//! A topic is an MQTT topic; a subscription is an MQTT subscription, so its topic may
//! hold the wildcards `+` and `#` (each message says the topic it was published to) or
//! be a shared subscription `$share/{group}/{topic}`. Each subscription has a connection
//! of its own whose client id is `{consumerID}-{topic}`: stable, so with
//! `cleanSession: false` (the default) the broker keeps the session — the subscription
//! and every QoS 1 message for it — while the subscriber is away, and hands the messages
//! over when it comes back. (Dapr uses one connection, client id `{consumerID}`, for all
//! of a component's subscriptions and its publishing.) Two sidecars with the same
//! consumerID and topic have the same client id, and the broker keeps only the newest
//! connection of a client id, as with Dapr: replicas that should share a topic's
//! messages subscribe to `$share/{group}/{topic}` with consumerIDs of their own.
//!
//! **Nothing acknowledged is lost.** Messages travel with `qos` 1 (at least once) by
//! default. A publish returns only once the broker acknowledged it (PUBACK); a publish
//! while the broker is away fails at once, loudly. Publishing has a connection of its
//! own (client id `{consumerID}-pub-{random}`, clean session: it holds nothing); once it
//! broke, or a publish on it failed, the next publish connects afresh.
//!
//! A delivery is acknowledged (PUBACK) only once the app is done with it or dropped it.
//! MQTT 3.1.1 has no negative acknowledgement and a broker sends an unacknowledged
//! message again only when the session reconnects, so a retry is retried *here*: the
//! message is handed to the app again, with growing pauses (up to
//! [`MAX_RETRY_PAUSE`]), until it is done or dropped, and is acknowledged only then. A
//! sidecar that dies meanwhile never acknowledged it, and the broker delivers it to the
//! next connection of the same client id. Deliveries run concurrently (the broker bounds
//! them with its in-flight window, Mosquitto's `max_inflight_messages`) and are
//! acknowledged in the order they finish, so one message being retried does not hold
//! back the acknowledgements of the others. MQTT 3.1.1 (§4.6, MQTT-4.6.0-2) asks a
//! client to acknowledge in the order messages came; Dapr does not either (its client
//! runs with `OrderMatters` off), and brokers match acknowledgements by packet id
//! (Mosquitto's handling is tested).
//!
//! **Connections come and go.** A subscription's connection reconnects by itself every
//! [`RECONNECT_PAUSE`] and subscribes again when the broker did not keep its session.
//! An acknowledgement is sent only on the connection the message came on: one that
//! finishes after its connection broke waits for the broker to send the message again
//! on the new connection and acknowledges that, so a stale acknowledgement can never
//! acknowledge another message that reuses the packet id. With `cleanSession: true` the
//! broker forgets the session on every disconnect, and with it whatever was not
//! acknowledged: QoS 1 then holds only while connected.
//!
//! `qos: 2` is served as 1 (with a warning): the client library cannot resume a QoS 2
//! exchange across a reconnect, and QoS 1 with the app's acknowledgement gives what Dapr
//! promises, at least once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe, request_value};

pub const METADATA: &[&str] = &[
    "url",
    "consumerID",
    "qos",
    "retain",
    "cleanSession",
    "caCert",
    "clientCert",
    "clientKey",
];

/// The client library's log target: silent unless debugging, since its errors are
/// reported here in tandem's own words.
pub const CLIENT_LOG_TARGETS: &[&str] = &["rumqttc"];

/// How long one broker operation (connect, publish and its PUBACK, subscribe and its
/// SUBACK) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause between attempts to reconnect to a broker that went away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The first pause before a retried message is handed to the app again; it doubles on
/// each retry up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// Deliveries of one subscription in flight at once (the broker's in-flight window
/// usually bounds them first; QoS 0 has no window).
const MAX_CONCURRENT_DELIVERIES: usize = 100;

/// The largest packet sent or taken: MQTT's own limit (the client library's default is
/// 10 KiB, which would refuse ordinary messages).
const MAX_PACKET_SIZE: usize = 268_435_455;

/// Requests (publishes, acknowledgements) queued for a connection.
const REQUEST_CAPACITY: usize = 1024;

const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    host: String,
    port: u16,
    /// `scheme://host:port`, for messages: never the credentials.
    address: String,
    credentials: Option<(String, String)>,
    /// The rustls configuration for `ssl://` and its aliases.
    tls: Option<Arc<rustls::ClientConfig>>,
    consumer_id: String,
    qos: QoS,
    retain: bool,
    clean_session: bool,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let value = metadata.required("url")?;
        // The URL may hold a password: errors say what is wrong, never what it is.
        let url = url::Url::parse(value).map_err(|why| {
            metadata.field_error(
                "url",
                format!("is not a URL such as tcp://user:password@host:1883 ({why})"),
            )
        })?;
        let secure = match url.scheme() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" | "tcps" => true,
            other => {
                return Err(metadata.field_error(
                    "url",
                    format!(
                        "has the scheme '{other}', which is not one of tcp, mqtt (plain) or ssl, tls, mqtts, tcps (TLS)"
                    ),
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| metadata.field_error("url", "has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if secure { 8883 } else { 1883 });
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });

        let qos = match metadata.number_or::<u8>("qos", 1)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => {
                // Dapr accepts 2, so a component file that says it must load; what Dapr
                // promises is at least once, which QoS 1 with the app's acknowledgement
                // gives.
                tracing::warn!(
                    "{}: qos 2 (exactly once) is served as 1 (at least once, acknowledged once the app is done)",
                    metadata.component().describe()
                );
                QoS::AtLeastOnce
            }
            other => {
                return Err(metadata.field_error("qos", format!("'{other}' is not 0 or 1")));
            }
        };

        let tls = if secure {
            Some(Arc::new(tls_config(metadata)?))
        } else {
            // Unused, as in Dapr; said aloud, since it is most likely a mistaken scheme.
            if let Some(name) = ["caCert", "clientCert", "clientKey"]
                .into_iter()
                .find(|name| metadata.get(name).is_some())
            {
                tracing::warn!(
                    "{}: metadata '{name}' is ignored: the url's scheme is not a TLS one (ssl, tls, mqtts, tcps)",
                    metadata.component().describe()
                );
            }
            None
        };

        Ok(Self {
            address: format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or("")),
            host,
            port,
            credentials,
            tls,
            consumer_id: metadata.required("consumerID")?.to_owned(),
            qos,
            retain: metadata.bool_or("retain", false)?,
            clean_session: metadata.bool_or("cleanSession", false)?,
        })
    }

    /// The client options of one connection.
    fn options(&self, client_id: String, clean_session: bool) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(clean_session)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some((username, password)) = &self.credentials {
            options.set_credentials(username.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        options
    }

    fn error(&self, action: impl Into<String>, source: ConnectionError) -> PubSubError {
        PubSubError::Mqtt {
            address: self.address.clone(),
            action: action.into(),
            source: Box::new(source),
        }
    }

    fn failed(&self, action: impl Into<String>, reason: impl Into<String>) -> PubSubError {
        PubSubError::MqttFailed {
            address: self.address.clone(),
            action: action.into(),
            reason: reason.into(),
        }
    }

    fn timeout(&self, action: impl Into<String>) -> PubSubError {
        PubSubError::MqttTimeout {
            address: self.address.clone(),
            action: action.into(),
            after: OPERATION_TIMEOUT,
        }
    }
}

/// The TLS configuration from `caCert` (trusted roots; the web's roots without it) and
/// `clientCert` + `clientKey` (the client's identity, optional), all PEM.
fn tls_config(metadata: &ComponentMetadata) -> Result<rustls::ClientConfig, ResourceError> {
    let certificates = |name: &str, pem: &str| {
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|why| {
                    metadata.field_error(name, format!("is not PEM certificates: {why}"))
                })?;
        if certificates.is_empty() {
            return Err(metadata.field_error(name, "holds no PEM certificate"));
        }
        Ok(certificates)
    };
    let mut roots = rustls::RootCertStore::empty();
    match metadata.get("caCert") {
        Some(pem) => {
            for certificate in certificates("caCert", pem)? {
                roots.add(certificate).map_err(|why| {
                    metadata.field_error("caCert", format!("is not a usable CA certificate: {why}"))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|why| metadata.field_error("url", format!("TLS cannot be set up: {why}")))?
        .with_root_certificates(roots);
    match (metadata.get("clientCert"), metadata.get("clientKey")) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(metadata.field_error("clientKey", "is required with clientCert")),
        (None, Some(_)) => Err(metadata.field_error("clientCert", "is required with clientKey")),
        (Some(cert), Some(key)) => {
            let chain = certificates("clientCert", cert)?;
            // Never the key's text in a message.
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
                metadata.field_error(
                    "clientKey",
                    "is not a PEM private key (PKCS#1, PKCS#8 or SEC1)",
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|why| {
                metadata.field_error("clientKey", format!("does not go with clientCert: {why}"))
            })
        }
    }
}

/// Whether a topic can be published to: not empty, no wildcards.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#']) && !topic.contains('\0')
}

/// Whether a subscription's topic filter is one MQTT accepts: `#` only as the last
/// level, `+` and `#` only as whole levels.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(index, level)| {
        if level.contains('#') {
            *level == "#" && index == levels.len() - 1
        } else {
            !level.contains('+') || *level == "+"
        }
    })
}

pub struct Mqtt3 {
    settings: Arc<Settings>,
    publisher: tokio::sync::Mutex<Option<Publisher>>,
}

impl Mqtt3 {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let settings = Arc::new(Settings::read(metadata)?);
        // Connect now: a wrong address or password stops start-up with a clear error
        // rather than failing the first publish.
        let publisher = Publisher::connect(settings.clone())
            .await
            .map_err(|error| metadata.field_error("url", error.to_string()))?;
        Ok(Arc::new(Self {
            settings,
            publisher: tokio::sync::Mutex::new(Some(publisher)),
        }))
    }
}

/// One publishing connection. Publishes go one at a time (as with `pubsub.rabbitmq`), so
/// the packet id the client library gives the one in flight identifies its PUBACK. A
/// connection serves until anything goes wrong — it breaks, or a publish fails or gets no
/// answer — and is then replaced by a new one at the next publish: a publish that failed
/// can then never be sent later behind its caller's back, nor its PUBACK be taken for
/// another's.
struct Publisher {
    client: AsyncClient,
    shared: Arc<Mutex<PublisherState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct PublisherState {
    /// Why the connection broke, once it did.
    broken: Option<String>,
    /// The publish in flight.
    waiting: Option<Waiting>,
}

/// A publish waiting for its PUBACK.
struct Waiting {
    /// Its packet id, once the client library sent it.
    pkid: Option<u16>,
    /// Answered with the PUBACK, or why none will come.
    answer: oneshot::Sender<Result<(), String>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    async fn connect(settings: Arc<Settings>) -> Result<Self, PubSubError> {
        // Unique, so that replicas of an app never take each other's connection; a clean
        // session, since a publisher holds no subscriptions.
        let client_id = format!(
            "{}-pub-{}",
            settings.consumer_id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (client, mut events) =
            AsyncClient::new(settings.options(client_id, true), REQUEST_CAPACITY);
        match tokio::time::timeout(OPERATION_TIMEOUT, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            Ok(Ok(other)) => {
                return Err(settings.failed("connect", format!("unexpected answer {other:?}")));
            }
            Ok(Err(error)) => return Err(settings.error("connect", error)),
            Err(_) => return Err(settings.timeout("connect")),
        }
        let shared = Arc::new(Mutex::new(PublisherState::default()));
        let task = tokio::spawn(Self::run(settings, events, shared.clone()));
        Ok(Self {
            client,
            shared,
            task,
        })
    }

    /// Polls the connection (which also keeps it alive) until it breaks, answering the
    /// waiting publish when its PUBACK comes.
    async fn run(
        settings: Arc<Settings>,
        mut events: EventLoop,
        shared: Arc<Mutex<PublisherState>>,
    ) {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let mut state = shared.lock();
                    if let Some(waiting) = &mut state.waiting
                        && waiting.pkid.is_none()
                    {
                        waiting.pkid = Some(pkid);
                    }
                    // QoS 0 has no acknowledgement: written is all there is.
                    if pkid == 0
                        && let Some(waiting) = state.waiting.take()
                    {
                        let _ = waiting.answer.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let mut state = shared.lock();
                    if matches!(&state.waiting, Some(waiting) if waiting.pkid == Some(ack.pkid))
                        && let Some(waiting) = state.waiting.take()
                    {
                        let _ = waiting.answer.send(Ok(()));
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(
                        "the connection to the MQTT broker at {} for publishing broke: {error}",
                        settings.address
                    );
                    let mut state = shared.lock();
                    let reason = error.to_string();
                    if let Some(waiting) = state.waiting.take() {
                        let _ = waiting.answer.send(Err(reason.clone()));
                    }
                    state.broken = Some(reason);
                    return;
                }
            }
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.lock().broken.is_some()
    }

    async fn publish(
        &self,
        settings: &Settings,
        message: &Message,
        retain: bool,
    ) -> Result<(), PubSubError> {
        let action = format!("publish to '{}'", message.topic);
        let (waiter, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.broken {
                return Err(settings.failed(action, reason.clone()));
            }
            state.waiting = Some(Waiting {
                pkid: None,
                answer: waiter,
            });
        }
        let sent = self.client.try_publish(
            message.topic.clone(),
            settings.qos,
            retain,
            message.data.to_vec(),
        );
        if sent.is_err() {
            return Err(settings.failed(action, "the client's request queue is full"));
        }
        match tokio::time::timeout(OPERATION_TIMEOUT, answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(settings.failed(action, reason)),
            Ok(Err(_)) => Err(settings.failed(action, "the connection's task ended")),
            Err(_) => Err(settings.timeout(action)),
        }
    }
}

#[async_trait]
impl PubSub for Mqtt3 {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let settings = &self.settings;
        if !valid_topic(&message.topic) {
            return Err(settings.failed(
                format!("publish to '{}'", message.topic),
                "a topic to publish to must not be empty nor hold the wildcards + and #",
            ));
        }
        // `retain` per request, as in Dapr.
        let retain = match request_value(&message.metadata, "retain") {
            None => settings.retain,
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => true,
                "false" | "f" | "0" | "no" | "n" | "off" => false,
                _ => {
                    return Err(settings.failed(
                        format!("publish to '{}'", message.topic),
                        format!("metadata 'retain' is '{value}', which is not true or false"),
                    ));
                }
            },
        };
        let mut publisher = self.publisher.lock().await;
        if publisher.as_ref().is_some_and(Publisher::is_broken) {
            *publisher = None;
        }
        let current = match publisher.as_ref() {
            Some(current) => current,
            None => publisher.insert(Publisher::connect(settings.clone()).await?),
        };
        let result = current.publish(settings, &message, retain).await;
        if result.is_err() {
            *publisher = None;
        }
        result
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, PubSubError> {
        let settings = self.settings.clone();
        let topic = subscription.topic;
        if !valid_filter(&topic) {
            return Err(PubSubError::InvalidSubscription {
                topic,
                message:
                    "is not an MQTT topic filter ('+' and '#' only as whole levels, '#' only last)"
                        .to_owned(),
            });
        }
        // As in Dapr: a subscription that stops keeps its place in the session (the
        // broker keeps its messages for its return) unless asked to unsubscribe.
        let unsubscribe_on_close = request_value(&subscription.metadata, "unsubscribeOnClose")
            .is_some_and(|value| {
                matches!(
                    value.to_ascii_lowercase().as_str(),
                    "true" | "t" | "1" | "yes" | "y" | "on"
                )
            });
        let client_id = format!("{}-{topic}", settings.consumer_id);
        let (client, events) = AsyncClient::new(
            settings.options(client_id, settings.clean_session),
            REQUEST_CAPACITY,
        );
        let (ready, subscribed) = oneshot::channel();
        let consumer = Consumer {
            settings: settings.clone(),
            topic: topic.clone(),
            unsubscribe_on_close,
            client,
            deliver,
            tasks: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES)),
            next_delivery: AtomicU64::new(0),
        };
        let own_stop = stop.child_token();
        let task = tokio::spawn(consumer.run(events, ready, own_stop.clone()));
        let action = format!("subscribe to '{topic}'");
        match tokio::time::timeout(OPERATION_TIMEOUT, subscribed).await {
            Ok(Ok(Ok(()))) => Ok(task),
            Ok(Ok(Err(error))) => {
                own_stop.cancel();
                let _ = task.await;
                Err(error)
            }
            Ok(Err(_)) => Err(settings.failed(action, "the subscription's task ended")),
            Err(_) => {
                own_stop.cancel();
                let _ = task.await;
                Err(settings.timeout(action))
            }
        }
    }
}

/// What the connection's task tells the subscription's loop.
enum Polled {
    Event(Event),
    /// The connection broke; the task reconnects once `handled` is answered.
    Broken {
        error: ConnectionError,
        handled: oneshot::Sender<()>,
    },
}

/// A delivery's end, sent back to the subscription's loop, which alone acknowledges.
struct Finished {
    pkid: u16,
    delivery: u64,
    /// Done or dropped: acknowledge. Otherwise abandoned (the subscription stops).
    acknowledge: bool,
}

/// A QoS 1 message being delivered, by packet id.
struct InFlight {
    delivery: u64,
    /// The connection it came on (or was last sent again on).
    connection: u64,
    /// The app finished it after its connection broke: acknowledge it when the broker
    /// sends it again on the new connection.
    finished: bool,
}

/// One subscription's consuming side.
struct Consumer {
    settings: Arc<Settings>,
    topic: String,
    /// Unsubscribe when stopped (`unsubscribeOnClose`), so the broker keeps nothing.
    unsubscribe_on_close: bool,
    client: AsyncClient,
    deliver: Arc<dyn Deliver>,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    next_delivery: AtomicU64,
}

impl Consumer {
    /// The subscription's loop: takes what the connection brings, starts deliveries and
    /// acknowledges the finished ones. `ready` is answered once the first SUBACK came (or
    /// the first connection failed).
    async fn run(
        self,
        events: EventLoop,
        ready: oneshot::Sender<Result<(), PubSubError>>,
        stop: CancellationToken,
    ) {
        let (polled_tx, mut polled) = mpsc::channel(64);
        // The client library's loop is never interrupted mid-poll: it runs in a task of
        // its own and hands over what it gets.
        let poller = tokio::spawn(poll(events, polled_tx));
        let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
        let mut ready = Some(ready);
        let mut in_flight: HashMap<u16, InFlight> = HashMap::new();
        let mut connection = 0u64;
        let mut connected = false;
        let action = format!("subscribe to '{}'", self.topic);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                Some(done) = finished.recv() => {
                    self.finish(done, &mut in_flight, connection, connected);
                    continue;
                }
                next = polled.recv() => next,
            };
            match next {
                None => break,
                Some(Polled::Broken { error, handled }) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(self.settings.error(action.clone(), error)));
                        break;
                    }
                    if connected {
                        tracing::warn!(topic = %self.topic, "the connection to the MQTT broker at {} broke: {error}; reconnecting", self.settings.address);
                    } else {
                        tracing::debug!(topic = %self.topic, "reconnecting to the MQTT broker failed: {error}");
                    }
                    connected = false;
                    let _ = handled.send(());
                }
                Some(Polled::Event(Event::Incoming(Packet::ConnAck(ack)))) => {
                    connection += 1;
                    connected = true;
                    if !ack.session_present {
                        // The broker forgot the session: what it had not seen
                        // acknowledged is gone from it, and its packet ids may be reused.
                        in_flight.clear();
                    }
                    if ready.is_none() {
                        tracing::info!(topic = %self.topic, session_kept = ack.session_present, "reconnected to the MQTT broker at {}", self.settings.address);
                    }
                    // Subscribing when the session was kept is harmless, and the first
                    // time needed anyway (a SUBACK is how the caller learns it worked).
                    if (!ack.session_present || ready.is_some())
                        && let Err(error) = self
                            .client
                            .try_subscribe(self.topic.clone(), self.settings.qos)
                    {
                        tracing::warn!(topic = %self.topic, "subscribing again failed: {error}");
                    }
                }
                Some(Polled::Event(Event::Incoming(Packet::SubAck(ack)))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, SubscribeReasonCode::Failure));
                    if let Some(ready) = ready.take() {
                        if refused {
                            let _ = ready.send(Err(self
                                .settings
                                .failed(action.clone(), "the broker refused the subscription")));
                            break;
                        }
                        let _ = ready.send(Ok(()));
                    } else if refused {
                        tracing::error!(topic = %self.topic, "the MQTT broker at {} refused the subscription again", self.settings.address);
                    }
                }
                Some(Polled::Event(Event::Incoming(Packet::Publish(publish)))) => {
                    self.receive(publish, &mut in_flight, connection, &finished_tx, &stop);
                }
                Some(Polled::Event(_)) => {}
            }
        }
        // Stop: let the deliveries in flight finish and acknowledge them, then leave.
        self.tasks.close();
        let mut waited = std::pin::pin!(self.tasks.wait());
        loop {
            tokio::select! {
                () = &mut waited => break,
                Some(done) = finished.recv() => self.finish(done, &mut in_flight, connection, connected),
            }
        }
        while let Ok(done) = finished.try_recv() {
            self.finish(done, &mut in_flight, connection, connected);
        }
        if connected {
            // Acknowledgements go before the DISCONNECT, in the order they were queued;
            // a clean DISCONNECT keeps a persistent session. MQTT does not acknowledge
            // acknowledgements: the broker closing the connection after the DISCONNECT
            // is what says it read them. Without that wait, a sidecar that subscribes
            // again at once could take over the session before the broker read them,
            // and get those messages again.
            if self.unsubscribe_on_close {
                let _ = self.client.try_unsubscribe(self.topic.clone());
            }
            let _ = self.client.try_disconnect();
            let closed = async {
                while let Some(next) = polled.recv().await {
                    if matches!(next, Polled::Broken { .. }) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
        }
        poller.abort();
        let _ = poller.await;
    }

    /// A message from the broker: delivers it, unless it is the broker sending again one
    /// that is being delivered.
    fn receive(
        &self,
        publish: rumqttc::Publish,
        in_flight: &mut HashMap<u16, InFlight>,
        connection: u64,
        finished: &mpsc::UnboundedSender<Finished>,
        stop: &CancellationToken,
    ) {
        let pkid = publish.pkid;
        let acknowledged = publish.qos != QoS::AtMostOnce;
        if acknowledged {
            // A packet id not yet acknowledged cannot be reused by the broker: this is
            // the same message, sent again because the connection was new.
            if let Some(entry) = in_flight.get_mut(&pkid) {
                entry.connection = connection;
                if entry.finished {
                    in_flight.remove(&pkid);
                    self.acknowledge(pkid);
                }
                return;
            }
        }
        let delivery = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        if acknowledged {
            in_flight.insert(
                pkid,
                InFlight {
                    delivery,
                    connection,
                    finished: false,
                },
            );
        }
        let message = Message {
            topic: publish.topic,
            data: publish.payload,
            metadata: HashMap::from([("retained".to_owned(), publish.retain.to_string())]),
        };
        let deliver = self.deliver.clone();
        let slots = self.slots.clone();
        let finished = finished.clone();
        let stop = stop.clone();
        let topic = self.topic.clone();
        self.tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let mut pause = FIRST_RETRY_PAUSE;
            let acknowledge = loop {
                match deliver.deliver(message.clone()).await {
                    Outcome::Done | Outcome::Drop => break true,
                    Outcome::Retry => {
                        tracing::debug!(topic = %topic, "the app asked to retry a message; it is delivered again in {pause:?}");
                        tokio::select! {
                            // Not acknowledged: the broker keeps it for the session.
                            _ = stop.cancelled() => break false,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    }
                }
            };
            if acknowledged {
                let _ = finished.send(Finished {
                    pkid,
                    delivery,
                    acknowledge,
                });
            }
        });
    }

    /// A delivery finished: acknowledges it on the connection it came on, or waits for
    /// the broker to send it again on the new one.
    fn finish(
        &self,
        done: Finished,
        in_flight: &mut HashMap<u16, InFlight>,
        connection: u64,
        connected: bool,
    ) {
        let Some(entry) = in_flight.get_mut(&done.pkid) else {
            // The broker forgot the session since: nothing to acknowledge.
            return;
        };
        if entry.delivery != done.delivery {
            return;
        }
        if !done.acknowledge {
            in_flight.remove(&done.pkid);
            return;
        }
        if connected && entry.connection == connection {
            in_flight.remove(&done.pkid);
            self.acknowledge(done.pkid);
        } else {
            entry.finished = true;
        }
    }

    fn acknowledge(&self, pkid: u16) {
        let mut publish = rumqttc::Publish::new(self.topic.clone(), QoS::AtLeastOnce, Vec::new());
        publish.pkid = pkid;
        if let Err(error) = self.client.try_ack(&publish) {
            // Not lost: unacknowledged, the broker sends it again on the next connection.
            tracing::warn!(topic = %self.topic, "acknowledging a message failed, it will be delivered again: {error}");
        }
    }
}

/// Polls the client library's loop without ever interrupting it, handing what comes to
/// the subscription's loop. After a broken connection it waits until the subscription's
/// loop knows, then drops the acknowledgements queued meanwhile (they belong to the
/// broken connection: the broker sends their messages again) and reconnects.
async fn poll(mut events: EventLoop, polled: mpsc::Sender<Polled>) {
    loop {
        match events.poll().await {
            Ok(event) => {
                if polled.send(Polled::Event(event)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let (handled, known) = oneshot::channel();
                if polled
                    .send(Polled::Broken { error, handled })
                    .await
                    .is_err()
                {
                    return;
                }
                if known.await.is_err() {
                    return;
                }
                events.clean();
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_spec::Component;

    use super::*;

    fn settings(values: &[(&str, &str)]) -> Result<Settings, ResourceError> {
        let mut all: BTreeMap<String, String> = BTreeMap::from([
            ("url".to_owned(), "tcp://localhost:1883".to_owned()),
            ("consumerID".to_owned(), "app".to_owned()),
        ]);
        for (name, value) in values {
            all.insert(name.to_string(), value.to_string());
        }
        Settings::read(&ComponentMetadata::new(
            Component::new("broker", "pubsub.mqtt3"),
            all,
        ))
    }

    #[test]
    fn the_url_gives_address_credentials_and_tls() {
        let plain = settings(&[("url", "tcp://user:p%40ss@broker:1884")]).unwrap();
        assert_eq!(plain.address, "tcp://broker:1884");
        assert_eq!(
            plain.credentials,
            Some(("user".to_owned(), "p@ss".to_owned()))
        );
        assert!(plain.tls.is_none());
        let default_port = settings(&[("url", "mqtt://broker")]).unwrap();
        assert_eq!(
            (default_port.host.as_str(), default_port.port),
            ("broker", 1883)
        );
        assert!(default_port.credentials.is_none());
        for scheme in ["ssl", "tls", "mqtts", "tcps"] {
            let secure = settings(&[("url", &format!("{scheme}://broker"))]).unwrap();
            assert_eq!(secure.port, 8883, "{scheme}");
            assert!(secure.tls.is_some(), "{scheme}");
        }
        let by_address = settings(&[("url", "tcp://10.1.2.3:1883")]).unwrap();
        assert_eq!(by_address.host, "10.1.2.3");
    }

    #[test]
    fn wrong_values_are_refused_by_name_without_echoing_secrets() {
        for url in [
            "http://u:hunter2@broker",
            "tcp://u:hunter2@",
            "u:hunter2@broker:1883",
            "not a url hunter2",
        ] {
            let error = settings(&[("url", url)]).err().unwrap().to_string();
            assert!(error.contains("(url)"), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
        for (name, value) in [
            ("qos", "3"),
            ("qos", "one"),
            ("retain", "maybe"),
            ("cleanSession", "sometimes"),
        ] {
            let error = settings(&[(name, value)]).err().unwrap().to_string();
            assert!(error.contains(&format!("({name})")), "{name}: {error}");
        }
        let error = settings(&[("url", "ssl://broker"), ("clientKey", "secret-key")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("(clientCert)"), "{error}");
        for pem in ["secret-key", "-----BEGIN CERTIFICATE-----\nnot base64\n"] {
            let error = settings(&[("url", "ssl://broker"), ("caCert", pem)])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("(caCert)"), "{error}");
        }
        let error = settings(&[
            ("url", "ssl://broker"),
            ("clientCert", "x"),
            ("clientKey", "secret-key"),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(!error.contains("secret-key"), "{error}");
        let missing = ComponentMetadata::new(
            Component::new("broker", "pubsub.mqtt3"),
            BTreeMap::from([("consumerID".to_owned(), "app".to_owned())]),
        );
        let error = Settings::read(&missing).err().unwrap().to_string();
        assert!(
            error.contains("(url)") && error.contains("required"),
            "{error}"
        );
    }

    #[test]
    fn what_dapr_accepts_loads() {
        // Exactly once is served as at least once; certificates without TLS are unused.
        assert_eq!(settings(&[("qos", "2")]).unwrap().qos, QoS::AtLeastOnce);
        assert_eq!(settings(&[("qos", "0")]).unwrap().qos, QoS::AtMostOnce);
        let plain = settings(&[("caCert", "not even PEM")]).unwrap();
        assert!(plain.tls.is_none());
    }

    #[test]
    fn defaults_are_dapr_s() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.qos, QoS::AtLeastOnce);
        assert!(!settings.retain);
        assert!(!settings.clean_session);
        assert_eq!(settings.consumer_id, "app");
    }

    #[test]
    fn topic_filters_are_checked() {
        for good in ["a", "a/b", "a/+/c", "a/#", "#", "+", "$share/g/a/+"] {
            assert!(valid_filter(good), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "a/b+"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(valid_topic("a/b"));
        assert!(!valid_topic("a/+"));
        assert!(!valid_topic(""));
    }
}
