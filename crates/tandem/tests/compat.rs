//! Compatibility gaps a Dapr app runs into, through the binary: bulk publish on both
//! routes and over gRPC, `PUT` on the state bulk and transaction routes, the metadata
//! API's `httpEndpoints`, a named `UNIMPLEMENTED` for gRPC methods tandem does not
//! serve, and a warning for every resource kind it skips.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use common::{Sidecar, assert_error};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_proto::runtime::{BulkPublishRequest, BulkPublishRequestEntry, GetMetadataRequest};

const COMPONENTS: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: events
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: store
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: weather
spec:
  baseUrl: http://127.0.0.1:9
";

/// An app subscribed to `events/orders` that records each event's `data`.
async fn subscriber() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
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
            post(move |body: Bytes| {
                let record = record.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    record.lock().push(event);
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

async fn wait_for(received: &Arc<Mutex<Vec<Value>>>, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && received.lock().len() < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    received.lock().clone()
}

async fn start(dir: &Path, app_port: Option<u16>) -> Sidecar {
    std::fs::write(dir.join("components.yaml"), COMPONENTS).unwrap();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Sidecar::start(&dir, app_port, None))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_publish_is_served_on_both_routes_and_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (app_port, received) = subscriber().await;
    let sidecar = start(dir.path(), Some(app_port)).await;
    let http = reqwest::Client::new();

    for (version, prefix) in [("v1.0", "a"), ("v1.0-alpha1", "b")] {
        let answer = http
            .post(sidecar.url(&format!("/{version}/publish/bulk/events/orders")))
            .json(&json!([
                {"entryId": "1", "event": {"n": format!("{prefix}1")}, "contentType": "application/json"},
                {"entryId": "2", "event": format!("{prefix}2"), "contentType": "text/plain"},
                {"entryId": "3", "event": "aGk=", "contentType": "application/octet-stream"},
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204, "{version}");
    }
    // PUT is the same call.
    let put = http
        .put(sidecar.url("/v1.0/publish/bulk/events/orders"))
        .json(&json!([{"entryId": "x", "event": "c1", "contentType": "text/plain"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let mut grpc = sidecar.grpc().await;
    let entry = |id: &str, event: &str| BulkPublishRequestEntry {
        entry_id: id.into(),
        event: event.as_bytes().to_vec(),
        content_type: "text/plain".into(),
        metadata: HashMap::new(),
    };
    grpc.bulk_publish_event(BulkPublishRequest {
        pubsub_name: "events".into(),
        topic: "orders".into(),
        entries: vec![entry("1", "g1"), entry("2", "g2")],
        metadata: HashMap::new(),
    })
    .await
    .unwrap();
    grpc.bulk_publish_event_alpha1(BulkPublishRequest {
        pubsub_name: "events".into(),
        topic: "orders".into(),
        entries: vec![entry("1", "g3")],
        metadata: HashMap::new(),
    })
    .await
    .unwrap();

    let events = wait_for(&received, 10).await;
    let mut data: Vec<String> = events
        .iter()
        .map(|event| match (&event["data"], &event["data_base64"]) {
            (Value::String(text), _) => text.clone(),
            (Value::Null, Value::String(base64)) => format!("base64:{base64}"),
            (other, _) => other["n"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    data.sort();
    assert_eq!(
        data,
        [
            "a1",
            "a2",
            "b1",
            "b2",
            "base64:aGk=",
            "base64:aGk=",
            "c1",
            "g1",
            "g2",
            "g3"
        ],
        "{events:?}"
    );

    // Refusals in daprd's terms.
    let unknown = http
        .post(sidecar.url("/v1.0/publish/bulk/nope/orders"))
        .json(&json!([{"entryId": "1", "event": "x", "contentType": "text/plain"}]))
        .send()
        .await
        .unwrap();
    assert_error(unknown, 404, "ERR_PUBSUB_NOT_FOUND").await;
    let not_a_list = http
        .post(sidecar.url("/v1.0/publish/bulk/events/orders"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(not_a_list, 400, "ERR_PUBSUB_EVENTS_SER").await;
    let twice = http
        .post(sidecar.url("/v1.0/publish/bulk/events/orders"))
        .json(&json!([
            {"entryId": "1", "event": "x", "contentType": "text/plain"},
            {"entryId": "1", "event": "y", "contentType": "text/plain"},
        ]))
        .send()
        .await
        .unwrap();
    assert_error(twice, 400, "ERR_PUBSUB_EVENTS_SER").await;
    let mismatch = http
        .post(sidecar.url("/v1.0/publish/bulk/events/orders"))
        .json(&json!([{"entryId": "1", "event": {"a": 1}, "contentType": "text/plain"}]))
        .send()
        .await
        .unwrap();
    assert_error(mismatch, 400, "ERR_PUBSUB_EVENTS_SER").await;
    let no_id = grpc
        .bulk_publish_event(BulkPublishRequest {
            pubsub_name: "events".into(),
            topic: "orders".into(),
            entries: vec![entry("", "x")],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_id.code(), tonic::Code::InvalidArgument);
    // Nothing refused was published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.lock().len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_bulk_and_transaction_take_put_and_metadata_lists_http_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = start(dir.path(), None).await;
    let http = reqwest::Client::new();

    let transaction = http
        .put(sidecar.url("/v1.0/state/store/transaction"))
        .json(
            &json!({"operations": [{"operation": "upsert", "request": {"key": "k", "value": 1}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(transaction.status(), 204);
    let bulk = http
        .put(sidecar.url("/v1.0/state/store/bulk"))
        .json(&json!({"keys": ["k"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 200);
    let items: Value = bulk.json().await.unwrap();
    assert_eq!(items[0]["data"], 1, "{items}");

    let metadata: Value = http
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["httpEndpoints"], json!([{"name": "weather"}]));
    // As daprd: empty lists are left out.
    assert!(metadata.get("actors").is_none(), "{metadata}");
    assert!(metadata.get("subscriptions").is_none(), "{metadata}");
    let grpc = sidecar
        .grpc()
        .await
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.http_endpoints.len(), 1);
    assert_eq!(grpc.http_endpoints[0].name, "weather");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_method_tandem_does_not_serve_is_named_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("components.yaml"), COMPONENTS).unwrap();
    let log = dir.path().join("sidecar.log");
    let sidecar = {
        let (dir, log) = (dir.path().to_owned(), log.clone());
        tokio::task::spawn_blocking(move || {
            Sidecar::start_with(
                &dir.join("home"),
                "api-test",
                &dir,
                None,
                None,
                &["--enable-api-logging"],
                Some(&log),
                &[],
            )
        })
        .await
        .unwrap()
    };
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", sidecar.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let status = client
        .unary::<_, GetMetadataRequest, _>(
            tonic::Request::new(GetMetadataRequest {}),
            "/dapr.proto.runtime.v1.Dapr/ScheduleJobAlpha1"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert_eq!(
        status.message(),
        "unknown method ScheduleJobAlpha1 for service dapr.proto.runtime.v1.Dapr"
    );
    // A served call is logged too.
    sidecar
        .grpc()
        .await
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Dapr/GetMetadata") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains(
            "gRPC API called: /dapr.proto.runtime.v1.Dapr/ScheduleJobAlpha1 -> UNIMPLEMENTED"
        ),
        "{text}"
    );
    assert!(
        text.contains("gRPC API called: /dapr.proto.runtime.v1.Dapr/GetMetadata"),
        "{text}"
    );
}

#[test]
fn every_skipped_resource_kind_is_one_warning_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("components.yaml"),
        format!(
            "{COMPONENTS}---\napiVersion: dapr.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: tools\n---\nkind: Componnent\nmetadata:\n  name: typo\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("sidecar.log");
    let sidecar = Sidecar::start_with(
        &dir.path().join("home"),
        "api-test",
        dir.path(),
        None,
        None,
        &[],
        Some(&log),
        &[],
    );
    drop(sidecar);
    let text = std::fs::read_to_string(&log).unwrap();
    let file = dir.path().join("components.yaml");
    let warnings: Vec<&str> = text.lines().filter(|line| line.contains("WARN")).collect();
    let unserved = format!(
        "{}: tandem does not serve `kind: MCPServer` resources yet",
        file.display()
    );
    let typo = format!(
        "{}: `kind: Componnent` is not a Dapr resource kind; did you mean `Component`?",
        file.display()
    );
    assert_eq!(
        warnings.iter().filter(|l| l.contains(&unserved)).count(),
        1,
        "{text}"
    );
    assert_eq!(
        warnings.iter().filter(|l| l.contains(&typo)).count(),
        1,
        "{text}"
    );
}

/// A component file as daprd reads it, with `spec` fields after `metadata`.
fn component_file(name: &str, kind: &str, metadata: &[(&str, &str)], spec_extra: &str) -> String {
    let mut text = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  version: v1\n{spec_extra}  metadata:\n"
    );
    for (field, value) in metadata {
        text.push_str(&format!("  - name: {field}\n    value: \"{value}\"\n"));
    }
    text
}

/// Starts a sidecar over `resources`, which must refuse to start: its stderr.
fn refused_start(resources: &std::path::Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["sidecar", "--app-id", "api-test", "--resources-path"])
        .arg(resources)
        .args(["--dapr-http-port", &tandem_testkit::free_port().to_string()])
        .args(["--dapr-grpc-port", &tandem_testkit::free_port().to_string()])
        .env("TANDEM_HOME", resources.join("home"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ignore_errors_leaves_a_failing_component_out_and_init_timeout_bounds_it() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", tandem_testkit::free_port());
    std::fs::write(
        dir.path().join("components.yaml"),
        [
            component_file("store", "state.in-memory", &[], ""),
            component_file(
                "broken",
                "pubsub.redis",
                &[("redisHost", &nobody)],
                "  ignoreErrors: true\n",
            ),
            component_file("future", "pubsub.future", &[], "  ignoreErrors: true\n"),
            component_file(
                "limits",
                "middleware.http.ratelimit",
                &[],
                "  ignoreErrors: true\n",
            ),
        ]
        .join("---\n"),
    )
    .unwrap();
    let log = dir.path().join("sidecar.log");
    let sidecar = Sidecar::start_with(
        &dir.path().join("home"),
        "api-test",
        dir.path(),
        None,
        None,
        &[],
        Some(&log),
        &[],
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&common::raw_request(sidecar.http, "GET", "/v1.0/metadata").1)
            .unwrap();
    let names: Vec<&str> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|component| component["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store"], "{metadata}");
    drop(sidecar);
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|line| line.contains("WARN")).collect();
    for name in ["'broken'", "'future'", "'limits'"] {
        assert!(
            warnings
                .iter()
                .any(|line| line.contains(name) && line.contains("left out (spec.ignoreErrors)")),
            "{name}: {text}"
        );
    }

    // Without ignoreErrors, a component that takes longer than its initTimeout stops
    // the sidecar naming the field. (A TCP listener that never answers holds the
    // Redis handshake.)
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_host = silent.local_addr().unwrap().to_string();
    std::fs::write(
        dir.path().join("components.yaml"),
        component_file(
            "slow",
            "pubsub.redis",
            &[("redisHost", &silent_host)],
            "  initTimeout: 300ms\n",
        ),
    )
    .unwrap();
    let stderr = refused_start(dir.path());
    assert!(
        stderr.contains("Component 'slow'")
            && stderr.contains("spec.initTimeout")
            && stderr.contains("not initialised within 300ms"),
        "{stderr}"
    );
    drop(silent);

    // A block tandem does not serve yet is an error that says so, unless ignored.
    std::fs::write(
        dir.path().join("components.yaml"),
        component_file("flows", "workflow.dapr", &[], ""),
    )
    .unwrap();
    let stderr = refused_start(dir.path());
    assert!(
        stderr.contains("Component 'flows'")
            && stderr.contains("spec.type")
            && stderr.contains("does not serve the 'workflow' building block")
            && stderr.contains("spec.ignoreErrors"),
        "{stderr}"
    );
}
