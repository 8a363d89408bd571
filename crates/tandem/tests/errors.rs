//! Dapr's rich errors through the binary: an illegal state key refused over gRPC with
//! daprd's `google.rpc` details (`ErrorInfo` reason, `ResourceInfo`, `BadRequest`) in
//! the status, and over HTTP as daprd's JSON with the same code and details; a missing
//! pub/sub's and a missing store's reasons.

mod common;

use common::Sidecar;
use prost::Message;
use serde_json::{Value, json};
use tandem_proto::common::StateItem;
use tandem_proto::rpc;
use tandem_proto::runtime::{PublishEventRequest, SaveStateRequest};

fn start() -> (tempfile::TempDir, Sidecar) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("components.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .unwrap();
    let sidecar = Sidecar::start(dir.path(), None, None);
    (dir, sidecar)
}

/// The `google.rpc.Status` a failed call carries, with its details by short type name.
fn rich_status(status: &tonic::Status) -> (rpc::Status, Vec<(String, Vec<u8>)>) {
    let decoded = rpc::Status::decode(status.details()).expect("a google.rpc.Status");
    let details = decoded
        .details
        .iter()
        .map(|any| {
            let name = any
                .type_url
                .strip_prefix("type.googleapis.com/google.rpc.")
                .unwrap_or(&any.type_url);
            (name.to_owned(), any.value.clone())
        })
        .collect();
    (decoded, details)
}

fn detail<'a>(details: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &details
        .iter()
        .find(|(found, _)| found == name)
        .unwrap_or_else(|| panic!("no {name} detail"))
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn an_illegal_key_is_refused_with_daprs_rich_error_over_grpc_and_http() {
    let (_dir, sidecar) = tokio::task::spawn_blocking(start).await.unwrap();
    let message = "input key/keyPrefix 'a||b' can't contain '||'";

    let mut grpc = sidecar.grpc().await;
    let status = grpc
        .save_state(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![StateItem {
                key: "a||b".into(),
                value: b"1".to_vec(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), message);
    let (decoded, details) = rich_status(&status);
    assert_eq!(
        (decoded.code, decoded.message.as_str()),
        (tonic::Code::InvalidArgument as i32, message)
    );
    let names: Vec<&str> = details.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["BadRequest", "ResourceInfo", "ErrorInfo"]);
    let info = rpc::ErrorInfo::decode(detail(&details, "ErrorInfo")).unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("DAPR_STATE_ILLEGAL_KEY", "dapr.io")
    );
    let resource = rpc::ResourceInfo::decode(detail(&details, "ResourceInfo")).unwrap();
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("state", "statestore")
    );
    let bad = rpc::BadRequest::decode(detail(&details, "BadRequest")).unwrap();
    assert_eq!(bad.field_violations.len(), 1);
    assert_eq!(bad.field_violations[0].field, "a||b");
    assert_eq!(bad.field_violations[0].description, message);

    // The HTTP door answers the same refusal as daprd's JSON, from the same table.
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/state/statestore"))
        .json(&json!([{"key": "a||b", "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "errorCode": "ERR_MALFORMED_REQUEST",
            "message": message,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "field_violations": [{"field": "a||b", "description": message}],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                    "resource_type": "state",
                    "resource_name": "statestore",
                    "owner": "",
                    "description": "",
                },
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "DAPR_STATE_ILLEGAL_KEY",
                    "domain": "dapr.io",
                    "metadata": null,
                },
            ],
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pubsub_and_store_carry_daprs_reasons() {
    let (_dir, sidecar) = tokio::task::spawn_blocking(start).await.unwrap();
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
    let (_, details) = rich_status(&status);
    // daprd leaves the resource out of a not-found pub/sub's details.
    assert_eq!(details.len(), 1);
    let info = rpc::ErrorInfo::decode(detail(&details, "ErrorInfo")).unwrap();
    assert_eq!(info.reason, "DAPR_PUBSUB_NOT_FOUND");

    let status = grpc
        .save_state(SaveStateRequest {
            store_name: "nostore".into(),
            states: vec![StateItem {
                key: "k".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let (_, details) = rich_status(&status);
    let info = rpc::ErrorInfo::decode(detail(&details, "ErrorInfo")).unwrap();
    assert_eq!(info.reason, "DAPR_STATE_NOT_FOUND");
    assert!(info.metadata.is_empty(), "{:?}", info.metadata);

    // Over HTTP daprd names the app in a missing store's details.
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/state/nostore"))
        .json(&json!([{"key": "k", "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "errorCode": "ERR_STATE_STORE_NOT_FOUND",
            "message": "state store nostore is not found",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "DAPR_STATE_NOT_FOUND",
                "domain": "dapr.io",
                "metadata": {"appID": "api-test"},
            }],
        })
    );
}
