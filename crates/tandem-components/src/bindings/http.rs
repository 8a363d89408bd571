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
//! TLS: the web PKI roots, or only `MTLSRootCA` when given; a client certificate from
//! `MTLSClientCert` and `MTLSClientKey` — each a PEM text or the path of a PEM file.
//! Deliberate difference: rustls never renegotiates, so `MTLSRenegotiation` is checked
//! (Dapr's three values) but renegotiation is not offered; a server that requires it
//! fails the handshake.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
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
        if url.parse::<Uri>().is_err() {
            return Err(metadata.field_error("url", "is not a URL"));
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
        let uri: Uri = url
            .parse()
            .map_err(|error| BindingError::Invalid(format!("invalid URL {url}: {error}")))?;
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
        let mut outgoing = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|error| BindingError::Invalid(format!("invalid request: {error}")))?;
        let headers = outgoing.headers_mut();
        if has_body && !meta.contains_key("Content-Type") {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        }
        if !meta.contains_key("Accept") {
            headers.insert(ACCEPT, HeaderValue::from_static(JSON_UTF8));
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

        let exchange = async {
            let response = self
                .client
                .request(outgoing)
                .await
                .map_err(|error| BindingError::failed(format!("calling {url}"), error))?;
            let (parts, body) = response.into_parts();
            let data = read_capped(body, self.max_body).await.map_err(|error| {
                BindingError::failed(format!("reading the answer of {url}"), error)
            })?;
            Ok::<_, BindingError>((parts, data))
        };
        let (parts, data) = match self.response_timeout {
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| {
                    BindingError::failed(
                        format!("calling {url}"),
                        format!("no answer within {timeout:?}"),
                    )
                })??,
            None => exchange.await?,
        };

        let status = parts.status;
        if error_if_not_2xx && !status.is_success() {
            return Err(BindingError::failed(
                format!("received status code {}", status.as_u16()),
                format!("{url} answered {}", status_line(status)),
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
