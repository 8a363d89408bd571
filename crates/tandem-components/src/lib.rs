//! The building blocks' contracts and the components that fulfil them.
//!
//! Each building block has a trait ([`pubsub::PubSub`], [`secretstores::SecretStore`],
//! [`bindings::Binding`], [`conversation::Conversation`])
//! and one registry ([`pubsub::registry`], [`secretstores::registry`]) that maps a
//! resource's `spec.type` and `spec.version` to the implementation's constructor and
//! the metadata names it understands. Adding a component is one file and one line in
//! its block's registry.
#![forbid(unsafe_code)]

mod aws;
mod azure;
pub mod bindings;
pub mod configuration;
pub mod conversation;
pub mod crypto;
mod embedded;
mod http_exchange;
pub mod lock;
pub mod pubsub;
mod redis_connection;
mod registry;
pub mod secretstores;
mod sqlite;
pub mod state;

pub use embedded::embedded_defaults;
pub use registry::{Build, Entry, Registry};
pub use sqlite::DatabaseError;
