//! State stores: keys to bytes, with ETags for optimistic concurrency, TTLs and
//! all-or-nothing transactions.
//!
//! Concurrency follows Dapr: a write or delete that carries an ETag succeeds only if it
//! matches the stored one; without an ETag, `last-write` (the default) always writes and
//! `first-write` only creates a key that does not exist yet. Keys reaching a store are
//! already prefixed by the runtime (`appid||key`).

mod azure_blob;
mod azure_table;
mod dynamodb;
mod in_memory;
mod mongodb;
mod mysql;
pub(crate) mod postgresql;
pub mod query;
mod redis;
mod sqlite;

use std::sync::Arc;
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

/// The longest TTL a store accepts: Go's largest `time.Duration` (`i64::MAX`
/// nanoseconds, about 292 years), the most daprd itself can represent. Every store
/// refuses a longer one with [`InvalidRequest::TtlOutOfRange`] and writes nothing.
pub const MAX_TTL: Duration = Duration::new(
    (i64::MAX as u64) / 1_000_000_000,
    ((i64::MAX as u64) % 1_000_000_000) as u32,
);

/// Why a state operation failed. Callers tell the kinds apart by variant: an ETag
/// problem or an invalid request is the caller's to fix and never worth retrying; a
/// [`StateError::Store`] failure may go away on its own.
///
/// Cheap to clone (the store's error is shared), so one failure can answer every key
/// of a bulk request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The ETag given does not match the stored one (or, for `first-write` without an
    /// ETag, the key already exists).
    #[error("possible etag mismatch for key {0}")]
    EtagMismatch(String),
    /// The ETag given cannot be an ETag of this store.
    #[error("invalid etag value for key {0}")]
    InvalidEtag(String),
    /// The request can never succeed as it is; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The store failed or could not be reached; nothing was written by a failed
    /// transaction, and retrying may succeed.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl StateError {
    /// A call stopped before the store answered (a resiliency timeout, an open
    /// circuit breaker): reported like a store failure, and as retryable.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(cause.into()).into()
    }

    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Store(_))
    }
}

impl From<StoreError> for StateError {
    fn from(error: StoreError) -> Self {
        StateError::Store(Arc::new(error))
    }
}

/// A request no store can carry out as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The TTL is longer than [`MAX_TTL`].
    #[error("ttl of key {key} is out of range: {}s is more than the largest TTL, {}s", ttl.as_secs(), MAX_TTL.as_secs())]
    TtlOutOfRange { key: String, ttl: Duration },
    /// The key is longer than the store can hold (`state.mysql`: 255 characters,
    /// `state.aws.dynamodb`: 2048 bytes).
    #[error("key {key} is too long: this store holds keys of at most {limit}")]
    KeyTooLong { key: String, limit: &'static str },
    /// The value is larger than the store can hold (`state.aws.dynamodb`: an item of
    /// 400 KB).
    #[error(
        "value of key {key} is too large: {size} bytes with the key, more than this store's {max}"
    )]
    ValueTooLarge {
        key: String,
        size: usize,
        max: usize,
    },
    /// The transaction has more operations than the store can apply at once.
    #[error("transaction of {count} operations is too large: this store applies at most {max}")]
    TooManyOperations { count: usize, max: usize },
}

/// A store that failed or could not be reached. Messages name the store and what it
/// was doing, never a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis at {host}: {action}: {source}")]
    Redis {
        host: String,
        action: String,
        #[source]
        source: ::redis::RedisError,
    },
    /// A Redis key holds something that is not a state value (not a hash, or a
    /// `version` that is not a number).
    #[error("Redis at {host}: key {key} is not a state value: {problem}")]
    RedisKey {
        host: String,
        key: String,
        problem: &'static str,
    },
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::DatabaseError),
    #[error("PostgreSQL: {}", postgresql::describe(source))]
    Postgres {
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to PostgreSQL: {}", postgresql::describe_pool(source))]
    PostgresPool {
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("PostgreSQL did not answer within {0:?}")]
    PostgresTimeout(Duration),
    #[error("MySQL at {target}: {source}")]
    MySql {
        /// `user@host:port/database`: never the password.
        target: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("MySQL at {target} did not answer within {timeout:?}")]
    MySqlTimeout { target: String, timeout: Duration },
    /// A row holds something that is not a state value of the layout.
    #[error("MySQL: key {key} is not a state value: {problem}")]
    MySqlValue { key: String, problem: String },
    #[error("DynamoDB table {table}: {action}: {source}")]
    DynamoDb {
        table: String,
        action: &'static str,
        /// Boxed: the AWS error is large and this enum travels in every `Result`.
        #[source]
        source: Box<crate::aws::AwsError>,
    },
    /// An item holds something that is not a state value of the layout.
    #[error("DynamoDB table {table}: key {key} is not a state value: {problem}")]
    DynamoDbItem {
        table: String,
        key: String,
        problem: String,
    },
    #[error("Azure {service} {resource}: {action}: {source}")]
    Azure {
        /// `blob container` or `table`.
        service: &'static str,
        resource: String,
        action: &'static str,
        /// Boxed, as the AWS error: this enum travels in every `Result`.
        #[source]
        source: Box<crate::azure::AzureError>,
    },
    /// An entity holds something that is not a state value of the layout.
    #[error("Azure table {table}: key {key} is not a state value: {problem}")]
    AzureEntity {
        table: String,
        key: String,
        problem: String,
    },
    #[error("MongoDB collection {collection}: {source}")]
    MongoDb {
        /// `database.collection`.
        collection: String,
        /// Boxed, as the AWS error: this enum travels in every `Result`.
        #[source]
        source: Box<mongodb::MongoError>,
    },
    /// The call was stopped before the store answered.
    #[error(transparent)]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

/// What a store offers, as Dapr's metadata API lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// Optimistic concurrency with ETags.
    Etag,
    /// All-or-nothing transactions.
    Transactional,
    /// Values that expire (`ttlInSeconds`).
    Ttl,
    /// The query API (`/v1.0-alpha1/state/{store}/query`).
    Query,
}

impl Feature {
    /// Dapr's name for it (`ETAG`, `TRANSACTIONAL`, `TTL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Etag => "ETAG",
            Feature::Transactional => "TRANSACTIONAL",
            Feature::Ttl => "TTL",
            Feature::Query => "QUERY_API",
        }
    }
}

/// Refuses a TTL longer than [`MAX_TTL`]: every store calls it for every write
/// before it writes anything, so a refused request leaves the store untouched.
pub fn check_ttl(key: &str, ttl: Option<Duration>) -> Result<(), StateError> {
    match ttl {
        Some(ttl) if ttl > MAX_TTL => Err(InvalidRequest::TtlOutOfRange {
            key: key.to_owned(),
            ttl,
        }
        .into()),
        _ => Ok(()),
    }
}

/// Checks what can be checked of `operations` without the store: every ETag is one
/// this crate's stores hand out and every TTL is in range. Stores call it before
/// their first write.
pub(crate) fn validate(operations: &[Operation]) -> Result<(), StateError> {
    for operation in operations {
        match operation {
            Operation::Upsert(set) => {
                parse_version(&set.key, set.etag.as_deref())?;
                check_ttl(&set.key, set.ttl)?;
            }
            Operation::Delete(delete) => {
                parse_version(&delete.key, delete.etag.as_deref())?;
            }
        }
    }
    Ok(())
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

    /// Values of several keys; the default reads them one by one.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.get(key).await);
        }
        results
    }

    /// Every live value whose key starts with `prefix`, for the query API
    /// ([`query`]); `None` when the store cannot list its keys (then it has no query
    /// API, and says so in [`features`](Self::features)).
    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, Stored)>>, StateError> {
        let _ = prefix;
        Ok(None)
    }

    /// What this store offers.
    fn features(&self) -> &'static [Feature];

    /// A Redis this store can carry cache-invalidation notices over, as configured
    /// for the store itself (host, database, user, password, TLS); `None` for stores
    /// that are not Redis.
    fn notice_channel(&self) -> Option<::redis::ConnectionInfo> {
        None
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
            // daprd's other name for it.
            Entry {
                kind: "state.sqlite3",
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
            Entry {
                kind: "state.mysql",
                versions: &["v1"],
                metadata: mysql::METADATA,
                build: |metadata| Box::pin(mysql::MySqlState::build(metadata)),
            },
            Entry {
                kind: "state.mongodb",
                versions: &["v1"],
                metadata: mongodb::METADATA,
                build: |metadata| Box::pin(mongodb::MongoState::build(metadata)),
            },
            Entry {
                kind: "state.aws.dynamodb",
                versions: &["v1"],
                metadata: dynamodb::METADATA,
                build: |metadata| Box::pin(dynamodb::DynamoDbState::build(metadata)),
            },
            // v1 names blobs by the key without its `appid||` prefix, v2 by the whole
            // key, as daprd's versions do.
            Entry {
                kind: "state.azure.blobstorage",
                versions: &["v1", "v2"],
                metadata: azure_blob::METADATA,
                build: |metadata| Box::pin(azure_blob::AzureBlobState::build(metadata)),
            },
            Entry {
                kind: "state.azure.tablestorage",
                versions: &["v1"],
                metadata: azure_table::METADATA,
                build: |metadata| Box::pin(azure_table::AzureTableState::build(metadata)),
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
    "outboxPublishPubsub",
    "outboxPublishTopic",
    "outboxPubsub",
    "outboxDiscardWhenMissingState",
];

/// Reads an ETag this crate's stores hand out: a version number, which every store
/// keeps as a signed 64-bit integer.
pub(crate) fn parse_version(key: &str, etag: Option<&str>) -> Result<Option<u64>, StateError> {
    match etag.filter(|etag| !etag.is_empty()) {
        None => Ok(None),
        Some(etag) => etag
            .parse::<i64>()
            .ok()
            .and_then(|version| u64::try_from(version).ok())
            .map(Some)
            .ok_or_else(|| StateError::InvalidEtag(key.to_owned())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daprs_other_names_of_a_component_are_known() {
        let known = |kinds: Vec<&str>, kind: &str| kinds.contains(&kind);
        assert!(known(registry().kinds().collect(), "state.sqlite3"));
        let pubsub: Vec<&str> = crate::pubsub::registry().kinds().collect();
        assert!(known(pubsub.clone(), "pubsub.mqtt") && known(pubsub, "pubsub.snssqs"));
        assert!(known(
            crate::bindings::registry().kinds().collect(),
            "bindings.mqtt"
        ));
        assert!(known(
            crate::configuration::registry().kinds().collect(),
            "configuration.postgres"
        ));
    }

    #[test]
    fn max_ttl_is_gos_largest_duration() {
        assert_eq!(MAX_TTL, Duration::from_nanos(i64::MAX as u64));
        assert_eq!(MAX_TTL.as_secs(), 9_223_372_036);
        assert!(check_ttl("k", Some(MAX_TTL)).is_ok());
        assert!(check_ttl("k", None).is_ok());
        for ttl in [MAX_TTL + Duration::from_nanos(1), Duration::MAX] {
            let error = check_ttl("k", Some(ttl)).unwrap_err();
            assert!(matches!(error, StateError::Invalid(_)), "{error:?}");
            assert!(!error.is_retryable());
            assert!(
                error.to_string().contains("ttl of key k is out of range"),
                "{error}"
            );
        }
    }

    #[test]
    fn errors_are_told_apart_by_kind_and_keep_their_source() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<StateError>();

        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = StateError::from(StoreError::Redis {
            host: "127.0.0.1:6379".into(),
            action: "HMGET k".into(),
            source: ::redis::RedisError::from(io),
        });
        assert!(error.is_retryable());
        assert!(
            error
                .to_string()
                .starts_with("Redis at 127.0.0.1:6379: HMGET k: ")
        );
        let StateError::Store(store) = &error else {
            panic!("{error:?}")
        };
        assert!(std::error::Error::source(store.as_ref()).is_some());
        assert!(!StateError::EtagMismatch("k".into()).is_retryable());
        assert!(!StateError::InvalidEtag("k".into()).is_retryable());
        assert!(StateError::unavailable("timed out").is_retryable());
    }

    #[test]
    fn etags_are_versions_that_fit_every_store() {
        assert_eq!(parse_version("k", None).unwrap(), None);
        assert_eq!(parse_version("k", Some("")).unwrap(), None);
        assert_eq!(parse_version("k", Some("7")).unwrap(), Some(7));
        for bad in ["x", "-1", "9223372036854775808", "1.5"] {
            assert!(
                matches!(
                    parse_version("k", Some(bad)),
                    Err(StateError::InvalidEtag(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn features_have_daprs_names() {
        let names: Vec<&str> = [Feature::Etag, Feature::Transactional, Feature::Ttl]
            .into_iter()
            .map(Feature::as_str)
            .collect();
        assert_eq!(names, ["ETAG", "TRANSACTIONAL", "TTL"]);
    }
}
