//! `bindings.influx`: an output binding that writes points to and queries InfluxDB 2,
//! compatible with Dapr's.
//!
//! - `create`: the request's data is a JSON object; its `measurement`, `tags` and
//!   `values` are written as one line of line protocol, `measurement,tags values`,
//!   exactly as Dapr formats them (Go's `%s`: the three are meant to be strings already
//!   in line-protocol form, e.g. `"tags": "sensor=a"`, `"values": "speed=1.5"`). The
//!   line goes unchanged to `POST /api/v2/write?bucket=..&org=..&precision=ns`, so the
//!   server, not the binding, judges whether it is valid line protocol.
//! - `query`: the request metadata `raw` holds a Flux query, sent to
//!   `POST /api/v2/query?org=..` with the client library's default dialect; the answer
//!   is the server's annotated CSV, unchanged, with the metadata `operation` (`query`)
//!   and `raw` (the query).
//!
//! Both send `Authorization: Token <token>`, as Dapr's client (influxdb-client-go) does;
//! the token is kept in a sensitive header value and never shown.
//!
//! Deliberate difference: Dapr answers a failed write with only `influx error: Cannot
//! write point`; tandem appends the server's `code: message` (never the token) so the
//! app can tell a bad token from an unknown bucket or a malformed line.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::Value;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::http_exchange::{ExchangeError, HttpsClient, exchange};

/// `measurement` is listed by Dapr's metadata.yaml but read by nothing: accepted so a
/// component file written for Dapr loads without a warning.
pub const METADATA: &[&str] = &["url", "token", "org", "bucket", "measurement"];

const OPERATIONS: &[&str] = &["create", "query"];

/// influxdb-client-go's default HTTP request timeout, which Dapr's binding keeps.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How a call to the server failed. The token never appears in any of these.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The server answered outside 2xx: its `code: message` as the Go client words it,
    /// or the bare status when the body says nothing.
    #[error("{0}")]
    Server(String),
    /// The URL made of `url` and the org or bucket is not one a request can go to.
    #[error("cannot build a request to {0}")]
    Request(String),
    #[error("cannot reach InfluxDB at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the answer of InfluxDB at {url} broke off: {source}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("no answer from InfluxDB at {url} within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
}

/// The InfluxDB output binding.
pub struct InfluxBinding {
    client: HttpsClient,
    /// The server's URL without a trailing `/`.
    url: String,
    authorization: HeaderValue,
    org: String,
    bucket: String,
}

impl InfluxBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        // Checked in Dapr's order, each naming its field.
        let url = metadata.required("url")?;
        let token = metadata.required("token")?;
        let org = metadata.required("org")?.to_owned();
        let bucket = metadata.required("bucket")?.to_owned();
        let url = url.trim_end_matches('/').to_owned();
        match url.parse::<Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => {}
            _ => {
                return Err(metadata.field_error(
                    "url",
                    "is not an http:// or https:// URL (such as http://localhost:8086)",
                ));
            }
        }
        let mut authorization = HeaderValue::try_from(format!("Token {token}"))
            .map_err(|_| metadata.field_error("token", "cannot be sent in a header"))?;
        authorization.set_sensitive(true);
        let client = crate::http_exchange::https_client();
        Ok(Arc::new(Self {
            client,
            url,
            authorization,
            org,
            bucket,
        }))
    }

    /// POSTs `body` to `path?query` and answers the body of a 2xx answer.
    async fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        content_type: &'static str,
        accept: &'static str,
        body: Bytes,
    ) -> Result<Bytes, InfluxError> {
        let query: String = query
            .iter()
            .map(|(name, value)| format!("{name}={}", query_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let target = format!("{}{path}?{query}", self.url);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&target)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, content_type)
            .header(ACCEPT, accept)
            .body(Full::new(body))
            .map_err(|_| InfluxError::Request(target.clone()))?;
        let url = self.url.clone();
        let (status, _, body) = exchange(&self.client, request, REQUEST_TIMEOUT)
            .await
            .map_err(|error| match error {
                ExchangeError::Unreachable(source) => InfluxError::Unreachable { url, source },
                ExchangeError::Body(source) => InfluxError::Body { url, source },
                ExchangeError::Timeout => InfluxError::Timeout { url },
            })?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(InfluxError::Server(server_message(status, &body)))
        }
    }

    async fn create(&self, data: &[u8]) -> Result<(), BindingError> {
        // Dapr decodes into a Go map: anything but a JSON object (or `null`) is refused.
        let point: serde_json::Map<String, Value> = match serde_json::from_slice(data) {
            Ok(Value::Object(point)) => point,
            Ok(Value::Null) => serde_json::Map::new(),
            _ => {
                return Err(BindingError::Invalid(
                    "influx error: Cannot convert request data".into(),
                ));
            }
        };
        let line = point_line(&point);
        self.post(
            "/api/v2/write",
            &[
                ("bucket", &self.bucket),
                ("org", &self.org),
                ("precision", "ns"),
            ],
            "text/plain; charset=utf-8",
            "application/json",
            Bytes::from(line),
        )
        .await
        .map_err(|error| BindingError::failed("influx error: Cannot write point", error))?;
        Ok(())
    }

    async fn query(&self, request: &InvokeRequest) -> Result<InvokeResponse, BindingError> {
        // Dapr tells a request without metadata from one without `raw`; both are the
        // caller's fault.
        if request.metadata.is_empty() {
            return Err(BindingError::Invalid("metadata required".into()));
        }
        let raw = match request.metadata.get("raw") {
            Some(raw) if !raw.is_empty() => raw,
            _ => {
                return Err(BindingError::Invalid(
                    "required metadata not set: raw".into(),
                ));
            }
        };
        // influxdb2.DefaultDialect(): a header row and the three annotations.
        let body = serde_json::json!({
            "query": raw,
            "type": "flux",
            "dialect": {
                "annotations": ["datatype", "group", "default"],
                "delimiter": ",",
                "header": true,
            },
        });
        let csv = self
            .post(
                "/api/v2/query",
                &[("org", &self.org)],
                "application/json",
                "text/csv",
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(|error| BindingError::failed("do query influx err", error))?;
        Ok(InvokeResponse {
            data: csv,
            metadata: [
                ("operation".to_owned(), "query".to_owned()),
                ("raw".to_owned(), raw.clone()),
            ]
            .into(),
        })
    }
}

#[async_trait]
impl Binding for InfluxBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        match request.operation.as_str() {
            // Dapr answers a write with nothing at all.
            "create" => self.create(&request.data).await.map(|()| None),
            "query" => self.query(&request).await.map(Some),
            _ => Err(BindingError::Invalid(
                "invalid operation type. Expected query or create".into(),
            )),
        }
    }
}

/// The line Dapr writes: `fmt.Sprintf("%s,%s %s", measurement, tags, values)` over the
/// decoded JSON, so a non-string shows as Go shows it (`%!s(<nil>)` for a missing one).
fn point_line(point: &serde_json::Map<String, Value>) -> String {
    let part = |name: &str| go_s(point.get(name).unwrap_or(&Value::Null), true);
    format!(
        "{},{} {}",
        part("measurement"),
        part("tags"),
        part("values")
    )
}

/// Go's `%s` of a value decoded from JSON into `interface{}`. `top`: the argument itself
/// (a nil argument prints `%!s(<nil>)`, a nil inside a map or slice `<nil>`).
fn go_s(value: &Value, top: bool) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null if top => "%!s(<nil>)".into(),
        Value::Null => "<nil>".into(),
        Value::Bool(flag) => format!("%!s(bool={flag})"),
        Value::Number(number) => {
            format!("%!s(float64={})", go_float(number.as_f64().unwrap_or(0.0)))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| go_s(item, false)).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => {
            // Go prints a map's keys sorted.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let entries: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| format!("{key}:{}", go_s(value, false)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form when the exponent is
/// below -4 or at least 6 (`1e+06`, `1.5e-05`), else plain (`123456`, `0.5`).
fn go_float(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Go's does.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a whole exponent");
    if (-4..6).contains(&exponent) {
        return value.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// The message of an InfluxDB error answer, as the Go client words it: `code: message`
/// from the JSON body, or `Unexpected status code N` when the body has neither.
fn server_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|json| json.get(name))
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message,
        _ => format!("Unexpected status code {status}"),
    }
}

/// Percent-encodes a query value as Go's `url.QueryEscape` (space as `+`).
fn query_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> String {
        match serde_json::from_str(json).unwrap() {
            Value::Object(map) => point_line(&map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn lines_are_formatted_as_dapr_s_sprintf() {
        assert_eq!(
            line(r#"{"measurement":"cpu","tags":"host=a","values":"load=0.5"}"#),
            "cpu,host=a load=0.5"
        );
        // Missing and non-string parts print as Go's %s prints them.
        assert_eq!(
            line(r#"{"measurement":"cpu","values":1}"#),
            "cpu,%!s(<nil>) %!s(float64=1)"
        );
        assert_eq!(
            line(r#"{"measurement":true,"tags":{"b":2,"a":"x","c":null},"values":["v",1e7]}"#),
            "%!s(bool=true),map[a:x b:%!s(float64=2) c:<nil>] [v %!s(float64=1e+07)]"
        );
    }

    #[test]
    fn floats_print_as_go_s_v() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5e-7), "-2.5e-07");
    }

    #[test]
    fn server_errors_read_as_the_go_client_reads_them() {
        assert_eq!(
            server_message(
                401,
                br#"{"code":"unauthorized","message":"unauthorized access"}"#
            ),
            "unauthorized: unauthorized access"
        );
        assert_eq!(server_message(502, b"<html>"), "Unexpected status code 502");
        assert_eq!(query_encode("my org/x"), "my+org%2Fx");
    }
}
