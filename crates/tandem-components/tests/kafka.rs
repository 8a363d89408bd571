//! `pubsub.kafka` against a real Kafka-protocol broker: every test starts a private
//! `tansu` broker on a free port, so tests never share topics or groups.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tandem_components::pubsub::{Message, Outcome, PubSub};
use tandem_testkit::{KafkaServer, MotoServer};
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

/// Test settings: short sessions so a dead member's partitions move on quickly, and the
/// oldest offset so a group reads what came before it joined.
async fn kafka(brokers: &str, group: &str, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let mut values = vec![
        ("brokers", brokers),
        ("authType", "none"),
        ("consumerID", group),
        ("initialOffset", "oldest"),
        ("sessionTimeout", "3s"),
        ("heartbeatInterval", "500ms"),
    ];
    values.extend_from_slice(extra);
    build("pubsub.kafka", &values).await
}

/// Builds a `pubsub.kafka`, returning the error's text when it fails.
async fn try_build(values: &[(&str, &str)]) -> Result<Arc<dyn PubSub>, String> {
    support::try_build("pubsub.kafka", "kafka.yaml", values).await
}

#[tokio::test]
async fn every_app_gets_every_message_in_order() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    let topic = "orders";
    let publisher = kafka(&brokers, "publisher", &[]).await;
    // Before anyone subscribes: with initialOffset oldest, a new group reads it.
    publisher.publish(message(topic, "early")).await.unwrap();

    let stop = CancellationToken::new();
    let (a, mut seen_a) = Recorder::new(vec![]);
    let (b, mut seen_b) = Recorder::new(vec![]);
    let (c, mut seen_c) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for (group, recorder, extra) in [
        ("app-a", a, &[][..]),
        ("app-b", b, &[][..]),
        ("app-c", c, &[("initialOffset", "newest")][..]),
    ] {
        let pubsub = kafka(&brokers, group, extra).await;
        tasks.push(
            pubsub
                .subscribe(subscription(topic), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    // Subscribed means joined: app C starts at the end of the log as it stands now.
    let expected: Vec<String> = (0..20).map(|n| format!("m{n:02}")).collect();
    for data in &expected {
        publisher.publish(message(topic, data)).await.unwrap();
    }
    let mut with_early = expected.clone();
    with_early.insert(0, "early".to_owned());
    let without_probes = |all: Vec<String>| -> Vec<String> {
        all.into_iter()
            .filter(|data| !data.starts_with("probe"))
            .collect()
    };
    assert_eq!(
        without_probes(drain(&mut seen_a, Duration::from_secs(3)).await),
        with_early
    );
    assert_eq!(
        without_probes(drain(&mut seen_b, Duration::from_millis(500)).await),
        with_early
    );
    assert_eq!(
        without_probes(drain(&mut seen_c, Duration::from_millis(500)).await),
        expected,
        "initialOffset newest skips what came before the group"
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Creates `topic` with `partitions` partitions.
async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let kafka = krafka::Kafka::builder(brokers).connect().await.unwrap();
    let topic = krafka::admin::NewTopic::new(topic, partitions, 1).unwrap();
    for (name, result) in kafka
        .admin()
        .create_topics([topic], krafka::admin::CreateTopicsOptions::default())
        .await
        .unwrap()
    {
        result.unwrap_or_else(|error| panic!("creating {name}: {error}"));
    }
}

#[tokio::test]
async fn replicas_of_one_app_share_the_partitions() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    let topic = "shared";
    create_topic(&brokers, topic, 4).await;
    let stop = CancellationToken::new();
    let (first, mut seen_first) = Recorder::new(vec![]);
    let (second, mut seen_second) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for recorder in [first, second] {
        let pubsub = kafka(&brokers, "app-a", &[]).await;
        tasks.push(
            pubsub
                .subscribe(subscription(topic), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await; // both joined, partitions split
    let publisher = kafka(&brokers, "publisher", &[]).await;
    let expected: HashSet<String> = (0..40).map(|n| format!("m{n:02}")).collect();
    for data in &expected {
        let mut message = message(topic, data);
        message.metadata.insert("partitionKey".into(), data.clone());
        publisher.publish(message).await.unwrap();
    }
    let from_first = drain(&mut seen_first, Duration::from_secs(3)).await;
    let from_second = drain(&mut seen_second, Duration::from_millis(500)).await;
    assert!(
        !from_first.is_empty() && !from_second.is_empty(),
        "both replicas took a share ({} and {})",
        from_first.len(),
        from_second.len()
    );
    let all: HashSet<String> = from_first.iter().chain(&from_second).cloned().collect();
    assert_eq!(all, expected);
    assert_eq!(from_first.len() + from_second.len(), 40, "each once");
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_comes_back_in_order_and_a_drop_does_not() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    let pubsub = kafka(&brokers, "app", &[("consumeRetryInterval", "50")]).await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry, Outcome::Retry, Outcome::Drop]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("retries", "first")).await.unwrap();
    pubsub.publish(message("retries", "second")).await.unwrap();
    // The partition's next message waits until the first is settled (dropped here).
    assert_eq!(
        drain(&mut seen, Duration::from_secs(2)).await,
        ["first", "first", "first", "second"]
    );
    stop.cancel();
    task.await.unwrap();

    // What was dropped or done is committed: the group starts after it next time.
    let again = kafka(&brokers, "app", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = again
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    again.publish(message("retries", "third")).await.unwrap();
    assert_eq!(drain(&mut seen, Duration::from_secs(3)).await, ["third"]);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unfinished_delivery_goes_to_the_next_member() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    {
        let brokers = brokers.clone();
        crash_mid_delivery(
            move || Box::pin(async move { kafka(&brokers, "worker", &[]).await }),
            "jobs",
        );
    }
    let pubsub = kafka(&brokers, "worker", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("jobs"), recorder, stop.clone())
        .await
        .unwrap();
    // Once the dead member's session (3 s) has timed out, its partition and the
    // uncommitted message come here.
    assert_eq!(
        next(&mut seen, Duration::from_secs(15)).await.as_deref(),
        Some("unfinished")
    );
    stop.cancel();
    task.await.unwrap();
}

/// Records deliveries with their metadata.
struct WithMetadata(tokio::sync::mpsc::UnboundedSender<Message>);

#[async_trait::async_trait]
impl tandem_components::pubsub::Deliver for WithMetadata {
    async fn deliver(&self, message: Message) -> Outcome {
        let _ = self.0.send(message);
        Outcome::Done
    }
}

#[tokio::test]
async fn metadata_travels_as_headers_and_the_key() {
    let server = KafkaServer::start();
    let brokers = server.brokers();
    let pubsub = kafka(
        &brokers,
        "app",
        &[
            ("excludeHeaderMetaRegex", "^secret"),
            ("escapeHeaders", "true"),
        ],
    )
    .await;
    let (sender, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(
            subscription("traced"),
            Arc::new(WithMetadata(sender)),
            stop.clone(),
        )
        .await
        .unwrap();
    let mut sent = message("traced", "{}");
    for (name, value) in [
        ("partitionKey", "order-7"),
        ("traceparent", "00-abc-01"),
        ("note", "a b/c"),
        ("secretToken", "not for headers"),
    ] {
        sent.metadata.insert(name.into(), value.into());
    }
    pubsub.publish(sent).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    let value = |name: &str| got.metadata.get(name).map(String::as_str);
    assert_eq!(value("__key"), Some("order-7"));
    assert_eq!(value("__topic"), Some("traced"));
    assert!(value("__partition").is_some_and(|p| p.parse::<i32>().is_ok()));
    assert_eq!(value("__offset"), Some("0"));
    assert!(value("__timestamp").is_some_and(|t| t.parse::<i64>().unwrap() > 0));
    assert_eq!(value("traceparent"), Some("00-abc-01"));
    assert_eq!(
        value("note"),
        Some("a+b%2Fc"),
        "escapeHeaders: as Go's QueryEscape"
    );
    assert_eq!(value("secretToken"), None, "excluded from the headers");
    stop.cancel();
    task.await.unwrap();

    let error = pubsub
        .publish({
            let mut bad = message("traced", "x");
            bad.metadata.insert("partitionNumber".into(), "-1".into());
            bad
        })
        .await
        .expect_err("a negative partition is refused")
        .to_string();
    assert!(error.contains("partitionNumber"), "{error}");
}

#[tokio::test]
async fn no_acknowledged_publish_is_lost_across_a_broker_restart() {
    let moto = MotoServer::start();
    let mut server = KafkaServer::start_durable(&moto);
    let brokers = server.brokers();
    let topic = "payments";
    let pubsub = kafka(&brokers, "ledger", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription(topic), recorder, stop.clone())
        .await
        .unwrap();

    // Publishes one message after another until told to stop, keeping the ones that
    // returned Ok.
    let publishing = Arc::new(AtomicBool::new(true));
    let load = publish_until_stopped(pubsub.clone(), topic, publishing.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.stop();
    let started = Instant::now();
    let error = pubsub
        .publish(message(topic, "while down"))
        .await
        .expect_err("publishing to a stopped broker fails loudly")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "within a bounded time ({:?})",
        started.elapsed()
    );
    assert!(error.contains(&brokers), "{error}");
    server.start_again();

    // Publishing resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pubsub.publish(message(topic, "after")).await.is_err() {
        assert!(Instant::now() < deadline, "publishing resumes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publishing.store(false, Ordering::Relaxed);
    let (acknowledged, failed) = load.await.unwrap();
    assert!(failed > 0, "the load saw the outage");

    // Every acknowledged publish arrives (some may come twice: at least once).
    let mut expected: HashSet<String> = acknowledged.into_iter().collect();
    expected.insert("after".to_owned());
    expect_every(&mut seen, expected, Duration::from_secs(30)).await;
    stop.cancel();
    task.await.unwrap();
}

/// The broker in the tests keeps SCRAM users only in memory and creates them only for
/// a signed-in client, so no user can sign in: these tests show the component signs in
/// with SCRAM as the user named, and that an anonymous client is refused.
#[tokio::test]
async fn sasl_scram_signs_in_by_name_and_never_echoes_the_password() {
    let server = KafkaServer::start_with_args(&["--authentication"]);
    let brokers = server.brokers();
    for mechanism in ["SHA-256", "SHA-512"] {
        let error = try_build(&[
            ("brokers", &brokers),
            ("authType", "password"),
            ("saslUsername", "alice"),
            ("saslPassword", "wrong-pass"),
            ("saslMechanism", mechanism),
            ("disableTls", "true"),
        ])
        .await
        .err()
        .expect("an unknown user is refused");
        assert!(error.starts_with("components/kafka.yaml"), "{error}");
        assert!(error.contains("brokers"), "{error}");
        assert!(
            error.contains("SCRAM") && error.contains("unknown-user"),
            "{error}"
        );
        assert!(!error.contains("wrong-pass"), "{error}");
    }
    let error = try_build(&[("brokers", &brokers), ("authType", "none")])
        .await
        .err()
        .expect("an anonymous client is refused");
    assert!(error.contains("brokers"), "{error}");
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate in `dir`.
fn certificates(dir: &std::path::Path) {
    certificate(dir, "ca", "/CN=tandem test CA", None, "");
    certificate(
        dir,
        "server",
        "/CN=127.0.0.1",
        Some("ca"),
        "subjectAltName=IP:127.0.0.1\n",
    );
    certificate(
        dir,
        "client",
        "/CN=app",
        Some("ca"),
        "extendedKeyUsage=clientAuth\n",
    );
}

/// A TLS front on `listener` for the broker on `broker_port`, requiring a client
/// certificate signed by the CA in `dir`.
fn tls_front(dir: &std::path::Path, listener: std::net::TcpListener, broker_port: u16) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = vec![CertificateDer::from_pem_file(dir.join("server.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut broker) =
                    tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
}

#[tokio::test]
async fn mutual_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    certificates(dir);
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_port = front.local_addr().unwrap().port();
    let server = KafkaServer::start_advertising(front_port);
    tls_front(dir, front, server.port());
    let brokers = format!("127.0.0.1:{front_port}");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (ca, cert, key) = (read("ca.crt"), read("client.crt"), read("client.key"));
    let tls = [
        ("authType", "mtls"),
        ("caCert", ca.as_str()),
        ("clientCert", cert.as_str()),
        ("clientKey", key.as_str()),
    ];
    let pubsub = kafka(&brokers, "app", &tls).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("secure"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("secure", "hello")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(10)).await.as_deref(),
        Some("hello")
    );
    stop.cancel();
    task.await.unwrap();

    // Without the CA the broker's certificate is not trusted; without a client
    // certificate the broker refuses the client; TLS off is not understood.
    for values in [
        vec![("brokers", brokers.as_str()), ("authType", "mtls")],
        vec![
            ("brokers", brokers.as_str()),
            ("authType", "certificate"),
            ("caCert", ca.as_str()),
        ],
        vec![("brokers", brokers.as_str()), ("authType", "none")],
    ] {
        let error = try_build(&values).await.err().expect("refused");
        assert!(error.contains("brokers"), "{error}");
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }
}

#[tokio::test]
async fn unusable_settings_and_brokers_stop_start_up_by_field() {
    let port = tandem_testkit::free_port();
    let nobody = format!("127.0.0.1:{port}");
    let error = try_build(&[
        ("brokers", &nobody),
        ("authType", "password"),
        ("saslUsername", "u"),
        ("saslPassword", "hunter2"),
        ("disableTls", "true"),
    ])
    .await
    .err()
    .expect("no broker there");
    assert!(error.contains("brokers"), "{error}");
    assert!(error.contains(&nobody), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    for (values, field) in [
        (vec![("authType", "none")], "brokers"),
        (vec![("brokers", "127.0.0.1:1")], "authType"),
        (
            vec![("brokers", "127.0.0.1:1"), ("authType", "kerberos")],
            "authType",
        ),
        (
            vec![
                ("brokers", "127.0.0.1:1"),
                ("authType", "password"),
                ("saslUsername", "u"),
            ],
            "saslPassword",
        ),
        (
            vec![
                ("brokers", "127.0.0.1:1"),
                ("authType", "none"),
                ("initialOffset", "first"),
            ],
            "initialOffset",
        ),
        (
            vec![
                ("brokers", "127.0.0.1:1"),
                ("authType", "mtls"),
                ("caCert", "/etc/ca.pem"),
            ],
            "caCert",
        ),
        (
            vec![
                ("brokers", "127.0.0.1:1"),
                ("authType", "none"),
                ("compression", "brotli"),
            ],
            "compression",
        ),
    ] {
        let error = try_build(&values).await.err().expect("refused");
        assert!(error.contains(field), "{field}: {error}");
    }
}
