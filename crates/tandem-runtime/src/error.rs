//! What can go wrong in an API call, in the runtime's terms. The API edge turns each
//! variant into Dapr's error code and HTTP/gRPC status (one table, `tandem-api`'s
//! `error.rs`); a variant says whose fault it is, so that table never looks at text.

use std::sync::Arc;

/// Why an operation failed underneath, kept for the message and for `source()`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// What was wrong with an ETag, when that is why a state write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagProblem {
    /// It does not match the stored one: someone else wrote first.
    Mismatch,
    /// It cannot be an ETag of this store.
    Invalid,
}

/// An API call's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a field out of range, a missing name, ...): the
    /// caller's fault, answered 400 `ERR_MALFORMED_REQUEST`.
    #[error("{0}")]
    Malformed(String),
    /// A request body could not be read (too large, or the connection broke).
    #[error("failed to read request body: {0}")]
    BodyRead(String),

    #[error("pubsub name is empty")]
    PubSubEmpty,
    #[error("pubsub {0} is not found")]
    PubSubNotFound(String),
    #[error("topic is empty in pubsub {0}")]
    TopicEmpty(String),
    #[error("error when publish to topic {topic} in pubsub {pubsub}: {cause}")]
    Publish {
        pubsub: String,
        topic: String,
        #[source]
        cause: Cause,
    },
    /// The broker refused or failed a streaming subscription.
    #[error("error subscribing to topic {topic} in pubsub {pubsub}: {cause}")]
    Subscribe {
        pubsub: String,
        topic: String,
        cause: String,
    },
    /// The event could not be made into a CloudEvent (a published envelope that is not
    /// one, a metadata value out of range): the caller's fault.
    #[error(
        "error when creating the cloud event envelope for topic {topic} in pubsub {pubsub}: {reason}"
    )]
    CloudEvent {
        pubsub: String,
        topic: String,
        reason: String,
    },

    #[error("crypto providers not configured")]
    CryptoProvidersNotConfigured,
    #[error("crypto provider {0} not found")]
    CryptoProviderNotFound(String),
    /// A crypto request daprd refuses as `ERR_BAD_REQUEST` (a missing component name,
    /// stream options, or header).
    #[error("invalid request: {0}")]
    CryptoBadRequest(String),
    #[error("failed to retrieve key {name}: {cause}")]
    CryptoGetKey {
        name: String,
        #[source]
        cause: Cause,
    },
    /// A crypto operation failed; the reason is daprd's (generic for subtle calls).
    #[error("failed to perform operation: {0}")]
    Crypto(String),

    #[error("lock store is not configured")]
    LockStoresNotConfigured,
    #[error("lock store {0} not found")]
    LockStoreNotFound(String),
    #[error("failed to try acquiring lock: {0}")]
    TryLock(#[source] Cause),
    #[error("failed to release lock: {0}")]
    Unlock(#[source] Cause),

    /// The store cannot run queries.
    #[error("state store does not support querying")]
    StateQueryNotSupported(String),
    #[error("state store {store} query failed: {detail}")]
    StateQuery { store: String, detail: String },

    #[error("configuration stores not configured")]
    ConfigurationStoresNotConfigured,
    #[error("configuration store {0} not found")]
    ConfigurationStoreNotFound(String),
    /// `keys` as daprd prints them (`[a b]`).
    #[error("failed to get {keys} from Configuration store {store}: {cause}")]
    ConfigurationGet {
        keys: String,
        store: String,
        #[source]
        cause: Cause,
    },
    #[error("failed to subscribe {keys} from Configuration store {store}: {cause}")]
    ConfigurationSubscribe {
        keys: String,
        store: String,
        #[source]
        cause: Cause,
    },
    #[error("failed to unsubscribe to configuration request {id}: {reason}")]
    ConfigurationUnsubscribe { id: String, reason: String },
    /// A call that needs the app (an HTTP configuration subscription) from a sidecar
    /// started without one.
    #[error("app channel is not initialized. cannot subscribe to configuration updates")]
    AppChannelNil,
    #[error("failed finding conversation component {0}")]
    ConversationNotFound(String),
    #[error("failed conversing with component {0}: missing inputs in request")]
    ConversationMissingInputs(String),
    /// The request asks for something the API refuses (a message or tool call without
    /// its type, a tool choice naming no tool offered): the caller's fault.
    #[error("failed conversing with component {name}: invalid params: {reason}")]
    ConversationInvalidParams { name: String, reason: String },
    /// The component (the model behind it) failed.
    #[error("failed conversing with component {name}: {reason}")]
    ConversationInvoke { name: String, reason: String },

    #[error("secret store is not configured")]
    SecretStoresNotConfigured,
    #[error("failed finding secret store with key {0}")]
    SecretStoreNotFound(String),
    /// The Configuration's secret scopes do not let the app read this secret. The key
    /// and store are quoted as daprd's `%q` does.
    #[error("access denied by policy to get {key:?} from {store:?}")]
    SecretPermissionDenied { store: String, key: String },
    #[error("failed getting secret with key {key} from secret store {store}: {cause}")]
    SecretGet {
        store: String,
        key: String,
        #[source]
        cause: Cause,
    },
    #[error("failed getting secrets from secret store {store}: {cause}")]
    BulkSecretGet {
        store: String,
        #[source]
        cause: Cause,
    },

    #[error("state store is not configured")]
    StateStoresNotConfigured,
    #[error("state store {0} is not found")]
    StateStoreNotFound(String),
    /// A key Dapr refuses: it would collide with the `prefix||key` layout.
    #[error("input key/keyPrefix '{key}' can't contain '||'")]
    IllegalStateKey { store: String, key: String },
    #[error("fail to get {key} from state store {store}: {cause}")]
    StateGet {
        store: String,
        key: String,
        #[source]
        cause: Cause,
    },
    #[error("failed saving state in state store {store}: {cause}")]
    StateSave {
        store: String,
        etag: Option<EtagProblem>,
        #[source]
        cause: Cause,
    },
    #[error("failed deleting state with key {key}: {cause}")]
    StateDelete {
        key: String,
        etag: Option<EtagProblem>,
        #[source]
        cause: Cause,
    },
    #[error("error while executing state transaction: {cause}")]
    StateTransaction {
        etag: Option<EtagProblem>,
        #[source]
        cause: Cause,
    },

    #[error("failed getting app id either from the URL path or the header dapr-app-id")]
    InvokeNoAppId,
    /// The target cannot be an app id (`a.b.c`, `..`, a slash): the caller's fault.
    #[error("failed to invoke, id: {app_id}, err: invalid app id {app_id}")]
    InvalidAppId { app_id: String },
    #[error("failed to invoke, id: {app_id}, err: {reason}")]
    Invoke { app_id: String, reason: String },
    /// Another sidecar's call on the internal port did not prove it is one of ours.
    #[error("the caller is not an authenticated sidecar: {0}")]
    PeerUnauthenticated(String),
    /// No state store is the actor state store (`actorStateStore: "true"`).
    #[error(
        "the state store is not configured to use the actor runtime. Have you set the - name: actorStateStore value: \"true\" in your state store component file?"
    )]
    ActorRuntimeNotFound,
    /// The actor is not hosted by this sidecar's app.
    #[error("actor instance is missing")]
    ActorInstanceMissing,
    /// No host serves the actor type.
    #[error(
        "did not find address for actor '{actor_type}': no host of this actor type is registered"
    )]
    ActorNoHost { actor_type: String },
    #[error("error invoke actor method: {reason}")]
    ActorInvoke { reason: String },
    /// The app answered 404 to an actor method.
    #[error("error invoke actor method: actor method not found: {path}")]
    ActorMethodNotFound { path: String },
    #[error("error getting actor state: {cause}")]
    ActorStateGet {
        #[source]
        cause: Cause,
    },
    #[error("error saving actor transaction state: {cause}")]
    ActorStateTransaction {
        #[source]
        cause: Cause,
    },
    #[error("error creating actor reminder: {reason}")]
    ActorReminderCreate { reason: String },
    #[error("error getting actor reminder: {reason}")]
    ActorReminderGet { reason: String },
    #[error("error deleting actor reminder: {reason}")]
    ActorReminderDelete { reason: String },
    #[error("actor reminder not found: {name}")]
    ActorReminderNotFound { name: String },
    /// Reminders are made and removed on a sidecar whose app hosts the type.
    #[error("operations on actor reminders are only possible on hosted actor types")]
    ActorReminderNotHosted,
    #[error("error creating actor timer: {reason}")]
    ActorTimerCreate { reason: String },
    /// A reentrant call chain went deeper than `maxStackDepth`.
    #[error("maximum stack depth exceeded")]
    ActorMaxStackDepth,

    /// An output binding could not do the operation (unknown binding or operation, or
    /// the system behind it failed).
    #[error("error invoking output binding {name}: {reason}")]
    BindingInvoke { name: String, reason: String },

    /// A proxied gRPC call (`dapr-app-id` on any service) that did not reach the app.
    #[error(transparent)]
    Proxy(#[from] crate::invoke::ProxyError),
}

impl Error {
    /// A failure of the layer below, as a cause.
    pub(crate) fn cause(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Arc::new(error)
    }
}

/// A cause that is only a message: a resiliency policy gave up, a limit was reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Reason(pub String);
