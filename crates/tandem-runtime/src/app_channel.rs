//! The app channel: the sidecar's calls *into* the app (`/dapr/subscribe`, event
//! deliveries, invocations), over pooled keep-alive connections — HTTP/1.1 (`http`),
//! HTTP/2 without TLS (`h2c`), or Dapr's `AppCallback` gRPC service (`grpc`, see
//! [`grpc`]); `https` and `grpcs` over TLS (see [`tls`]). Shared by the subscriptions and the invoker, so `--app-max-concurrency` is
//! one limit over both.

mod grpc;
pub(crate) mod tls;

pub use grpc::{
    DATA_TYPE_URL_HEADER, GRPC_CODE_HEADER, GrpcApp, PROTOBUF_CONTENT_TYPE, bulk_entry,
    outcome_of_status, topic_event,
};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::body::{BodyError, read_limited};

/// An answer from the app.
#[derive(Debug, Clone)]
pub struct AppResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a call into the app got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AppCallError {
    #[error("invalid request to the app: {0}")]
    Request(#[source] http::Error),
    #[error("calling the app at {url} failed: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the app's answer from {path} failed: {source}")]
    Answer {
        path: String,
        #[source]
        source: BodyError,
    },
    #[error("calling {method} on the gRPC app at {address} failed: {source}")]
    Grpc {
        address: String,
        method: String,
        // Boxed: a status is large, and errors travel by value.
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("proxying a call to the gRPC app at {address} failed: {source}")]
    Proxy {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// HTTP calls to the app at `http://{host}:{port}`.
#[derive(Clone)]
pub struct AppChannel {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    host: String,
    port: u16,
    /// `APP_API_TOKEN`, sent as `dapr-api-token` so the app can tell the sidecar's calls.
    token: Option<HeaderValue>,
    /// The largest answer read (`--max-body-size`).
    max_body_size: usize,
    /// Set for gRPC apps: calls go to their `AppCallback` service.
    grpc: Option<GrpcApp>,
    /// `--app-max-concurrency`: one permit per call in flight; further calls wait.
    limit: Option<Arc<Semaphore>>,
}

impl AppChannel {
    /// The channel to an HTTP/1.1 app.
    pub fn new(host: &str, port: u16, token: Option<&str>, max_body_size: usize) -> Self {
        Self::for_protocol("http", host, port, token, max_body_size)
    }

    /// The channel to an app speaking `protocol` (`--app-protocol`): `grpc` calls its
    /// `AppCallback` service, `h2c` speaks HTTP/2 without TLS, anything else HTTP/1.1.
    pub fn for_protocol(
        protocol: &str,
        host: &str,
        port: u16,
        token: Option<&str>,
        max_body_size: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let grpc = matches!(protocol, "grpc" | "grpcs")
            .then(|| GrpcApp::new(protocol, host, port, token, max_body_size));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(protocol == "h2c")
            .build(tls::connector(connector, false));
        let scheme = if protocol == "https" { "https" } else { "http" };
        Self {
            client,
            base: format!("{scheme}://{host}:{port}"),
            host: host.to_owned(),
            port,
            token: token.and_then(|token| HeaderValue::from_str(token).ok()),
            max_body_size,
            grpc,
            limit: None,
        }
    }

    /// The gRPC app's callback service, for a gRPC app.
    pub fn grpc(&self) -> Option<&GrpcApp> {
        self.grpc.as_ref()
    }

    /// Waits for a place under `--app-max-concurrency`; held until the app has answered.
    pub async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.limit {
            // The semaphore is never closed, so this only fails if it were.
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// At most `limit` calls in flight to the app at once (deliveries and invocations
    /// alike); the others wait for a free place, as with `daprd`'s
    /// `--app-max-concurrency`. `None`: no limit.
    pub fn with_max_concurrency(mut self, limit: Option<usize>) -> Self {
        self.limit = limit.map(|limit| Arc::new(Semaphore::new(limit.max(1))));
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request to `path` on the app.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<AppResponse, AppCallError> {
        // Held until the answer is read whole: the app is busy until then.
        let _permit = self.permit().await;
        if let Some(grpc) = &self.grpc {
            // On the heap: the gRPC call's future would double the size of every
            // invocation's future, HTTP apps' included.
            return Box::pin(grpc.invoke(method, path, headers, body)).await;
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(Full::new(body))
            .map_err(AppCallError::Request)?;
        *request.headers_mut() = headers;
        if let Some(token) = &self.token {
            request
                .headers_mut()
                .insert("dapr-api-token", token.clone());
        }
        let response =
            self.client
                .request(request)
                .await
                .map_err(|source| AppCallError::Unreachable {
                    url: format!("{}{path}", self.base),
                    source,
                })?;
        let (parts, body) = response.into_parts();
        let body = read_limited(body, self.max_body_size)
            .await
            .map_err(|source| AppCallError::Answer { path, source })?;
        Ok(AppResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Waits until the app accepts connections on its port, or `timeout` passes.
    pub async fn wait_until_listening(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .is_ok()
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
