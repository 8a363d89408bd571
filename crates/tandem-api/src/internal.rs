//! The internal port: where other sidecars deliver invocations for this app, over
//! HTTP/2 (cleartext, one multiplexed connection per peer). Every request is one
//! `Runtime::serve_invocation` call; the app's answer goes back as it is.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use tandem_runtime::Runtime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::http::invoke_response;

/// The internal API's routes: everything is a call for this app.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new().fallback(serve).with_state(runtime)
}

async fn serve(
    State(runtime): State<Arc<Runtime>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = uri
        .path_and_query()
        .map(|target| target.as_str().trim_start_matches('/'))
        .unwrap_or_default();
    let response = runtime
        .serve_invocation(method, target, headers, body)
        .await?;
    Ok(invoke_response(response))
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
