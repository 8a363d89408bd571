//! The internal port and secrets: only sidecars holding the deployment's key can call
//! an app through it, the caller's app id cannot be forged, the port listens on
//! loopback whatever the public APIs listen on, and a password never shows up in an
//! answer or a log line — not even one with `@`, `/` and `#` in it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use common::{Sidecar, assert_error};
use serde_json::{Value, json};

/// An app that answers with the caller it was told about, and counts its calls.
async fn app(calls: Arc<AtomicUsize>) -> u16 {
    let router = Router::new().fallback(any(move |headers: HeaderMap| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let caller = headers
                .get("dapr-caller-app-id")
                .map(|value| value.to_str().unwrap().to_owned());
            let token = headers
                .get("dapr-api-token")
                .map(|value| value.to_str().unwrap().to_owned());
            axum::Json(json!({"caller": caller, "token": token}))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

fn empty_resources(dir: &Path) {
    std::fs::write(
        dir.join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .unwrap();
}

async fn start(
    home: &Path,
    app_id: &'static str,
    resources: &Path,
    app_port: Option<u16>,
    extra: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
) -> Sidecar {
    let (home, resources) = (home.to_owned(), resources.to_owned());
    tokio::task::spawn_blocking(move || {
        Sidecar::start_with(&home, app_id, &resources, app_port, None, extra, None, env)
    })
    .await
    .unwrap()
}

/// The internal port of `app_id`'s sidecar, from the machine's registry.
fn internal_port(home: &Path, app_id: &str) -> u16 {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["list", "-o", "json"])
        .env("TANDEM_HOME", home)
        .output()
        .unwrap();
    let apps: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let entry = apps
        .iter()
        .find(|entry| entry["appId"] == app_id)
        .expect("the app is registered");
    entry["internalPort"].as_u64().unwrap() as u16
}

/// The local addresses listening on TCP `port`, from `/proc/net/tcp{,6}`.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            // 0A: LISTEN.
            if *state == "0A" && u16::from_str_radix(hex_port, 16).ok() == Some(port) {
                found.push(address.to_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn only_sidecars_with_the_key_reach_an_app_and_callers_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    empty_resources(dir.path());
    let calls = Arc::new(AtomicUsize::new(0));
    let back_port = app(calls.clone()).await;
    let back = start(&home, "back", dir.path(), Some(back_port), &[], &[]).await;
    // The sidecar asked the app for its subscriptions at start: count from here.
    let at_start = calls.load(Ordering::SeqCst);
    let front = start(
        &home,
        "front",
        dir.path(),
        None,
        &["--dapr-listen-addresses", "0.0.0.0"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();

    // A call through the sidecars arrives, from `front` — whatever `front` claims.
    let answer: Value = http
        .get(front.url("/v1.0/invoke/back/method/hello"))
        .header("dapr-caller-app-id", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["caller"], "front");
    assert_eq!(calls.load(Ordering::SeqCst), at_start + 1);

    // Straight to the internal port, with no proof or a forged one: refused, and the
    // app never sees it.
    let internal = internal_port(&home, "back");
    let forged = [
        None,
        Some("v1 0 00"),
        Some("v1 9999999999999 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
    ];
    for proof in forged {
        let mut request = http
            .get(format!("http://127.0.0.1:{internal}/hello"))
            .header("dapr-caller-app-id", "admin")
            .header("dapr-callee-app-id", "back");
        if let Some(proof) = proof {
            request = request.header("tandem-peer-auth", proof);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{proof:?}");
        assert_eq!(response.headers()["tandem-peer-refused"], "1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), at_start + 1);

    // The internal ports listen on loopback only, even when the APIs listen everywhere.
    for app_id in ["back", "front"] {
        let addresses = listening_addresses(internal_port(&home, app_id));
        assert!(
            !addresses.is_empty(),
            "{app_id}'s internal port is not listening"
        );
        assert!(
            addresses.iter().all(|address| address == "0100007F"),
            "{app_id}'s internal port listens on {addresses:?}"
        );
    }
    // The public API does listen everywhere when asked to.
    assert!(listening_addresses(front.http).contains(&"00000000".to_owned()));

    // A sidecar holding another key is refused by `back`, and says why.
    let stranger = start(
        &home,
        "stranger",
        dir.path(),
        None,
        &[],
        &[("TANDEM_INTERNAL_KEY", "a-key-nobody-else-has-1234")],
    )
    .await;
    let response = http
        .get(stranger.url("/v1.0/invoke/back/method/hello"))
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 500, "ERR_DIRECT_INVOKE").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("TANDEM_INTERNAL_KEY"),
        "{body}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), at_start + 1);
    drop(back);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_password_with_url_characters_works_and_never_shows() {
    let sentinel = format!("p@ss/w#rd?{}", uuid_like());
    let redis = tandem_testkit::RedisServer::start();
    redis
        .cli(&["CONFIG", "SET", "requirepass", &sentinel])
        .expect("the password is set");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, json!({ "redis": sentinel }).to_string()).unwrap();
    // The password comes from a secret store, and the store has a first-level cache
    // whose backplane is the store's own Redis (built from the store's settings, not a
    // hand-made URL).
    let component = |name: &str, password_key: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{}\"\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: redisPassword\n    secretKeyRef:\n      name: {password_key}\n      key: {password_key}\n  - name: cacheTTL\n    value: 30s\nauth:\n  secretStore: vault\n",
            secrets.display(),
            redis.address()
        )
    };
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::write(good.join("c.yaml"), component("store", "redis")).unwrap();
    let log = dir.path().join("good.log");
    let sidecar = {
        let (good, log) = (good.clone(), log.clone());
        tokio::task::spawn_blocking(move || {
            Sidecar::start_with(
                &good.join("home"),
                "vaulted",
                &good,
                None,
                None,
                &[],
                Some(&log),
                &[],
            )
        })
        .await
        .unwrap()
    };
    let http = reqwest::Client::new();
    let saved = http
        .post(sidecar.url("/v1.0/state/store"))
        .json(&json!([{"key": "k", "value": "v"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 204);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let read = http
            .get(sidecar.url("/v1.0/state/store/k"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        answers.push(read.text().await.unwrap());
    }
    let metadata = http
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap();
    let metadata: Value = metadata.json().await.unwrap();
    let cache = &metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|component| component["name"] == "store")
        .unwrap()["cache"];
    // Both reads came from the first level (the save put the value there), so the
    // notices of the store's own Redis kept it: nothing was read from the store.
    assert_eq!(cache["l1Hits"], 2, "{metadata}");
    assert_eq!(cache["storeReads"], 0, "{metadata}");
    answers.push(metadata.to_string());

    // A wrong password: the sidecar refuses to start and says so, without the password.
    let wrong = dir.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    std::fs::write(
        &secrets,
        json!({ "redis": sentinel, "stale": format!("{sentinel}-stale") }).to_string(),
    )
    .unwrap();
    std::fs::write(wrong.join("c.yaml"), component("store", "stale")).unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sidecar", "--app-id", "wrong", "--resources-path"])
        .arg(&wrong)
        .env("TANDEM_HOME", wrong.join("home"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let refusal = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        refusal.contains("redisHost") || refusal.contains("Redis"),
        "{refusal}"
    );

    drop(sidecar);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    for text in answers.iter().chain([&logged, &refusal]) {
        assert!(
            !text.contains(&sentinel),
            "the password leaked into: {text}"
        );
        assert!(
            !text.contains("p@ss"),
            "part of the password leaked into: {text}"
        );
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
