//! Service invocation: `/v1.0/invoke/{app-id}/method/{path}` and gRPC `InvokeService`.
//!
//! [`Invoker`] finds the target's sidecars by app id (a [`Locate`] implementation: the
//! machine's registry, or DNS on Kubernetes), picks one, and sends the request, signed
//! with the deployment's [`PeerKey`], over a pooled HTTP/2 connection to that sidecar's
//! internal port; the receiving sidecar checks the signature ([`Invoker::serve`]) and
//! calls its app over its app channel, and the answer travels back unchanged — status,
//! headers and body. Calling this sidecar's own app id goes straight to the app channel;
//! an URL or an `HTTPEndpoint` name goes to that outside service. Cached calls
//! ([`cache`]) and resiliency policies wrap it all.

mod cache;
pub(crate) mod peer_auth;
pub(crate) mod peers;
mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tandem_resiliency::{Resiliencies, Verdict};

use crate::app_channel::{AppChannel, AppResponse};
use crate::error::Error;
use crate::state::StateService;

pub use cache::CACHE_HEADER;
pub use peer_auth::{
    MAX_SKEW, PEER_AUTH_HEADER, PEER_REFUSED_HEADER, PeerAuthError, PeerKey, PeerKeyError,
};

pub use proxy::{PROXY_HEADER, ProxyBody, ProxyError, ProxyRequest};

use cache::ResponseCaches;
use peers::{PeerError, Peers};

/// The header naming the app that made a call.
pub const CALLER_HEADER: &str = "dapr-caller-app-id";
/// The header naming the app a call is for.
pub const CALLEE_HEADER: &str = "dapr-callee-app-id";

/// Why the sidecars of an app id could not be found.
pub type LocateError = Box<dyn std::error::Error + Send + Sync>;

/// Finds the sidecars of an app id.
#[async_trait]
pub trait Locate: Send + Sync {
    /// The internal addresses of `app_id`'s sidecars, in the order to try them
    /// (already balanced across instances).
    async fn locate(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, LocateError>;
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

/// An `HTTPEndpoint` ready to call: its base URL and its resolved headers.
#[derive(Debug, Clone)]
pub(crate) struct HttpEndpointTarget {
    pub base_url: String,
    pub headers: HeaderMap,
}

/// Service invocation for one sidecar: calls out, and calls in from other sidecars.
pub struct Invoker {
    app_id: String,
    namespace: Option<String>,
    app: Option<AppChannel>,
    /// Finds other apps' sidecars; `None` where invocation is not set up.
    locator: Option<Arc<dyn Locate>>,
    peers: Peers,
    endpoints: HashMap<String, HttpEndpointTarget>,
    resiliency: Arc<Resiliencies>,
    /// The first levels of cached calls, per target.
    caches: ResponseCaches,
    /// Where cached answers are shared between sidecars (a policy's `store`).
    state: Arc<StateService>,
    peer_key: Arc<PeerKey>,
    /// The app's health (`--enable-app-health-check`): calls for an unhealthy app are
    /// refused, as `daprd` refuses them. `None`: not checked.
    app_health: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Invoker {
    /// The names of the loaded `HTTPEndpoint` resources, sorted, for the metadata API.
    pub(crate) fn endpoint_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.endpoints.keys().cloned().collect();
        names.sort_unstable();
        names
    }
}

/// What an invoker needs to be made.
pub(crate) struct InvokerParts {
    pub app_id: String,
    pub namespace: Option<String>,
    pub app: Option<AppChannel>,
    pub locator: Option<Arc<dyn Locate>>,
    pub endpoints: HashMap<String, HttpEndpointTarget>,
    pub resiliency: Arc<Resiliencies>,
    pub state: Arc<StateService>,
    pub peer_key: Arc<PeerKey>,
    pub max_body_size: usize,
    pub app_health: Option<tokio::sync::watch::Receiver<bool>>,
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

/// Headers that belong to one connection or to the sidecars, not to the call, and are
/// never forwarded.
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
            | PEER_AUTH_HEADER
            | PEER_REFUSED_HEADER
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

/// A method name as a gRPC caller gives it (plain text) made into a request path:
/// characters a URL path cannot hold are percent-encoded, as Go's URL handling in daprd
/// encodes them; control characters are refused.
pub fn method_path(method: &str) -> Result<String, Error> {
    // RFC 3986 `pchar` plus `/`; `%` is kept, as the name may already be encoded.
    url_text("method", method, "-._~!$&'()*+,;=:@/%")
}

/// A query string as a gRPC caller gives it (`http_extension.querystring`), made fit
/// for a URL the same way.
pub fn query_text(query: &str) -> Result<String, Error> {
    url_text("querystring", query, "-._~!$&'()*+,;=:@/?%")
}

fn url_text(what: &str, text: &str, kept: &str) -> Result<String, Error> {
    if text.chars().any(char::is_control) {
        return Err(Error::Malformed(format!(
            "invalid {what} {text:?}: it contains control characters"
        )));
    }
    let mut encoded = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || kept.contains(c) {
            encoded.push(c);
        } else {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    Ok(encoded)
}

/// The method path without `.` and `..` segments (RFC 3986's remove_dot_segments),
/// as daprd cleans it: `a/../admin` reaches the app as `admin`, so an app or a rule
/// that trusts the path sees the one actually called.
fn without_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
        // A trailing `.` or `..` still names a folder.
        if index == last && matches!(*segment, "." | "..") {
            kept.push("");
        }
    }
    kept.join("/")
}

fn path_and_query(path: &str, query: Option<&str>) -> String {
    let path = without_dot_segments(path.trim_start_matches('/'));
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

/// Whether `target` can name an app: `app-id` or `app-id.namespace`, as daprd splits
/// it, and nothing that would change the request's path when forwarded.
fn is_app_id(target: &str) -> bool {
    let mut parts = target.split('.');
    let valid_part = |part: Option<&str>| {
        part.is_some_and(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| !(c.is_control() || c.is_whitespace() || "/\\?#%".contains(c)))
        })
    };
    let app = parts.next();
    match (parts.next(), parts.next()) {
        (None, _) => valid_part(app),
        (Some(namespace), None) => valid_part(app) && valid_part(Some(namespace)),
        _ => false,
    }
}

impl Invoker {
    pub(crate) fn new(parts: InvokerParts) -> Self {
        Self {
            app_id: parts.app_id,
            namespace: parts.namespace,
            app: parts.app,
            locator: parts.locator,
            peers: Peers::new(parts.max_body_size),
            endpoints: parts.endpoints,
            resiliency: parts.resiliency,
            caches: ResponseCaches::default(),
            state: parts.state,
            peer_key: parts.peer_key,
            app_health: parts.app_health,
        }
    }

    /// Invokes a method of another app (or an outside service) through its sidecar,
    /// under the target's resiliency policies: its retries, timeout and circuit breaker
    /// (`targets.apps`), and Dapr's built-in retries of unreachable sidecars.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, Error> {
        if request.target.is_empty() {
            return Err(Error::InvokeNoAppId);
        }
        // CONNECT asks a proxy for a tunnel; it names no method of an app.
        if request.method == Method::CONNECT {
            return Err(Error::Malformed(
                "the CONNECT verb opens a tunnel and cannot invoke a method".into(),
            ));
        }
        if self.outside_target(&request.target).is_none() && !is_app_id(&request.target) {
            return Err(Error::InvalidAppId {
                app_id: request.target,
            });
        }
        if self.is_cached(&request) {
            // The cached path's future is ten times the size of a plain call's (the
            // cache's single-flight machinery): on the heap, only when it is used, so
            // every other call's future stays small and cheap to move.
            return Box::pin(self.invoke_cached(request)).await;
        }
        self.invoke_uncached(request).await
    }

    /// An invocation without the response cache.
    async fn invoke_uncached(&self, request: InvokeRequest) -> Result<InvokeResponse, Error> {
        let (app_id, _) = split_namespace(&request.target);
        let policy = self.resiliency.for_app(app_id);
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
        let failed = |reason: String| Error::Invoke {
            app_id: request.target.clone(),
            reason,
        };
        let mut headers = forwardable(&request.headers);
        let target = path_and_query(&request.path, request.query.as_deref());

        if let Some((base_url, extra)) = self.outside_target(&request.target) {
            // An outside service: its own headers win over the caller's.
            for (name, value) in &extra {
                headers.insert(name.clone(), value.clone());
            }
            if let Ok(caller) = HeaderValue::from_str(&self.app_id) {
                headers.insert(CALLER_HEADER, caller);
            }
            let url = format!("{}/{target}", base_url.trim_end_matches('/'));
            return self
                .peers
                .send_outside(request.method.clone(), &url, headers, request.body.clone())
                .await
                .map_err(|error| failed(error.to_string()));
        }

        let (app_id, namespace) = split_namespace(&request.target);
        let namespace = namespace.or(self.namespace.as_deref());
        if app_id == self.app_id && namespace == self.namespace.as_deref() {
            if let Ok(caller) = HeaderValue::from_str(&self.app_id) {
                headers.insert(CALLER_HEADER, caller.clone());
                headers.insert(CALLEE_HEADER, caller);
            }
            return self
                .call_own_app(
                    request.method.clone(),
                    &target,
                    headers,
                    request.body.clone(),
                )
                .await;
        }
        let locate = self
            .locator
            .as_ref()
            .ok_or_else(|| failed("service invocation is not set up in this sidecar".into()))?;
        // The caller and callee travel as headers and are covered by the signature:
        // the receiving sidecar can trust them.
        self.peer_key
            .sign_headers(
                &mut headers,
                &self.app_id,
                app_id,
                request.method.as_str(),
                &target,
            )
            .map_err(|value| failed(format!("'{value}' cannot be sent as a header")))?;
        let send = || async {
            let addresses = locate
                .locate(app_id, namespace)
                .await
                .map_err(|error| Reach::Unreachable(error.to_string()))?;
            let mut last_error = format!("no sidecar of app '{app_id}' is running");
            for address in addresses {
                match self
                    .peers
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
                    Err(error) => {
                        return Err(Reach::Broken(format!(
                            "calling the sidecar at {address}: {error}"
                        )));
                    }
                }
            }
            Err(Reach::Unreachable(last_error))
        };
        let sent = match self.resiliency.built_in_service_retries(app_id) {
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
        self.endpoints
            .get(target)
            .map(|endpoint| (endpoint.base_url.clone(), endpoint.headers.clone()))
    }

    /// The receiving side: a call from another sidecar for this app, which must prove
    /// it holds the deployment's key before anything reaches the app.
    pub async fn serve(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, Error> {
        let callee = self.verify_peer(&headers, method.as_str(), path_and_query)?;
        if callee != self.app_id {
            return Err(Error::Invoke {
                app_id: callee.to_owned(),
                reason: format!("this sidecar serves app '{}'", self.app_id),
            });
        }
        self.call_own_app(method, path_and_query, forwardable(&headers), body)
            .await
    }

    /// Checks that a call from another sidecar carries the deployment key's signature
    /// over its caller, callee, `method` and path; returns the callee it names.
    pub(crate) fn verify_peer<'h>(
        &self,
        headers: &'h HeaderMap,
        method: &str,
        path_and_query: &str,
    ) -> Result<&'h str, Error> {
        self.peer_key
            .verify_headers(headers, method, path_and_query)
            .map_err(|error| Error::PeerUnauthenticated(error.to_string()))
    }

    /// This sidecar's app, when it has one and is not known to be unhealthy.
    pub(crate) fn own_app(&self) -> Result<&AppChannel, Error> {
        let app = self.app.as_ref().ok_or_else(|| Error::Invoke {
            app_id: self.app_id.clone(),
            reason: "the app has no port (--app-port), so it cannot be called".into(),
        })?;
        if let Some(health) = &self.app_health
            && !*health.borrow()
        {
            return Err(Error::Invoke {
                app_id: self.app_id.clone(),
                reason: crate::app_health::APP_UNHEALTHY.into(),
            });
        }
        Ok(app)
    }

    async fn call_own_app(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, Error> {
        let app = self.own_app()?;
        headers.remove(header::HOST);
        let response = app
            .call(method, &format!("/{path_and_query}"), headers, body)
            .await
            .map_err(|error| Error::Invoke {
                app_id: self.app_id.clone(),
                reason: error.to_string(),
            })?;
        let mut response = InvokeResponse::from(response);
        response.headers = forwardable(&response.headers);
        Ok(response)
    }
}

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
    fn method_paths_are_cleaned_and_encoded() {
        assert_eq!(path_and_query("a/../admin", None), "admin");
        assert_eq!(path_and_query("./a/./b", None), "a/b");
        assert_eq!(path_and_query("../../etc/passwd", None), "etc/passwd");
        assert_eq!(path_and_query("a/b/..", None), "a/");
        assert_eq!(path_and_query("a..b/c", None), "a..b/c");
        assert_eq!(method_path("a b").unwrap(), "a%20b");
        assert_eq!(method_path("orders/{id}|x").unwrap(), "orders/%7Bid%7D%7Cx");
        assert_eq!(method_path("née").unwrap(), "n%C3%A9e");
        assert_eq!(method_path("q?x=1").unwrap(), "q%3Fx=1");
        assert!(method_path("a\0b").is_err());
        assert_eq!(query_text("a=1&b=x y?").unwrap(), "a=1&b=x%20y?");
        assert_eq!(query_text("   ").unwrap(), "%20%20%20");
        assert!(method_path("a\nb").is_err());
    }

    #[test]
    fn app_ids_are_one_name_and_at_most_a_namespace() {
        for good in ["orders", "order_processor-2", "orders.prod", "ünïcode"] {
            assert!(is_app_id(good), "{good}");
        }
        for bad in [
            "..", ".", "a.b.c", "orders.", ".orders", "a/b", "a b", "a%2F", "a\u{0}",
        ] {
            assert!(!is_app_id(bad), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("dapr-app-id", HeaderValue::from_static("orders"));
        headers.insert(PEER_AUTH_HEADER, HeaderValue::from_static("v1 1 00"));
        headers.insert("x-request-id", HeaderValue::from_static("42"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let forwarded = forwardable(&headers);
        assert_eq!(forwarded.len(), 2);
        assert!(forwarded.contains_key("x-request-id") && forwarded.contains_key("content-type"));
    }
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    /// A request's future is moved (copied) several times on its way through axum,
    /// tonic and tokio: the common paths must stay small. The cached path, ten times
    /// larger because of the cache's single-flight machinery, is boxed only when used.
    #[tokio::test]
    async fn the_common_paths_futures_stay_small() {
        let runtime = crate::Runtime::load(
            crate::SidecarConfig::new("x"),
            tokio_util::sync::CancellationToken::new(),
            None,
        )
        .await
        .unwrap();
        let request = InvokeRequest {
            target: "y".into(),
            method: Method::POST,
            path: "m".into(),
            query: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let invoker = runtime.invoker();
        let sizes = [
            (
                "invoke",
                std::mem::size_of_val(&invoker.invoke(request.clone())),
            ),
            (
                "serve",
                std::mem::size_of_val(&invoker.serve(
                    Method::GET,
                    "",
                    HeaderMap::new(),
                    Bytes::new(),
                )),
            ),
            (
                "publish",
                std::mem::size_of_val(
                    &runtime
                        .publisher()
                        .publish(crate::PublishRequest::default()),
                ),
            ),
        ];
        for (what, size) in sizes {
            assert!(size <= 4096, "the {what} future is {size} bytes");
        }
    }
}
