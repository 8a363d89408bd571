//! Pub/sub components against their real backends: a `redis-server` each test starts
//! on a free port, and SQLite files in temporary directories.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tandem_components::pubsub::{self, Deliver, Message, Outcome, PubSub};
use tandem_spec::{Component, ComponentMetadata};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use tandem_testkit::RedisServer;

mod support;
use support::*;

async fn redis_pubsub(redis: &RedisServer, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let host = redis.address();
    let mut values = vec![("redisHost", host.as_str()), ("consumerID", "group-a")];
    values.extend_from_slice(extra);
    build("pubsub.redis", &values).await
}

#[tokio::test]
async fn redis_delivers_what_was_published_before_and_after_subscribing() {
    let redis = RedisServer::start();
    let broker = redis_pubsub(&redis, &[]).await;
    broker.publish(message("orders", "early")).await.unwrap();
    let (recorder, mut received) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = broker
        .subscribe(subscription("orders"), recorder, stop.clone())
        .await
        .unwrap();
    broker.publish(message("orders", "late")).await.unwrap();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("early")
    );
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("late")
    );
    // Done means acknowledged: nothing stays pending.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(redis.pending("orders", "group-a"), 0);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn redis_redelivers_a_retry_after_the_processing_timeout_and_acks_a_drop() {
    let redis = RedisServer::start();
    let broker = redis_pubsub(
        &redis,
        &[
            ("processingTimeout", "300ms"),
            ("redeliverInterval", "100ms"),
        ],
    )
    .await;
    let (recorder, mut received) = Recorder::new(vec![Outcome::Retry, Outcome::Drop]);
    let stop = CancellationToken::new();
    let task = broker
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    broker.publish(message("retries", "again")).await.unwrap();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("again")
    );
    assert_eq!(
        redis.pending("retries", "group-a"),
        1,
        "a retried message stays pending"
    );
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("again")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        redis.pending("retries", "group-a"),
        0,
        "a dropped message is acknowledged"
    );
    assert_eq!(next(&mut received, Duration::from_millis(800)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn redis_gives_a_dead_subscribers_messages_to_the_next_one() {
    let redis = RedisServer::start();
    let settings = [
        ("processingTimeout", "500ms"),
        ("redeliverInterval", "100ms"),
    ];
    let address = redis.address();
    crash_mid_delivery(
        move || {
            Box::pin(async move {
                build(
                    "pubsub.redis",
                    &[
                        ("redisHost", &address),
                        ("consumerID", "group-a"),
                        ("processingTimeout", "500ms"),
                        ("redeliverInterval", "100ms"),
                    ],
                )
                .await
            })
        },
        "jobs",
    );
    assert_eq!(redis.pending("jobs", "group-a"), 1);

    let second = redis_pubsub(&redis, &settings).await;
    let (recorder, mut received) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = second
        .subscribe(subscription("jobs"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("unfinished")
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn redis_resumes_publishing_and_delivery_after_a_restart() {
    let mut redis = RedisServer::start();
    let broker = redis_pubsub(&redis, &[]).await;
    let (recorder, mut received) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = broker
        .subscribe(subscription("restart"), recorder, stop.clone())
        .await
        .unwrap();
    broker.publish(message("restart", "before")).await.unwrap();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("before")
    );

    redis.stop();
    let failed = broker.publish(message("restart", "while down")).await;
    assert!(
        failed.is_err(),
        "publishing to a stopped Redis fails loudly"
    );
    redis.restart(); // an empty Redis: the stream and its group are gone

    let mut published = false;
    for _ in 0..50 {
        if broker.publish(message("restart", "after")).await.is_ok() {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published, "publishing resumes by itself");
    assert_eq!(
        next(&mut received, Duration::from_secs(15))
            .await
            .as_deref(),
        Some("after")
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn redis_authenticates_with_password_and_username() {
    let redis = RedisServer::start();
    redis
        .cli(&[
            "ACL", "SETUSER", "orders", "on", ">s3cret", "~*", "&*", "+@all",
        ])
        .unwrap();
    redis
        .cli(&["CONFIG", "SET", "requirepass", "adminpass"])
        .unwrap();
    let host = redis.address();
    let as_user = build(
        "pubsub.redis",
        &[
            ("redisHost", &host),
            ("consumerID", "g"),
            ("redisUsername", "orders"),
            ("redisPassword", "s3cret"),
        ],
    )
    .await;
    as_user.publish(message("auth", "ok")).await.unwrap();
    let as_default = build(
        "pubsub.redis",
        &[
            ("redisHost", &host),
            ("consumerID", "g"),
            ("redisPassword", "adminpass"),
        ],
    )
    .await;
    as_default.publish(message("auth", "ok")).await.unwrap();
}

#[tokio::test]
async fn redis_reports_an_unreachable_server_at_start() {
    let port = tandem_testkit::free_port();
    let component = Component {
        file: Some("components/pubsub.yaml".into()),
        ..Component::new("down", "pubsub.redis")
    };
    let values = [
        ("redisHost".to_owned(), format!("127.0.0.1:{port}")),
        ("consumerID".to_owned(), "x".to_owned()),
        ("dialTimeout".to_owned(), "500ms".to_owned()),
    ];
    let error = match pubsub::registry()
        .build(&ComponentMetadata::new(
            component,
            values.into_iter().collect(),
        ))
        .await
    {
        Ok(_) => panic!("an unreachable Redis is an error"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.starts_with("components/pubsub.yaml: Component 'down'"),
        "{error}"
    );
    assert!(
        error.contains(&format!("cannot connect to Redis at 127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn sqlite_is_shared_by_two_sidecars_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db").display().to_string();
    let publisher = build(
        "pubsub.sqlite",
        &[("connectionString", &path), ("consumerID", "publisher")],
    )
    .await;
    let consumer = build(
        "pubsub.sqlite",
        &[
            ("connectionString", &path),
            ("consumerID", "consumer"),
            ("pollInterval", "20ms"),
        ],
    )
    .await;
    let (recorder, mut received) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = consumer
        .subscribe(subscription("orders"), recorder, stop.clone())
        .await
        .unwrap();
    for n in 0..20 {
        publisher
            .publish(message("orders", &format!("order {n}")))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some(data) = next(&mut received, Duration::from_secs(5)).await {
        got.push(data);
        if got.len() == 20 {
            break;
        }
    }
    got.sort_by_key(|data| data[6..].parse::<u32>().unwrap());
    assert_eq!(
        got,
        (0..20).map(|n| format!("order {n}")).collect::<Vec<_>>()
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn sqlite_retries_with_backoff_and_recovers_a_dead_consumers_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db").display().to_string();
    let settings = [
        ("connectionString", path.as_str()),
        ("consumerID", "workers"),
        ("processingTimeout", "600ms"),
        ("pollInterval", "20ms"),
    ];
    let crashed_path = path.clone();
    crash_mid_delivery(
        move || {
            Box::pin(async move {
                build(
                    "pubsub.sqlite",
                    &[
                        ("connectionString", &crashed_path),
                        ("consumerID", "workers"),
                        ("processingTimeout", "600ms"),
                        ("pollInterval", "20ms"),
                    ],
                )
                .await
            })
        },
        "jobs",
    );

    let second = build("pubsub.sqlite", &settings).await;
    let (recorder, mut received) = Recorder::new(vec![Outcome::Retry]);
    let stop = CancellationToken::new();
    let task = second
        .subscribe(subscription("jobs"), recorder, stop.clone())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("unfinished")
    );
    // Retried once, then done: delivered exactly twice.
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("unfinished")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the retry waits for its backoff"
    );
    assert_eq!(next(&mut received, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();
}

/// An app that was failing: it answers RETRY to the first delivery of every message
/// and is done with every later one.
struct FailsOnce {
    seen: Mutex<std::collections::HashSet<Bytes>>,
    done: Mutex<std::collections::HashSet<Bytes>>,
    all_done: tokio::sync::Notify,
    expected: usize,
}

#[async_trait]
impl Deliver for FailsOnce {
    async fn deliver(&self, message: Message) -> Outcome {
        if self.seen.lock().await.insert(message.data.clone()) {
            return Outcome::Retry;
        }
        let mut done = self.done.lock().await;
        done.insert(message.data);
        if done.len() == self.expected {
            self.all_done.notify_one();
        }
        Outcome::Done
    }
}

/// Publishes `count` messages, subscribes an app that fails each once, and answers how
/// long it took until every message was done.
async fn drain_backlog(broker: Arc<dyn PubSub>, topic: &str, count: usize) -> Duration {
    for n in 0..count {
        broker
            .publish(message(topic, &format!("m{n}")))
            .await
            .unwrap();
    }
    let app = Arc::new(FailsOnce {
        seen: Mutex::default(),
        done: Mutex::default(),
        all_done: tokio::sync::Notify::new(),
        expected: count,
    });
    let stop = CancellationToken::new();
    let started = std::time::Instant::now();
    let task = broker
        .subscribe(subscription(topic), app.clone(), stop.clone())
        .await
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(40), app.all_done.notified()).await;
    let elapsed = started.elapsed();
    let done = app.done.lock().await.len();
    stop.cancel();
    task.await.unwrap();
    assert!(
        finished.is_ok(),
        "only {done} of {count} done after {elapsed:?}"
    );
    elapsed
}

/// After an outage, the pending backlog is redelivered as fast as the app takes it,
/// not one `queueDepth` page per `redeliverInterval` (5,000 messages took ~50 s).
#[tokio::test(flavor = "multi_thread")]
async fn redis_drains_a_redelivery_backlog_at_full_speed() {
    let redis = RedisServer::start();
    let broker = redis_pubsub(
        &redis,
        &[("redeliverInterval", "1s"), ("processingTimeout", "1s")],
    )
    .await;
    let elapsed = drain_backlog(broker, "backlog", 5000).await;
    assert!(
        elapsed < Duration::from_secs(12),
        "5,000 redeliveries took {elapsed:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(redis.pending("backlog", "group-a"), 0);
}

/// The same for the embedded broker: due retries are claimed as fast as deliveries
/// finish, not one batch of `concurrency` per `pollInterval`.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_drains_a_retry_backlog_at_full_speed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db").display().to_string();
    let broker = build(
        "pubsub.sqlite",
        &[
            ("connectionString", &path),
            ("consumerID", "workers"),
            ("processingTimeout", "1s"),
        ],
    )
    .await;
    let elapsed = drain_backlog(broker, "backlog", 5000).await;
    assert!(
        elapsed < Duration::from_secs(12),
        "5,000 retries took {elapsed:?}"
    );
}

/// A delivery slower than `processingTimeout` is never redelivered by the process
/// that is still delivering it.
#[tokio::test(flavor = "multi_thread")]
async fn redis_never_redelivers_a_message_still_in_flight() {
    struct Slow(mpsc::UnboundedSender<Bytes>);
    #[async_trait]
    impl Deliver for Slow {
        async fn deliver(&self, message: Message) -> Outcome {
            let _ = self.0.send(message.data);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Outcome::Done
        }
    }
    let redis = RedisServer::start();
    let broker = redis_pubsub(
        &redis,
        &[
            ("redeliverInterval", "100ms"),
            ("processingTimeout", "300ms"),
        ],
    )
    .await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = broker
        .subscribe(subscription("slow"), Arc::new(Slow(seen)), stop.clone())
        .await
        .unwrap();
    broker.publish(message("slow", "once")).await.unwrap();
    assert_eq!(
        next(&mut received, Duration::from_secs(5)).await.as_deref(),
        Some("once")
    );
    assert_eq!(next(&mut received, Duration::from_secs(2)).await, None);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(redis.pending("slow", "group-a"), 0);
}

#[tokio::test]
async fn in_memory_delivers_to_every_subscriber_and_retries() {
    let broker = build("pubsub.in-memory", &[]).await;
    let (first, mut first_received) = Recorder::new(vec![Outcome::Retry]);
    let (second, mut second_received) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let a = broker
        .subscribe(subscription("t"), first, stop.clone())
        .await
        .unwrap();
    let b = broker
        .subscribe(subscription("t"), second, stop.clone())
        .await
        .unwrap();
    broker.publish(message("t", "hi")).await.unwrap();
    assert_eq!(
        next(&mut first_received, Duration::from_secs(2))
            .await
            .as_deref(),
        Some("hi")
    );
    assert_eq!(
        next(&mut first_received, Duration::from_secs(2))
            .await
            .as_deref(),
        Some("hi")
    );
    assert_eq!(
        next(&mut second_received, Duration::from_secs(2))
            .await
            .as_deref(),
        Some("hi")
    );
    stop.cancel();
    a.await.unwrap();
    b.await.unwrap();
}
