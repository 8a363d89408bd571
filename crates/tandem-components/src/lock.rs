//! Distributed locks: an app takes a named lock for a while (`try_lock`) and gives it
//! back (`unlock`); while one owner holds it, no other owner gets it. A lock not given
//! back expires on its own, so a crashed owner never blocks the others for longer than
//! it asked for.
//!
//! The runtime chooses the stored name of a lock (Dapr's `keyPrefix` strategy); a
//! component only stores owners with expiries, atomically.

mod redis;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

use crate::registry::{Entry, Registry};

/// Metadata names the runtime reads for every lock store.
pub const SHARED_METADATA: &[&str] = &["keyPrefix"];

/// What became of an unlock, with Dapr's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockStatus {
    /// The owner held it; it is free now.
    Success = 0,
    /// Nobody holds it (never taken, given back, or expired).
    LockDoesNotExist = 1,
    /// Another owner holds it; it stays theirs.
    LockBelongsToOthers = 2,
}

/// Why a lock store could not answer. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("Redis at {host}: {source}")]
    Redis {
        host: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::DatabaseError),
}

/// A lock store.
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Takes `lock` for `owner` for `expiry`, if nobody holds it; `false` if someone
    /// does (the owner itself included: locks are not re-entrant, as in Dapr).
    async fn try_lock(&self, lock: &str, owner: &str, expiry: Duration) -> Result<bool, LockError>;

    /// Gives `lock` back, if `owner` holds it.
    async fn unlock(&self, lock: &str, owner: &str) -> Result<UnlockStatus, LockError>;
}

/// The lock stores tandem offers.
pub fn registry() -> Registry<dyn LockStore> {
    Registry::new(
        "lock",
        vec![
            Entry {
                kind: "lock.redis",
                versions: &["v1"],
                metadata: redis::METADATA,
                build: |metadata| Box::pin(redis::RedisLock::build(metadata)),
            },
            Entry {
                kind: "lock.sqlite",
                versions: &["v1"],
                metadata: sqlite::METADATA,
                build: |metadata| Box::pin(sqlite::SqliteLock::build(metadata)),
            },
        ],
    )
    .with_shared_metadata(SHARED_METADATA)
}
