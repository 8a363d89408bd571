//! The HTTP invocation API: `/v1.0/invoke/{app-id}/method/{path}` with any verb, and
//! the `dapr-app-id` header form, where any path on the sidecar is a method of the app
//! the header names.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tandem_runtime::{DATA_TYPE_URL_HEADER, GRPC_CODE_HEADER, InvokeRequest, InvokeResponse};

use super::Api;
use super::extract::{Body, read_body};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/v1.0/invoke/{*rest}", any(invoke))
}

/// Splits `{target}/method/{path}`; the target may itself be a URL
/// (`https://api.example.com/method/v1/items`).
fn split_target(rest: &str) -> Option<(&str, &str)> {
    let at = rest.find("/method/")?;
    Some((&rest[..at], &rest[at + "/method/".len()..]))
}

async fn invoke(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let rest = uri.path().trim_start_matches("/v1.0/invoke/");
    let (target, path) = split_target(rest).ok_or_else(|| {
        ApiError::malformed(format!(
            "{} is not an invocation path: expected /v1.0/invoke/<app-id>/method/<method>",
            uri.path()
        ))
    })?;
    // The app id arrives percent-encoded, as any path segment; daprd decodes it.
    let target = percent_encoding::percent_decode_str(target)
        .decode_utf8()
        .map_err(|_| ApiError::malformed(format!("the app id in {} is not UTF-8", uri.path())))?;
    let response = api
        .runtime
        .invoker()
        .invoke(InvokeRequest {
            target: target.into_owned(),
            method,
            path: path.to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
        })
        .await?;
    Ok(into_response(response))
}

/// The `dapr-app-id` header form: a request the API itself does not serve, for the app
/// named in the header.
pub(super) async fn invoke_by_header(api: &Api, request: Request) -> Result<Response, ApiError> {
    let target = request
        .headers()
        .get("dapr-app-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = request.into_parts();
    let body = read_body(body, api.max_body_size).await?;
    let response = api
        .runtime
        .invoker()
        .invoke(InvokeRequest {
            target,
            method: parts.method,
            path: parts.uri.path().trim_start_matches('/').to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
        })
        .await?;
    Ok(into_response(response))
}

/// The target's answer, passed through as it is.
pub(crate) fn into_response(mut response: InvokeResponse) -> Response {
    // What tandem carries for gRPC callers is not for HTTP ones.
    response.headers.remove(DATA_TYPE_URL_HEADER);
    response.headers.remove(GRPC_CODE_HEADER);
    let mut answer = (response.status, response.body).into_response();
    answer.headers_mut().extend(response.headers);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_may_be_app_ids_or_urls() {
        assert_eq!(
            split_target("orders/method/neworder"),
            Some(("orders", "neworder"))
        );
        assert_eq!(
            split_target("orders.prod/method/a/b"),
            Some(("orders.prod", "a/b"))
        );
        assert_eq!(
            split_target("https://api.example.com/method/v1/items"),
            Some(("https://api.example.com", "v1/items"))
        );
        assert_eq!(split_target("orders/neworder"), None);
    }
}
