//! Configuration stores: an app reads settings by key (`get`) and is told when they
//! change (`watch`). A value comes with a version and metadata when the store keeps them.
//!
//! A store only reads and watches; the runtime gives each subscription its id, stops it
//! on unsubscribe, and delivers changes to the app (over a gRPC stream, or by calling
//! the app's `/configuration/{store}/{key}` route).

mod postgresql;
mod redis;

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::registry::{Entry, Registry};

/// One configuration value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigurationItem {
    pub value: String,
    pub version: String,
    pub metadata: BTreeMap<String, String>,
}

/// Items by key.
pub type Items = BTreeMap<String, ConfigurationItem>;

/// What a read or a watch asks for: `keys` (every key when empty) and the request's
/// metadata, which some stores read.
#[derive(Debug, Clone, Default)]
pub struct ConfigurationRequest {
    pub keys: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Why a configuration store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("Redis at {host}: {source}")]
    Redis {
        host: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("PostgreSQL at {target}: {message}")]
    Postgres { target: String, message: String },
    /// The request itself cannot be served (a key the store cannot hold, a missing
    /// notification channel).
    #[error("{0}")]
    Invalid(String),
}

/// A configuration store.
#[async_trait]
pub trait ConfigurationStore: Send + Sync {
    /// The items of the requested keys that exist.
    async fn get(&self, request: &ConfigurationRequest) -> Result<Items, ConfigurationError>;

    /// Starts watching the requested keys, sending the items of each change to
    /// `changes` (a deleted key comes as an empty item) until `stop` is cancelled or
    /// `changes` is closed. Returns once the watch is in place, so a change made after
    /// it returns is seen; a watch that loses its connection reconnects by itself.
    async fn watch(
        &self,
        request: &ConfigurationRequest,
        changes: mpsc::Sender<Items>,
        stop: CancellationToken,
    ) -> Result<(), ConfigurationError>;
}

/// The configuration stores tandem offers.
pub fn registry() -> Registry<dyn ConfigurationStore> {
    Registry::new(
        "configuration",
        vec![
            Entry {
                kind: "configuration.redis",
                versions: &["v1"],
                metadata: redis::METADATA,
                build: |metadata| Box::pin(redis::RedisConfiguration::build(metadata)),
            },
            Entry {
                kind: "configuration.postgresql",
                versions: &["v1"],
                metadata: postgresql::METADATA,
                build: |metadata| Box::pin(postgresql::PostgresConfiguration::build(metadata)),
            },
            Entry {
                kind: "configuration.postgres",
                versions: &["v1"],
                metadata: postgresql::METADATA,
                build: |metadata| Box::pin(postgresql::PostgresConfiguration::build(metadata)),
            },
        ],
    )
}
