//! Sidecars started at the same instant on the embedded default (no resources path):
//! they all open `$TANDEM_HOME/tandem.db` for the first time together, and every one of
//! them must come up and exchange messages through the embedded broker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tandem_testkit::free_port;

const SIDECARS: usize = 6;
const ROUNDS: usize = 5;

/// How long the test holds the write lock on the new database file while the sidecars
/// start. Left alone, the collision that broke start-up (one sidecar's WAL switch
/// reading the new file while another holds its write lock, answered SQLITE_BUSY at
/// once) has a window of microseconds and shows up in about one round in a hundred
/// here; holding the lock the way a sidecar in the middle of the switch does puts every
/// sidecar of every round into that window.
const HELD: Duration = Duration::from_millis(300);

/// One sidecar of a round: what started it, so it can be started again.
struct Started {
    child: Child,
    http: u16,
    log: PathBuf,
    app_id: String,
    app_port: Option<u16>,
}

/// The sidecars of one round, killed on drop whatever the test's outcome.
struct Sidecars(Vec<Started>);

impl Drop for Sidecars {
    fn drop(&mut self) {
        for started in &mut self.0 {
            let _ = started.child.kill();
            let _ = started.child.wait();
        }
    }
}

fn spawn_sidecar(home: &Path, app_id: &str, app_port: Option<u16>) -> Started {
    let http = free_port();
    let log = home.join(format!("{app_id}.log"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command
        .args([
            "sidecar",
            "--app-id",
            app_id,
            "--dapr-http-port",
            &http.to_string(),
        ])
        .env("TANDEM_HOME", home)
        .env_remove("DAPR_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(port) = app_port {
        command.args(["--app-port", &port.to_string()]);
    }
    Started {
        child: command.spawn().unwrap(),
        http,
        log,
        app_id: app_id.to_owned(),
        app_port,
    }
}

/// A subscriber app on `pubsub`/`orders`, recording the events' data.
async fn subscriber_app() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = received.clone();
    let app = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]))
            }),
        )
        .route(
            "/orders",
            post(move |body: Bytes| {
                let record = record.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    record.lock().push(event["data"].clone());
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

/// Waits until every sidecar answers `/v1.0/healthz` with 204; a sidecar that exits
/// instead fails the test with its log — unless its port was taken by another test
/// after it was picked, when it is started again on a fresh one.
fn wait_all_ready(home: &Path, sidecars: &mut Sidecars) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = vec![false; sidecars.0.len()];
    while ready.iter().any(|ready| !ready) {
        assert!(
            Instant::now() < deadline,
            "not all sidecars became ready: {ready:?}"
        );
        for (started, ready) in sidecars.0.iter_mut().zip(&mut ready) {
            if *ready {
                continue;
            }
            if let Some(status) = started.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&started.log).unwrap_or_default();
                assert!(
                    common::port_taken(&log),
                    "a sidecar exited ({status}) instead of starting:\n{log}"
                );
                *started = spawn_sidecar(home, &started.app_id, started.app_port);
                continue;
            }
            let url = format!("http://127.0.0.1:{}/v1.0/healthz", started.http);
            *ready = common::get_status(&url) == Some(204);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_started_together_on_the_embedded_default_all_come_up_and_exchange_messages() {
    let (app_port, received) = subscriber_app().await;
    let http = reqwest::Client::new();
    for round in 0..ROUNDS {
        let home = tempfile::tempdir().unwrap();
        let database = home.path().join("tandem.db");
        let holder = rusqlite::Connection::open(&database).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();

        // All spawned at once, then waited for.
        let mut sidecars = Sidecars(
            (0..SIDECARS)
                .map(|index| {
                    if index == 0 {
                        spawn_sidecar(home.path(), "subscriber", Some(app_port))
                    } else {
                        spawn_sidecar(home.path(), &format!("publisher-{index}"), None)
                    }
                })
                .collect(),
        );
        tokio::time::sleep(HELD).await;
        holder.execute_batch("ROLLBACK").unwrap();
        drop(holder);
        let started_in = home.path().to_owned();
        let sidecars = tokio::task::spawn_blocking(move || {
            wait_all_ready(&started_in, &mut sidecars);
            sidecars
        })
        .await
        .unwrap();

        let publisher = sidecars.0[SIDECARS - 1].http;
        let answer = http
            .post(format!(
                "http://127.0.0.1:{publisher}/v1.0/publish/pubsub/orders"
            ))
            .json(&json!({"round": round}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204, "round {round}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !received.lock().contains(&json!({"round": round})) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the subscriber did not get the message: {:?}",
                received.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(sidecars);
    }
}
