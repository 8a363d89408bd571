//! tandem's building blocks as services.
//!
//! [`Runtime`] is what both front doors (HTTP and gRPC) call: one method per API
//! operation — [`Runtime::publish`], [`Runtime::get_secret`], [`Runtime::metadata`], ...
//! It owns the loaded components, the app channel (calls *into* the app) and the
//! sidecar's lifecycle: components → APIs → outbound ready → app port → subscriptions →
//! ready. Errors are [`Error`]s; the API edge maps them to Dapr's codes and statuses.
#![forbid(unsafe_code)]

mod app_channel;
pub mod cloudevent;
mod components;
mod config;
mod deliver;
mod error;
mod invoke;
mod metadata;
mod publish;
mod runtime;
mod secrets;
mod state;

pub use app_channel::AppChannel;
pub use components::embedded_defaults;
pub use config::SidecarConfig;
pub use error::{Error, EtagProblem};
pub use invoke::{
    CACHE_HEADER, CALLEE_HEADER, CALLER_HEADER, InvokeRequest, InvokeResponse, Locate,
};
pub use metadata::{ComponentInfo, MetadataSnapshot, SubscriptionInfo};
pub use publish::PublishRequest;
pub use runtime::Runtime;
pub use state::{BulkStateItem, Consistency, StateItem, StateOperation, StateValue};
pub use tandem_components::secretstores::Secret;
