//! `state.sqlite`: state in one SQLite file; with the embedded default it shares
//! `~/.tandem/tandem.db` with the embedded broker, and every sidecar on the machine can
//! use it at once. ETags are version numbers checked inside the writing transaction;
//! expired rows are invisible at once and deleted every `cleanupInterval`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, Operation, SetRequest, StateError, StateStore, StoreError,
    Stored, check_etag, validate,
};
use crate::sqlite::{Database, DatabaseError, database_path, expiry_ms, now_ms};

pub const METADATA: &[&str] = &[
    "connectionString",
    "tableName",
    "cleanupInterval",
    "timeout",
    "busyTimeout",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS state_expiry ON state (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS state_versions (id INTEGER PRIMARY KEY CHECK (id = 0), last INTEGER NOT NULL);
INSERT OR IGNORE INTO state_versions (id, last) VALUES (0, 0);
";

pub struct SqliteState {
    database: Database,
}

impl SqliteState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        if let Some(table) = metadata.get("tableName")
            && table != "state"
        {
            return Err(metadata.field_error(
                "tableName",
                "only the default table name `state` is supported",
            ));
        }
        let path = database_path(metadata.required("connectionString")?);
        let database = Database::open(path, SCHEMA)
            .await
            .map_err(|error| metadata.field_error("connectionString", error.to_string()))?;
        let cleanup = metadata.duration_or("cleanupInterval", Duration::from_secs(3600))?;
        if !cleanup.is_zero() {
            tokio::spawn(clean_up_forever(database.clone(), cleanup));
        }
        Ok(Arc::new(Self { database }))
    }

    /// Runs `work` on the database's thread. `work` answers the store's own errors
    /// (ETag mismatches) and SQLite's, which are reported with the file's name.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StateError> {
        let path = self.database.path().to_owned();
        match self
            .database
            .run(move |connection| Ok(work(connection)))
            .await
            .map_err(StoreError::from)?
        {
            Ok(done) => Ok(done),
            Err(Failure::State(error)) => Err(error),
            Err(Failure::Sqlite(source)) => {
                Err(StoreError::from(DatabaseError::Sqlite { path, source }).into())
            }
        }
    }
}

/// Why a call failed: the store's answer, or SQLite's error.
enum Failure {
    State(StateError),
    Sqlite(rusqlite::Error),
}

impl From<StateError> for Failure {
    fn from(error: StateError) -> Self {
        Failure::State(error)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sqlite(error)
    }
}

async fn clean_up_forever(database: Database, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let deleted = database
            .run(|connection| {
                connection.execute(
                    "DELETE FROM state WHERE expires_ms <= ?1",
                    params![now_ms()],
                )
            })
            .await;
        if let Err(error) = deleted {
            tracing::debug!("deleting expired state failed: {error}");
        }
    }
}

/// The live version of `key` inside a transaction.
fn current_version(connection: &Connection, key: &str) -> Result<Option<u64>, Failure> {
    Ok(connection
        .prepare_cached(
            "SELECT version FROM state WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
        )?
        .query_row(params![key, now_ms()], |row| row.get::<_, i64>(0))
        .optional()
        .map(|version| version.and_then(|version| u64::try_from(version).ok()))?)
}

fn apply(connection: &Connection, operation: &Operation) -> Result<Option<String>, Failure> {
    match operation {
        Operation::Upsert(set) => {
            let current = current_version(connection, &set.key)?;
            check_etag(
                &set.key,
                set.etag.as_deref(),
                current.map(|v| v.to_string()).as_deref(),
                set.concurrency,
            )?;
            // One counter for the whole table: versions keep growing across a delete
            // and re-create, so an ETag read before the delete never matches again.
            let version: i64 = connection
                .prepare_cached(
                    "UPDATE state_versions SET last = last + 1 WHERE id = 0 RETURNING last",
                )?
                .query_row([], |row| row.get(0))?;
            // In range: `validate` refused TTLs past MAX_TTL, whose milliseconds fit
            // the column for hundreds of years yet.
            let expires = match set.ttl {
                None => None,
                Some(ttl) => Some(
                    expiry_ms(ttl)
                        .ok_or_else(|| super::InvalidRequest::TtlOutOfRange {
                            key: set.key.clone(),
                            ttl,
                        })
                        .map_err(StateError::from)?,
                ),
            };
            connection
                .prepare_cached(
                    "INSERT INTO state (key, value, version, expires_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,
                                                     expires_ms = excluded.expires_ms",
                )?
                .execute(params![set.key, set.value.as_ref(), version, expires])?;
            Ok(Some(version.to_string()))
        }
        Operation::Delete(delete) => {
            let current = current_version(connection, &delete.key)?;
            check_etag(
                &delete.key,
                delete.etag.as_deref(),
                current.map(|v| v.to_string()).as_deref(),
                Concurrency::LastWrite,
            )?;
            connection
                .prepare_cached("DELETE FROM state WHERE key = ?1")?
                .execute(params![delete.key])?;
            Ok(None)
        }
    }
}

/// Runs `operations` in one immediate transaction: all of them, or none.
///
/// An early return drops the transaction, which rolls it back: an error answer means
/// nothing was written.
fn in_transaction(
    connection: &mut Connection,
    operations: &[Operation],
) -> Result<Option<String>, Failure> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut last = None;
    for operation in operations {
        last = apply(&transaction, operation)?;
    }
    transaction.commit()?;
    Ok(last)
}

#[async_trait]
impl StateStore for SqliteState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let key = key.to_owned();
        self.run(move |connection| {
            connection
                .prepare_cached(
                    "SELECT value, version FROM state WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
                )?
                .query_row(params![key, now_ms()], |row| {
                        Ok(Stored {
                            value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
                            etag: row.get::<_, i64>(1)?.to_string(),
                        })
                    },
                )
                .optional()
                .map_err(Failure::from)
        })
        .await
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        let request = Operation::Upsert(request);
        validate(std::slice::from_ref(&request))?;
        self.run(move |connection| in_transaction(connection, &[request]))
            .await
            .map(Option::unwrap_or_default)
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        let request = Operation::Delete(request);
        validate(std::slice::from_ref(&request))?;
        self.run(move |connection| in_transaction(connection, &[request]))
            .await
            .map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        validate(&operations)?;
        self.run(move |connection| in_transaction(connection, &operations))
            .await
            .map(|_| ())
    }

    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, Stored)>>, StateError> {
        let prefix = prefix.to_owned();
        self.run(move |connection| {
            // `substr` rather than LIKE: a prefix may hold `%` or `_`.
            let mut statement = connection.prepare_cached(
                "SELECT key, value, version FROM state WHERE substr(key, 1, length(?1)) = ?1 \
                 AND (expires_ms IS NULL OR expires_ms > ?2)",
            )?;
            let rows = statement.query_map(params![prefix, now_ms()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Stored {
                        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                        etag: row.get::<_, i64>(2)?.to_string(),
                    },
                ))
            })?;
            let mut found = Vec::new();
            for row in rows {
                found.push(row?);
            }
            Ok(Some(found))
        })
        .await
    }

    fn features(&self) -> &'static [Feature] {
        &[
            Feature::Etag,
            Feature::Transactional,
            Feature::Ttl,
            Feature::Query,
        ]
    }
}
