//! Service invocation end to end through the binary: two apps calling each other
//! through their sidecars, retries, timeouts and circuit breakers from a Resiliency
//! resource, and an outside service behind an `HTTPEndpoint`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use common::Sidecar;
use serde_json::{Value, json};

/// An app that echoes what it was called with, and can be told to fail or be slow.
#[derive(Clone, Default)]
struct Behaviour {
    calls: Arc<AtomicUsize>,
    /// Answer 500 to the first this many calls.
    failures: Arc<AtomicUsize>,
    delay: Duration,
    /// Answer 503 to everything: the service is down.
    down: Arc<std::sync::atomic::AtomicBool>,
}

async fn echo(
    State(behaviour): State<Behaviour>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    if path == "dapr/subscribe" || path == "dapr/config" {
        // The sidecar asks at start; this app subscribes to nothing and hosts no actors.
        return (StatusCode::NOT_FOUND, axum::Json(json!(null)));
    }
    let call = behaviour.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(behaviour.delay).await;
    if behaviour.down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"down": true})),
        );
    }
    if call < behaviour.failures.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"failed": call})),
        );
    }
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let status = if path == "teapot" {
        StatusCode::IM_A_TEAPOT
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({
            "method": method.as_str(),
            "path": path,
            "query": query,
            "body": String::from_utf8_lossy(&body),
            "caller": header("dapr-caller-app-id"),
            "callee": header("dapr-callee-app-id"),
            "custom": header("x-custom"),
            "token": header("authorization"),
        })),
    )
}

async fn app(behaviour: Behaviour) -> u16 {
    let router = Router::new()
        .route("/{*path}", any(echo))
        .with_state(behaviour);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

async fn sidecar(home: &Path, app_id: &str, resources: &Path, app_port: Option<u16>) -> Sidecar {
    let (home, app_id, resources) = (home.to_owned(), app_id.to_owned(), resources.to_owned());
    tokio::task::spawn_blocking(move || {
        Sidecar::start_in(&home, &app_id, &resources, app_port, None)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_call_each_other_through_their_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    let (orders_port, billing_port) = (
        app(Behaviour::default()).await,
        app(Behaviour::default()).await,
    );
    let orders = sidecar(dir.path(), "orders", &resources, Some(orders_port)).await;
    let billing = sidecar(dir.path(), "billing", &resources, Some(billing_port)).await;
    let http = reqwest::Client::new();

    // orders -> billing, through orders' sidecar.
    let answer = http
        .put(orders.url("/v1.0/invoke/billing/method/invoices/42?draft=true"))
        .header("x-custom", "kept")
        .body("total=10")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let echoed: Value = answer.json().await.unwrap();
    assert_eq!(
        echoed,
        json!({"method": "PUT", "path": "invoices/42", "query": "draft=true", "body": "total=10",
               "caller": "orders", "callee": "billing", "custom": "kept", "token": null})
    );

    // billing -> orders with the dapr-app-id header form; the app's status passes through.
    let answer = http
        .get(billing.url("/teapot"))
        .header("dapr-app-id", "orders")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 418);
    assert_eq!(answer.json::<Value>().await.unwrap()["caller"], "billing");

    let unknown = http
        .get(orders.url("/v1.0/invoke/nobody/method/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 500);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        error["message"].as_str().unwrap().contains("nobody"),
        "{error}"
    );
}

fn write_resiliency(dir: &Path, app_id: &str, policies: &str, target: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("resiliency.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: test\nspec:\n  policies:\n{policies}\n  targets:\n    apps:\n      {app_id}:\n{target}\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_policy_hides_two_failures() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    write_resiliency(
        &resources,
        "flaky",
        "    retries:\n      twice:\n        policy: constant\n        duration: 50ms\n        maxRetries: 2",
        "        retry: twice",
    );
    let behaviour = Behaviour::default();
    behaviour.failures.store(2, Ordering::SeqCst);
    let port = app(behaviour.clone()).await;
    let target = sidecar(dir.path(), "flaky", &resources, Some(port)).await;
    let caller = sidecar(dir.path(), "caller", &resources, None).await;
    let answer = reqwest::get(caller.url("/v1.0/invoke/flaky/method/ok"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 3);

    // Without enough retries, the target's last answer comes back as it is.
    behaviour.calls.store(0, Ordering::SeqCst);
    behaviour.failures.store(5, Ordering::SeqCst);
    let answer = reqwest::get(caller.url("/v1.0/invoke/flaky/method/ok"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 500);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 3);
    drop(target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_policy_gives_up_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    write_resiliency(
        &resources,
        "slow",
        "    timeouts:\n      quick: 100ms",
        "        timeout: quick",
    );
    let behaviour = Behaviour {
        delay: Duration::from_millis(1000),
        ..Behaviour::default()
    };
    let port = app(behaviour).await;
    let _target = sidecar(dir.path(), "slow", &resources, Some(port)).await;
    let caller = sidecar(dir.path(), "caller", &resources, None).await;
    let started = std::time::Instant::now();
    let answer = reqwest::get(caller.url("/v1.0/invoke/slow/method/x"))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status(), 500);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("timeout policy 'quick'"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_breaker_opens_fails_fast_and_closes_again() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    write_resiliency(
        &resources,
        "fragile",
        "    circuitBreakers:\n      fuse:\n        maxRequests: 1\n        timeout: 1s\n        trip: consecutiveFailures >= 2",
        "        circuitBreaker: fuse",
    );
    let behaviour = Behaviour::default();
    behaviour.failures.store(2, Ordering::SeqCst);
    let port = app(behaviour.clone()).await;
    let _target = sidecar(dir.path(), "fragile", &resources, Some(port)).await;
    let caller = sidecar(dir.path(), "caller", &resources, None).await;
    let call = || reqwest::get(caller.url("/v1.0/invoke/fragile/method/x"));

    assert_eq!(call().await.unwrap().status(), 500);
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        1,
        "one call, no retries"
    );
    assert_eq!(call().await.unwrap().status(), 500);
    // Open: the app is healthy again, but calls fail fast without reaching it.
    let refused = call().await.unwrap();
    assert_eq!(refused.status(), 500);
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker 'fuse' is open"),
        "{error}"
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 2);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Half-open: one trial call goes through, succeeds, and closes the breaker.
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_endpoint_reaches_an_outside_service_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    let port = app(Behaviour::default()).await;
    std::fs::write(
        dir.path().join("secrets.json"),
        r#"{"token": "Bearer s3cret"}"#,
    )
    .unwrap();
    std::fs::write(
        resources.join("endpoint.yaml"),
        format!(
            "kind: Component\nmetadata: {{name: vault}}\nspec:\n  type: secretstores.local.file\n  metadata:\n  - name: secretsFile\n    value: {}\n---\nkind: HTTPEndpoint\nmetadata: {{name: catalog}}\nspec:\n  baseUrl: http://127.0.0.1:{port}/api\n  headers:\n  - name: Authorization\n    secretKeyRef: {{name: token, key: token}}\nauth: {{secretStore: vault}}\n",
            dir.path().join("secrets.json").display()
        ),
    )
    .unwrap();
    let caller = sidecar(dir.path(), "caller", &resources, None).await;
    let echoed: Value = reqwest::get(caller.url("/v1.0/invoke/catalog/method/items?page=2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["path"], "api/items");
    assert_eq!(echoed["query"], "page=2");
    assert_eq!(echoed["token"], "Bearer s3cret");

    // A URL as the target works too.
    let by_url = reqwest::get(caller.url(&format!(
        "/v1.0/invoke/http://127.0.0.1:{port}/method/direct"
    )))
    .await
    .unwrap();
    assert_eq!(by_url.json::<Value>().await.unwrap()["path"], "direct");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_http_endpoint_answers_from_both_levels_and_stale_when_down() {
    let dir = tempfile::tempdir().unwrap();
    let behaviour = Behaviour {
        delay: Duration::from_millis(200),
        ..Behaviour::default()
    };
    let port = app(behaviour.clone()).await;
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("cache.yaml"),
        format!(
            "kind: Component\nmetadata: {{name: answers}}\nspec:\n  type: state.sqlite\n  metadata:\n  - name: connectionString\n    value: {}\n---\nkind: HTTPEndpoint\nmetadata: {{name: slow}}\nspec: {{baseUrl: \"http://127.0.0.1:{port}\"}}\n---\nkind: Resiliency\nmetadata: {{name: caching}}\nspec:\n  policies:\n    caches:\n      slow-answers: {{ttl: 3s, staleIfError: 3s, store: answers}}\n  targets:\n    apps:\n      slow: {{cache: slow-answers}}\n",
            dir.path().join("answers.db").display()
        ),
    )
    .unwrap();
    let a = sidecar(dir.path(), "reader-a", &resources, None).await;
    let b = sidecar(dir.path(), "reader-b", &resources, None).await;
    let http = reqwest::Client::new();
    let call = |sidecar: &Sidecar, path: &str| {
        let request = http.get(sidecar.url(&format!("/v1.0/invoke/slow/method/{path}")));
        async move {
            let response = request.send().await.unwrap();
            let source = response
                .headers()
                .get("x-tandem-cache")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                response.status().as_u16(),
                source,
                response.json::<Value>().await.unwrap(),
            )
        }
    };

    let (status, source, body) = call(&a, "price").await;
    assert_eq!((status, source.as_deref()), (200, Some("miss")));
    assert_eq!(body["path"], "price");
    let started = std::time::Instant::now();
    let (status, source, _) = call(&a, "price").await;
    assert_eq!((status, source.as_deref()), (200, Some("hit-l1")));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a first-level hit does not wait for the service"
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 1);

    // 100 concurrent cold calls: the service is called once.
    let cold: Vec<_> = (0..100).map(|_| tokio::spawn(call(&a, "stock"))).collect();
    for call in cold {
        assert_eq!(call.await.unwrap().0, 200);
    }
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 2);

    // Another sidecar of the same store answers from the second level.
    let (status, source, _) = call(&b, "price").await;
    assert_eq!((status, source.as_deref()), (200, Some("hit-l2")));
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 2);

    // The caller can ask for a fresh answer.
    let fresh = http
        .get(a.url("/v1.0/invoke/slow/method/price"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.headers()["x-tandem-cache"], "miss");
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 3);

    // The service goes down: past the ttl, the stale answer is served within the window...
    behaviour.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, source, body) = call(&a, "price").await;
    assert_eq!((status, source.as_deref()), (200, Some("stale")));
    assert_eq!(body["path"], "price");
    // ...and the service's own failure after it.
    tokio::time::sleep(Duration::from_millis(3800)).await;
    let (status, _, _) = call(&a, "price").await;
    assert_eq!(status, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_of_one_app_share_calls_and_a_dead_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    let (first, second) = (Behaviour::default(), Behaviour::default());
    let (first_port, second_port) = (app(first.clone()).await, app(second.clone()).await);
    let one = sidecar(dir.path(), "pool", &resources, Some(first_port)).await;
    let _two = sidecar(dir.path(), "pool", &resources, Some(second_port)).await;
    let caller = sidecar(dir.path(), "caller", &resources, None).await;
    let call = || reqwest::get(caller.url("/v1.0/invoke/pool/method/work"));
    for _ in 0..4 {
        assert_eq!(call().await.unwrap().status(), 200);
    }
    assert_eq!(first.calls.load(Ordering::SeqCst), 2, "round robin");
    assert_eq!(second.calls.load(Ordering::SeqCst), 2, "round robin");

    // One instance dies without a word: every call still succeeds, on the other one.
    drop(one); // SIGKILL: its registry entry stays behind
    for _ in 0..4 {
        assert_eq!(call().await.unwrap().status(), 200);
    }
    assert_eq!(second.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_policy_names_itself_when_it_gives_up() {
    let mut redis = tandem_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("pubsub.yaml"),
        format!(
            "kind: Component\nmetadata: {{name: orders}}\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n---\nkind: Resiliency\nmetadata: {{name: outbound}}\nspec:\n  policies:\n    retries:\n      twice: {{policy: constant, duration: 20ms, maxRetries: 2}}\n  targets:\n    components:\n      orders:\n        outbound: {{retry: twice}}\n",
            redis.address()
        ),
    )
    .unwrap();
    let publisher = sidecar(dir.path(), "publisher", &resources, None).await;
    let http = reqwest::Client::new();
    let publish = || {
        http.post(publisher.url("/v1.0/publish/orders/new"))
            .body("x")
            .send()
    };
    assert_eq!(publish().await.unwrap().status(), 204);

    redis.stop();
    let failed = publish().await.unwrap();
    assert_eq!(failed.status(), 500);
    let error: Value = failed.json().await.unwrap();
    assert_eq!(error["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("retry policy 'twice' gave up after 3 attempts"),
        "{message}"
    );
}
