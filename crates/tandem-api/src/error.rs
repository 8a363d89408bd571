//! The one mapping from runtime errors to Dapr's error codes, HTTP statuses and gRPC
//! codes, as `daprd` answers them.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use tandem_runtime::{Error, EtagProblem};
use tonic::Code;

/// An error as the API reports it: Dapr's `errorCode`, its message, and its statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub http: StatusCode,
    pub grpc: Code,
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
            Error::StateSave { etag, .. } => with_etag("ERR_STATE_SAVE", *etag),
            Error::StateDelete { etag, .. } => with_etag("ERR_STATE_DELETE", *etag),
            Error::StateTransaction { etag, .. } => with_etag("ERR_STATE_TRANSACTION", *etag),
            Error::InvokeNoAppId => ("ERR_DIRECT_INVOKE", StatusCode::NOT_FOUND, NotFound),
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
        };
        Self::new(code, http, grpc, error.to_string())
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "errorCode": self.code, "message": self.message }));
        (self.http, body).into_response()
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        tonic::Status::new(error.grpc, error.message)
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
}
