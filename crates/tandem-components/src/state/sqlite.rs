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
    Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore, Stored, check_etag,
    parse_version,
};
use crate::sqlite::{Database, database_path, now_ms};

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
            .map_err(|error| metadata.field_error("connectionString", error))?;
        let cleanup = metadata.duration_or("cleanupInterval", Duration::from_secs(3600))?;
        if !cleanup.is_zero() {
            tokio::spawn(clean_up_forever(database.clone(), cleanup));
        }
        Ok(Arc::new(Self { database }))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        // Carry the state error through rusqlite's error type and back out again.
        self.database
            .run(move |connection| Ok(work(connection)))
            .await
            .map_err(StateError::Store)?
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

fn store_error(error: rusqlite::Error) -> StateError {
    StateError::Store(error.to_string())
}

/// The live version of `key` inside a transaction.
fn current_version(connection: &Connection, key: &str) -> Result<Option<u64>, StateError> {
    connection
        .query_row(
            "SELECT version FROM state WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
            params![key, now_ms()],
            |row| row.get::<_, i64>(0),
        )
        .optional()
        .map(|version| version.map(|version| version as u64))
        .map_err(store_error)
}

fn apply(connection: &Connection, operation: &Operation) -> Result<Option<String>, StateError> {
    match operation {
        Operation::Upsert(set) => {
            parse_version(&set.key, set.etag.as_deref())?;
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
                .query_row(
                    "UPDATE state_versions SET last = last + 1 WHERE id = 0 RETURNING last",
                    [],
                    |row| row.get(0),
                )
                .map_err(store_error)?;
            let expires = set.ttl.map(|ttl| now_ms() + ttl.as_millis() as i64);
            connection
                .execute(
                    "INSERT INTO state (key, value, version, expires_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,
                                                     expires_ms = excluded.expires_ms",
                    params![set.key, set.value.as_ref(), version, expires],
                )
                .map_err(store_error)?;
            Ok(Some(version.to_string()))
        }
        Operation::Delete(delete) => {
            parse_version(&delete.key, delete.etag.as_deref())?;
            let current = current_version(connection, &delete.key)?;
            check_etag(
                &delete.key,
                delete.etag.as_deref(),
                current.map(|v| v.to_string()).as_deref(),
                Concurrency::LastWrite,
            )?;
            connection
                .execute("DELETE FROM state WHERE key = ?1", params![delete.key])
                .map_err(store_error)?;
            Ok(None)
        }
    }
}

/// Runs `operations` in one immediate transaction: all of them, or none.
fn in_transaction(
    connection: &mut Connection,
    operations: &[Operation],
) -> Result<Option<String>, StateError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error)?;
    let mut last = None;
    for operation in operations {
        last = apply(&transaction, operation)?;
    }
    transaction.commit().map_err(store_error)?;
    Ok(last)
}

#[async_trait]
impl StateStore for SqliteState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let key = key.to_owned();
        self.run(move |connection| {
            connection
                .query_row(
                    "SELECT value, version FROM state WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
                    params![key, now_ms()],
                    |row| {
                        Ok(Stored {
                            value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
                            etag: row.get::<_, i64>(1)?.to_string(),
                        })
                    },
                )
                .optional()
                .map_err(store_error)
        })
        .await
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        self.run(move |connection| in_transaction(connection, &[Operation::Upsert(request)]))
            .await
            .map(Option::unwrap_or_default)
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        self.run(move |connection| in_transaction(connection, &[Operation::Delete(request)]))
            .await
            .map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        self.run(move |connection| in_transaction(connection, &operations))
            .await
            .map(|_| ())
    }
}
