//! Odd input through the binary: out-of-range numbers, oversized bodies, malformed
//! paths, unknown methods, illegal keys and app ids. Each is answered with Dapr's error
//! shape and status, nothing is half-written, and the sidecar keeps serving.

mod common;

use std::path::Path;

use axum::Router;
use axum::routing::any;
use common::{Sidecar, assert_error};
use serde_json::{Value, json};
use tandem_proto::common::StateItem;
use tandem_proto::runtime::{
    ExecuteStateTransactionRequest, GetSecretRequest, GetStateRequest, InvokeServiceRequest,
    SaveStateRequest, TransactionalStateOperation,
};

/// An in-memory store, the embedded SQLite store and an in-memory broker.
fn write_components(dir: &Path) {
    std::fs::write(
        dir.join("components.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: memory\nspec:\n  type: state.in-memory\n  version: v1\n---\nkind: Component\nmetadata:\n  name: embedded\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n---\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.in-memory\n  version: v1\n---\nkind: Component\nmetadata:\n  name: env\nspec:\n  type: secretstores.local.env\n  version: v1\n",
            dir.join("state.db").display()
        ),
    )
    .unwrap();
}

async fn start(dir: &Path, app_port: Option<u16>, extra: &'static [&'static str]) -> Sidecar {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        Sidecar::start_with(
            &dir.join("home"),
            "robust",
            &dir,
            app_port,
            None,
            extra,
            Some(&dir.join("sidecar.log")),
            &[],
        )
    })
    .await
    .unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sidecar.log")).unwrap_or_default()
}

async fn save(
    http: &reqwest::Client,
    sidecar: &Sidecar,
    store: &str,
    body: Value,
) -> reqwest::Response {
    http.post(sidecar.url(&format!("/v1.0/state/{store}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn read(http: &reqwest::Client, sidecar: &Sidecar, store: &str, key: &str) -> Option<String> {
    let response = http
        .get(sidecar.url(&format!("/v1.0/state/{store}/{key}")))
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        204 => None,
        200 => Some(response.text().await.unwrap()),
        other => panic!("reading {key} answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_ttls_are_refused_and_no_store_is_bricked() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path());
    let sidecar = start(dir.path(), None, &[]).await;
    let http = reqwest::Client::new();

    for store in ["memory", "embedded"] {
        for ttl in ["9223372036854775807", "2147483648", "-2", "1.5", "soon"] {
            let response = save(
                &http,
                &sidecar,
                store,
                json!([{"key": "k", "value": 1, "metadata": {"ttlInSeconds": ttl}}]),
            )
            .await;
            let body = assert_error(response, 400, "ERR_MALFORMED_REQUEST").await;
            assert!(
                body["message"].as_str().unwrap().contains("ttlInSeconds"),
                "{body}"
            );
        }
        // Nothing was written, and the store still works for the next call.
        assert_eq!(read(&http, &sidecar, store, "k").await, None);
        let ok = save(
            &http,
            &sidecar,
            store,
            json!([{"key": "k", "value": 2, "metadata": {"ttlInSeconds": "2147483647"}}]),
        )
        .await;
        assert_eq!(ok.status(), 204, "{store}");
        assert_eq!(
            read(&http, &sidecar, store, "k").await.as_deref(),
            Some("2")
        );
        // A bad item anywhere in a bulk save: nothing of it is written.
        let bulk = save(
            &http,
            &sidecar,
            store,
            json!([
                {"key": "first", "value": 1},
                {"key": "second", "value": 2, "metadata": {"ttlInSeconds": "9223372036854775807"}},
            ]),
        )
        .await;
        assert_error(bulk, 400, "ERR_MALFORMED_REQUEST").await;
        assert_eq!(read(&http, &sidecar, store, "first").await, None);
        // And in a transaction.
        let transaction = http
            .post(sidecar.url(&format!("/v1.0/state/{store}/transaction")))
            .json(&json!({"operations": [
                {"operation": "upsert", "request": {"key": "x", "value": 1}},
                {"operation": "upsert", "request": {"key": "y", "value": 2, "metadata": {"ttlInSeconds": "9223372036854775807"}}},
                {"operation": "upsert", "request": {"key": "z", "value": 3}},
            ]}))
            .send()
            .await
            .unwrap();
        assert_error(transaction, 400, "ERR_MALFORMED_REQUEST").await;
        for key in ["x", "y", "z"] {
            assert_eq!(
                read(&http, &sidecar, store, key).await,
                None,
                "{store} {key}"
            );
        }
    }

    // Over gRPC too.
    let mut grpc = sidecar.grpc().await;
    let refused = grpc
        .save_state(SaveStateRequest {
            store_name: "memory".into(),
            states: vec![StateItem {
                key: "g".into(),
                value: b"1".to_vec(),
                metadata: [("ttlInSeconds".to_owned(), "9223372036854775807".to_owned())].into(),
                ..StateItem::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A publish with the largest TTL is accepted, as daprd accepts it (capped to the
    // longest duration it can hold); one of zero or less is refused.
    let publish = |ttl: &'static str| {
        http.post(sidecar.url(&format!(
            "/v1.0/publish/events/orders?metadata.ttlInSeconds={ttl}"
        )))
        .body("x")
        .send()
    };
    assert_eq!(publish("9223372036854775807").await.unwrap().status(), 204);
    let refused = publish("-1").await.unwrap();
    let body = assert_error(refused, 400, "ERR_PUBSUB_CLOUD_EVENTS_SER").await;
    assert!(body["message"].as_str().unwrap().contains("ttlInSeconds"));

    assert_eq!(common::get_status(&sidecar.url("/v1.0/healthz")), Some(204));
    assert!(!log_of(dir.path()).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_up_to_the_limit_are_taken_and_larger_ones_refused_in_daprs_shape() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path());
    let sidecar = start(dir.path(), None, &[]).await;
    let http = reqwest::Client::new();
    let value = |size: usize| json!([{"key": "big", "value": "x".repeat(size)}]);

    // Dapr's default is 4 MiB: 3 MiB is taken (axum alone stops at 2 MiB).
    let taken = save(&http, &sidecar, "memory", value(3 << 20)).await;
    assert_eq!(taken.status(), 204);
    let refused = save(&http, &sidecar, "memory", value(5 << 20)).await;
    let body = assert_error(refused, 400, "ERR_BODY_READ").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-size")
    );
    // The `dapr-app-id` form reads its body with the same limit.
    let refused = http
        .post(sidecar.url("/anything"))
        .header("dapr-app-id", "elsewhere")
        .body(vec![b'x'; 5 << 20])
        .send()
        .await
        .unwrap();
    assert_error(refused, 400, "ERR_BODY_READ").await;
    // gRPC messages too.
    let mut grpc = sidecar.grpc().await;
    let refused = grpc
        .save_state(SaveStateRequest {
            store_name: "memory".into(),
            states: vec![StateItem {
                key: "g".into(),
                value: vec![b'x'; 5 << 20],
                ..StateItem::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);

    // `--max-body-size` raises it, in Dapr's units.
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path());
    let larger = start(dir.path(), None, &["--max-body-size", "16Mi"]).await;
    let taken = save(&http, &larger, "memory", value(10 << 20)).await;
    assert_eq!(taken.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_oversized_answer_is_refused_not_read_whole() {
    // An app that answers 8 MiB to every call.
    let app = Router::new().fallback(any(|| async { vec![b'x'; 8 << 20] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path());
    let sidecar = start(dir.path(), Some(port), &[]).await;
    let response = reqwest::Client::new()
        .get(sidecar.url("/v1.0/invoke/robust/method/big"))
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 500, "ERR_DIRECT_INVOKE").await;
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_daprs_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_components(dir.path());
    let sidecar = start(dir.path(), None, &[]).await;
    let http = reqwest::Client::new();

    // A path that does not decode.
    let response = http
        .get(sidecar.url("/v1.0/state/memory/%FF"))
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "ERR_MALFORMED_REQUEST").await;
    // Unknown paths and methods: daprd's fallback, which wants a dapr-app-id.
    for (method, path) in [
        ("PATCH", "/v1.0/state/memory"),
        ("GET", "/v1.0/publish/events/orders"),
        ("GET", "/v1.0/nothing-here"),
        ("FOO", "/v1.0/metadata"),
    ] {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                sidecar.url(path),
            )
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 404, "ERR_DIRECT_INVOKE").await;
        assert!(body["message"].as_str().unwrap().contains("dapr-app-id"));
    }
    // Invalid app ids are the caller's fault (sent as written: clients drop `..`).
    for target in ["..", "a.b.c", "orders."] {
        let path = format!("/v1.0/invoke/{target}/method/x");
        let (status, body) = common::raw_request(sidecar.http, "POST", &path);
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    }
    let mut grpc = sidecar.grpc().await;
    let refused = grpc
        .invoke_service(InvokeServiceRequest {
            id: "..".into(),
            message: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // An empty topic.
    let response = http
        .post(sidecar.url("/v1.0/publish/events//"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "ERR_TOPIC_NAME_EMPTY").await;

    // Keys: `||` is refused everywhere, an empty key is refused in writes.
    let illegal = [
        save(&http, &sidecar, "memory", json!([{"key": "a||b", "value": 1}])).await,
        save(&http, &sidecar, "memory", json!([{"key": "", "value": 1}])).await,
        http.get(sidecar.url("/v1.0/state/memory/a||b")).send().await.unwrap(),
        http.delete(sidecar.url("/v1.0/state/memory/a||b")).send().await.unwrap(),
        http.post(sidecar.url("/v1.0/state/memory/bulk"))
            .json(&json!({"keys": ["ok", "a||b"]}))
            .send()
            .await
            .unwrap(),
        http.post(sidecar.url("/v1.0/state/memory/transaction"))
            .json(&json!({"operations": [{"operation": "upsert", "request": {"key": "", "value": 1}}]}))
            .send()
            .await
            .unwrap(),
        http.post(sidecar.url("/v1.0/state/memory/transaction"))
            .json(&json!({"operations": [{"operation": "delete", "request": {"key": "a||b"}}]}))
            .send()
            .await
            .unwrap(),
    ];
    for response in illegal {
        assert_error(response, 400, "ERR_MALFORMED_REQUEST").await;
    }
    assert_eq!(read(&http, &sidecar, "memory", "a").await, None);
    let refused = grpc
        .get_state(GetStateRequest {
            store_name: "memory".into(),
            key: "a||b".into(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let refused = grpc
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "memory".into(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(StateItem::default()),
            }],
            ..ExecuteStateTransactionRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // A secret with no name.
    let refused = grpc
        .get_secret(GetSecretRequest {
            store_name: "env".into(),
            ..GetSecretRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    assert_eq!(common::get_status(&sidecar.url("/v1.0/healthz")), Some(204));
    assert!(!log_of(dir.path()).contains("panicked"));
}
