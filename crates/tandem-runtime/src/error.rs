//! What can go wrong in an API call, in the runtime's terms. The API edge turns each
//! variant into Dapr's error code and HTTP/gRPC status.

use tandem_components::state::StateError;

/// What was wrong with an ETag, when that is why a state write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagProblem {
    /// It does not match the stored one: someone else wrote first.
    Mismatch,
    /// It cannot be an ETag of this store.
    Invalid,
}

/// An API call's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("pubsub name is empty")]
    PubSubEmpty,
    #[error("pubsub {0} is not found")]
    PubSubNotFound(String),
    #[error("topic is empty in pubsub {0}")]
    TopicEmpty(String),
    #[error("error when publish to topic {topic} in pubsub {pubsub}: {reason}")]
    Publish {
        pubsub: String,
        topic: String,
        reason: String,
    },
    #[error(
        "error when creating the cloud event envelope for topic {topic} in pubsub {pubsub}: {reason}"
    )]
    CloudEvent {
        pubsub: String,
        topic: String,
        reason: String,
    },
    #[error("secret store is not configured")]
    SecretStoresNotConfigured,
    #[error("failed finding secret store with key {0}")]
    SecretStoreNotFound(String),
    #[error("failed getting secret with key {key} from secret store {store}: {reason}")]
    SecretGet {
        store: String,
        key: String,
        reason: String,
    },
    #[error("failed getting secrets from secret store {store}: {reason}")]
    BulkSecretGet { store: String, reason: String },
    #[error("state store is not configured")]
    StateStoresNotConfigured,
    #[error("state store {0} is not found")]
    StateStoreNotFound(String),
    #[error("fail to get {key} from state store {store}: {reason}")]
    StateGet {
        store: String,
        key: String,
        reason: String,
    },
    #[error("failed saving state in state store: {reason}")]
    StateSave {
        reason: String,
        etag: Option<EtagProblem>,
    },
    #[error("failed deleting state with key {key}: {reason}")]
    StateDelete {
        key: String,
        reason: String,
        etag: Option<EtagProblem>,
    },
    #[error("error while executing state transaction: {reason}")]
    StateTransaction {
        reason: String,
        etag: Option<EtagProblem>,
    },
    #[error("failed getting app id either from the URL path or the header dapr-app-id")]
    InvokeNoAppId,
    #[error("failed to invoke, id: {app_id}, err: {reason}")]
    Invoke { app_id: String, reason: String },
    #[error("{0}")]
    Malformed(String),
}

fn etag_problem(error: &StateError) -> Option<EtagProblem> {
    match error {
        StateError::EtagMismatch(_) => Some(EtagProblem::Mismatch),
        StateError::InvalidEtag(_) => Some(EtagProblem::Invalid),
        StateError::Store(_) | StateError::Invalid(_) => None,
    }
}

impl Error {
    pub(crate) fn state_save(error: &StateError) -> Self {
        Self::StateSave {
            reason: error.to_string(),
            etag: etag_problem(error),
        }
    }

    pub(crate) fn state_delete(key: &str, error: &StateError) -> Self {
        Self::StateDelete {
            key: key.to_owned(),
            reason: error.to_string(),
            etag: etag_problem(error),
        }
    }

    pub(crate) fn state_transaction(error: &StateError) -> Self {
        Self::StateTransaction {
            reason: error.to_string(),
            etag: etag_problem(error),
        }
    }
}
