//! Subscriptions end to end, on a private Redis: declarative `Subscription` resources
//! (v1alpha1 and v2alpha1) with CEL routing rules, scopes, their merge with the app's
//! own, the metadata API's view of them, dead-letter topics for what the app refuses
//! (`DROP`, 404, retries run out), an event kept when its dead-letter publish fails or
//! the circuit breaker keeps it from the app, and a broken rule stopping `tandem run`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use common::Sidecar;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_testkit::RedisServer;

const APP_ID: &str = "subs-test";

/// What the app received: (path, event), failed deliveries included.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An app that subscribes programmatically to `subscribe` and answers each POST by its
/// path: `/drop*` with `DROP`, `/fail*` with 500, `/missing*` with 404, anything else
/// with `SUCCESS`. It records every event it is sent.
async fn app(subscribe: Value) -> (u16, Received) {
    let received: Received = Arc::default();
    let record = received.clone();
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(move || {
                let subscribe = subscribe.clone();
                async move { axum::Json(subscribe) }
            }),
        )
        // The sidecar asks at start, as daprd does; this app hosts no actors.
        .route("/dapr/config", get(|| async { StatusCode::NOT_FOUND }))
        .fallback(move |uri: Uri, body: Bytes| {
            let record = record.clone();
            async move {
                let path = uri.path().to_owned();
                let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
                record.lock().push((path.clone(), event));
                if path.starts_with("/drop") {
                    axum::Json(json!({"status": "DROP"})).into_response()
                } else if path.starts_with("/fail") {
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                } else if path.starts_with("/missing") {
                    StatusCode::NOT_FOUND.into_response()
                } else {
                    axum::Json(json!({"status": "SUCCESS"})).into_response()
                }
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, received)
}

/// A Redis pub/sub component named `name`, redelivering what is left pending after a
/// second, so an event wrongly left unacknowledged shows up again within the tests'
/// waits. `user` logs in as that Redis user.
fn redis_component(name: &str, redis: &RedisServer, user: Option<(&str, &str)>) -> String {
    let login = match user {
        Some((user, password)) => format!(
            "  - name: redisUsername\n    value: {user}\n  - name: redisPassword\n    value: {password}\n"
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: processingTimeout\n    value: 1s\n  - name: redeliverInterval\n    value: 300ms\n{login}",
        redis.address()
    )
}

/// Starts the sidecar for [`APP_ID`] on `dir`, its log in `dir/sidecar.log`.
async fn sidecar(dir: &Path, app_port: u16) -> Sidecar {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let log = dir.join("sidecar.log");
        let resources = dir.join("resources");
        Sidecar::start_with(
            &dir.join("home"),
            APP_ID,
            &resources,
            Some(app_port),
            None,
            &[],
            Some(&log),
            &[("NO_COLOR", "1")],
        )
    })
    .await
    .unwrap()
}

fn write_resources(dir: &Path, files: &[(&str, String)]) {
    let resources = dir.join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    for (name, text) in files {
        std::fs::write(resources.join(name), text).unwrap();
    }
}

/// Publishes a CloudEvent of type `kind` with `data` to `topic`; returns its id.
async fn publish(sidecar: &Sidecar, topic: &str, kind: &str, data: Value) -> String {
    let id = format!("{kind}-{}", rand_suffix());
    let response = reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0/publish/pubsub/{topic}")))
        .header("content-type", "application/cloudevents+json")
        .body(
            json!({
                "id": id, "source": "tests", "type": kind, "specversion": "1.0",
                "datacontenttype": "application/json", "data": data,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    id
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Waits until `done` holds for what the app received; panics with it after 15 s.
async fn wait_for(received: &Received, what: &str, done: impl Fn(&[(String, Value)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if done(&received.lock()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; received: {:?}",
            received.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The paths the event `id` was delivered to, in order.
fn paths_of(received: &Received, id: &str) -> Vec<String> {
    received
        .lock()
        .iter()
        .filter(|(_, event)| event["id"] == id)
        .map(|(path, _)| path.clone())
        .collect()
}

/// Waits until nothing of `group` on `stream` is left unacknowledged.
async fn wait_acknowledged(redis: &RedisServer, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.pending(stream, APP_ID) > 0 {
        assert!(Instant::now() < deadline, "{stream}: still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ROUTED: &str = r#"apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: inventory
spec:
  pubsubname: pubsub
  topic: inventory
  routes:
    rules:
    - match: event.type == "widget"
      path: /widgets
    - match: event.type == "gadget" && event.data.price > 100
      path: /expensive-gadgets
    default: /products
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: picky
spec:
  pubsubname: pubsub
  topic: picky
  routes:
    rules:
    - match: event.type == "wanted"
      path: /wanted
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: legacy
spec:
  pubsubname: pubsub
  topic: legacy
  route: /legacy
scopes:
- subs-test
- another-app
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: elsewhere
spec:
  pubsubname: pubsub
  topic: elsewhere
  route: /elsewhere
scopes:
- another-app
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: shared
spec:
  pubsubname: pubsub
  topic: shared
  route: /declared-shared
"#;

#[tokio::test(flavor = "multi_thread")]
async fn declarative_subscriptions_route_by_their_rules_and_respect_scopes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_resources(
        dir.path(),
        &[
            ("pubsub.yaml", redis_component("pubsub", &redis, None)),
            ("subscriptions.yaml", ROUTED.to_owned()),
        ],
    );
    let (app_port, received) = app(json!([
        {"pubsubname": "pubsub", "topic": "shared", "route": "/app-shared"}
    ]))
    .await;
    let sidecar = sidecar(dir.path(), app_port).await;

    // Rules in order, then the default.
    let widget = publish(&sidecar, "inventory", "widget", json!({"price": 5000})).await;
    let pricey = publish(&sidecar, "inventory", "gadget", json!({"price": 500})).await;
    let cheap = publish(&sidecar, "inventory", "gadget", json!({"price": 5})).await;
    let other = publish(&sidecar, "inventory", "thing", json!({})).await;
    // No default: an unmatched event is acknowledged, not delivered.
    let wanted = publish(&sidecar, "picky", "wanted", json!({})).await;
    let unwanted = publish(&sidecar, "picky", "unwanted", json!({})).await;
    let legacy = publish(&sidecar, "legacy", "old", json!({"n": 1})).await;
    let shared = publish(&sidecar, "shared", "s", json!({})).await;
    let elsewhere = publish(&sidecar, "elsewhere", "e", json!({})).await;

    wait_for(&received, "seven deliveries", |got| got.len() >= 7).await;
    assert_eq!(paths_of(&received, &widget), ["/widgets"]);
    assert_eq!(paths_of(&received, &pricey), ["/expensive-gadgets"]);
    assert_eq!(paths_of(&received, &cheap), ["/products"]);
    assert_eq!(paths_of(&received, &other), ["/products"]);
    assert_eq!(paths_of(&received, &wanted), ["/wanted"]);
    assert_eq!(paths_of(&received, &legacy), ["/legacy"]);
    // The app's own subscription to a topic takes the place of the declarative one.
    assert_eq!(paths_of(&received, &shared), ["/app-shared"]);
    for stream in ["inventory", "picky", "legacy", "shared"] {
        wait_acknowledged(&redis, stream).await;
    }
    assert_eq!(redis.cli(&["XLEN", "picky"]).as_deref(), Some("2"));

    // Well past `processingTimeout` and a few `redeliverInterval`s: nothing comes back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(paths_of(&received, &unwanted).is_empty());
    assert!(paths_of(&received, &elsewhere).is_empty());
    let got = received.lock().clone();
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(redis.pending("picky", APP_ID), 0);
    // Scoped to another app: this one never even made a consumer group.
    assert_eq!(
        redis.cli(&["XINFO", "GROUPS", "elsewhere"]).as_deref(),
        Some("")
    );

    // The metadata API: each subscription's type and rules, as daprd shows them.
    let metadata: Value = reqwest::get(sidecar.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subscriptions = metadata["subscriptions"].as_array().unwrap();
    let topics: Vec<_> = subscriptions
        .iter()
        .map(|s| (s["topic"].as_str().unwrap(), s["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        topics,
        [
            ("inventory", "DECLARATIVE"),
            ("picky", "DECLARATIVE"),
            ("legacy", "DECLARATIVE"),
            ("shared", "PROGRAMMATIC"),
        ]
    );
    assert_eq!(
        subscriptions[0]["rules"],
        json!([
            {"match": "event.type == \"widget\"", "path": "/widgets"},
            {"match": "event.type == \"gadget\" && event.data.price > 100", "path": "/expensive-gadgets"},
            {"path": "/products"},
        ])
    );
    assert_eq!(subscriptions[3]["rules"], json!([{"path": "/app-shared"}]));
    let mut grpc = sidecar.grpc().await;
    let grpc_metadata = grpc
        .get_metadata(tandem_proto::runtime::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    let inventory = &grpc_metadata.subscriptions[0];
    assert_eq!(inventory.topic, "inventory");
    assert_eq!(
        inventory.r#type,
        tandem_proto::runtime::PubsubSubscriptionType::Declarative as i32
    );
    let rules = &inventory.rules.as_ref().unwrap().rules;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[1].path, "/expensive-gadgets");
    assert_eq!(rules[2].r#match, "");
}

const DEAD_LETTERS: &str = r#"apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /drop-orders
  deadLetterTopic: orders-dead
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: lost
spec:
  pubsubname: pubsub
  topic: lost
  route: /missing-route
  deadLetterTopic: lost-dead
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: deliveries
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 20ms
        maxRetries: 2
  targets:
    components:
      pubsub:
        inbound:
          retry: twice
"#;

#[tokio::test(flavor = "multi_thread")]
async fn what_the_app_refuses_goes_to_the_dead_letter_topic_then_is_acknowledged() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_resources(
        dir.path(),
        &[
            ("pubsub.yaml", redis_component("pubsub", &redis, None)),
            ("subscriptions.yaml", DEAD_LETTERS.to_owned()),
        ],
    );
    let (app_port, received) = app(json!([
        {"pubsubname": "pubsub", "topic": "payments", "route": "/fail-payments", "deadLetterTopic": "payments-dead"},
        {"pubsubname": "pubsub", "topic": "orders-dead", "route": "/dead"},
        {"pubsubname": "pubsub", "topic": "payments-dead", "route": "/dead"},
        {"pubsubname": "pubsub", "topic": "lost-dead", "route": "/dead"},
    ]))
    .await;
    let sidecar = sidecar(dir.path(), app_port).await;

    let dropped = publish(&sidecar, "orders", "order", json!({"item": "falafel"})).await;
    let failed = publish(&sidecar, "payments", "payment", json!({"amount": 12})).await;
    let missing = publish(&sidecar, "lost", "lost", json!({"where": "nowhere"})).await;
    for (id, refused_at) in [
        (&dropped, "/drop-orders"),
        (&failed, "/fail-payments"),
        (&missing, "/missing-route"),
    ] {
        wait_for(&received, "the dead letter", |got| {
            got.iter()
                .any(|(path, event)| path == "/dead" && event["id"] == *id)
        })
        .await;
        let dead = received
            .lock()
            .iter()
            .find(|(path, event)| path == "/dead" && event["id"] == *id)
            .map(|(_, event)| event.clone())
            .unwrap();
        // The original CloudEvent, untouched: its topic is the one it was refused on.
        let original = received
            .lock()
            .iter()
            .find(|(path, _)| path == refused_at)
            .map(|(_, event)| event.clone())
            .unwrap();
        assert_eq!(dead, original, "{refused_at}");
    }
    let dead_order = received
        .lock()
        .iter()
        .find(|(path, event)| path == "/dead" && event["id"] == dropped.as_str())
        .map(|(_, event)| event.clone())
        .unwrap();
    assert_eq!(dead_order["data"], json!({"item": "falafel"}));
    assert_eq!(dead_order["topic"], "orders");
    assert_eq!(dead_order["type"], "order");
    for stream in ["orders", "payments", "lost", "orders-dead", "payments-dead"] {
        wait_acknowledged(&redis, stream).await;
    }

    // The app refused `DROP` and 404 at once; the 500s were retried twice (the
    // policy), then dead-lettered. None comes back after that.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(paths_of(&received, &dropped), ["/drop-orders", "/dead"]);
    assert_eq!(paths_of(&received, &missing), ["/missing-route", "/dead"]);
    assert_eq!(
        paths_of(&received, &failed),
        [
            "/fail-payments",
            "/fail-payments",
            "/fail-payments",
            "/dead"
        ]
    );
    let metadata: Value = reqwest::get(sidecar.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead_letters: Vec<_> = metadata["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["topic"].as_str().unwrap().to_owned(),
                s["deadLetterTopic"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, dead)| !dead.is_empty())
        .collect();
    assert_eq!(
        dead_letters,
        [
            ("orders".to_owned(), "orders-dead".to_owned()),
            ("lost".to_owned(), "lost-dead".to_owned()),
            ("payments".to_owned(), "payments-dead".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_dead_letter_publish_fails_stays_unacknowledged_until_it_succeeds() {
    let redis = RedisServer::start();
    // The sidecar's pub/sub logs in as a Redis user that may not write the
    // dead-letter stream yet; a second component (full rights) reads it.
    assert_eq!(
        redis
            .cli(&[
                "ACL", "SETUSER", "tandem", "on", ">secret", "+@all", "~lockbox"
            ])
            .as_deref(),
        Some("OK")
    );
    let dir = tempfile::tempdir().unwrap();
    write_resources(
        dir.path(),
        &[
            (
                "pubsub.yaml",
                format!(
                    "{}---\n{}",
                    redis_component("pubsub", &redis, Some(("tandem", "secret"))),
                    redis_component("reader", &redis, None)
                ),
            ),
            (
                "subscription.yaml",
                "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: lockbox\nspec:\n  pubsubname: pubsub\n  topic: lockbox\n  routes:\n    default: /drop-lockbox\n  deadLetterTopic: lockbox-spill\n".to_owned(),
            ),
        ],
    );
    let (app_port, received) = app(json!([
        {"pubsubname": "reader", "topic": "lockbox-spill", "route": "/dead"}
    ]))
    .await;
    let sidecar = sidecar(dir.path(), app_port).await;

    let id = publish(&sidecar, "lockbox", "secret", json!({"keep": "me"})).await;
    wait_for(&received, "the refusal", |got| {
        got.iter().any(|(path, _)| path == "/drop-lockbox")
    })
    .await;
    // Refused, but the dead-letter topic cannot take it: it stays pending and comes
    // back after `processingTimeout`.
    wait_for(&received, "a redelivery", |got| {
        got.iter()
            .filter(|(path, _)| path == "/drop-lockbox")
            .count()
            >= 2
    })
    .await;
    assert_eq!(redis.pending("lockbox", APP_ID), 1);
    assert!(!paths_of(&received, &id).contains(&"/dead".to_owned()));
    let log = std::fs::read_to_string(dir.path().join("sidecar.log")).unwrap();
    assert!(
        log.contains("could not be sent to dead-letter topic 'lockbox-spill'"),
        "{log}"
    );

    // Once it may write there, the next redelivery lands on the dead-letter topic and
    // the event is acknowledged.
    assert_eq!(
        redis
            .cli(&["ACL", "SETUSER", "tandem", "~lockbox-spill"])
            .as_deref(),
        Some("OK")
    );
    wait_for(&received, "the dead letter", |got| {
        got.iter()
            .any(|(path, event)| path == "/dead" && event["id"] == id.as_str())
    })
    .await;
    wait_acknowledged(&redis, "lockbox").await;
    let dead = received
        .lock()
        .iter()
        .find(|(path, _)| path == "/dead")
        .map(|(_, event)| event.clone())
        .unwrap();
    assert_eq!(dead["data"], json!({"keep": "me"}));
    assert_eq!(dead["topic"], "lockbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_open_circuit_breaker_keeps_from_the_app_is_not_dead_lettered() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_resources(
        dir.path(),
        &[
            // The breaker guards every delivery of `pubsub`: the dead-letter topic is
            // read through a second component.
            (
                "pubsub.yaml",
                format!(
                    "{}---\n{}",
                    redis_component("pubsub", &redis, None),
                    redis_component("reader", &redis, None)
                ),
            ),
            (
                "resiliency.yaml",
                "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: fuse\nspec:\n  policies:\n    circuitBreakers:\n      fuse:\n        maxRequests: 1\n        timeout: 60s\n        trip: consecutiveFailures >= 1\n  targets:\n    components:\n      pubsub:\n        inbound:\n          circuitBreaker: fuse\n".to_owned(),
            ),
        ],
    );
    let (app_port, received) = app(json!([
        {"pubsubname": "pubsub", "topic": "jobs", "route": "/fail-jobs", "deadLetterTopic": "jobs-dead"},
        {"pubsubname": "reader", "topic": "jobs-dead", "route": "/dead"},
    ]))
    .await;
    let sidecar = sidecar(dir.path(), app_port).await;

    // The first event fails at the app: it is dead-lettered, and the breaker opens.
    let first = publish(&sidecar, "jobs", "job", json!({"n": 1})).await;
    wait_for(&received, "the first dead letter", |got| {
        got.iter()
            .any(|(path, event)| path == "/dead" && event["id"] == first.as_str())
    })
    .await;
    // The second never reaches the app while the breaker is open: the app did not
    // refuse it, so it waits in the broker instead of going to the dead-letter topic.
    let second = publish(&sidecar, "jobs", "job", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        paths_of(&received, &second).is_empty(),
        "{:?}",
        received.lock()
    );
    assert_eq!(redis.pending("jobs", APP_ID), 1);
    assert_eq!(paths_of(&received, &first), ["/fail-jobs", "/dead"]);
}

#[test]
fn a_routing_rule_that_does_not_compile_stops_tandem_run() {
    let dir = tempfile::tempdir().unwrap();
    write_resources(
        dir.path(),
        &[(
            "subscriptions.yaml",
            "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    rules:\n    - match: event.type == 'a'\n      path: /a\n    - match: event.type == = 'b'\n      path: /b\n    default: /d\n".to_owned(),
        )],
    );
    let mut run = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--app-id", APP_ID, "--resources-path"])
        .arg(dir.path().join("resources"))
        .args(["--", "sleep", "30"])
        .env("TANDEM_HOME", dir.path().join("home"))
        .env("NO_COLOR", "1")
        .env_remove("DAPR_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(run.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("tandem run did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let output = format!(
        "{}{}",
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        std::fs::read_to_string(dir.path().join("err")).unwrap()
    );
    assert!(
        output.contains("subscriptions.yaml: Subscription 'orders': field `spec.routes.rules[1].match`: `event.type == = 'b'` is not a valid CEL expression"),
        "{output}"
    );
}
