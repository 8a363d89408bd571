//! The app channel of a gRPC app (`--app-protocol grpc`): the sidecar calls the app's
//! `dapr.proto.runtime.v1.AppCallback` service, as `daprd` does — `ListTopicSubscriptions`
//! at start, `OnTopicEvent` per event, `OnInvoke` per service invocation, and
//! `ListInputBindings`/`OnBindingEvent` for input bindings.
//!
//! An invocation arrives HTTP-shaped (a verb, a path, a query, headers and a body, from
//! another sidecar or this one's doors) and is turned into an `InvokeRequest`: the path is
//! the method, the verb and query go in its `http_extension`, the headers become gRPC
//! metadata. The answer turns back into HTTP: `200` with the data and its content type,
//! or, when the app answers with an error status, the HTTP status `daprd` maps that
//! code to and the status as JSON (`{"code": 5, "message": "..."}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value};
use tandem_components::pubsub::Outcome;
use tandem_proto::common::{HttpExtension, InvokeRequest, http_extension::Verb};
use tandem_proto::runtime::app_callback_alpha_client::AppCallbackAlphaClient;
use tandem_proto::runtime::app_callback_client::AppCallbackClient;
use tandem_proto::runtime::{
    BindingEventRequest, BindingEventResponse, TopicEventBulkRequest, TopicEventBulkRequestEntry,
    TopicEventCeRequest, TopicEventRequest, TopicSubscription, topic_event_bulk_request_entry,
    topic_event_response,
};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{AppCallError, AppResponse};
use crate::cloudevent;

/// Carries an invocation's protobuf `Any.type_url` through tandem's HTTP-shaped
/// invocation path (between the gRPC door, the sidecars and the gRPC app), both ways, so
/// a gRPC caller can unpack a typed message a gRPC app answered. Never shown to HTTP
/// callers.
pub const DATA_TYPE_URL_HEADER: &str = "x-tandem-data-type-url";

/// Carries a gRPC app's error code to a gRPC caller, which gets the app's status as it
/// was (HTTP callers get the HTTP status `daprd` maps it to). Never shown to HTTP callers.
pub const GRPC_CODE_HEADER: &str = "x-tandem-grpc-code";

/// What [`GrpcApp::deliver_bulk`] has learnt of the app's bulk-event service.
const BULK_UNKNOWN: u8 = 0;
const BULK_CURRENT: u8 = 1;
const BULK_ALPHA: u8 = 2;

/// The content type of a typed protobuf message (`Any` with a type URL), as daprd names it.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Calls into a gRPC app's `AppCallback` service over one HTTP/2 connection, made on
/// first use and made again by itself when it breaks.
#[derive(Clone)]
pub struct GrpcApp {
    client: AppCallbackClient<Channel>,
    /// The same connection, for `AppCallbackAlpha` (bulk events' earlier home).
    alpha: AppCallbackAlphaClient<Channel>,
    /// Which bulk-event service the app answered on: `BULK_UNKNOWN` until it has.
    bulk_service: Arc<AtomicU8>,
    /// The same connection, for proxied calls of the app's own services.
    channel: Channel,
    address: String,
    /// `APP_API_TOKEN`, sent as `dapr-api-token` metadata on every call.
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl GrpcApp {
    /// The channel to a `grpc` (plain HTTP/2) or `grpcs` (TLS) app.
    pub fn new(
        protocol: &str,
        host: &str,
        port: u16,
        token: Option<&str>,
        max_body_size: usize,
    ) -> Self {
        let scheme = if super::tls::is_tls(protocol) {
            "https"
        } else {
            "http"
        };
        let address = format!("{scheme}://{host}:{port}");
        // The address is built from a host name and a port that were validated as such;
        // should it still not parse, the loopback default keeps the sidecar up and every
        // call then fails with a clear "cannot reach the app".
        let endpoint = Endpoint::from_shared(address.clone())
            .unwrap_or_else(|_| Endpoint::from_static("http://127.0.0.1:1"))
            .connect_timeout(Duration::from_secs(5));
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        let channel = endpoint.connect_with_connector_lazy(super::tls::connector(tcp, true));
        let alpha = AppCallbackAlphaClient::new(channel.clone())
            .max_decoding_message_size(max_body_size)
            .max_encoding_message_size(max_body_size);
        let client = AppCallbackClient::new(channel.clone())
            .max_decoding_message_size(max_body_size)
            .max_encoding_message_size(max_body_size);
        Self {
            client,
            alpha,
            bulk_service: Arc::new(AtomicU8::new(BULK_UNKNOWN)),
            channel,
            address,
            token: token.and_then(|token| MetadataValue::try_from(token).ok()),
        }
    }

    fn request<T>(&self, message: T, metadata: MetadataMap) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = metadata;
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("dapr-api-token", token.clone());
        }
        request
    }

    /// `ListTopicSubscriptions`: an app that does not implement it subscribes to nothing.
    pub async fn list_subscriptions(&self) -> Result<Vec<TopicSubscription>, AppCallError> {
        let request = self.request((), MetadataMap::new());
        match self.client.clone().list_topic_subscriptions(request).await {
            Ok(answer) => Ok(answer.into_inner().subscriptions),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Vec::new()),
            Err(status) => Err(self.failed("ListTopicSubscriptions", status)),
        }
    }

    /// `ListInputBindings`: the input bindings the app takes events from; an app that
    /// does not implement it takes none.
    pub async fn list_input_bindings(&self) -> Result<Vec<String>, AppCallError> {
        let request = self.request((), MetadataMap::new());
        match self.client.clone().list_input_bindings(request).await {
            Ok(answer) => Ok(answer.into_inner().bindings),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Vec::new()),
            Err(status) => Err(self.failed("ListInputBindings", status)),
        }
    }

    /// `OnBindingEvent` for one input binding event; `Ok` once the app took it.
    pub async fn on_binding_event(
        &self,
        name: &str,
        data: Bytes,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Result<BindingEventResponse, AppCallError> {
        let message = BindingEventRequest {
            name: name.to_owned(),
            data: data.to_vec(),
            metadata: metadata.clone().into_iter().collect(),
        };
        let request = self.request(message, MetadataMap::new());
        self.client
            .clone()
            .on_binding_event(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.failed("OnBindingEvent", status))
    }

    /// `OnTopicEvent` for one event, and what its answer means — as `daprd` reads it:
    /// `SUCCESS` done, `RETRY` retry, `DROP` dropped; an `Unimplemented` error dropped
    /// (the app has no handler for it), any other error retried. The second value is a
    /// warning to log.
    pub async fn deliver(
        &self,
        event: &Map<String, Value>,
        pubsub: &str,
        topic: &str,
        path: &str,
    ) -> (Outcome, Option<String>) {
        let message = match topic_event(event, pubsub, topic, path) {
            Ok(message) => message,
            Err(why) => return (Outcome::Retry, Some(why)),
        };
        let request = self.request(message, MetadataMap::new());
        match self.client.clone().on_topic_event(request).await {
            Ok(answer) => match outcome_of_status(answer.into_inner().status) {
                Outcome::Drop => (Outcome::Drop, Some("the app answered DROP".into())),
                outcome => (outcome, None),
            },
            Err(status) if status.code() == tonic::Code::Unimplemented => (
                Outcome::Drop,
                Some(format!(
                    "the app does not handle this event (Unimplemented: {})",
                    status.message()
                )),
            ),
            Err(status) => (
                Outcome::Retry,
                Some(format!(
                    "the app answered {:?}: {}",
                    status.code(),
                    status.message()
                )),
            ),
        }
    }

    /// `OnBulkTopicEvent` for a batch — or, when the app lacks it, `AppCallbackAlpha`'s
    /// `OnBulkTopicEventAlpha1`, as daprd falls back. The app's status for each entry
    /// id; `Err` with the outcome for the whole batch when the call failed (an app with
    /// neither method drops the batch, as daprd does; other errors retry it).
    pub async fn deliver_bulk(
        &self,
        batch: TopicEventBulkRequest,
    ) -> Result<Vec<(String, Outcome)>, (Outcome, String)> {
        // Which of the two services the app serves is learnt on the first batch, so
        // later batches are sent once, without a copy kept for the fallback.
        let answer = match self.bulk_service.load(Ordering::Relaxed) {
            BULK_ALPHA => {
                self.alpha
                    .clone()
                    .on_bulk_topic_event_alpha1(self.request(batch, MetadataMap::new()))
                    .await
            }
            BULK_CURRENT => {
                self.client
                    .clone()
                    .on_bulk_topic_event(self.request(batch, MetadataMap::new()))
                    .await
            }
            _ => match self
                .client
                .clone()
                .on_bulk_topic_event(self.request(batch.clone(), MetadataMap::new()))
                .await
            {
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    let answer = self
                        .alpha
                        .clone()
                        .on_bulk_topic_event_alpha1(self.request(batch, MetadataMap::new()))
                        .await;
                    if answer.is_ok() {
                        self.bulk_service.store(BULK_ALPHA, Ordering::Relaxed);
                    }
                    answer
                }
                answer => {
                    if answer.is_ok() {
                        self.bulk_service.store(BULK_CURRENT, Ordering::Relaxed);
                    }
                    answer
                }
            },
        };
        match answer {
            Ok(answer) => Ok(answer
                .into_inner()
                .statuses
                .into_iter()
                .map(|entry| (entry.entry_id, outcome_of_status(entry.status)))
                .collect()),
            Err(status) if status.code() == tonic::Code::Unimplemented => Err((
                Outcome::Drop,
                format!(
                    "the app does not take bulk events (Unimplemented: {})",
                    status.message()
                ),
            )),
            Err(status) => Err((
                Outcome::Retry,
                format!("the app answered {:?}: {}", status.code(), status.message()),
            )),
        }
    }

    /// `OnInvoke` for an HTTP-shaped invocation (see the module's summary).
    pub async fn invoke(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<AppResponse, AppCallError> {
        let path_and_query = path_and_query.trim_start_matches('/');
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_and_query, ""),
        };
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = text(http::header::CONTENT_TYPE.as_str());
        let type_url = text(DATA_TYPE_URL_HEADER);
        let message = InvokeRequest {
            method: percent_decode(path),
            data: Some(prost_types::Any {
                type_url,
                value: body.to_vec(),
            }),
            content_type,
            http_extension: Some(HttpExtension {
                verb: verb(&method) as i32,
                querystring: query.to_owned(),
            }),
        };
        let request = self.request(message, metadata_from(&headers));
        match self.client.clone().on_invoke(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let mut headers = HeaderMap::new();
                let data = answer.data.unwrap_or_default();
                if !data.type_url.is_empty() {
                    // A typed message: its content type is protobuf's, as daprd says it
                    // (the SDKs' `unpack` reads HTTP answers by it).
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static(PROTOBUF_CONTENT_TYPE),
                    );
                    if let Ok(value) = HeaderValue::from_str(&data.type_url) {
                        headers.insert(DATA_TYPE_URL_HEADER, value);
                    }
                } else if !answer.content_type.is_empty()
                    && let Ok(value) = HeaderValue::from_str(&answer.content_type)
                {
                    headers.insert(http::header::CONTENT_TYPE, value);
                }
                Ok(AppResponse {
                    status: StatusCode::OK,
                    headers,
                    body: Bytes::from(data.value),
                })
            }
            Err(status) if is_unreachable(&status) => Err(self.failed("OnInvoke", status)),
            Err(status) => {
                // The app answered with an error: an answer, not a failure to reach it.
                let body = serde_json::json!({
                    "code": status.code() as i32,
                    "message": status.message(),
                });
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(GRPC_CODE_HEADER, HeaderValue::from(status.code() as i32));
                Ok(AppResponse {
                    status: http_status(status.code()),
                    headers,
                    body: Bytes::from(body.to_string()),
                })
            }
        }
    }

    /// A proxied call of any of the app's services (`/package.Service/Method`): the
    /// caller's metadata and frames go to the app as they are, with `APP_API_TOKEN` as
    /// the token; the answer comes back as it streams.
    pub async fn proxy(
        &self,
        path: &str,
        mut headers: HeaderMap,
        body: tonic::body::Body,
    ) -> Result<http::Response<tonic::body::Body>, AppCallError> {
        use tower::{Service, ServiceExt};
        headers.remove("dapr-api-token");
        if let Some(token) = &self.token
            && let Ok(token) = HeaderValue::from_bytes(token.as_encoded_bytes())
        {
            headers.insert("dapr-api-token", token);
        }
        headers.insert("te", HeaderValue::from_static("trailers"));
        // The channel adds the app's scheme and authority to the path.
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(body)
            .map_err(AppCallError::Request)?;
        *request.headers_mut() = headers;
        let failed = |source| AppCallError::Proxy {
            address: self.address.clone(),
            source,
        };
        let mut channel = self.channel.clone();
        channel.ready().await.map_err(failed)?;
        channel.call(request).await.map_err(failed)
    }

    fn failed(&self, method: &str, status: tonic::Status) -> AppCallError {
        AppCallError::Grpc {
            address: self.address.clone(),
            method: method.to_owned(),
            source: Box::new(status),
        }
    }
}

/// Whether a failed call never reached the app's code (no connection), as opposed to an
/// error status the app's code returned.
fn is_unreachable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && std::error::Error::source(status)
            .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
}

/// The HTTP status `daprd` answers for an app's gRPC error code.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn verb(method: &Method) -> Verb {
    match *method {
        Method::GET => Verb::Get,
        Method::HEAD => Verb::Head,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::DELETE => Verb::Delete,
        Method::CONNECT => Verb::Connect,
        Method::OPTIONS => Verb::Options,
        Method::TRACE => Verb::Trace,
        Method::PATCH => Verb::Patch,
        _ => Verb::None,
    }
}

/// The method name as the caller wrote it: the invoker percent-encodes method paths for
/// HTTP, a gRPC app gets the plain text.
fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Request headers as gRPC metadata, as `daprd` passes them: every header whose name
/// and value are valid metadata, except those that describe the HTTP message itself.
fn metadata_from(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if matches!(
            name,
            "content-type" | "content-length" | "host" | "te" | "connection" | "user-agent"
        ) || name == DATA_TYPE_URL_HEADER
            || name.starts_with("grpc-")
            || name.ends_with("-bin")
        {
            continue;
        }
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            value.to_str().map(MetadataValue::try_from),
        ) && let Ok(value) = value
        {
            metadata.append(key, value);
        }
    }
    metadata
}

/// A delivered CloudEvent as `OnTopicEvent`'s request, as `daprd` builds it: the core
/// attributes in their fields; `data_base64` decoded, text `data` as its bytes, JSON
/// `data` serialised; every other attribute in `extensions`.
pub fn topic_event(
    event: &Map<String, Value>,
    pubsub: &str,
    topic: &str,
    path: &str,
) -> Result<TopicEventRequest, String> {
    let text = |name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = text("datacontenttype");
    let data = match (event.get("data_base64"), event.get("data")) {
        (Some(Value::String(encoded)), _) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| format!("the event's data_base64 is not base64: {error}"))?
        }
        (Some(Value::Null) | None, Some(data)) if !data.is_null() => {
            if cloudevent::is_text(&content_type) {
                match data {
                    Value::String(text) => text.clone().into_bytes(),
                    _ => return Err("the event's text data is not a string".into()),
                }
            } else if cloudevent::is_json(&content_type) || content_type.is_empty() {
                serde_json::to_vec(data).map_err(|error| error.to_string())?
            } else {
                Vec::new()
            }
        }
        (Some(_), _) => return Err("the event's data_base64 is not a string".into()),
        _ => Vec::new(),
    };
    let extensions: Map<String, Value> = event
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "id" | "source"
                    | "datacontenttype"
                    | "type"
                    | "specversion"
                    | "data"
                    | "data_base64"
            )
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Ok(TopicEventRequest {
        id: text("id"),
        source: text("source"),
        r#type: text("type"),
        spec_version: text("specversion"),
        data_content_type: content_type,
        topic: topic.to_owned(),
        data,
        pubsub_name: pubsub.to_owned(),
        path: path.to_owned(),
        extensions: Some(to_struct(extensions)),
    })
}

/// One entry of a gRPC bulk request: the CloudEvent as `OnTopicEvent` would get it, or,
/// for a `rawPayload` subscription, the broker's bytes.
pub fn bulk_entry(
    entry_id: String,
    event: &Map<String, Value>,
    raw: Option<&[u8]>,
) -> Result<TopicEventBulkRequestEntry, String> {
    let (content_type, event) = match raw {
        Some(bytes) => (
            "application/octet-stream".to_owned(),
            topic_event_bulk_request_entry::Event::Bytes(bytes.to_vec()),
        ),
        None => {
            let single = topic_event(event, "", "", "")?;
            (
                cloudevent::CLOUDEVENT_CONTENT_TYPE.to_owned(),
                topic_event_bulk_request_entry::Event::CloudEvent(TopicEventCeRequest {
                    id: single.id,
                    source: single.source,
                    r#type: single.r#type,
                    spec_version: single.spec_version,
                    data_content_type: single.data_content_type,
                    data: single.data,
                    extensions: single.extensions,
                }),
            )
        }
    };
    Ok(TopicEventBulkRequestEntry {
        entry_id,
        event: Some(event),
        content_type,
        metadata: Default::default(),
    })
}

/// What an app's `TopicEventResponse` status means, as daprd reads it: `SUCCESS` done
/// (also the protobuf default), `DROP` dropped, `RETRY` or a value it does not know retried.
pub fn outcome_of_status(status: i32) -> Outcome {
    match topic_event_response::TopicEventResponseStatus::try_from(status) {
        Ok(topic_event_response::TopicEventResponseStatus::Success) => Outcome::Done,
        Ok(topic_event_response::TopicEventResponseStatus::Drop) => Outcome::Drop,
        Ok(topic_event_response::TopicEventResponseStatus::Retry) | Err(_) => Outcome::Retry,
    }
}

fn to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(name, value)| (name, to_value(value)))
            .collect(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(flag),
        // Protobuf's Struct numbers are doubles, as in JSON.
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn events_become_topic_event_requests_as_daprd_builds_them() {
        let json_event = event(json!({
            "id": "1", "source": "pub", "type": "com.dapr.event.sent", "specversion": "1.0",
            "datacontenttype": "application/json", "data": {"n": 1},
            "topic": "orders", "pubsubname": "p", "traceparent": "00-x", "custom": 5
        }));
        let request = topic_event(&json_event, "p", "orders", "/orders").unwrap();
        assert_eq!(request.id, "1");
        assert_eq!(request.r#type, "com.dapr.event.sent");
        assert_eq!(request.spec_version, "1.0");
        assert_eq!(request.data, br#"{"n":1}"#);
        assert_eq!(request.path, "/orders");
        let extensions = request.extensions.unwrap().fields;
        assert!(extensions.contains_key("traceparent"));
        assert!(extensions.contains_key("custom"));
        assert!(!extensions.contains_key("data"));
        assert!(!extensions.contains_key("id"));

        let text_event = event(json!({"datacontenttype": "text/plain", "data": "hi"}));
        assert_eq!(topic_event(&text_event, "p", "t", "").unwrap().data, b"hi");
        let binary =
            event(json!({"datacontenttype": "application/octet-stream", "data_base64": "AAEC"}));
        assert_eq!(topic_event(&binary, "p", "t", "").unwrap().data, [0, 1, 2]);
        let broken = event(json!({"data_base64": "***"}));
        assert!(topic_event(&broken, "p", "t", "").is_err());
    }

    #[test]
    fn error_codes_map_to_daprd_s_http_statuses() {
        assert_eq!(http_status(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(tonic::Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(tonic::Code::Unimplemented),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            http_status(tonic::Code::Cancelled),
            StatusCode::REQUEST_TIMEOUT
        );
    }

    #[test]
    fn headers_become_metadata_without_the_http_ones() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-tenant", HeaderValue::from_static("a"));
        headers.insert("grpc-timeout", HeaderValue::from_static("1S"));
        let metadata = metadata_from(&headers);
        assert_eq!(metadata.get("x-tenant").unwrap(), "a");
        assert!(metadata.get("content-type").is_none());
        assert!(metadata.get("grpc-timeout").is_none());
    }
}
