//! `pubsub.jetstream` against a real `nats-server -js`: every test starts a private
//! server on a free port (it starts in milliseconds), so tests never share streams.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use tandem_components::pubsub::{Outcome, PubSub};
use tandem_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

async fn jetstream(url: &str, consumer: &str, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let mut values = vec![("natsURL", url), ("consumerID", consumer)];
    values.extend_from_slice(extra);
    build("pubsub.jetstream", &values).await
}

/// Builds a `pubsub.jetstream`, returning the error's text when it fails.
async fn try_build(values: &[(&str, &str)]) -> Result<Arc<dyn PubSub>, String> {
    support::try_build("pubsub.jetstream", "nats.yaml", values).await
}

#[tokio::test]
async fn every_app_gets_every_message_and_replicas_share_them() {
    let server = NatsServer::start();
    let url = server.url();
    let topic = "orders.eu";
    let publisher = jetstream(&url, "publisher", &[]).await;
    // Before anyone subscribes: the stream is created for the topic and keeps it.
    publisher.publish(message(topic, "early")).await.unwrap();

    let stop = CancellationToken::new();
    let (a1, mut seen_a1) = Recorder::new(vec![]);
    let (a2, mut seen_a2) = Recorder::new(vec![]);
    let (b, mut seen_b) = Recorder::new(vec![]);
    let (c, mut seen_c) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for (consumer, recorder, extra) in [
        ("app-a", a1, &[][..]),
        ("app-a", a2, &[][..]),
        ("app-b", b, &[][..]),
        ("app-c", c, &[("deliverPolicy", "new")][..]),
    ] {
        let pubsub = jetstream(&url, consumer, extra).await;
        tasks.push(
            pubsub
                .subscribe(subscription(topic), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    let expected: Vec<String> = (0..20).map(|n| format!("m{n:02}")).collect();
    for data in &expected {
        publisher.publish(message(topic, data)).await.unwrap();
    }
    let mut with_early = expected.clone();
    with_early.insert(0, "early".to_owned());

    let for_b = drain(&mut seen_b, Duration::from_secs(2)).await;
    assert_eq!(for_b, with_early, "app B gets every message, in order");
    let mut for_a = drain(&mut seen_a1, Duration::from_millis(500)).await;
    let from_a1 = for_a.len();
    for_a.extend(drain(&mut seen_a2, Duration::from_millis(500)).await);
    for_a.sort();
    let mut sorted = with_early.clone();
    sorted.sort();
    assert_eq!(
        for_a, sorted,
        "app A's replicas share the messages, once each"
    );
    assert!(
        from_a1 > 0 && from_a1 < with_early.len(),
        "both replicas of app A took a share ({from_a1} of {})",
        with_early.len()
    );
    let for_c = drain(&mut seen_c, Duration::from_millis(500)).await;
    assert_eq!(
        for_c, expected,
        "deliverPolicy 'new' skips what came before the consumer"
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_comes_back_a_drop_does_not_and_max_deliver_is_honoured() {
    let server = NatsServer::start();
    let url = server.url();
    let stop = CancellationToken::new();

    let pubsub = jetstream(&url, "app", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry, Outcome::Drop]);
    let task = pubsub
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("retries", "again")).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            next(&mut seen, Duration::from_secs(5)).await.as_deref(),
            Some("again")
        );
    }
    assert_eq!(
        next(&mut seen, Duration::from_millis(1500)).await,
        None,
        "dropped: not delivered again"
    );

    // An app that always asks for a retry sees the message maxDeliver times.
    let limited = jetstream(&url, "app", &[("maxDeliver", "3"), ("ackWait", "200ms")]).await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry; 10]);
    let limited_task = limited
        .subscribe(subscription("poison"), recorder, stop.clone())
        .await
        .unwrap();
    limited.publish(message("poison", "bad")).await.unwrap();
    let deliveries = drain(&mut seen, Duration::from_millis(1500)).await;
    assert_eq!(deliveries, vec!["bad"; 3]);

    stop.cancel();
    task.await.unwrap();
    limited_task.await.unwrap();
}

#[tokio::test]
async fn an_unfinished_delivery_goes_to_the_next_subscriber() {
    let server = NatsServer::start();
    let url = server.url();
    let short_ack_wait = [("ackWait", "1s")];
    {
        let url = url.clone();
        crash_mid_delivery(
            move || Box::pin(async move { jetstream(&url, "worker", &short_ack_wait).await }),
            "jobs",
        );
    }
    let pubsub = jetstream(&url, "worker", &short_ack_wait).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("jobs"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("unfinished")
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn no_acknowledged_publish_is_lost_across_a_server_restart() {
    let mut server = NatsServer::start();
    let url = server.url();
    let topic = "payments";
    let pubsub = jetstream(&url, "ledger", &[("concurrency", "parallel")]).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.stop();
    let started = Instant::now();
    let error = pubsub
        .publish(message(topic, "while down"))
        .await
        .expect_err("publishing to a stopped server fails loudly")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "within a bounded time"
    );
    assert!(error.contains(&url), "{error}");
    server.start_again();

    // Publishing resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
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
    expect_every(&mut seen, expected, Duration::from_secs(15)).await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn tokens_and_passwords_are_checked_and_never_echoed() {
    let with_token = NatsServer::start_with_args(&["--auth", "s3cret-token"]);
    let url = with_token.url();
    let pubsub = jetstream(&url, "app", &[("token", "s3cret-token")]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("secured"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("secured", "hello")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("hello")
    );
    stop.cancel();
    task.await.unwrap();
    let error = try_build(&[("natsURL", &url), ("token", "wrong-token")])
        .await
        .err()
        .expect("a wrong token is refused");
    assert!(error.starts_with("components/nats.yaml"), "{error}");
    assert!(error.contains("natsURL"), "{error}");
    assert!(error.to_lowercase().contains("author"), "{error}");
    assert!(!error.contains("wrong-token"), "{error}");

    let with_password = NatsServer::start_with_args(&["--user", "u", "--pass", "hunter2"]);
    let port = with_password.port();
    let good = format!("nats://u:hunter2@127.0.0.1:{port}");
    let pubsub = jetstream(&good, "app", &[]).await;
    pubsub.publish(message("secured", "hi")).await.unwrap();
    let bad = format!("nats://u:wrong-pass@127.0.0.1:{port}");
    let error = try_build(&[("natsURL", &bad)])
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(error.contains("natsURL"), "{error}");
    assert!(
        error.contains(&format!("nats://127.0.0.1:{port}")),
        "{error}"
    );
    assert!(!error.contains("wrong-pass"), "{error}");
}

#[tokio::test]
async fn unusable_settings_and_servers_stop_start_up_by_field() {
    let port = tandem_testkit::free_port();
    let error = try_build(&[("natsURL", &format!("nats://u:hunter2@127.0.0.1:{port}"))])
        .await
        .err()
        .expect("no server there");
    assert!(error.contains("natsURL"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let error = try_build(&[
        ("natsURL", "nats://127.0.0.1:1"),
        ("deliverPolicy", "first"),
    ])
    .await
    .err()
    .unwrap();
    assert!(error.contains("deliverPolicy"), "{error}");
    let error = try_build(&[]).await.err().unwrap();
    assert!(error.contains("natsURL"), "{error}");
}

#[tokio::test]
async fn existing_streams_are_used_as_dapr_expects() {
    let server = NatsServer::start();
    let url = server.url();
    // Set up by hand, as Dapr's documentation has users do.
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SHOP".into(),
            subjects: vec!["shop.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    let stop = CancellationToken::new();
    // Found by subject, without streamName; and named, with a durable name of its own.
    let (found, mut seen_found) = Recorder::new(vec![]);
    let by_subject = jetstream(&url, "app", &[]).await;
    let task_found = by_subject
        .subscribe(subscription("shop.orders"), found, stop.clone())
        .await
        .unwrap();
    let (named, mut seen_named) = Recorder::new(vec![]);
    let by_name = jetstream(
        &url,
        "app",
        &[("streamName", "SHOP"), ("durableName", "dapr-durable")],
    )
    .await;
    let task_named = by_name
        .subscribe(subscription("shop.orders"), named, stop.clone())
        .await
        .unwrap();
    by_subject
        .publish(message("shop.orders", "o1"))
        .await
        .unwrap();
    for seen in [&mut seen_found, &mut seen_named] {
        assert_eq!(
            next(seen, Duration::from_secs(5)).await.as_deref(),
            Some("o1")
        );
    }
    let mut streams: Vec<String> = context.stream_names().map(Result::unwrap).collect().await;
    streams.sort();
    assert_eq!(streams, ["SHOP"], "no stream was created beside SHOP");
    let stream = context.get_stream("SHOP").await.unwrap();
    stream.consumer_info("dapr-durable").await.unwrap();
    stream.consumer_info("app-shop_orders").await.unwrap();

    // A named stream that does not take the topic is left alone, and the error says so.
    let error = by_name
        .subscribe(
            subscription("billing"),
            Recorder::new(vec![]).0,
            stop.clone(),
        )
        .await
        .expect_err("SHOP does not take 'billing'")
        .to_string();
    assert!(error.contains("SHOP"), "{error}");

    // A named stream that does not exist yet is created for the topic.
    let (created, mut seen_created) = Recorder::new(vec![]);
    let to_create = jetstream(&url, "app", &[("streamName", "RETURNS")]).await;
    let task_created = to_create
        .subscribe(subscription("returns"), created, stop.clone())
        .await
        .unwrap();
    to_create.publish(message("returns", "r1")).await.unwrap();
    assert_eq!(
        next(&mut seen_created, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("r1")
    );
    let mut returns = context.get_stream("RETURNS").await.unwrap();
    assert_eq!(returns.info().await.unwrap().config.subjects, ["returns"]);
    stop.cancel();
    task_found.await.unwrap();
    task_named.await.unwrap();
    task_created.await.unwrap();
    assert_eq!(
        next(&mut seen_created, Duration::from_millis(100)).await,
        None
    );
}

#[tokio::test]
async fn a_deleted_stream_is_created_again_by_the_next_publish() {
    let server = NatsServer::start();
    let url = server.url();
    let pubsub = jetstream(&url, "app", &[]).await;
    pubsub.publish(message("audit.log", "one")).await.unwrap();
    let context = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
    context.delete_stream("audit_log").await.unwrap();
    pubsub.publish(message("audit.log", "two")).await.unwrap();
    let mut stream = context.get_stream("audit_log").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

/// Takes `time` over each delivery, then says it is done.
struct Slow {
    seen: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
    time: Duration,
}

#[async_trait::async_trait]
impl tandem_components::pubsub::Deliver for Slow {
    async fn deliver(&self, message: tandem_components::pubsub::Message) -> Outcome {
        let _ = self.seen.send(message.data);
        tokio::time::sleep(self.time).await;
        Outcome::Done
    }
}

#[tokio::test]
async fn a_delivery_slower_than_ack_wait_is_not_given_to_another_replica() {
    let server = NatsServer::start();
    let url = server.url();
    let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let replica = jetstream(&url, "slow-app", &[("ackWait", "600ms")]).await;
        let slow = Arc::new(Slow {
            seen: seen.clone(),
            time: Duration::from_millis(2000),
        });
        tasks.push(
            replica
                .subscribe(subscription("reports"), slow, stop.clone())
                .await
                .unwrap(),
        );
        replicas.push(replica);
    }
    replicas[0]
        .publish(message("reports", "big"))
        .await
        .unwrap();
    let deliveries = drain(&mut received, Duration::from_millis(2500)).await;
    assert_eq!(deliveries, ["big"], "delivered once, though it took 2 s");
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

/// base64url without padding, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A NATS JWT with `claims`, issued and signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = base64url(claims.to_string().as_bytes());
    let signature = issuer
        .sign(format!("{header}.{payload}").as_bytes())
        .unwrap();
    format!("{header}.{payload}.{}", base64url(&signature))
}

#[tokio::test]
async fn a_user_jwt_and_seed_key_sign_in() {
    // Operator mode: the operator vouches for the account, the account for the user.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "app-account",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "app-user",
        serde_json::json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}),
    );
    // JetStream needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("operator.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator_jwt}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n",
            system = system.public_key(),
            account = account.public_key(),
        ),
    )
    .unwrap();
    let server = NatsServer::start_with_args(&["-c", config.to_str().unwrap()]);
    let url = server.url();
    let seed = user.seed().unwrap();

    let pubsub = jetstream(&url, "app", &[("jwt", &user_jwt), ("seedKey", &seed)]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("signed"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("signed", "ok")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("ok")
    );
    stop.cancel();
    task.await.unwrap();

    // Another user's seed cannot sign for this JWT.
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let error = try_build(&[
        ("natsURL", &url),
        ("jwt", &user_jwt),
        ("seedKey", &stranger),
    ])
    .await
    .err()
    .expect("a seed that does not match the JWT is refused");
    assert!(error.contains("natsURL"), "{error}");
    assert!(!error.contains(&stranger), "{error}");
}
