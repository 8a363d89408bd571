//! App health checks and `--app-max-concurrency` through the binary: an unhealthy app
//! gets no deliveries (the messages wait in the broker, Redis Streams and the embedded
//! default alike) and no invocations, and gets every message exactly once when it is
//! healthy again; at most N calls are in flight to the app; the metadata API shows the
//! app connection's properties as daprd does.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use common::Sidecar;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_testkit::RedisServer;

/// What the test app saw.
#[derive(Default)]
struct Seen {
    healthy: AtomicBool,
    /// Event data → how many times it arrived.
    events: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    served_slow: AtomicUsize,
}

impl Seen {
    fn total(&self) -> usize {
        self.events.lock().values().sum()
    }

    async fn slow(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.served_slow.fetch_add(1, Ordering::SeqCst);
    }
}

/// An app subscribed to `pubsub`/`orders` (and `pubsub`/`slow`), whose `/healthz`
/// answers 200 or 503 as the test says, with a slow method.
async fn app() -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    seen.healthy.store(true, Ordering::SeqCst);
    let (health, orders, slow, slow_event) =
        (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    let router = Router::new()
        .route(
            "/healthz",
            get(move || {
                let seen = health.clone();
                async move {
                    if seen.healthy.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        )
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([
                    {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
                    {"pubsubname": "pubsub", "topic": "slow", "route": "/slow-event"}
                ]))
            }),
        )
        .route(
            "/orders",
            post(move |body: Bytes| {
                let seen = orders.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let data = event["data"].to_string();
                    *seen.events.lock().entry(data).or_default() += 1;
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        )
        .route(
            "/slow-event",
            post(move || {
                let seen = slow_event.clone();
                async move {
                    seen.slow().await;
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        )
        .route(
            "/slow",
            get(move || {
                let seen = slow.clone();
                async move {
                    seen.slow().await;
                    "done"
                }
            }),
        )
        .route("/hello", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, seen)
}

/// A `tandem sidecar` for app `health-app` with `flags`; `resources` `None` runs on the
/// embedded defaults in `home`.
fn sidecar(home: &Path, resources: Option<&Path>, app_port: u16, flags: &[&str]) -> Sidecar {
    Sidecar::start_on_free_ports(Some(&home.join("sidecar.log")), |http, grpc| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(["sidecar", "--app-id", "health-app", "--app-port"])
            .arg(app_port.to_string())
            .args(["--dapr-http-port", &http.to_string()])
            .args(["--dapr-grpc-port", &grpc.to_string()])
            .args(flags)
            .env("TANDEM_HOME", home)
            .env_remove("DAPR_API_TOKEN")
            .env_remove("TANDEM_INTERNAL_KEY");
        if let Some(resources) = resources {
            command.arg("--resources-path").arg(resources);
        }
        command
    })
}

async fn wait_until(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn publish(client: &reqwest::Client, sidecar: &Sidecar, topic: &str, data: Value) {
    let response = client
        .post(sidecar.url(&format!("/v1.0/publish/pubsub/{topic}")))
        .json(&data)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

const HEALTH_FLAGS: &[&str] = &[
    "--enable-app-health-check",
    "--app-health-probe-interval",
    "1",
    "--app-health-probe-timeout",
    "500",
    "--app-health-threshold",
    "2",
];

/// The whole cycle on one broker: healthy → unhealthy (delivery paused, invocation
/// refused, messages left in the broker) → healthy (all delivered once, calls served).
async fn pause_and_resume(
    sidecar: &Sidecar,
    seen: &Seen,
    home: &Path,
    unread_in_broker: impl Fn() -> usize,
) {
    let client = reqwest::Client::new();
    let invoke = sidecar.url("/v1.0/invoke/health-app/method/hello");
    // Healthy: delivery runs.
    publish(&client, sidecar, "orders", json!({"n": "first"})).await;
    wait_until(
        "the first event arrives",
        Duration::from_secs(15),
        async || seen.total() == 1,
    )
    .await;
    assert_eq!(client.get(&invoke).send().await.unwrap().status(), 200);

    // Unhealthy: invocation is refused as daprd refuses it.
    seen.healthy.store(false, Ordering::SeqCst);
    let mut refusal = Value::Null;
    wait_until(
        "invocation is refused",
        Duration::from_secs(10),
        async || {
            let response = client.get(&invoke).send().await.unwrap();
            if response.status() != 500 {
                return false;
            }
            refusal = response.json().await.unwrap_or_default();
            true
        },
    )
    .await;
    assert_eq!(refusal["errorCode"], "ERR_DIRECT_INVOKE", "{refusal}");
    assert_eq!(
        refusal["message"],
        "failed to invoke, id: health-app, err: rpc error: code = Internal desc = app is not in a healthy state"
    );

    // Published while unhealthy: nothing delivered, everything still in the broker.
    const WHILE_DOWN: usize = 20;
    for n in 0..WHILE_DOWN {
        publish(&client, sidecar, "orders", json!({ "n": n })).await;
    }
    // Absence cannot be polled: give delivery more than two probe intervals' chance.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(seen.total(), 1, "nothing is delivered to an unhealthy app");
    assert_eq!(
        unread_in_broker(),
        WHILE_DOWN,
        "the messages wait in the broker"
    );

    // Healthy again: every message arrives, once.
    seen.healthy.store(true, Ordering::SeqCst);
    wait_until(
        "every message arrives",
        Duration::from_secs(20),
        async || seen.total() > WHILE_DOWN,
    )
    .await;
    assert_eq!(client.get(&invoke).send().await.unwrap().status(), 200);
    // Let a stray redelivery show itself before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = seen.events.lock().clone();
    assert_eq!(events.len(), 1 + WHILE_DOWN, "{events:?}");
    assert!(events.values().all(|count| *count == 1), "{events:?}");

    let log = std::fs::read_to_string(home.join("sidecar.log")).unwrap();
    assert_eq!(
        log.matches("App entered un-healthy status").count(),
        1,
        "each change is logged once:\n{log}"
    );
    assert_eq!(
        log.matches("App entered healthy status").count(),
        2,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_app_gets_nothing_and_then_everything_on_redis_streams() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("pubsub.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n",
            redis.address()
        ),
    )
    .unwrap();
    let (port, seen) = app().await;
    let sidecar = sidecar(dir.path(), Some(&resources), port, HEALTH_FLAGS);
    pause_and_resume(&sidecar, &seen, dir.path(), || {
        // Entries the group has not read yet (`lag`), plus read but unacknowledged.
        let info = redis
            .cli(&["XINFO", "GROUPS", "orders"])
            .unwrap_or_default();
        let mut lines = info.lines();
        let mut lag = 0;
        while let Some(line) = lines.next() {
            if line.trim() == "lag" {
                lag = lines
                    .next()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        lag + redis.pending("orders", "health-app")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_app_gets_nothing_and_then_everything_on_the_embedded_broker() {
    let home = tempfile::tempdir().unwrap();
    let (port, seen) = app().await;
    let sidecar = sidecar(home.path(), None, port, HEALTH_FLAGS);
    let database = home.path().join("tandem.db");
    pause_and_resume(&sidecar, &seen, home.path(), || {
        let connection = rusqlite::Connection::open(&database).unwrap();
        connection
            .query_row(
                "SELECT COUNT(*) FROM pubsub_messages m WHERE m.topic = 'orders'
                 AND (m.seq > (SELECT cursor FROM pubsub_groups WHERE topic = 'orders' AND consumer_group = 'health-app')
                      OR m.seq IN (SELECT seq FROM pubsub_leases WHERE topic = 'orders'))",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_or(0, |count| count as usize)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrency_bounds_deliveries_and_invocations_together() {
    let home = tempfile::tempdir().unwrap();
    let (port, seen) = app().await;
    let sidecar = sidecar(home.path(), None, port, &["--app-max-concurrency", "2"]);
    let client = reqwest::Client::new();
    const EACH: usize = 6;
    let mut calls = Vec::new();
    for _ in 0..EACH {
        let (client, url) = (
            client.clone(),
            sidecar.url("/v1.0/invoke/health-app/method/slow"),
        );
        calls.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status()
        }));
    }
    for n in 0..EACH {
        publish(&client, &sidecar, "slow", json!({ "n": n })).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 200, "calls wait, they are not refused");
    }
    wait_until(
        "every delivery and invocation is served",
        Duration::from_secs(20),
        async || seen.served_slow.load(Ordering::SeqCst) >= 2 * EACH,
    )
    .await;
    assert_eq!(
        seen.most_in_flight.load(Ordering::SeqCst),
        2,
        "never more than 2 in flight (and the limit is reached)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_shows_the_app_connection_as_daprd() {
    let home = tempfile::tempdir().unwrap();
    let (port, _seen) = app().await;
    let checked = sidecar(
        home.path(),
        None,
        port,
        &[
            "--enable-app-health-check",
            "--app-health-check-path",
            "/ready",
            "--app-health-probe-interval",
            "7",
            "--app-health-probe-timeout",
            "900",
            "--app-health-threshold",
            "4",
            "--app-max-concurrency",
            "3",
        ],
    );
    let metadata: Value = reqwest::get(checked.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["appConnectionProperties"],
        json!({
            "port": port,
            "protocol": "http",
            "channelAddress": "127.0.0.1",
            "maxConcurrency": 3,
            "health": {
                "healthCheckPath": "/ready",
                "healthProbeInterval": "7s",
                "healthProbeTimeout": "900ms",
                "healthThreshold": 4
            }
        })
    );
    let mut grpc = checked.grpc().await;
    let answer = grpc
        .get_metadata(tandem_proto::runtime::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    let connection = answer.app_connection_properties.unwrap();
    assert_eq!(connection.max_concurrency, 3);
    assert_eq!(connection.port, i32::from(port));
    let health = connection.health.unwrap();
    assert_eq!(health.health_check_path, "/ready");
    assert_eq!(health.health_probe_interval, "7s");
    assert_eq!(health.health_probe_timeout, "900ms");
    assert_eq!(health.health_threshold, 4);
    drop(checked);

    // Without the flags, daprd leaves the limit and the health section out.
    let plain_home = tempfile::tempdir().unwrap();
    let plain = sidecar(
        plain_home.path(),
        None,
        port,
        &["--app-max-concurrency", "-1"],
    );
    let metadata: Value = reqwest::get(plain.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["appConnectionProperties"],
        json!({"port": port, "protocol": "http", "channelAddress": "127.0.0.1"})
    );
}

#[test]
fn a_probe_timeout_longer_than_the_interval_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "sidecar",
            "--app-id",
            "x",
            "--app-health-probe-interval",
            "1",
            "--app-health-probe-timeout",
            "1500",
        ])
        .env("TANDEM_HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--app-health-probe-timeout"),
        "the error names the flag: {stderr}"
    );
}

/// A gRPC app's health check: `AppCallbackHealthCheck/HealthCheck`, failing as told.
struct GrpcHealth(Arc<AtomicBool>);

#[tonic::async_trait]
impl tandem_proto::runtime::app_callback_health_check_server::AppCallbackHealthCheck
    for GrpcHealth
{
    async fn health_check(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<tandem_proto::runtime::HealthCheckResponse>, tonic::Status> {
        if self.0.load(Ordering::SeqCst) {
            Ok(tonic::Response::new(
                tandem_proto::runtime::HealthCheckResponse {},
            ))
        } else {
            Err(tonic::Status::unavailable("not now"))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_apps_are_probed_with_the_health_check_call() {
    use tandem_proto::runtime::app_callback_health_check_server::AppCallbackHealthCheckServer;
    let healthy = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = AppCallbackHealthCheckServer::new(GrpcHealth(healthy.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let home = tempfile::tempdir().unwrap();
    let _sidecar = sidecar(
        home.path(),
        None,
        port,
        &[
            "--app-protocol",
            "grpc",
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-threshold",
            "1",
        ],
    );
    let log = home.path().join("sidecar.log");
    let count = |line: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(line)
            .count()
    };
    wait_until(
        "the gRPC app is healthy",
        Duration::from_secs(10),
        async || count("App entered healthy status") == 1,
    )
    .await;
    healthy.store(false, Ordering::SeqCst);
    wait_until(
        "the gRPC app is unhealthy",
        Duration::from_secs(10),
        async || count("App entered un-healthy status") == 1,
    )
    .await;
    healthy.store(true, Ordering::SeqCst);
    wait_until(
        "the gRPC app is healthy again",
        Duration::from_secs(10),
        async || count("App entered healthy status") == 2,
    )
    .await;
}
