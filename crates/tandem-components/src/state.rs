//! State stores: keys to bytes, with ETags for optimistic concurrency, TTLs and
//! all-or-nothing transactions.
//!
//! Concurrency follows Dapr: a write or delete that carries an ETag succeeds only if it
//! matches the stored one; without an ETag, `last-write` (the default) always writes and
//! `first-write` only creates a key that does not exist yet. Keys reaching a store are
//! already prefixed by the runtime (`appid||key`).

mod in_memory;
mod postgresql;
mod redis;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::registry::{Entry, Registry};

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: Bytes,
    pub etag: String,
}

/// `options.concurrency`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    FirstWrite,
    #[default]
    LastWrite,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub struct SetRequest {
    pub key: String,
    pub value: Bytes,
    /// The ETag the caller read; the write fails unless it still matches.
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    /// `metadata.ttlInSeconds`: the value disappears after it.
    pub ttl: Option<Duration>,
}

/// One delete.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Upsert(SetRequest),
    Delete(DeleteRequest),
}

impl Operation {
    pub fn key(&self) -> &str {
        match self {
            Operation::Upsert(set) => &set.key,
            Operation::Delete(delete) => &delete.key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The ETag given does not match the stored one (or, for `first-write` without an
    /// ETag, the key already exists).
    #[error("possible etag mismatch for key {0}")]
    EtagMismatch(String),
    /// The ETag given cannot be an ETag of this store.
    #[error("invalid etag value for key {0}")]
    InvalidEtag(String),
    #[error("{0}")]
    Store(String),
}

/// Something a store can do beyond reading and writing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Optimistic concurrency with ETags.
    Etag,
    /// All-or-nothing transactions.
    Transactional,
    /// Values that expire (`ttlInSeconds`).
    Ttl,
}

impl Feature {
    /// The name Dapr's metadata API gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Etag => "ETAG",
            Feature::Transactional => "TRANSACTIONAL",
            Feature::Ttl => "TTL",
        }
    }
}

/// A state store.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The value of `key`, if it exists and has not expired.
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError>;

    /// Writes one value; returns its new ETag.
    async fn set(&self, request: SetRequest) -> Result<String, StateError>;

    /// Deletes one key; deleting a missing key without an ETag is not an error.
    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError>;

    /// Applies every operation, or none of them.
    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError>;

    /// What the store offers, as Dapr's metadata API lists it.
    fn features(&self) -> &'static [Feature] {
        &[Feature::Etag, Feature::Transactional, Feature::Ttl]
    }

    /// A Redis the store can carry the first-level cache's invalidation notices over,
    /// when it has one (`state.redis`: its own server, as configured).
    fn notice_channel(&self) -> Option<::redis::ConnectionInfo> {
        None
    }

    /// Values of several keys; the default reads them one by one.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.get(key).await);
        }
        results
    }
}

/// The state stores tandem offers.
pub fn registry() -> Registry<dyn StateStore> {
    Registry::new(
        "state",
        vec![
            Entry {
                kind: "state.in-memory",
                versions: &["v1"],
                metadata: in_memory::METADATA,
                build: |metadata| Box::pin(in_memory::InMemory::build(metadata)),
            },
            Entry {
                kind: "state.sqlite",
                versions: &["v1"],
                metadata: sqlite::METADATA,
                build: |metadata| Box::pin(sqlite::SqliteState::build(metadata)),
            },
            Entry {
                kind: "state.redis",
                versions: &["v1"],
                metadata: redis::METADATA,
                build: |metadata| Box::pin(redis::RedisState::build(metadata)),
            },
            Entry {
                kind: "state.postgresql",
                versions: &["v1"],
                metadata: postgresql::METADATA,
                build: |metadata| Box::pin(postgresql::PostgresState::build(metadata)),
            },
        ],
    )
    .with_shared_metadata(RUNTIME_METADATA)
}

/// Metadata every state store accepts because the runtime reads it (key prefixes,
/// actors, the first-level cache).
pub const RUNTIME_METADATA: &[&str] = &[
    "keyPrefix",
    "actorStateStore",
    "cacheMaxEntries",
    "cacheMaxBytes",
    "cacheTTL",
    "cacheBackplane",
];

/// Reads an ETag this crate's stores hand out: a version number.
pub(crate) fn parse_version(key: &str, etag: Option<&str>) -> Result<Option<u64>, StateError> {
    match etag.filter(|etag| !etag.is_empty()) {
        None => Ok(None),
        Some(etag) => etag
            .parse()
            .map(Some)
            .map_err(|_| StateError::InvalidEtag(key.to_owned())),
    }
}

/// Checks an ETag against the stored one: the shared rule every store applies.
pub fn check_etag(
    key: &str,
    given: Option<&str>,
    stored: Option<&str>,
    concurrency: Concurrency,
) -> Result<(), StateError> {
    match (given.filter(|etag| !etag.is_empty()), stored) {
        (Some(given), Some(stored)) if given == stored => Ok(()),
        (Some(_), _) => Err(StateError::EtagMismatch(key.to_owned())),
        (None, Some(_)) if concurrency == Concurrency::FirstWrite => {
            Err(StateError::EtagMismatch(key.to_owned()))
        }
        (None, _) => Ok(()),
    }
}
