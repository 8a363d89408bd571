//! What can go wrong in an API call, in the runtime's terms. The API edge turns each
//! variant into Dapr's error code and HTTP/gRPC status.

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
    #[error("{0}")]
    Malformed(String),
}
