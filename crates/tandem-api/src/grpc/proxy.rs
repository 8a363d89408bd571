//! gRPC proxying's door: a call of a service the sidecar does not serve, with
//! `dapr-app-id` metadata, is a call for that app's gRPC server
//! ([`Invoker::proxy`](tandem_runtime::Invoker::proxy) takes it there). The token is
//! checked as on the rest of the API; without `dapr-app-id` the call is answered
//! `UNIMPLEMENTED`, as before.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use tandem_runtime::{ProxyBody, ProxyRequest, Runtime};
use tonic::Status;

use crate::auth::ApiToken;
use crate::error::ApiError;

/// Marks an answer that came from the target app, so the layers over the API leave
/// its status as the app gave it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proxied;

/// The metadata naming the target app. `dapr-callee-app-id` wins over `dapr-app-id`,
/// as in daprd.
fn target(request: &Request<Body>) -> Option<String> {
    ["dapr-callee-app-id", "dapr-app-id"]
        .iter()
        .find_map(|name| {
            request
                .headers()
                .get(*name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
}

/// The fallback of the gRPC server: every call no service there matched.
pub(crate) async fn fallback(
    runtime: Arc<Runtime>,
    token: ApiToken,
    request: Request<Body>,
) -> Response<Body> {
    let Some(target) = target(&request) else {
        // No message: the calls layer gives grpc-go's "unknown service" words.
        return Status::new(tonic::Code::Unimplemented, "").into_http();
    };
    let given = request
        .headers()
        .get("dapr-api-token")
        .map(http::HeaderValue::as_bytes);
    if !token.admits(given) {
        return Status::unauthenticated("authentication error: api token mismatch").into_http();
    }
    let (parts, body) = request.into_parts();
    let call = ProxyRequest {
        target,
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: ProxyBody::new(body),
    };
    match runtime.invoker().proxy(call).await {
        Ok(answer) => {
            let mut answer = answer.map(Body::new);
            answer.extensions_mut().insert(Proxied);
            answer
        }
        Err(error) => {
            tracing::debug!("a proxied gRPC call failed: {error}");
            Status::from(ApiError::from(error)).into_http()
        }
    }
}
