//! The sidecar binary end to end from Rust: HTTP and gRPC publish into a subscriber app,
//! Dapr's error codes, metadata, the API token, shutdown, and broken resource files.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use common::Sidecar;
use serde_json::{Value, json};
use tandem_proto::runtime::{GetMetadataRequest, GetSecretRequest, PublishEventRequest};

fn write_components(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("components.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.in-memory\n  version: v1\n---\nkind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: {}\n{extra}",
            dir.join("secrets.json").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secrets.json"),
        r#"{"db": {"password": "hunter2"}}"#,
    )
    .unwrap();
}

/// A subscriber app: subscribes to `events/orders` and records what it gets.
async fn subscriber_app() -> (u16, Arc<Mutex<Vec<(String, Value)>>>) {
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let record = received.clone();
    let app = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([{"pubsubname": "events", "topic": "orders", "route": "/orders"}]))
            }),
        )
        .route(
            "/orders",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    let content_type = headers
                        .get("content-type")
                        .map(|value| value.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    record
                        .lock()
                        .push((content_type, serde_json::from_slice(&body).unwrap()));
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

async fn wait_for(
    received: &Arc<Mutex<Vec<(String, Value)>>>,
    count: usize,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if received.lock().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    received.lock().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_and_grpc_publishes_reach_the_app_as_cloudevents() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path(), "");
    let (app_port, received) = subscriber_app().await;
    let sidecar = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || Sidecar::start(&dir, Some(app_port), None)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();

    let json_publish = http
        .post(sidecar.url("/v1.0/publish/events/orders"))
        .header("content-type", "application/json")
        .body(r#"{"product": "falafel"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_publish.status(), 204);
    let text_publish = http
        .post(sidecar.url("/v1.0/publish/events/orders"))
        .body("plain words")
        .send()
        .await
        .unwrap();
    assert_eq!(text_publish.status(), 204);
    let cloudevent = http
        .post(sidecar.url("/v1.0/publish/events/orders"))
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"id": "my-id", "source": "me", "type": "order.placed", "specversion": "1.0", "data": {"n": 1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(cloudevent.status(), 204);
    let mut grpc = sidecar.grpc().await;
    grpc.publish_event(PublishEventRequest {
        pubsub_name: "events".into(),
        topic: "orders".into(),
        data: vec![0, 1, 2, 255],
        data_content_type: "application/octet-stream".into(),
        metadata: Default::default(),
    })
    .await
    .unwrap();

    let events = wait_for(&received, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    for (content_type, event) in &events {
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "events");
        assert_eq!(event["specversion"], "1.0");
        for field in [
            "id",
            "source",
            "type",
            "traceid",
            "traceparent",
            "tracestate",
            "time",
            "datacontenttype",
        ] {
            assert!(event.get(field).is_some(), "{field} missing in {event}");
        }
    }
    let find = |predicate: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .map(|(_, e)| e)
            .find(|e| predicate(e))
            .cloned()
            .unwrap()
    };
    let json_event = find(&|e| e["data"]["product"] == "falafel");
    assert_eq!(json_event["source"], "api-test");
    assert_eq!(json_event["type"], "com.dapr.event.sent");
    assert_eq!(json_event["datacontenttype"], "application/json");
    let text_event = find(&|e| e["data"] == "plain words");
    assert_eq!(text_event["datacontenttype"], "text/plain");
    let own_event = find(&|e| e["id"] == "my-id");
    assert_eq!(
        (own_event["source"].as_str(), own_event["type"].as_str()),
        (Some("me"), Some("order.placed"))
    );
    let binary_event = find(&|e| e.get("data_base64").is_some());
    assert_eq!(binary_event["data_base64"], "AAEC/w==");

    // The metadata API lists the components and the subscription.
    let metadata: Value = http
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["id"], "api-test");
    assert_eq!(metadata["subscriptions"][0]["topic"], "orders");
    assert_eq!(metadata["subscriptions"][0]["rules"][0]["path"], "/orders");
    assert_eq!(metadata["appConnectionProperties"]["port"], app_port);
    let mut names: Vec<_> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["events", "vault"]);
    let put = http
        .put(sidecar.url("/v1.0/metadata/team"))
        .body("payments")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let grpc_metadata = grpc
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_metadata.id, "api-test");
    assert_eq!(grpc_metadata.extended_metadata["team"], "payments");
    assert_eq!(grpc_metadata.subscriptions[0].pubsub_name, "events");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_daprs_codes_over_http_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path(), "");
    let sidecar = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || Sidecar::start(&dir, None, None)
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();

    let missing = http
        .post(sidecar.url("/v1.0/publish/nope/orders"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "errorCode": "ERR_PUBSUB_NOT_FOUND",
            "message": "pubsub nope is not found",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "DAPR_PUBSUB_NOT_FOUND",
                "domain": "dapr.io",
                "metadata": {},
            }],
        })
    );

    let mut grpc = sidecar.grpc().await;
    let status = grpc
        .publish_event(PublishEventRequest {
            pubsub_name: "nope".into(),
            topic: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "pubsub nope is not found");

    common::assert_error(
        http.post(sidecar.url("/v1.0/publish/events/orders"))
            .header("content-type", "application/cloudevents+json")
            .body("not json")
            .send()
            .await
            .unwrap(),
        400,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
    )
    .await;

    let secret: Value = http
        .get(sidecar.url("/v1.0/secrets/vault/db:password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secret, json!({"db:password": "hunter2"}));
    let bulk: Value = http
        .get(sidecar.url("/v1.0/secrets/vault/bulk"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk, json!({"db:password": {"db:password": "hunter2"}}));
    common::assert_error(
        http.get(sidecar.url("/v1.0/secrets/other/x"))
            .send()
            .await
            .unwrap(),
        401,
        "ERR_SECRET_STORE_NOT_FOUND",
    )
    .await;
    common::assert_error(
        http.get(sidecar.url("/v1.0/secrets/vault/x"))
            .send()
            .await
            .unwrap(),
        500,
        "ERR_SECRET_GET",
    )
    .await;
    let grpc_secret = grpc
        .get_secret(GetSecretRequest {
            store_name: "vault".into(),
            key: "db:password".into(),
            metadata: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_secret.data["db:password"], "hunter2");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_token_guards_everything_but_health_and_shutdown_stops_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path(), "");
    let mut sidecar = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || Sidecar::start(&dir, None, Some("s3cret"))
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(sidecar.url("/v1.0/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.get(sidecar.url("/v1.0/metadata"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let allowed = http
        .get(sidecar.url("/v1.0/metadata"))
        .header("dapr-api-token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let mut grpc = sidecar.grpc().await;
    let status = grpc.get_metadata(GetMetadataRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let shutdown = http
        .post(sidecar.url("/v1.0/shutdown"))
        .header("dapr-api-token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(shutdown.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = sidecar.process.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not stop after POST /v1.0/shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_broken_resource_file_stops_the_sidecar_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: order_pub_sub\n  spec:\n    type: pubsub.azure.servicebus\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sidecar", "--app-id", "x", "--resources-path"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("pubsub.yaml: Component 'order_pub_sub': field `spec`"),
        "{log}"
    );

    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "kind: Component\nmetadata:\n  name: orders\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    secretKeyRef: {name: pw, key: pw}\nauth:\n  secretStore: vault\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sidecar", "--app-id", "x", "--resources-path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("field `spec.metadata[1].secretKeyRef`"),
        "{log}"
    );
    assert!(log.contains("from secret store 'vault'"), "{log}");
}
