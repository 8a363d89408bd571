//! tandem's building blocks as services.
//!
//! [`Runtime`] holds one service per building block — [`Publisher`] and
//! [`Subscriptions`] (pub/sub), [`StateService`] (state and its cache), [`Invoker`]
//! (service invocation), [`Secrets`], [`Bindings`] — and the sidecar's lifecycle: components → APIs →
//! outbound ready → app port → subscriptions → ready. Both front doors (HTTP and gRPC)
//! call the services; errors are [`Error`]s, which the API edge maps to Dapr's codes.
//!
//! Services depend on each other in one direction only: subscriptions use the
//! publisher's brokers, the invoker uses the state service for shared cached answers,
//! and all of them use the app channel ([`AppChannel`]) and the resiliency policies.
#![forbid(unsafe_code)]

mod actors;
mod app_channel;
mod app_health;
mod bindings;
mod body;
pub mod cloudevent;
mod config;
mod configuration;
mod conversation;
mod crypto;
mod error;
mod invoke;
mod loader;
mod lock;
mod metadata;
mod publish;
mod runtime;
mod secrets;
mod state;
mod subscriptions;

pub use actors::{
    ActiveActors, ActorAnswer, ActorEvents, ActorStateOperation, Actors, ActorsInfo,
    FORWARD_PREFIX, REENTRANCY_HEADER, RETRY_HEADER, ReminderInfo, ReminderRequest, TimerRequest,
    Turn, TurnKind,
};
pub use app_channel::{
    AppCallError, AppChannel, AppResponse, DATA_TYPE_URL_HEADER, GRPC_CODE_HEADER,
    PROTOBUF_CONTENT_TYPE, outcome_of_status, topic_event,
};
pub use bindings::{BindingRequest, Bindings};
pub use body::BodyError;
pub use config::{
    AppHealthSettings, ConfigError, DEFAULT_MAX_BODY_SIZE, SidecarConfig, go_duration,
    max_concurrency_from_flag,
};
pub use configuration::{ConfigurationUpdate, Configurations, items_json, update_json};
pub use conversation::{Conversations, json_to_struct, struct_to_json};
pub use crypto::{Crypto, DecryptSession, EncryptOptions, KeyFormat, STREAM_CHUNK};
pub use error::{Cause, Error, EtagProblem};
pub use invoke::{
    CACHE_HEADER, CALLEE_HEADER, CALLER_HEADER, InvokeRequest, InvokeResponse, Invoker, Locate,
    LocateError, MAX_SKEW, PEER_AUTH_HEADER, PEER_REFUSED_HEADER, PROXY_HEADER, PeerAuthError,
    PeerKey, PeerKeyError, ProxyBody, ProxyError, ProxyRequest, method_path, query_text,
};
pub use lock::Locks;
pub use metadata::{ComponentInfo, MetadataSnapshot, RuleInfo, SubscriptionInfo};
pub use publish::{BulkEntry, BulkPublishRequest, FailedEntry, PublishRequest, Publisher};
pub use runtime::Runtime;
pub use secrets::Secrets;
pub use state::{
    BulkStateItem, Consistency, MAX_TTL_SECONDS, StateItem, StateOperation, StateService,
    StateValue,
};
pub use subscriptions::{EventStream, StreamRequest, StreamedEvent, Subscriptions};
pub use tandem_components::bindings::InvokeResponse as BindingResponse;
pub use tandem_components::configuration::{ConfigurationItem, Items as ConfigurationItems};
pub use tandem_components::embedded_defaults;
pub use tandem_components::lock::UnlockStatus;
pub use tandem_components::pubsub::Outcome;
pub use tandem_components::pubsub::client_log_targets;
pub use tandem_components::secretstores::Secret;
pub use tandem_components::state::query::{QueryPage, QueryResult};
