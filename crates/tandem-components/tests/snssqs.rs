//! `pubsub.aws.snssqs` against an AWS emulator: every test starts its own `moto_server`
//! (SNS, SQS and STS on a free loopback port, any credentials), so tests never share
//! topics or queues; the restart test stops it and starts it again, empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_components::pubsub::{Deliver, Message, Outcome, PubSub};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::MotoServer;
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

/// A `pubsub.aws.snssqs` on `endpoint` with a one-second long poll, plus `extra`.
async fn snssqs(endpoint: &str, consumer: &str, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let mut values = vec![
        ("endpoint", endpoint),
        ("region", "us-east-1"),
        ("accessKey", "test-access"),
        ("secretKey", "test-secret"),
        ("consumerID", consumer),
        ("messageWaitTimeSeconds", "1"),
    ];
    values.extend_from_slice(extra);
    build("pubsub.aws.snssqs", &values).await
}

/// Everything `seen` gets until `count` arrived or nothing came for `quiet`.
async fn collect(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
    count: usize,
    quiet: Duration,
) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match next(seen, quiet).await {
            Some(data) => got.push(data),
            None => break,
        }
    }
    got
}

#[tokio::test]
async fn delivers_to_every_app_once_and_shares_between_replicas() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    let topic = "orders.v1";
    let stop = CancellationToken::new();

    // Two replicas of app A share its queue; app B has its own.
    let (a1, mut seen_a1) = Recorder::new(vec![]);
    let (a2, mut seen_a2) = Recorder::new(vec![]);
    let (b, mut seen_b) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for (consumer, recorder) in [("app-a", a1), ("app-a", a2), ("app-b", b)] {
        let pubsub = snssqs(&endpoint, consumer, &[]).await;
        tasks.push(
            pubsub
                .subscribe(subscription(topic), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    let publisher = snssqs(&endpoint, "publisher", &[]).await;
    for n in 0..20 {
        publisher
            .publish(message(topic, &format!("m{n}")))
            .await
            .unwrap();
    }
    let mut expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    expected.sort();
    let mut for_b = collect(&mut seen_b, 20, Duration::from_secs(5)).await;
    for_b.sort();
    assert_eq!(for_b, expected, "app B gets every message");
    let mut for_a = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while for_a.len() < 20 && Instant::now() < deadline {
        for seen in [&mut seen_a1, &mut seen_a2] {
            for_a.extend(collect(seen, 20, Duration::from_millis(200)).await);
        }
    }
    // Longer than a visibility timeout would matter: nothing comes twice.
    for seen in [&mut seen_a1, &mut seen_a2] {
        for_a.extend(collect(seen, 20, Duration::from_millis(1500)).await);
    }
    for_a.sort();
    assert_eq!(
        for_a, expected,
        "app A's replicas share the messages, once each"
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Records each delivery's topic and data.
struct Topics(tokio::sync::mpsc::UnboundedSender<(String, String)>);

#[async_trait::async_trait]
impl Deliver for Topics {
    async fn deliver(&self, message: Message) -> Outcome {
        let data = String::from_utf8(message.data.to_vec()).unwrap();
        let _ = self.0.send((message.topic, data));
        Outcome::Done
    }
}

#[tokio::test]
async fn one_queue_serves_every_topic_of_an_app_and_envelopes_go_to_their_topic() {
    let server = MotoServer::start();
    let pubsub = snssqs(&server.endpoint(), "app", &[]).await;
    let (sender, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let deliver = Arc::new(Topics(sender));
    let stop = CancellationToken::new();
    // Dirty names: the SNS topics are `ordersv1` and `payments`; the subscriptions see
    // the names they asked for.
    let mut tasks = Vec::new();
    for topic in ["orders.v1", "pay/ments"] {
        tasks.push(
            pubsub
                .subscribe(subscription(topic), deliver.clone(), stop.clone())
                .await
                .unwrap(),
        );
    }
    pubsub.publish(message("orders.v1", "o1")).await.unwrap();
    pubsub.publish(message("pay/ments", "p1")).await.unwrap();
    pubsub.publish(message("orders.v1", "o2")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("three deliveries")
            .unwrap();
        got.push(next);
    }
    got.sort();
    let expected = [
        ("orders.v1", "o1"),
        ("orders.v1", "o2"),
        ("pay/ments", "p1"),
    ]
    .map(|(topic, data)| (topic.to_owned(), data.to_owned()));
    assert_eq!(got, expected);
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_comes_back_after_the_visibility_timeout_and_a_drop_does_not() {
    let server = MotoServer::start();
    let pubsub = snssqs(
        &server.endpoint(),
        "app",
        &[("messageVisibilityTimeout", "1")],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry, Outcome::Drop]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("retries", "again")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("again")
    );
    let retried = Instant::now();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("again"),
        "a retried message comes back"
    );
    assert!(
        retried.elapsed() >= Duration::from_millis(700),
        "not before its visibility timeout ({:?})",
        retried.elapsed()
    );
    // Dropped: deleted, so not even a visibility timeout later.
    assert_eq!(next(&mut seen, Duration::from_secs(3)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_message_received_too_often_goes_to_the_dead_letter_queue() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    let pubsub = snssqs(
        &endpoint,
        "app",
        &[
            ("messageVisibilityTimeout", "1"),
            ("messageReceiveLimit", "2"),
            ("sqsDeadLettersQueueName", "app-dead"),
        ],
    )
    .await;
    let refusals = vec![Outcome::Retry; 10];
    let (recorder, mut seen) = Recorder::new(refusals);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("refused"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("refused", "poison")).await.unwrap();
    let got = collect(&mut seen, 5, Duration::from_secs(4)).await;
    assert_eq!(
        got,
        vec!["poison", "poison"],
        "delivered messageReceiveLimit times"
    );
    stop.cancel();
    task.await.unwrap();

    // The dead-letter queue holds SNS's envelope: a consumer of that queue gets it.
    let dead = snssqs(&endpoint, "app-dead", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = dead
        .subscribe(subscription("refused"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("poison"),
        "the refused message is in the dead-letter queue"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn without_a_dead_letter_queue_the_retry_limit_deletes() {
    let server = MotoServer::start();
    let pubsub = snssqs(
        &server.endpoint(),
        "app",
        &[
            ("messageVisibilityTimeout", "1"),
            ("messageRetryLimit", "3"),
        ],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry; 10]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("limited"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("limited", "x")).await.unwrap();
    // Received a third time (the limit), it is deleted without delivery, as in Dapr.
    let got = collect(&mut seen, 5, Duration::from_secs(4)).await;
    assert_eq!(got, vec!["x", "x"]);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unfinished_delivery_goes_to_the_next_subscriber() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    let settings = [("messageVisibilityTimeout", "1")];
    {
        let endpoint = endpoint.clone();
        crash_mid_delivery(
            move || Box::pin(async move { snssqs(&endpoint, "app", &settings).await }),
            "jobs",
        );
    }
    let pubsub = snssqs(&endpoint, "app", &settings).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("jobs"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(10)).await.as_deref(),
        Some("unfinished")
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn fifo_keeps_the_order_with_single_concurrency() {
    let server = MotoServer::start();
    let pubsub = snssqs(
        &server.endpoint(),
        "app",
        &[("fifo", "true"), ("concurrencyMode", "single")],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("ordered"), recorder, stop.clone())
        .await
        .unwrap();
    let sent: Vec<String> = (0..8).map(|n| format!("m{n}")).collect();
    for data in &sent {
        pubsub.publish(message("ordered", data)).await.unwrap();
    }
    assert_eq!(collect(&mut seen, 8, Duration::from_secs(5)).await, sent);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn without_entity_management_only_existing_entities_are_used() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    // Someone (here: a managing component) created topic, queue and subscription.
    let managing = snssqs(&endpoint, "app", &[]).await;
    let stop = CancellationToken::new();
    let (recorder, _) = Recorder::new(vec![]);
    managing
        .subscribe(subscription("existing"), recorder, stop.clone())
        .await
        .unwrap();
    stop.cancel();

    let pubsub = snssqs(&endpoint, "app", &[("disableEntityManagement", "true")]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("existing"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("existing", "here")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("here")
    );
    let error = pubsub
        .publish(message("missing", "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing"), "{error}");
    let error = pubsub
        .subscribe(
            subscription("missing"),
            Recorder::new(vec![]).0,
            stop.clone(),
        )
        .await
        .expect_err("no topic to subscribe to")
        .to_string();
    assert!(error.contains("missing"), "{error}");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn publishing_and_delivery_resume_after_the_emulator_restarts_empty() {
    let mut server = MotoServer::start();
    let endpoint = server.endpoint();
    let settings = [("messageVisibilityTimeout", "2")];
    // App "app" publishes and subscribes; app "watcher" only subscribes, so only its
    // own receive loop can set its queue and subscription up again.
    let app = snssqs(&endpoint, "app", &settings).await;
    let watcher = snssqs(&endpoint, "watcher", &settings).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let (watching, mut watched) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let tasks = [
        app.subscribe(subscription("restart"), recorder, stop.clone())
            .await
            .unwrap(),
        watcher
            .subscribe(subscription("restart"), watching, stop.clone())
            .await
            .unwrap(),
    ];
    app.publish(message("restart", "before")).await.unwrap();
    for seen in [&mut seen, &mut watched] {
        assert_eq!(
            next(seen, Duration::from_secs(5)).await.as_deref(),
            Some("before")
        );
    }

    server.stop();
    let failed = app.publish(message("restart", "while down")).await;
    assert!(
        failed.is_err(),
        "publishing without the endpoint fails loudly"
    );
    // Long enough for the receive loops to fail and back off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again(); // empty: no topic, queue or subscription

    // The publisher sets its own subscription up again before its first publish
    // succeeds: every publish that succeeded reaches it.
    let mut published = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while published.is_empty() {
        assert!(Instant::now() < deadline, "publishing resumes by itself");
        if app.publish(message("restart", "after-0")).await.is_ok() {
            published.push("after-0".to_owned());
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for n in 1..5 {
        let data = format!("after-{n}");
        app.publish(message("restart", &data)).await.unwrap();
        published.push(data);
    }
    let mut got = collect(&mut seen, published.len(), Duration::from_secs(15)).await;
    got.sort();
    assert_eq!(got, published);

    // The watcher's loop subscribes its queue again by itself; what is published from
    // then on reaches it (before that, SNS had no queue of its to send to).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "the watcher receives again");
        n += 1;
        app.publish(message("restart", &format!("probe-{n}")))
            .await
            .unwrap();
        if next(&mut watched, Duration::from_millis(500))
            .await
            .is_some()
        {
            break;
        }
    }
    app.publish(message("restart", "last")).await.unwrap();
    loop {
        match next(&mut watched, Duration::from_secs(5)).await.as_deref() {
            Some("last") => break,
            Some(probe) if probe.starts_with("probe-") || probe.starts_with("after-") => {}
            other => panic!("expected 'last', got {other:?}"),
        }
    }
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_stops_start_up_without_showing_the_secret() {
    let port = tandem_testkit::free_port();
    let component = Component {
        file: Some("components/aws.yaml".into()),
        ..Component::new("orders", "pubsub.aws.snssqs")
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let values = [
        ("endpoint", endpoint.as_str()),
        ("region", "us-east-1"),
        ("accessKey", "AKIDTEST"),
        ("secretKey", "hunter2"),
        ("sessionToken", "token-hunter3"),
        ("consumerID", "app"),
    ];
    let error = tandem_components::pubsub::registry()
        .build(&ComponentMetadata::new(
            component,
            values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
        .await
        .err()
        .expect("no endpoint there")
        .to_string();
    assert!(error.starts_with("components/aws.yaml"), "{error}");
    assert!(error.contains("endpoint"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(
        !error.contains("hunter2") && !error.contains("hunter3"),
        "{error}"
    );
}
