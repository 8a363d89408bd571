//! `bindings.http`: an output binding that calls an HTTP(S) endpoint, compatible with
//! Dapr's.
//!
//! The operation is the method: `get`, `head`, `post`, `put`, `patch`, `delete`,
//! `options`, `trace`, and `create` (a `POST`, kept by Dapr for older apps). Only
//! `post`, `put` and `patch` send the request's data as the body.
//!
//! The request's metadata shapes the call as in Dapr:
//! - `path` is appended to `url` (one `/` between them);
//! - every key that starts with an upper-case letter (`Content-Type`, `X-Token`) is
//!   sent as a header, as are `traceparent`, `tracestate` and `baggage`;
//!   `Content-Type` (for a body) and `Accept` default to
//!   `application/json; charset=utf-8`;
//! - `errorIfNot2XX` overrides the component's setting for this call.
//!
//! The answer is the response body (cut at `maxResponseBodySize`, as Dapr cuts it) with
//! the metadata `statusCode`, `status` (`404 Not Found`) and every response header
//! under Go's canonical name (`Content-Type`), several values joined with `, `. With
//! `errorIfNot2XX` (the default) a status outside 2xx fails the call with
//! `received status code N`; without it, the answer is returned whatever the status.
//!
//! As Go's client (and so Dapr's binding), redirects are followed (at most 10), and
//! credentials in the URL (`https://user:pass@host/`) are sent as Basic authorization;
//! messages show the URL without them.
//!
//! TLS: the web PKI roots, or only `MTLSRootCA` when given; a client certificate from
//! `MTLSClientCert` and `MTLSClientKey` — each a PEM text or the path of a PEM file.
//! Deliberate difference: rustls never renegotiates, so `MTLSRenegotiation` is checked
//! (Dapr's three values) but renegotiation is not offered; a server that requires it
//! fails the handshake.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};

pub const METADATA: &[&str] = &[
    "url",
    "MTLSRootCA",
    "MTLSClientCert",
    "MTLSClientKey",
    "MTLSRenegotiation",
    "securityToken",
    "securityTokenHeader",
    "responseTimeout",
    "maxResponseBodySize",
    "errorIfNot2XX",
];

const OPERATIONS: &[&str] = &[
    "create", "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// Dapr's default cap on a response body: 100 MiB.
const DEFAULT_MAX_BODY: u64 = 100 << 20;

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The HTTP output binding.
pub struct HttpBinding {
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Option<(HeaderName, HeaderValue)>,
    response_timeout: Option<Duration>,
    /// 0: no limit.
    max_body: u64,
    error_if_not_2xx: bool,
}

impl HttpBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let url = metadata.required("url")?.to_owned();
        if let Err(error) = Target::parse(&url) {
            return Err(metadata.field_error("url", error.to_string()));
        }
        let tls = tls_config(metadata)?;
        let max_body = match metadata.get("maxResponseBodySize") {
            Some(text) => byte_size(text).ok_or_else(|| {
                metadata.field_error(
                    "maxResponseBodySize",
                    format!("'{text}' is not a size (a number of bytes, or with a suffix such as Ki, Mi, Gi, k, M, G)"),
                )
            })?,
            None => DEFAULT_MAX_BODY,
        };
        let response_timeout = match metadata.get("responseTimeout") {
            Some(_) => Some(metadata.duration_or("responseTimeout", Duration::ZERO)?)
                .filter(|timeout| !timeout.is_zero()),
            None => None,
        };
        let token = match (
            metadata.get("securityToken").filter(|t| !t.is_empty()),
            metadata
                .get("securityTokenHeader")
                .filter(|h| !h.is_empty()),
        ) {
            (Some(token), Some(header)) => {
                let name = HeaderName::try_from(header).map_err(|_| {
                    metadata.field_error("securityTokenHeader", "is not a header name")
                })?;
                let mut value = HeaderValue::try_from(token).map_err(|_| {
                    metadata.field_error("securityToken", "cannot be sent in a header")
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            _ => None,
        };
        let error_if_not_2xx = match metadata.get("errorIfNot2XX") {
            Some(text) if !text.is_empty() => is_truthy(text),
            _ => true,
        };
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(15)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Arc::new(Self {
            url,
            client,
            token,
            response_timeout,
            max_body,
            error_if_not_2xx,
        }))
    }

    async fn call(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        let meta = &request.metadata;
        let mut url = self.url.clone();
        if let Some(path) = meta.get("path").filter(|path| !path.is_empty()) {
            url = format!(
                "{}/{}",
                url.trim_end_matches('/'),
                path.trim_start_matches('/')
            );
        }
        let target = Target::parse(&url)?;
        let error_if_not_2xx = match meta.get("errorIfNot2XX") {
            Some(text) if !text.is_empty() => is_truthy(text),
            _ => self.error_if_not_2xx,
        };
        let method = match request.operation.as_str() {
            "create" | "post" => Method::POST,
            "get" => Method::GET,
            "head" => Method::HEAD,
            "put" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" => Method::DELETE,
            "options" => Method::OPTIONS,
            "trace" => Method::TRACE,
            _ => {
                return Err(BindingError::UnsupportedOperation {
                    operation: request.operation.clone(),
                    supported: OPERATIONS.to_vec(),
                });
            }
        };
        let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let body = if has_body {
            request.data.clone()
        } else {
            Bytes::new()
        };
        let mut headers = HeaderMap::new();
        if has_body && !meta.contains_key("Content-Type") {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        }
        if !meta.contains_key("Accept") {
            headers.insert(ACCEPT, HeaderValue::from_static(JSON_UTF8));
        }
        if let Some(authorization) = &target.basic_auth {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if let Some((name, value)) = &self.token {
            headers.insert(name.clone(), value.clone());
        }
        for (key, value) in meta {
            let is_header = key.starts_with(|c: char| c.is_ascii_uppercase())
                || (matches!(key.as_str(), "traceparent" | "tracestate" | "baggage")
                    && !value.is_empty());
            if !is_header {
                continue;
            }
            let name = HeaderName::try_from(key.as_str())
                .map_err(|_| BindingError::Invalid(format!("{key} is not a header name")))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                BindingError::Invalid(format!("the value of {key} cannot be sent in a header"))
            })?;
            headers.insert(name, value);
        }

        let shown = target.shown.clone();
        let exchange = self.exchange(target, method, body, headers);
        let (parts, data) = match self.response_timeout {
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| {
                    BindingError::failed(
                        format!("calling {shown}"),
                        format!("no answer within {timeout:?}"),
                    )
                })??,
            None => exchange.await?,
        };

        let status = parts.status;
        if error_if_not_2xx && !status.is_success() {
            return Err(BindingError::failed(
                format!("received status code {}", status.as_u16()),
                format!("{shown} answered {}", status_line(status)),
            ));
        }
        let mut metadata: HashMap<String, String> = HashMap::new();
        for name in parts.headers.keys() {
            let values: Vec<String> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            metadata.insert(canonical_header(name.as_str()), values.join(", "));
        }
        metadata.insert("statusCode".into(), status.as_u16().to_string());
        metadata.insert("status".into(), status_line(status));
        Ok(InvokeResponse { data, metadata })
    }

    /// Sends the request and reads the answer, following redirects as Go's client
    /// does: at most 10; `301`/`302`/`303` turn a request other than `GET`/`HEAD` into
    /// a `GET` without body, `307`/`308` repeat it as it was; credentials and the
    /// security token are not sent on to another host.
    async fn exchange(
        &self,
        mut target: Target,
        mut method: Method,
        mut body: Bytes,
        mut headers: HeaderMap,
    ) -> Result<(http::response::Parts, Bytes), BindingError> {
        let mut redirects = 0;
        loop {
            let mut outgoing = Request::builder()
                .method(method.clone())
                .uri(target.uri.clone())
                .body(Full::new(body.clone()))
                .map_err(|error| BindingError::Invalid(format!("invalid request: {error}")))?;
            *outgoing.headers_mut() = headers.clone();
            let response = self.client.request(outgoing).await.map_err(|error| {
                BindingError::failed(format!("calling {}", target.shown), error)
            })?;
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if let (true, Some(location)) = (status.is_redirection(), location)
                && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
            {
                redirects += 1;
                if redirects > 10 {
                    return Err(BindingError::failed(
                        format!("calling {}", target.shown),
                        "stopped after 10 redirects",
                    ));
                }
                let next = target.follow(&location)?;
                if next.host != target.host {
                    for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                        headers.remove(name);
                    }
                    if let Some((name, _)) = &self.token {
                        headers.remove(name);
                    }
                }
                if let Some(authorization) = &next.basic_auth {
                    headers.insert(AUTHORIZATION, authorization.clone());
                }
                if (301..=303).contains(&status.as_u16())
                    && method != Method::GET
                    && method != Method::HEAD
                {
                    method = Method::GET;
                    body = Bytes::new();
                    headers.remove(CONTENT_TYPE);
                }
                target = next;
                continue;
            }
            let (parts, incoming) = response.into_parts();
            let data = read_capped(incoming, self.max_body)
                .await
                .map_err(|error| {
                    BindingError::failed(format!("reading the answer of {}", target.shown), error)
                })?;
            return Ok((parts, data));
        }
    }
}

/// Where a request goes: its URI without credentials, the host (for redirects), the
/// `Authorization` header the URL's credentials make (as Go's client makes it), and
/// the URL as messages show it (no password).
struct Target {
    url: url::Url,
    uri: Uri,
    host: Option<String>,
    basic_auth: Option<HeaderValue>,
    shown: String,
}

impl Target {
    fn parse(text: &str) -> Result<Self, BindingError> {
        let url = url::Url::parse(text)
            .map_err(|error| BindingError::Invalid(format!("invalid URL: {error}")))?;
        Self::from_url(url)
    }

    fn follow(&self, location: &str) -> Result<Self, BindingError> {
        let url = self.url.join(location).map_err(|error| {
            BindingError::failed(format!("following a redirect from {}", self.shown), error)
        })?;
        Self::from_url(url)
    }

    fn from_url(mut url: url::Url) -> Result<Self, BindingError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BindingError::Invalid(format!(
                "unsupported protocol scheme {:?}",
                url.scheme()
            )));
        }
        let basic_auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = unescape(url.username());
            let password = unescape(url.password().unwrap_or_default());
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            HeaderValue::try_from(format!("Basic {token}"))
                .ok()
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                })
        };
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|error| BindingError::Invalid(format!("invalid URL {url}: {error}")))?;
        Ok(Self {
            host: url.host_str().map(str::to_owned),
            shown: url.to_string(),
            uri,
            basic_auth,
            url,
        })
    }
}

/// Percent-decoding of a URL's user name or password.
fn unescape(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait]
impl Binding for HttpBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        self.call(request).await.map(Some)
    }
}

/// The body, up to `max` bytes (0: all); the rest is read and dropped, as Dapr's
/// `io.LimitReader` cuts it (`http_body_util::Limited` would fail instead).
async fn read_capped(mut body: hyper::body::Incoming, max: u64) -> Result<Bytes, hyper::Error> {
    if max == 0 {
        return Ok(body.collect().await?.to_bytes());
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            let room = max.saturating_sub(data.len());
            data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    Ok(data.into())
}

/// Go's `resp.Status`: the code and its reason, `404 Not Found`.
fn status_line(status: http::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Go's canonical header name: `content-type` is `Content-Type`.
fn canonical_header(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// Go's `strings.IsTruthy` as Dapr uses it.
fn is_truthy(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

/// A Kubernetes quantity as Dapr's `ByteSize` reads it: `1048576`, `100Mi`, `1G`,
/// `1.5Ki`.
fn byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    let bytes = (number * multiplier).ceil();
    // `as` saturates; the range is checked first.
    (0.0..1.8e19).contains(&bytes).then_some(bytes as u64)
}

/// The TLS client settings from the `MTLS...` fields.
fn tls_config(metadata: &ComponentMetadata) -> Result<rustls::ClientConfig, ResourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match metadata.get("MTLSRootCA").filter(|v| !v.is_empty()) {
        Some(value) => {
            let pem = pem_bytes(metadata, "MTLSRootCA", value)?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|error| {
                    metadata.field_error("MTLSRootCA", format!("is not PEM certificates: {error}"))
                })?;
                roots.add(cert).map_err(|error| {
                    metadata.field_error("MTLSRootCA", format!("a certificate is refused: {error}"))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(metadata.field_error(
                    "MTLSRootCA",
                    "failed to add root certificate to certpool: no certificate in it",
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    if let Some(value) = metadata.get("MTLSRenegotiation").filter(|v| !v.is_empty()) {
        match value {
            "RenegotiateNever" => {}
            "RenegotiateOnceAsClient" | "RenegotiateFreelyAsClient" => tracing::warn!(
                component = %metadata.component().name,
                "MTLSRenegotiation {value}: TLS renegotiation is not offered by tandem"
            ),
            other => {
                return Err(metadata.field_error(
                    "MTLSRenegotiation",
                    format!("invalid renegotiation value: {other}"),
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| metadata.field_error("MTLSRootCA", error.to_string()))?
        .with_root_certificates(roots);
    let cert = metadata.get("MTLSClientCert").filter(|v| !v.is_empty());
    let key = metadata.get("MTLSClientKey").filter(|v| !v.is_empty());
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let cert_pem = pem_bytes(metadata, "MTLSClientCert", cert)?;
            let key_pem = pem_bytes(metadata, "MTLSClientKey", key)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| {
                    metadata.field_error("MTLSClientCert", format!("is not PEM: {error}"))
                })?;
            // Never the key's text in a message.
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| metadata.field_error("MTLSClientKey", "holds no PEM private key"))?;
            builder.with_client_auth_cert(chain, key).map_err(|error| {
                metadata.field_error(
                    "MTLSClientCert",
                    format!("failed to load client certificate: {error}"),
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// A PEM value: the text itself when it holds a PEM block, else a file's path.
fn pem_bytes(
    metadata: &ComponentMetadata,
    field: &str,
    value: &str,
) -> Result<Vec<u8>, ResourceError> {
    if value.contains("-----BEGIN ") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value).map_err(|error| {
        metadata.field_error(
            field,
            format!("is neither a PEM text nor a readable PEM file: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_as_quantities() {
        assert_eq!(byte_size("100Mi"), Some(100 << 20));
        assert_eq!(byte_size("1024"), Some(1024));
        assert_eq!(byte_size("1.5Ki"), Some(1536));
        assert_eq!(byte_size("2k"), Some(2000));
        assert_eq!(byte_size("0"), Some(0));
        assert_eq!(byte_size("ten"), None);
        assert_eq!(byte_size("5Xi"), None);
        assert_eq!(byte_size("99999999999Ei"), None);
    }

    #[test]
    fn headers_are_named_as_go_names_them() {
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(status_line(http::StatusCode::NOT_FOUND), "404 Not Found");
        assert!(is_truthy("True") && is_truthy("1") && !is_truthy("false"));
    }
}
