//! The internal port: where other sidecars deliver invocations for this app, over
//! HTTP/2 (cleartext, one multiplexed connection per peer). Every request is one
//! [`Invoker::serve`](tandem_runtime::Invoker::serve) call, which first checks that the
//! caller is a sidecar holding the deployment's key; the app's answer goes back as it
//! is. Bodies are limited like the public API's. Proxied gRPC calls (marked with
//! [`PROXY_HEADER`]) stream both ways instead.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use tandem_runtime::{
    Error, FORWARD_PREFIX, PEER_REFUSED_HEADER, PROXY_HEADER, ProxyBody, Runtime,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::http::extract::read_body;

/// The internal API's routes: everything is a call for this app.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new().fallback(serve).with_state(runtime)
}

async fn serve(
    State(runtime): State<Arc<Runtime>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if headers.contains_key(PROXY_HEADER) {
        return serve_proxied(&runtime, &uri, headers, body).await;
    }
    if uri
        .path()
        .trim_start_matches('/')
        .starts_with(FORWARD_PREFIX)
    {
        return serve_actor_turn(&runtime, &uri, headers, body).await;
    }
    let target = uri
        .path_and_query()
        .map(|target| target.as_str().trim_start_matches('/'))
        .unwrap_or_default();
    let body = match read_body(body, runtime.config().max_body_size).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    match runtime.invoker().serve(method, target, headers, body).await {
        // Passed on whole, tandem's own headers included: the calling sidecar reads them.
        Ok(response) => {
            let mut answer = (response.status, response.body).into_response();
            answer.headers_mut().extend(response.headers);
            answer
        }
        Err(Error::PeerUnauthenticated(reason)) => refused(reason),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A proxied gRPC call (`dapr-app-id`) from another sidecar: streamed to the app and
/// back. Failures are answered as gRPC statuses, which the calling sidecar passes on.
async fn serve_proxied(
    runtime: &Runtime,
    uri: &Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let answer = runtime
        .invoker()
        .serve_proxied(uri.path(), headers, ProxyBody::new(body))
        .await;
    match answer {
        Ok(answer) => answer.map(axum::body::Body::new),
        Err(Error::PeerUnauthenticated(reason)) => refused(reason),
        Err(error) => tonic::Status::from(ApiError::from(error)).into_http(),
    }
}

/// An actor turn another sidecar routed here: run on this host, or answered with
/// the retry marker when this host does not hold the actor.
async fn serve_actor_turn(
    runtime: &Runtime,
    uri: &Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(body, runtime.config().max_body_size).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let path = uri.path().trim_start_matches('/');
    match runtime.actors().serve_forwarded(path, headers, body).await {
        Ok(answer) => {
            let mut response = (answer.status, answer.body).into_response();
            response.headers_mut().extend(answer.headers);
            response
        }
        Err(Error::PeerUnauthenticated(reason)) => refused(reason),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A caller that is not a sidecar of this deployment.
fn refused(reason: String) -> Response {
    tracing::warn!("refused a call on the internal port: {reason}");
    let mut response = ApiError::from(Error::PeerUnauthenticated(reason)).into_response();
    response
        .headers_mut()
        .insert(PEER_REFUSED_HEADER, HeaderValue::from_static("1"));
    response
}

/// Serves the internal API on `listener` until `stop` fires.
pub async fn serve_on(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(crate::no_delay(listener), router(runtime))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
