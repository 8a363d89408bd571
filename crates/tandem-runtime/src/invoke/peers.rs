//! The connections an invocation travels over: HTTP/2 to other sidecars' internal
//! ports, and HTTP/1.1 or HTTP/2 (over TLS for `https://`) to outside services, each
//! pooled, with answers read up to `--max-body-size`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::peer_auth::PEER_REFUSED_HEADER;
use super::proxy::ProxyBody;
use super::{InvokeResponse, forwardable};
use crate::body::{BodyError, read_limited};

/// Why a call to another sidecar got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// Nothing accepted the connection: another instance may.
    #[error("{0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The connection broke, or the request could not be sent.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("its answer could not be read: {0}")]
    Answer(#[source] BodyError),
    /// The other sidecar does not take this one's key.
    #[error("it refused this sidecar's credentials: {0}")]
    Refused(String),
}

/// Why a call to an outside service got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutsideError {
    #[error("'{url}' is not a valid URL: {source}")]
    Url {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("calling {url}: {reason}")]
    Call { url: String, reason: String },
    #[error("reading the answer of {url}: {source}")]
    Answer {
        url: String,
        #[source]
        source: BodyError,
    },
}

/// Pooled clients for invocations.
#[derive(Clone)]
pub(crate) struct Peers {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Proxied gRPC calls: bodies streamed both ways, trailers included.
    streams: Client<HttpConnector, ProxyBody>,
    outside: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_body_size: usize,
}

impl Peers {
    pub fn new(max_body_size: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        let streams = Client::builder(TokioExecutor::new())
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
        Self {
            client,
            streams,
            outside,
            max_body_size,
        }
    }

    /// Calls an outside service at `url`.
    pub async fn send_outside(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<InvokeResponse, OutsideError> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body))
            .map_err(|source| OutsideError::Url {
                url: url.to_owned(),
                source,
            })?;
        *request.headers_mut() = headers;
        let response = self.outside.request(request).await.map_err(|error| {
            // The client's own message is terse ("client error (Connect)"): add the
            // causes, which say what actually went wrong.
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            OutsideError::Call {
                url: url.to_owned(),
                reason,
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = read_limited(body, self.max_body_size)
            .await
            .map_err(|source| OutsideError::Answer {
                url: url.to_owned(),
                source,
            })?;
        Ok(InvokeResponse {
            status: parts.status,
            headers: forwardable(&parts.headers),
            body,
        })
    }

    /// Sends a call to the sidecar at `address`.
    pub async fn send(
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
            .map_err(|error| PeerError::Failed(Box::new(error)))?;
        *request.headers_mut() = headers;
        let response = self.client.request(request).await.map_err(|error| {
            if error.is_connect() {
                PeerError::Unreachable(error)
            } else {
                PeerError::Failed(Box::new(error))
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = read_limited(body, self.max_body_size)
            .await
            .map_err(PeerError::Answer)?;
        if parts.status == StatusCode::UNAUTHORIZED
            && parts.headers.contains_key(PEER_REFUSED_HEADER)
        {
            return Err(PeerError::Refused(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        Ok(InvokeResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Opens a proxied gRPC call to the sidecar at `address`: the request's body is
    /// streamed as the caller sends it, the answer is returned as soon as its headers
    /// arrive, its body (messages and trailers) streamed after.
    pub async fn open_stream(
        &self,
        address: SocketAddr,
        path: &str,
        headers: HeaderMap,
        body: ProxyBody,
    ) -> Result<http::Response<hyper::body::Incoming>, PeerError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{address}{path}"))
            .body(body)
            .map_err(|error| PeerError::Failed(Box::new(error)))?;
        *request.headers_mut() = headers;
        self.streams.request(request).await.map_err(|error| {
            if error.is_connect() {
                PeerError::Unreachable(error)
            } else {
                PeerError::Failed(Box::new(error))
            }
        })
    }
}
