//! `pubsub.mqtt3` against a real Mosquitto: each test starts a private broker on a free
//! port (with persistence, so a restart keeps sessions), and stops it when done.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tandem_components::pubsub::{Deliver, Message, Outcome, PubSub};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::MosquittoServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

/// A `pubsub.mqtt3` on `broker` for app `consumer`.
async fn mqtt(broker: &MosquittoServer, consumer: &str, extra: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let url = format!("tcp://{}", broker.address());
    let mut values = vec![("url", url.as_str()), ("consumerID", consumer)];
    values.extend_from_slice(extra);
    build("pubsub.mqtt3", &values).await
}

/// Every message up to `count` from `seen`, or what came within `within`.
async fn collect(
    seen: &mut mpsc::UnboundedReceiver<bytes::Bytes>,
    count: usize,
    within: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(seen, left).await {
            Some(data) => got.push(data),
            None => break,
        }
    }
    got
}

/// Records the topic and data of every delivery.
struct Topics(mpsc::UnboundedSender<(String, String)>);

#[async_trait]
impl Deliver for Topics {
    async fn deliver(&self, message: Message) -> Outcome {
        let data = String::from_utf8_lossy(&message.data).into_owned();
        let _ = self.0.send((message.topic, data));
        Outcome::Done
    }
}

#[tokio::test]
async fn every_app_gets_every_message_with_the_topic_it_was_sent_to() {
    let broker = MosquittoServer::start();
    let stop = CancellationToken::new();
    let (a, mut seen_a) = Recorder::new(vec![]);
    let (b, mut seen_b) = Recorder::new(vec![]);
    let mut tasks = Vec::new();
    for (consumer, recorder) in [("app-a", a), ("app-b", b)] {
        let pubsub = mqtt(&broker, consumer, &[]).await;
        tasks.push(
            pubsub
                .subscribe(subscription("orders"), recorder, stop.clone())
                .await
                .unwrap(),
        );
    }
    // A wildcard subscription hears the topics that match, each by its own name.
    let (topics, mut seen_topics) = mpsc::unbounded_channel();
    let sensors = mqtt(&broker, "app-c", &[]).await;
    tasks.push(
        sensors
            .subscribe(
                subscription("sensors/+/temperature"),
                Arc::new(Topics(topics)),
                stop.clone(),
            )
            .await
            .unwrap(),
    );

    let publisher = mqtt(&broker, "publisher", &[]).await;
    let expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    for data in &expected {
        publisher.publish(message("orders", data)).await.unwrap();
    }
    for topic in [
        "sensors/kitchen/temperature",
        "sensors/kitchen/humidity",
        "sensors/hall/temperature",
    ] {
        publisher.publish(message(topic, topic)).await.unwrap();
    }
    for seen in [&mut seen_a, &mut seen_b] {
        let mut got = collect(seen, 20, Duration::from_secs(5)).await;
        got.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(got, want, "each app gets every message once");
    }
    let mut got = Vec::new();
    while let Ok(Some(pair)) =
        tokio::time::timeout(Duration::from_millis(500), seen_topics.recv()).await
    {
        got.push(pair);
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "sensors/hall/temperature".to_owned(),
                "sensors/hall/temperature".to_owned()
            ),
            (
                "sensors/kitchen/temperature".to_owned(),
                "sensors/kitchen/temperature".to_owned()
            ),
        ]
    );
    assert!(
        publisher
            .publish(message("sensors/+/temperature", "x"))
            .await
            .is_err(),
        "a wildcard is no topic to publish to"
    );
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn replicas_share_a_topic_through_a_shared_subscription() {
    let broker = MosquittoServer::start();
    let stop = CancellationToken::new();
    let (topics, mut seen) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    // Each replica has a consumerID of its own: one client id is one connection.
    for replica in ["replica-1", "replica-2"] {
        let pubsub = mqtt(&broker, replica, &[]).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let topics = topics.clone();
        tokio::spawn(async move {
            while let Some((topic, data)) = rx.recv().await {
                let _ = topics.send((replica, topic, data));
            }
        });
        tasks.push(
            pubsub
                .subscribe(
                    subscription("$share/app/orders"),
                    Arc::new(Topics(tx)),
                    stop.clone(),
                )
                .await
                .unwrap(),
        );
    }
    let publisher = mqtt(&broker, "publisher", &[]).await;
    for n in 0..20 {
        publisher
            .publish(message("orders", &format!("m{n:02}")))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Ok(Some(seen)) = tokio::time::timeout(Duration::from_millis(1000), seen.recv()).await
    {
        got.push(seen);
    }
    let mut data: Vec<&str> = got.iter().map(|(_, _, data)| data.as_str()).collect();
    data.sort();
    let expected: Vec<String> = (0..20).map(|n| format!("m{n:02}")).collect();
    assert_eq!(data, expected, "each message goes to one replica, once");
    assert!(got.iter().all(|(_, topic, _)| topic == "orders"), "{got:?}");
    for replica in ["replica-1", "replica-2"] {
        assert!(
            got.iter().any(|(who, _, _)| *who == replica),
            "{replica} got a share"
        );
    }
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_comes_back_and_a_drop_does_not() {
    let broker = MosquittoServer::start();
    let pubsub = mqtt(&broker, "app", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![Outcome::Retry, Outcome::Retry, Outcome::Drop]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("retries", "again")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            next(&mut seen, Duration::from_secs(5)).await.as_deref(),
            Some("again")
        );
    }
    assert_eq!(next(&mut seen, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();

    // Dropped means acknowledged: a new connection of the same session gets nothing.
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("retries"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut seen, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();
}

/// Holds the message `slow` until told, finishes the others at once.
struct Slow {
    seen: mpsc::UnboundedSender<String>,
    release: tokio::sync::Semaphore,
}

#[async_trait]
impl Deliver for Slow {
    async fn deliver(&self, message: Message) -> Outcome {
        let data = String::from_utf8_lossy(&message.data).into_owned();
        let _ = self.seen.send(data.clone());
        if data == "slow" {
            let _ = self.release.acquire().await;
        }
        Outcome::Done
    }
}

#[tokio::test]
async fn deliveries_run_concurrently_and_mosquitto_takes_their_acknowledgements_out_of_order() {
    let broker = MosquittoServer::start();
    let pubsub = mqtt(&broker, "app", &[]).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let slow = Arc::new(Slow {
        seen: seen_tx,
        release: tokio::sync::Semaphore::new(0),
    });
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("work"), slow.clone(), stop.clone())
        .await
        .unwrap();
    for data in ["slow", "fast-1", "fast-2", "fast-3"] {
        pubsub.publish(message("work", data)).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        let data = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("the fast ones pass the slow one")
            .unwrap();
        got.push(data);
    }
    got.sort();
    assert_eq!(got, ["fast-1", "fast-2", "fast-3", "slow"]);
    // The fast ones were acknowledged before the slow one; now it finishes too.
    slow.release.add_permits(1);
    stop.cancel();
    task.await.unwrap();

    // The broker took every acknowledgement: the session has nothing left to send.
    let (recorder, mut again) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("work"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut again, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();
}

/// Holds each message until its name is released.
struct Held {
    seen: mpsc::UnboundedSender<String>,
    release: tokio::sync::watch::Receiver<Vec<String>>,
}

#[async_trait]
impl Deliver for Held {
    async fn deliver(&self, message: Message) -> Outcome {
        let data = String::from_utf8_lossy(&message.data).into_owned();
        let _ = self.seen.send(data.clone());
        let mut release = self.release.clone();
        let _ = release.wait_for(|released| released.contains(&data)).await;
        Outcome::Done
    }
}

#[tokio::test]
async fn deliveries_that_outlive_their_connection_are_acknowledged_once_on_the_next() {
    let mut broker = MosquittoServer::start();
    let pubsub = mqtt(&broker, "app", &[]).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(Vec::<String>::new());
    let held = Arc::new(Held {
        seen: seen_tx,
        release: released,
    });
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("held"), held, stop.clone())
        .await
        .unwrap();
    for data in ["during", "after"] {
        pubsub.publish(message("held", data)).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), seen.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(got, ["after", "during"]);

    // The broker goes away with both unacknowledged; "during" finishes while it is away
    // (and the subscription knows it: one finishing in the instant before that is
    // acknowledged on the dead connection, and delivered again — at least once), "after"
    // once the subscription is back on a new connection, where the broker sent both again.
    broker.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send_modify(|released| released.push("during".to_owned()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.start_again();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    release.send_modify(|released| released.push("after".to_owned()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        seen.try_recv().is_err(),
        "the broker's copies of messages being delivered are not delivered again"
    );
    stop.cancel();
    task.await.unwrap();

    // Both acknowledgements reached the broker: the session has nothing to send.
    let (recorder, mut again) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("held"), recorder, stop.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut again, Duration::from_secs(1)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unfinished_delivery_goes_to_the_next_subscriber_of_the_app() {
    let broker = MosquittoServer::start();
    let url = format!("tcp://{}", broker.address());
    {
        let url = url.clone();
        crash_mid_delivery(
            move || {
                Box::pin(async move {
                    build("pubsub.mqtt3", &[("url", &url), ("consumerID", "app")]).await
                })
            },
            "jobs",
        );
    }
    let pubsub = mqtt(&broker, "app", &[]).await;
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
    assert_eq!(next(&mut seen, Duration::from_millis(500)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn messages_sent_while_the_subscriber_was_away_arrive_when_it_returns() {
    let broker = MosquittoServer::start();
    let pubsub = mqtt(&broker, "app", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("mail"), recorder, stop.clone())
        .await
        .unwrap();
    stop.cancel();
    task.await.unwrap();
    assert_eq!(next(&mut seen, Duration::from_millis(100)).await, None);

    for n in 0..5 {
        pubsub
            .publish(message("mail", &format!("m{n}")))
            .await
            .unwrap();
    }
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("mail"), recorder, stop.clone())
        .await
        .unwrap();
    let mut got = collect(&mut seen, 5, Duration::from_secs(5)).await;
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    stop.cancel();
    task.await.unwrap();

    // With unsubscribeOnClose, the broker keeps nothing for a subscription that stops.
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(
            tandem_components::pubsub::Subscribe {
                topic: "mail".to_owned(),
                metadata: HashMap::from([("unsubscribeOnClose".to_owned(), "true".to_owned())]),
            },
            recorder,
            stop.clone(),
        )
        .await
        .unwrap();
    stop.cancel();
    task.await.unwrap();
    pubsub.publish(message("mail", "unheard")).await.unwrap();
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("mail"), Recorder::new(vec![]).0, stop.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut seen, Duration::from_millis(500)).await, None);
    stop.cancel();
    task.await.unwrap();

    // With cleanSession, the broker forgets a subscriber that leaves.
    let forgetful = mqtt(&broker, "forgetful", &[("cleanSession", "true")]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = forgetful
        .subscribe(subscription("mail"), recorder, stop.clone())
        .await
        .unwrap();
    stop.cancel();
    task.await.unwrap();
    forgetful.publish(message("mail", "lost")).await.unwrap();
    let stop = CancellationToken::new();
    let task = forgetful
        .subscribe(subscription("mail"), Recorder::new(vec![]).0, stop.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut seen, Duration::from_millis(500)).await, None);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn no_acknowledged_publish_is_lost_across_a_broker_restart() {
    let mut broker = MosquittoServer::start();
    let pubsub = mqtt(&broker, "app", &[]).await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("load"), recorder, stop.clone())
        .await
        .unwrap();

    // Publish without pause from another task, counting what the broker acknowledged.
    let publishing = CancellationToken::new();
    let publisher = {
        let pubsub = pubsub.clone();
        let publishing = publishing.clone();
        tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), 0usize);
            let mut n = 0;
            while !publishing.is_cancelled() {
                let data = format!("m{n}");
                n += 1;
                match pubsub.publish(message("load", &data)).await {
                    Ok(()) => acknowledged.push(data),
                    Err(error) => {
                        failed += 1;
                        let text = error.to_string();
                        assert!(text.contains("MQTT broker at tcp://127.0.0.1"), "{text}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acknowledged, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    broker.start_again();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publishing.cancel();
    let (acknowledged, failed) = publisher.await.unwrap();
    eprintln!(
        "{} publishes acknowledged, {failed} failed",
        acknowledged.len()
    );
    assert!(failed > 0, "publishing to a stopped broker fails loudly");
    let after_restart = acknowledged.len();
    assert!(
        after_restart > 20,
        "publishing went on: {after_restart} acknowledged"
    );

    let wanted: BTreeSet<String> = acknowledged.into_iter().collect();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wanted.is_subset(&got) && Instant::now() < deadline {
        if let Some(data) = next(&mut seen, Duration::from_millis(500)).await {
            got.insert(data);
        }
    }
    let lost: Vec<_> = wanted.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged publishes were not delivered, first {:?}",
        lost.len(),
        wanted.len(),
        &lost[..lost.len().min(10)]
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_stops_start_up_without_showing_the_password() {
    let port = tandem_testkit::free_port();
    let component = Component {
        file: Some("components/mqtt.yaml".into()),
        ..Component::new("orders", "pubsub.mqtt3")
    };
    let values = [
        (
            "url".to_owned(),
            format!("tcp://user:hunter2@127.0.0.1:{port}"),
        ),
        ("consumerID".to_owned(), "app".to_owned()),
    ];
    let error = tandem_components::pubsub::registry()
        .build(&ComponentMetadata::new(
            component,
            values.into_iter().collect(),
        ))
        .await
        .err()
        .expect("no broker there")
        .to_string();
    assert!(error.starts_with("components/mqtt.yaml"), "{error}");
    assert!(error.contains("(url)"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test]
async fn tls_with_a_private_ca_and_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
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
    // The broker asks every client for a certificate signed by the CA.
    let broker = MosquittoServer::start_with(&format!(
        "cafile {0}/ca.crt\ncertfile {0}/server.crt\nkeyfile {0}/server.key\nrequire_certificate true",
        dir.display()
    ));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (ca, cert, key) = (read("ca.crt"), read("client.crt"), read("client.key"));
    let url = format!("ssl://{}", broker.address());
    let pubsub = build(
        "pubsub.mqtt3",
        &[
            ("url", &url),
            ("consumerID", "app"),
            ("caCert", &ca),
            ("clientCert", &cert),
            ("clientKey", &key),
        ],
    )
    .await;
    let (recorder, mut seen) = Recorder::new(vec![]);
    let stop = CancellationToken::new();
    let task = pubsub
        .subscribe(subscription("secure"), recorder, stop.clone())
        .await
        .unwrap();
    pubsub.publish(message("secure", "hello")).await.unwrap();
    assert_eq!(
        next(&mut seen, Duration::from_secs(5)).await.as_deref(),
        Some("hello")
    );
    stop.cancel();
    task.await.unwrap();

    // Without the CA the broker's certificate is not trusted; without a client
    // certificate the broker refuses the client. Either stops start-up.
    for values in [
        vec![("url", url.as_str()), ("consumerID", "app")],
        vec![
            ("url", url.as_str()),
            ("consumerID", "app"),
            ("caCert", ca.as_str()),
        ],
    ] {
        let values: std::collections::BTreeMap<String, String> = values
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let error = tandem_components::pubsub::registry()
            .build(&ComponentMetadata::new(
                Component::new("t", "pubsub.mqtt3"),
                values,
            ))
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("(url)"), "{error}");
    }
}
