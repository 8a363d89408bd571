//! Service invocation: `/v1.0/invoke/{app-id}/method/{path}` and gRPC `InvokeService`.
//!
//! The calling sidecar finds the target's sidecars by app id (a [`Locate`]
//! implementation: the machine's registry, or DNS on Kubernetes), picks one, and sends
//! the request over its pooled HTTP/2 connection to that sidecar's internal port; the
//! receiving sidecar calls its app over its app channel and the answer travels back
//! unchanged — status, headers and body. Calling this sidecar's own app id goes
//! straight to the app channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use tandem_resiliency::Verdict;

pub(crate) use cache::ResponseCaches;

use crate::app_channel::AppResponse;
use crate::error::Error;
use crate::runtime::Runtime;

mod cache;

pub use cache::CACHE_HEADER;

/// The header naming the app that made a call.
pub const CALLER_HEADER: &str = "dapr-caller-app-id";
/// The header naming the app a call is for.
pub const CALLEE_HEADER: &str = "dapr-callee-app-id";

/// Finds the sidecars of an app id.
#[async_trait]
pub trait Locate: Send + Sync {
    /// The internal addresses of `app_id`'s sidecars, in the order to try them
    /// (already balanced across instances).
    async fn locate(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, String>;
    /// `address` refused a connection: skip it for a while.
    fn unreachable(&self, app_id: &str, address: SocketAddr);
}

/// One invocation, as both front doors receive it.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The target as the caller named it: `orders`, `orders.prod`, `https://host`.
    pub target: String,
    pub method: Method,
    /// The method path, without a leading `/`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the target answered.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl From<AppResponse> for InvokeResponse {
    fn from(response: AppResponse) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

/// Pooled connections: HTTP/2 to other sidecars' internal ports, and HTTP/1.1 or
/// HTTP/2 (over TLS for `https://`) to outside services.
#[derive(Clone)]
pub(crate) struct Peers {
    client: Client<HttpConnector, Full<Bytes>>,
    outside: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Peers {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        connector.enforce_http(false);
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let outside = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Self { client, outside }
    }

    /// Calls an outside service at `url`.
    async fn send_outside(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body))
            .map_err(|error| format!("'{url}' is not a valid URL: {error}"))?;
        *request.headers_mut() = headers;
        let response = self.outside.request(request).await.map_err(|error| {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            format!("calling {url}: {reason}")
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| format!("reading the answer of {url}: {error}"))?
            .to_bytes();
        Ok(InvokeResponse {
            status: parts.status,
            headers: forwardable(&parts.headers),
            body,
        })
    }

    async fn send(
        &self,
        address: SocketAddr,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, PeerError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{address}/{path_and_query}"))
            .body(Full::new(body))
            .map_err(|error| PeerError::Other(error.to_string()))?;
        *request.headers_mut() = headers;
        let response = self.client.request(request).await.map_err(|error| {
            if error.is_connect() {
                PeerError::Unreachable(error.to_string())
            } else {
                PeerError::Other(error.to_string())
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| PeerError::Other(error.to_string()))?
            .to_bytes();
        Ok(InvokeResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// One invocation attempt that did not succeed.
enum Attempt {
    /// The target answered with a failing status (which may be retried).
    Answered(InvokeResponse),
    /// No answer at all.
    Failed(Error),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Answered(response) => write!(f, "the target answered {}", response.status),
            Attempt::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// Why a call did not reach another sidecar.
enum Reach {
    /// No instance accepted the connection (or none is running): worth retrying.
    Unreachable(String),
    Broken(String),
}

impl Reach {
    fn into_reason(self) -> String {
        match self {
            Reach::Unreachable(reason) | Reach::Broken(reason) => reason,
        }
    }
}

#[derive(Debug)]
enum PeerError {
    /// Nothing accepted the connection: another instance may.
    Unreachable(String),
    Other(String),
}

/// Headers that belong to one connection, not to the call, and are never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "dapr-app-id"
            | "dapr-api-token"
    )
}

/// The caller's headers, cleaned for forwarding.
pub(crate) fn forwardable(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn path_and_query(path: &str, query: Option<&str>) -> String {
    let path = path.trim_start_matches('/');
    match query.filter(|query| !query.is_empty()) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// `orders.prod` → (`orders`, Some(`prod`)).
fn split_namespace(target: &str) -> (&str, Option<&str>) {
    match target.split_once('.') {
        Some((app_id, namespace)) if !namespace.is_empty() => (app_id, Some(namespace)),
        _ => (target, None),
    }
}

impl Runtime {
    /// Invokes a method of another app (or an outside service) through its sidecar,
    /// under the target's resiliency policies: its retries, timeout and circuit breaker
    /// (`targets.apps`), and Dapr's built-in retries of unreachable sidecars.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, Error> {
        if request.target.is_empty() {
            return Err(Error::InvokeNoAppId);
        }
        self.invoke_cached(request).await
    }

    /// An invocation without the response cache.
    async fn invoke_uncached(&self, request: InvokeRequest) -> Result<InvokeResponse, Error> {
        let (app_id, _) = split_namespace(&request.target);
        let policy = self.resiliency().for_app(app_id);
        let attempt = || async {
            let response = self.invoke_once(&request).await.map_err(Attempt::Failed)?;
            // Dapr counts an answer below 200 or above 399 as a failed call: the retry
            // policy may retry it and the circuit breaker counts it.
            let failed = response.status.as_u16() < 200 || response.status.as_u16() > 399;
            if failed && !policy.is_none() {
                return Err(Attempt::Answered(response));
            }
            Ok(response)
        };
        let classify = |attempt: &Attempt| match attempt {
            Attempt::Answered(response) => {
                Verdict::retry_if(policy.retries_status(response.status.as_u16()))
            }
            Attempt::Failed(_) => Verdict::Retryable,
        };
        match policy.run(attempt, classify).await {
            Ok(response) => Ok(response),
            Err(failure) => {
                let reason = failure.to_string();
                match failure.into_error() {
                    // The target answered every time: its last answer is the answer.
                    Some(Attempt::Answered(response)) => Ok(response),
                    Some(Attempt::Failed(error)) if policy.retry().is_none() => Err(error),
                    _ => Err(Error::Invoke {
                        app_id: request.target.clone(),
                        reason,
                    }),
                }
            }
        }
    }

    /// One attempt: an outside service, this app, or another app's sidecar (with the
    /// built-in retries when none of its sidecars can be reached).
    async fn invoke_once(&self, request: &InvokeRequest) -> Result<InvokeResponse, Error> {
        let (app_id, namespace) = split_namespace(&request.target);
        let namespace = namespace.or(self.config().namespace.as_deref());
        let mut headers = forwardable(&request.headers);
        if let Ok(caller) = HeaderValue::from_str(self.app_id()) {
            headers.insert(CALLER_HEADER, caller);
        }
        if let Ok(callee) = HeaderValue::from_str(app_id) {
            headers.insert(CALLEE_HEADER, callee);
        }
        let target = path_and_query(&request.path, request.query.as_deref());

        if let Some((base_url, extra)) = self.outside_target(&request.target) {
            // An outside service: its own headers win over the caller's.
            for (name, value) in extra.iter() {
                headers.insert(name.clone(), value.clone());
            }
            headers.remove(CALLEE_HEADER);
            let url = format!("{}/{target}", base_url.trim_end_matches('/'));
            return self
                .peers()
                .send_outside(request.method.clone(), &url, headers, request.body.clone())
                .await
                .map_err(|reason| Error::Invoke {
                    app_id: request.target.clone(),
                    reason,
                });
        }
        if app_id == self.app_id() && namespace == self.config().namespace.as_deref() {
            return self
                .call_own_app(
                    request.method.clone(),
                    &target,
                    headers,
                    request.body.clone(),
                )
                .await;
        }
        let failed = |reason: String| Error::Invoke {
            app_id: request.target.clone(),
            reason,
        };
        let locate = self
            .locator()
            .ok_or_else(|| failed("service invocation is not set up in this sidecar".into()))?;
        let send = || async {
            let addresses = locate
                .locate(app_id, namespace)
                .await
                .map_err(Reach::Unreachable)?;
            let mut last_error = format!("no sidecar of app '{app_id}' is running");
            for address in addresses {
                match self
                    .peers()
                    .send(
                        address,
                        request.method.clone(),
                        &target,
                        headers.clone(),
                        request.body.clone(),
                    )
                    .await
                {
                    Ok(response) => return Ok(response),
                    Err(PeerError::Unreachable(error)) => {
                        // That instance is gone: try the next one.
                        locate.unreachable(app_id, address);
                        last_error = format!("the sidecar at {address} is unreachable: {error}");
                    }
                    Err(PeerError::Other(error)) => {
                        return Err(Reach::Broken(format!(
                            "calling the sidecar at {address}: {error}"
                        )));
                    }
                }
            }
            Err(Reach::Unreachable(last_error))
        };
        let sent = match self.resiliency().built_in_service_retries(app_id) {
            None => send().await.map_err(Reach::into_reason),
            Some(retries) => retries
                .run(send, |reach| {
                    Verdict::retry_if(matches!(reach, Reach::Unreachable(_)))
                })
                .await
                .map_err(|failure| match failure.into_error() {
                    Some(reach) => reach.into_reason(),
                    None => "the built-in retries gave up".to_owned(),
                }),
        };
        sent.map_err(failed)
    }

    /// An outside target: a URL (`https://api.example.com`) or an `HTTPEndpoint` name,
    /// with the headers to add.
    fn outside_target(&self, target: &str) -> Option<(String, HeaderMap)> {
        if target.starts_with("http://") || target.starts_with("https://") {
            return Some((target.to_owned(), HeaderMap::new()));
        }
        self.components()
            .http_endpoints
            .get(target)
            .map(|endpoint| (endpoint.base_url.clone(), endpoint.headers.clone()))
    }

    /// The receiving side: a call from another sidecar for this app.
    pub async fn serve_invocation(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, Error> {
        if let Some(callee) = headers
            .get(CALLEE_HEADER)
            .and_then(|value| value.to_str().ok())
            && callee != self.app_id()
        {
            return Err(Error::Invoke {
                app_id: callee.to_owned(),
                reason: format!("this sidecar serves app '{}'", self.app_id()),
            });
        }
        self.call_own_app(method, path_and_query, forwardable(&headers), body)
            .await
    }

    async fn call_own_app(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, Error> {
        let app = self.app_channel().ok_or_else(|| Error::Invoke {
            app_id: self.app_id().to_owned(),
            reason: "the app has no port (--app-port), so it cannot be called".into(),
        })?;
        headers.remove(header::HOST);
        let response = app
            .call(method, &format!("/{path_and_query}"), headers, body)
            .await
            .map_err(|reason| Error::Invoke {
                app_id: self.app_id().to_owned(),
                reason,
            })?;
        let mut response = InvokeResponse::from(response);
        response.headers = forwardable(&response.headers);
        Ok(response)
    }
}

pub(crate) type SharedLocator = Arc<dyn Locate>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_paths_are_split_as_dapr_does() {
        assert_eq!(split_namespace("orders"), ("orders", None));
        assert_eq!(split_namespace("orders.prod"), ("orders", Some("prod")));
        assert_eq!(path_and_query("/neworder", Some("a=1")), "neworder?a=1");
        assert_eq!(path_and_query("a/b", None), "a/b");
        assert_eq!(path_and_query("a", Some("")), "a");
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("dapr-app-id", HeaderValue::from_static("orders"));
        headers.insert("x-request-id", HeaderValue::from_static("42"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let forwarded = forwardable(&headers);
        assert_eq!(forwarded.len(), 2);
        assert!(forwarded.contains_key("x-request-id") && forwarded.contains_key("content-type"));
    }
}
