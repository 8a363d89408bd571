//! The one mapping from runtime errors to Dapr's error codes, HTTP statuses and gRPC
//! codes, as `daprd` answers them, with the rich details (`google.rpc.ErrorInfo`,
//! `ResourceInfo`, `BadRequest`) daprd attaches to the errors it builds with
//! `dapr/kit`'s error builder.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use prost::Message;
use serde_json::{Value, json};
use tandem_proto::rpc;
use tandem_runtime::{Error, EtagProblem, ProxyError};
use tonic::Code;

/// daprd's `ErrorInfo.domain`.
pub const DOMAIN: &str = "dapr.io";

/// One `google.rpc` detail of a rich error, in the order daprd adds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// `ErrorInfo`: daprd's reason (`DAPR_STATE_ILLEGAL_KEY`, ...) in domain `dapr.io`.
    /// `metadata: None` is daprd's nil map, which its HTTP JSON shows as `null`.
    ErrorInfo {
        reason: &'static str,
        metadata: Option<BTreeMap<String, String>>,
    },
    /// `ResourceInfo`: the component that failed (`state`/`statestore`).
    ResourceInfo {
        resource_type: &'static str,
        resource_name: String,
        owner: String,
        description: String,
    },
    /// `BadRequest` with one field violation: the request field that was wrong.
    BadRequest { field: String, description: String },
}

impl Detail {
    fn error_info(reason: &'static str, metadata: Option<BTreeMap<String, String>>) -> Self {
        Self::ErrorInfo { reason, metadata }
    }

    fn resource(resource_type: &'static str, name: &str, description: &str) -> Self {
        Self::ResourceInfo {
            resource_type,
            resource_name: name.to_owned(),
            owner: String::new(),
            description: description.to_owned(),
        }
    }

    /// The detail as a packed `Any`, for the gRPC status.
    fn to_any(&self) -> prost_types::Any {
        let (name, value) = match self {
            Self::ErrorInfo { reason, metadata } => (
                "ErrorInfo",
                rpc::ErrorInfo {
                    reason: (*reason).to_owned(),
                    domain: DOMAIN.to_owned(),
                    metadata: metadata.clone().unwrap_or_default().into_iter().collect(),
                }
                .encode_to_vec(),
            ),
            Self::ResourceInfo {
                resource_type,
                resource_name,
                owner,
                description,
            } => (
                "ResourceInfo",
                rpc::ResourceInfo {
                    resource_type: (*resource_type).to_owned(),
                    resource_name: resource_name.clone(),
                    owner: owner.clone(),
                    description: description.clone(),
                }
                .encode_to_vec(),
            ),
            Self::BadRequest { field, description } => (
                "BadRequest",
                rpc::BadRequest {
                    field_violations: vec![rpc::FieldViolation {
                        field: field.clone(),
                        description: description.clone(),
                    }],
                }
                .encode_to_vec(),
            ),
        };
        prost_types::Any {
            type_url: format!("{}{name}", rpc::TYPE_URL_PREFIX),
            value,
        }
    }

    /// The detail as daprd's HTTP JSON writes it (kit's `JSONErrorValue`): snake_case
    /// keys, every field of `ErrorInfo` and `ResourceInfo` present, a field violation's
    /// empty strings left out (Go's `omitempty` on the generated struct).
    fn to_json(&self) -> Value {
        match self {
            Self::ErrorInfo { reason, metadata } => json!({
                "@type": format!("{}ErrorInfo", rpc::TYPE_URL_PREFIX),
                "reason": reason,
                "domain": DOMAIN,
                "metadata": metadata,
            }),
            Self::ResourceInfo {
                resource_type,
                resource_name,
                owner,
                description,
            } => json!({
                "@type": format!("{}ResourceInfo", rpc::TYPE_URL_PREFIX),
                "resource_type": resource_type,
                "resource_name": resource_name,
                "owner": owner,
                "description": description,
            }),
            Self::BadRequest { field, description } => {
                let mut violation = serde_json::Map::new();
                if !field.is_empty() {
                    violation.insert("field".into(), field.as_str().into());
                }
                if !description.is_empty() {
                    violation.insert("description".into(), description.as_str().into());
                }
                json!({
                    "@type": format!("{}BadRequest", rpc::TYPE_URL_PREFIX),
                    "field_violations": [violation],
                })
            }
        }
    }
}

/// Which step of reading a bulk publish request's entries failed: daprd gives each
/// its own reason under the one `ERR_PUBSUB_EVENTS_SER` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsStep {
    /// The body is not a JSON list of entries.
    Unmarshal,
    /// An entry's event does not match its content type.
    MarshalEnvelope,
    /// An entry id is missing or repeated.
    MarshalEvents,
}

/// An error as the API reports it: Dapr's `errorCode`, its message, its statuses, and
/// the rich details daprd sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub http: StatusCode,
    pub grpc: Code,
    /// daprd's `google.rpc` details; empty for its legacy errors, which have none.
    pub details: Vec<Detail>,
    /// Whether the HTTP door sends the details too. daprd's gRPC door wraps some
    /// failures (a state store's read or write) in a rich error where its HTTP door
    /// answers the legacy `{"errorCode","message"}` alone.
    pub details_over_http: bool,
}

impl ApiError {
    pub fn new(
        code: &'static str,
        http: StatusCode,
        grpc: Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            http,
            grpc,
            details: Vec::new(),
            details_over_http: false,
        }
    }

    /// `ERR_MALFORMED_REQUEST`: the request could not be understood.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(
            "ERR_MALFORMED_REQUEST",
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            message,
        )
    }

    /// `ERR_BAD_REQUEST`: daprd's answer to a name or path it refuses.
    pub fn bad_request(reason: impl std::fmt::Display) -> Self {
        Self::new(
            "ERR_BAD_REQUEST",
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            format!("invalid request: {reason}"),
        )
    }

    /// `ERR_PUBSUB_EVENTS_SER`: a bulk publish request's entries could not be read or
    /// turned into events, with daprd's details: the pub/sub as the resource, and the
    /// app id and underlying error as the reason's metadata.
    pub fn pubsub_events(
        step: EventsStep,
        pubsub: &str,
        app_id: &str,
        error: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let reason = match step {
            EventsStep::Unmarshal => "DAPR_PUBSUB_UNMARSHAL_EVENTS",
            EventsStep::MarshalEnvelope => "DAPR_PUBSUB_MARSHAL_ENVELOPE",
            EventsStep::MarshalEvents => "DAPR_PUBSUB_MARSHAL_EVENTS",
        };
        let mut metadata = BTreeMap::from([("appID".to_owned(), app_id.to_owned())]);
        if let Some(error) = error {
            metadata.insert("error".to_owned(), error.to_owned());
        }
        Self {
            details: vec![
                Detail::resource("pubsub", pubsub, &message),
                Detail::error_info(reason, Some(metadata)),
            ],
            details_over_http: true,
            ..Self::new(
                "ERR_PUBSUB_EVENTS_SER",
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                message,
            )
        }
    }

    /// The error as daprd's HTTP door words it: a missing or unconfigured state store's
    /// `ErrorInfo` names the app (`{"appID": ...}`) there, and not over gRPC.
    #[must_use]
    pub fn with_app_id(mut self, app_id: &str) -> Self {
        if app_id.is_empty() {
            return self;
        }
        for detail in &mut self.details {
            if let Detail::ErrorInfo {
                reason: "DAPR_STATE_NOT_FOUND" | "DAPR_STATE_NOT_CONFIGURED",
                metadata,
            } = detail
            {
                *metadata = Some(BTreeMap::from([("appID".to_owned(), app_id.to_owned())]));
            }
        }
        self
    }

    /// `ERR_BODY_READ`: the request body could not be read (too large, cut off).
    pub fn body_read(reason: impl std::fmt::Display) -> Self {
        Self::from(Error::BodyRead(reason.to_string()))
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        use Code::*;
        let (code, http, grpc) = match &error {
            Error::PubSubEmpty => ("ERR_PUBSUB_EMPTY", StatusCode::NOT_FOUND, InvalidArgument),
            Error::PubSubNotFound(_) => (
                "ERR_PUBSUB_NOT_FOUND",
                StatusCode::NOT_FOUND,
                InvalidArgument,
            ),
            Error::TopicEmpty(_) => (
                "ERR_TOPIC_NAME_EMPTY",
                StatusCode::NOT_FOUND,
                InvalidArgument,
            ),
            Error::Publish { .. } => (
                "ERR_PUBSUB_PUBLISH_MESSAGE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::Subscribe { .. } => (
                "ERR_PUBSUB_SUBSCRIBE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::CloudEvent { .. } => (
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::SecretStoresNotConfigured => (
                "ERR_SECRET_STORES_NOT_CONFIGURED",
                StatusCode::INTERNAL_SERVER_ERROR,
                FailedPrecondition,
            ),
            Error::SecretStoreNotFound(_) => (
                "ERR_SECRET_STORE_NOT_FOUND",
                StatusCode::UNAUTHORIZED,
                InvalidArgument,
            ),
            Error::LockStoresNotConfigured => (
                "ERR_LOCK_STORE_NOT_CONFIGURED",
                StatusCode::INTERNAL_SERVER_ERROR,
                FailedPrecondition,
            ),
            Error::LockStoreNotFound(_) => (
                "ERR_LOCK_STORE_NOT_FOUND",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::TryLock(_) => ("ERR_TRY_LOCK", StatusCode::INTERNAL_SERVER_ERROR, Internal),
            Error::ConfigurationStoresNotConfigured => (
                "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
                StatusCode::INTERNAL_SERVER_ERROR,
                FailedPrecondition,
            ),
            Error::ConfigurationStoreNotFound(_) => (
                "ERR_CONFIGURATION_STORE_NOT_FOUND",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::ConfigurationGet { .. } => (
                "ERR_CONFIGURATION_GET",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            // daprd answers a failed subscribe with gRPC's InvalidArgument.
            Error::ConfigurationSubscribe { .. } => (
                "ERR_CONFIGURATION_SUBSCRIBE",
                StatusCode::INTERNAL_SERVER_ERROR,
                InvalidArgument,
            ),
            Error::ConfigurationUnsubscribe { .. } => (
                "ERR_CONFIGURATION_UNSUBSCRIBE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::AppChannelNil => (
                "ERR_APP_CHANNEL_NIL",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ConversationNotFound(_) => (
                "ERR_CONVERSATION_NOT_FOUND",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::ConversationMissingInputs(_) => (
                "ERR_CONVERSATION_MISSING_INPUTS",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::ConversationInvalidParams { .. } => (
                "ERR_CONVERSATION_INVALID_PARMS",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::ConversationInvoke { .. } => (
                "ERR_CONVERSATION_INVOKE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::Unlock(_) => ("ERR_UNLOCK", StatusCode::INTERNAL_SERVER_ERROR, Internal),
            Error::CryptoProvidersNotConfigured => (
                "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::CryptoProviderNotFound(_) => (
                "ERR_CRYPTO_PROVIDER_NOT_FOUND",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::CryptoBadRequest(_) => {
                ("ERR_BAD_REQUEST", StatusCode::BAD_REQUEST, InvalidArgument)
            }
            Error::CryptoGetKey { .. } => (
                "ERR_CRYPTO_KEY",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::Crypto(_) => ("ERR_CRYPTO", StatusCode::INTERNAL_SERVER_ERROR, Internal),
            Error::SecretPermissionDenied { .. } => (
                "ERR_PERMISSION_DENIED",
                StatusCode::FORBIDDEN,
                PermissionDenied,
            ),
            Error::SecretGet { .. } | Error::BulkSecretGet { .. } => (
                "ERR_SECRET_GET",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::Malformed(_) | Error::IllegalStateKey { .. } => (
                "ERR_MALFORMED_REQUEST",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::BodyRead(_) => ("ERR_BODY_READ", StatusCode::BAD_REQUEST, InvalidArgument),
            Error::StateStoresNotConfigured => (
                "ERR_STATE_STORE_NOT_CONFIGURED",
                StatusCode::INTERNAL_SERVER_ERROR,
                FailedPrecondition,
            ),
            Error::StateStoreNotFound(_) => (
                "ERR_STATE_STORE_NOT_FOUND",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::StateGet { .. } => {
                ("ERR_STATE_GET", StatusCode::INTERNAL_SERVER_ERROR, Internal)
            }
            Error::StateQueryNotSupported(_) => (
                "ERR_STATE_STORE_NOT_SUPPORTED",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::StateQuery { .. } => (
                "ERR_STATE_QUERY",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::StateSave { etag, .. } => with_etag("ERR_STATE_SAVE", *etag),
            Error::StateDelete { etag, .. } => with_etag("ERR_STATE_DELETE", *etag),
            Error::StateTransaction { etag, .. } => with_etag("ERR_STATE_TRANSACTION", *etag),
            Error::InvokeNoAppId => ("ERR_DIRECT_INVOKE", StatusCode::NOT_FOUND, NotFound),
            Error::ActorRuntimeNotFound => (
                "ERR_ACTOR_RUNTIME_NOT_FOUND",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorInstanceMissing => (
                "ERR_ACTOR_INSTANCE_MISSING",
                StatusCode::BAD_REQUEST,
                Internal,
            ),
            Error::ActorNoHost { .. } => (
                "ERR_ACTOR_NO_ADDRESS",
                StatusCode::NOT_FOUND,
                FailedPrecondition,
            ),
            Error::ActorInvoke { .. } | Error::ActorMethodNotFound { .. } => (
                "ERR_ACTOR_INVOKE_METHOD",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorMaxStackDepth => (
                "ERR_ACTOR_STACK_DEPTH",
                StatusCode::INTERNAL_SERVER_ERROR,
                ResourceExhausted,
            ),
            Error::ActorStateGet { .. } => (
                "ERR_ACTOR_STATE_GET",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorStateTransaction { .. } => (
                "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorReminderCreate { .. } => (
                "ERR_ACTOR_REMINDER_CREATE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorReminderGet { .. } => (
                "ERR_ACTOR_REMINDER_GET",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorReminderDelete { .. } => (
                "ERR_ACTOR_REMINDER_DELETE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::ActorReminderNotFound { .. } => (
                "ERR_ACTOR_REMINDER_NOT_FOUND",
                StatusCode::NOT_FOUND,
                NotFound,
            ),
            Error::ActorReminderNotHosted => (
                "ERR_ACTOR_REMINDER_NON_HOSTED",
                StatusCode::FORBIDDEN,
                PermissionDenied,
            ),
            Error::ActorTimerCreate { .. } => (
                "ERR_ACTOR_TIMER_CREATE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::InvalidAppId { .. } => (
                "ERR_DIRECT_INVOKE",
                StatusCode::BAD_REQUEST,
                InvalidArgument,
            ),
            Error::PeerUnauthenticated(_) => (
                "ERR_PEER_UNAUTHENTICATED",
                StatusCode::UNAUTHORIZED,
                Unauthenticated,
            ),
            Error::Invoke { .. } => (
                "ERR_DIRECT_INVOKE",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            Error::BindingInvoke { .. } => (
                "ERR_INVOKE_OUTPUT_BINDING",
                StatusCode::INTERNAL_SERVER_ERROR,
                Internal,
            ),
            // daprd's proxy answers these as plain errors: `Unknown` for the name
            // resolution's, `Unavailable` for a connection that failed.
            Error::Proxy(failure) => (
                "ERR_DIRECT_INVOKE",
                StatusCode::INTERNAL_SERVER_ERROR,
                match failure {
                    ProxyError::UnknownApp(_) | ProxyError::InvalidAppId(_) => Unknown,
                    ProxyError::Unreachable { .. } => Unavailable,
                    ProxyError::NotGrpc(_) => Unimplemented,
                },
            ),
        };
        let message = error.to_string();
        let (details, details_over_http) = details(&error, &message);
        Self {
            details,
            details_over_http,
            ..Self::new(code, http, grpc, message)
        }
    }
}

/// The details daprd attaches to each error, and whether its HTTP door shows them
/// (`pkg/api/errors` for the rich errors of both doors; `apierrors.Basic` for the
/// gRPC door's state failures). Errors daprd answers in the legacy shape get none.
fn details(error: &Error, message: &str) -> (Vec<Detail>, bool) {
    // daprd builds its pub/sub errors with the request's metadata, which over HTTP is
    // an empty map rather than nil when the query has none: `{}`, not `null`.
    let request_metadata = || Some(BTreeMap::new());
    let pubsub = |name: &str, reason, metadata| {
        vec![
            Detail::resource("pubsub", name, message),
            Detail::error_info(reason, metadata),
        ]
    };
    let both = |details| (details, true);
    let grpc_only = |reason| (vec![Detail::error_info(reason, None)], false);
    match error {
        Error::IllegalStateKey { store, key } => both(vec![
            Detail::BadRequest {
                field: key.clone(),
                description: message.to_owned(),
            },
            Detail::resource("state", store, ""),
            Detail::error_info("DAPR_STATE_ILLEGAL_KEY", None),
        ]),
        Error::StateStoreNotFound(_) => {
            both(vec![Detail::error_info("DAPR_STATE_NOT_FOUND", None)])
        }
        Error::StateQueryNotSupported(store) => both(vec![
            Detail::resource("state", store, ""),
            Detail::error_info("DAPR_STATE_QUERYING_NOT_SUPPORTED", None),
        ]),
        Error::StateQuery { store, .. } => both(vec![
            Detail::resource("state", store, ""),
            Detail::error_info("DAPR_STATE_QUERY_FAILED", None),
        ]),
        Error::StateStoresNotConfigured => {
            both(vec![Detail::error_info("DAPR_STATE_NOT_CONFIGURED", None)])
        }
        Error::StateGet { .. } => grpc_only("ERR_STATE_GET"),
        Error::StateSave { .. } => grpc_only("ERR_STATE_SAVE"),
        Error::StateDelete { .. } => grpc_only("ERR_STATE_DELETE"),
        Error::StateTransaction { .. } => grpc_only("ERR_STATE_TRANSACTION"),
        // daprd's `apierrors.Basic`: the code as the ErrorInfo's reason.
        Error::BindingInvoke { .. } => {
            both(vec![Detail::error_info("ERR_INVOKE_OUTPUT_BINDING", None)])
        }
        // Not found skips the resource, as daprd's does.
        Error::PubSubNotFound(_) => both(vec![Detail::error_info(
            "DAPR_PUBSUB_NOT_FOUND",
            request_metadata(),
        )]),
        Error::PubSubEmpty => both(pubsub("", "DAPR_PUBSUB_NAME_EMPTY", request_metadata())),
        Error::TopicEmpty(name) => both(pubsub(
            name,
            "DAPR_PUBSUB_TOPIC_NAME_EMPTY",
            request_metadata(),
        )),
        Error::Publish {
            pubsub: name,
            topic,
            cause,
        } => {
            let metadata = BTreeMap::from([
                ("topic".to_owned(), topic.clone()),
                ("error".to_owned(), cause.to_string()),
            ]);
            both(pubsub(name, "DAPR_PUBSUB_PUBLISH_MESSAGE", Some(metadata)))
        }
        Error::Subscribe { pubsub: name, .. } => {
            (pubsub(name, "DAPR_PUBSUB_SUBSCRIBE", None), false)
        }
        Error::CloudEvent { pubsub: name, .. } => both(pubsub(
            name,
            "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
            request_metadata(),
        )),
        Error::Malformed(_)
        | Error::BodyRead(_)
        | Error::SecretStoresNotConfigured
        | Error::SecretStoreNotFound(_)
        | Error::SecretPermissionDenied { .. }
        | Error::LockStoresNotConfigured
        | Error::LockStoreNotFound(_)
        | Error::TryLock(_)
        | Error::Unlock(_)
        | Error::CryptoProvidersNotConfigured
        | Error::CryptoProviderNotFound(_)
        | Error::CryptoBadRequest(_)
        | Error::CryptoGetKey { .. }
        | Error::Crypto(_)
        | Error::ConfigurationStoresNotConfigured
        | Error::ConfigurationStoreNotFound(_)
        | Error::ConfigurationGet { .. }
        | Error::ConfigurationSubscribe { .. }
        | Error::ConfigurationUnsubscribe { .. }
        | Error::AppChannelNil
        | Error::ConversationNotFound(_)
        | Error::ConversationMissingInputs(_)
        | Error::ConversationInvalidParams { .. }
        | Error::ConversationInvoke { .. }
        | Error::SecretGet { .. }
        | Error::BulkSecretGet { .. }
        | Error::InvokeNoAppId
        | Error::InvalidAppId { .. }
        | Error::Invoke { .. }
        | Error::ActorRuntimeNotFound
        | Error::ActorInstanceMissing
        | Error::ActorNoHost { .. }
        | Error::ActorInvoke { .. }
        | Error::ActorMethodNotFound { .. }
        | Error::ActorMaxStackDepth
        | Error::ActorStateGet { .. }
        | Error::ActorStateTransaction { .. }
        | Error::ActorReminderCreate { .. }
        | Error::ActorReminderGet { .. }
        | Error::ActorReminderDelete { .. }
        | Error::ActorReminderNotFound { .. }
        | Error::ActorReminderNotHosted
        | Error::ActorTimerCreate { .. }
        | Error::Proxy(_)
        | Error::PeerUnauthenticated(_) => (Vec::new(), false),
    }
}

/// A state write's statuses: 409/`ABORTED` for an ETag mismatch, 400 for an invalid
/// ETag, 500 for anything else.
fn with_etag(code: &'static str, problem: Option<EtagProblem>) -> (&'static str, StatusCode, Code) {
    match problem {
        Some(EtagProblem::Mismatch) => (code, StatusCode::CONFLICT, Code::Aborted),
        Some(EtagProblem::Invalid) => (code, StatusCode::BAD_REQUEST, Code::InvalidArgument),
        None => (code, StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
    }
}

impl ApiError {
    /// The HTTP JSON body: `{"errorCode","message"}`, plus `details` for the errors
    /// daprd answers with them over HTTP.
    pub fn json(&self) -> Value {
        let mut body = json!({ "errorCode": self.code, "message": self.message });
        if self.details_over_http && !self.details.is_empty() {
            body["details"] = self.details.iter().map(Detail::to_json).collect();
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.http, Json(self.json())).into_response()
    }
}

/// The longest message a gRPC error carries. A message can repeat what the caller sent
/// (a 4 KiB binding name, twice), and it travels in trailers twice over — `grpc-message`
/// and inside `grpc-status-details-bin` — where clients refuse header blocks past 16 KiB
/// and drop the whole call. Beyond this, the message is cut with a note of how much.
const GRPC_MESSAGE_MAX: usize = 2048;

/// `message`, cut to [`GRPC_MESSAGE_MAX`] bytes on a character boundary.
fn trailer_message(message: String) -> String {
    if message.len() <= GRPC_MESSAGE_MAX {
        return message;
    }
    let mut end = GRPC_MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &message[..end], message.len() - end)
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let message = trailer_message(error.message);
        if error.details.is_empty() {
            return tonic::Status::new(error.grpc, message);
        }
        // The trailer `grpc-status-details-bin` carries the whole `google.rpc.Status`;
        // clients check that its code and message are the call's own.
        let status = rpc::Status {
            code: error.grpc as i32,
            message: message.clone(),
            details: error.details.iter().map(Detail::to_any).collect(),
        };
        tonic::Status::with_details(error.grpc, message, status.encode_to_vec().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(text: &str) -> tandem_runtime::Cause {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Text(String);
        std::sync::Arc::new(Text(text.to_owned()))
    }

    #[test]
    fn long_grpc_messages_are_cut_so_the_trailers_stay_readable() {
        let name = "é".repeat(5000);
        let status = tonic::Status::from(ApiError::from(Error::BindingInvoke {
            name: name.clone(),
            reason: format!("couldn't find output binding {name}"),
        }));
        assert!(
            status.message().len() < GRPC_MESSAGE_MAX + 40,
            "{}",
            status.message().len()
        );
        assert!(
            status
                .message()
                .starts_with("error invoking output binding éé")
        );
        assert!(status.message().ends_with("more bytes)"));
        let details = rpc::Status::decode(status.details()).unwrap();
        assert_eq!(details.message, status.message());
        // A short message is left alone.
        let short = tonic::Status::from(ApiError::from(Error::PubSubNotFound("x".into())));
        assert_eq!(short.message(), "pubsub x is not found");
    }

    #[test]
    fn runtime_errors_map_to_daprs_codes_and_statuses() {
        let cases = [
            (
                Error::PubSubNotFound("x".into()),
                "ERR_PUBSUB_NOT_FOUND",
                404,
                Code::InvalidArgument,
            ),
            (
                Error::TopicEmpty("x".into()),
                "ERR_TOPIC_NAME_EMPTY",
                404,
                Code::InvalidArgument,
            ),
            (
                Error::Publish {
                    pubsub: "p".into(),
                    topic: "t".into(),
                    cause: cause("down"),
                },
                "ERR_PUBSUB_PUBLISH_MESSAGE",
                500,
                Code::Internal,
            ),
            (
                Error::SecretStoreNotFound("s".into()),
                "ERR_SECRET_STORE_NOT_FOUND",
                401,
                Code::InvalidArgument,
            ),
            (
                Error::SecretStoresNotConfigured,
                "ERR_SECRET_STORES_NOT_CONFIGURED",
                500,
                Code::FailedPrecondition,
            ),
            (
                Error::SecretGet {
                    store: "s".into(),
                    key: "k".into(),
                    cause: cause("secret 'k' not found"),
                },
                "ERR_SECRET_GET",
                500,
                Code::Internal,
            ),
            (
                Error::Malformed("bad".into()),
                "ERR_MALFORMED_REQUEST",
                400,
                Code::InvalidArgument,
            ),
            (
                Error::StateStoreNotFound("s".into()),
                "ERR_STATE_STORE_NOT_FOUND",
                400,
                Code::InvalidArgument,
            ),
            (
                Error::StateSave {
                    store: "s".into(),
                    cause: cause("x"),
                    etag: Some(EtagProblem::Mismatch),
                },
                "ERR_STATE_SAVE",
                409,
                Code::Aborted,
            ),
            (
                Error::StateDelete {
                    key: "k".into(),
                    cause: cause("x"),
                    etag: Some(EtagProblem::Invalid),
                },
                "ERR_STATE_DELETE",
                400,
                Code::InvalidArgument,
            ),
            (
                Error::StateTransaction {
                    cause: cause("x"),
                    etag: None,
                },
                "ERR_STATE_TRANSACTION",
                500,
                Code::Internal,
            ),
            (
                Error::IllegalStateKey {
                    store: "s".into(),
                    key: "a||b".into(),
                },
                "ERR_MALFORMED_REQUEST",
                400,
                Code::InvalidArgument,
            ),
            (
                Error::InvalidAppId {
                    app_id: "..".into(),
                },
                "ERR_DIRECT_INVOKE",
                400,
                Code::InvalidArgument,
            ),
            (
                Error::BodyRead("too large".into()),
                "ERR_BODY_READ",
                400,
                Code::InvalidArgument,
            ),
        ];
        for (error, code, http, grpc) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.code, api.http.as_u16(), api.grpc), (code, http, grpc));
        }
        assert_eq!(
            ApiError::from(Error::PubSubNotFound("nope".into())).message,
            "pubsub nope is not found"
        );
    }

    #[test]
    fn an_illegal_key_carries_daprs_details_over_both_doors() {
        let api = ApiError::from(Error::IllegalStateKey {
            store: "statestore".into(),
            key: "a||b".into(),
        });
        let message = "input key/keyPrefix 'a||b' can't contain '||'";
        assert_eq!(
            api.json(),
            json!({
                "errorCode": "ERR_MALFORMED_REQUEST",
                "message": message,
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "field_violations": [{"field": "a||b", "description": message}],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                        "resource_type": "state",
                        "resource_name": "statestore",
                        "owner": "",
                        "description": "",
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "DAPR_STATE_ILLEGAL_KEY",
                        "domain": "dapr.io",
                        "metadata": null,
                    },
                ],
            })
        );

        let status = tonic::Status::from(api);
        assert_eq!(status.code(), Code::InvalidArgument);
        let decoded = rpc::Status::decode(status.details()).unwrap();
        assert_eq!((decoded.code, decoded.message.as_str()), (3, message));
        let types: Vec<&str> = decoded
            .details
            .iter()
            .map(|any| any.type_url.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "type.googleapis.com/google.rpc.BadRequest",
                "type.googleapis.com/google.rpc.ResourceInfo",
                "type.googleapis.com/google.rpc.ErrorInfo",
            ]
        );
        let info = rpc::ErrorInfo::decode(decoded.details[2].value.as_slice()).unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("DAPR_STATE_ILLEGAL_KEY", "dapr.io")
        );
        let bad = rpc::BadRequest::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(bad.field_violations[0].field, "a||b");
    }

    #[test]
    fn each_rich_error_has_daprds_reason_and_legacy_ones_keep_their_shape() {
        let reason = |api: &ApiError| {
            api.details.iter().find_map(|detail| match detail {
                Detail::ErrorInfo { reason, .. } => Some(*reason),
                _ => None,
            })
        };
        let cases = [
            (
                Error::StateStoreNotFound("s".into()),
                Some("DAPR_STATE_NOT_FOUND"),
                true,
            ),
            (
                Error::StateStoresNotConfigured,
                Some("DAPR_STATE_NOT_CONFIGURED"),
                true,
            ),
            (
                Error::PubSubNotFound("p".into()),
                Some("DAPR_PUBSUB_NOT_FOUND"),
                true,
            ),
            (Error::PubSubEmpty, Some("DAPR_PUBSUB_NAME_EMPTY"), true),
            (
                Error::TopicEmpty("p".into()),
                Some("DAPR_PUBSUB_TOPIC_NAME_EMPTY"),
                true,
            ),
            (
                Error::Publish {
                    pubsub: "p".into(),
                    topic: "t".into(),
                    cause: cause("down"),
                },
                Some("DAPR_PUBSUB_PUBLISH_MESSAGE"),
                true,
            ),
            (
                Error::CloudEvent {
                    pubsub: "p".into(),
                    topic: "t".into(),
                    reason: "bad".into(),
                },
                Some("DAPR_PUBSUB_CLOUD_EVENT_CREATION"),
                true,
            ),
            (
                Error::StateGet {
                    store: "s".into(),
                    key: "k".into(),
                    cause: cause("x"),
                },
                Some("ERR_STATE_GET"),
                false,
            ),
            (
                Error::StateSave {
                    store: "s".into(),
                    cause: cause("x"),
                    etag: Some(EtagProblem::Mismatch),
                },
                Some("ERR_STATE_SAVE"),
                false,
            ),
            (Error::Malformed("bad".into()), None, false),
            (Error::SecretStoreNotFound("s".into()), None, false),
            (Error::InvokeNoAppId, None, false),
        ];
        for (error, expected, over_http) in cases {
            let api = ApiError::from(error);
            assert_eq!(reason(&api), expected, "{api:?}");
            assert_eq!(api.json().get("details").is_some(), over_http, "{api:?}");
            let status = tonic::Status::from(api);
            assert_eq!(status.details().is_empty(), expected.is_none());
        }
        let missing = ApiError::from(Error::StateStoreNotFound("s".into()));
        assert_eq!(missing.json()["details"][0]["metadata"], Value::Null);
        assert_eq!(
            missing.with_app_id("app").json()["details"][0]["metadata"],
            json!({"appID": "app"})
        );
        assert_eq!(
            ApiError::from(Error::PubSubNotFound("nope".into())).json()["details"][0]["metadata"],
            json!({})
        );
        // A legacy error's body is exactly today's.
        assert_eq!(
            ApiError::from(Error::SecretStoreNotFound("s".into())).json(),
            json!({"errorCode": "ERR_SECRET_STORE_NOT_FOUND", "message": "failed finding secret store with key s"})
        );
    }

    #[test]
    fn bulk_publish_event_errors_name_the_app_and_the_error() {
        let api = ApiError::pubsub_events(
            EventsStep::MarshalEvents,
            "pubsub",
            "app",
            Some("entryId is duplicated or not present for entry"),
            "no",
        );
        assert_eq!(
            (api.code, api.http.as_u16()),
            ("ERR_PUBSUB_EVENTS_SER", 400)
        );
        let body = api.json();
        assert_eq!(body["details"][0]["resource_name"], "pubsub");
        assert_eq!(body["details"][1]["reason"], "DAPR_PUBSUB_MARSHAL_EVENTS");
        assert_eq!(
            body["details"][1]["metadata"],
            json!({"appID": "app", "error": "entryId is duplicated or not present for entry"})
        );
    }
}
