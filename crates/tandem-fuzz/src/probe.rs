//! Whether the sidecars still work, asked between windows of cases: both processes
//! alive, `/v1.0/healthz`, a save and read back in every state store, a publish, a gRPC
//! call, and an invocation that crosses to the peer sidecar and its app. A store left
//! broken by an earlier case (a poisoned lock) shows here even when no case noticed.

use std::time::Duration;

use bytes::Bytes;

use crate::case::{GrpcRequest, HttpRequest};
use crate::proto;
use crate::send::{self, Answer};
use crate::target::Target;
use crate::world;

/// A check that failed: what was checked, and what came back.
#[derive(Debug, Clone)]
pub struct Failure {
    pub check: String,
    pub detail: String,
}

fn request(method: &str, target: String, body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: method.as_bytes().to_vec(),
        target: target.into_bytes(),
        headers: Vec::new(),
        body: Bytes::copy_from_slice(body),
    }
}

async fn expect(
    failures: &mut Vec<Failure>,
    check: String,
    port: u16,
    request: HttpRequest,
    status: u16,
    body: Option<&[u8]>,
) {
    let answer = send::http(port, &request, Duration::from_secs(10)).await;
    let good = match &answer {
        Answer::Http(answer) => {
            answer.status == status && body.is_none_or(|body| &answer.body[..] == body)
        }
        _ => false,
    };
    if !good {
        failures.push(Failure {
            check,
            detail: answer.describe(),
        });
    }
}

/// The checks of round `round` (its number is the canary value written).
pub async fn check(target: &Target, round: u64) -> Vec<Failure> {
    let mut failures = Vec::new();
    for sidecar in [&target.main, &target.peer] {
        expect(
            &mut failures,
            format!("GET /v1.0/healthz on {}", sidecar.app_id),
            sidecar.http,
            request("GET", "/v1.0/healthz".into(), b""),
            204,
            None,
        )
        .await;
    }
    let port = target.main.http;
    let value = round.to_string();
    for store in world::STATE_STORES {
        let save = format!("[{{\"key\":\"fuzz-canary\",\"value\":{value}}}]");
        expect(
            &mut failures,
            format!("save in {store}"),
            port,
            request("POST", format!("/v1.0/state/{store}"), save.as_bytes()),
            204,
            None,
        )
        .await;
        expect(
            &mut failures,
            format!("read back from {store}"),
            port,
            request("GET", format!("/v1.0/state/{store}/fuzz-canary"), b""),
            200,
            Some(value.as_bytes()),
        )
        .await;
    }
    expect(
        &mut failures,
        format!("publish to {}", world::PUBSUB),
        port,
        request(
            "POST",
            format!("/v1.0/publish/{}/canary", world::PUBSUB),
            b"{\"canary\":true}",
        ),
        204,
        None,
    )
    .await;
    expect(
        &mut failures,
        format!("invoke {} (sidecar to sidecar)", world::PEER_APP_ID),
        port,
        request(
            "POST",
            format!("/v1.0/invoke/{}/method/canary", world::PEER_APP_ID),
            value.as_bytes(),
        ),
        200,
        Some(value.as_bytes()),
    )
    .await;
    let metadata = GrpcRequest {
        path: "/dapr.proto.runtime.v1.Dapr/GetMetadata".into(),
        content_type: "application/grpc".into(),
        metadata: Vec::new(),
        body: Bytes::from(proto::frame(&[])),
    };
    let answer = send::grpc(target.main.grpc, &metadata, Duration::from_secs(10)).await;
    if !matches!(&answer, Answer::Grpc(answer) if answer.code == Some(0)) {
        failures.push(Failure {
            check: "gRPC GetMetadata".into(),
            detail: answer.describe(),
        });
    }
    failures
}
