//! `lock.sqlite`: locks in an SQLite file — tandem's embedded lock store (`lockstore`,
//! in `~/.tandem/tandem.db`), so locks work with nothing installed and are shared by
//! every sidecar on the machine. Each step is one immediate transaction, so two
//! sidecars never both take a lock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{LockError, LockStore, UnlockStatus};
use crate::sqlite::{Database, database_path, expiry_ms, now_ms};

pub const METADATA: &[&str] = &["connectionString"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

pub struct SqliteLock {
    database: Database,
}

impl SqliteLock {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn LockStore>, ResourceError> {
        let path = database_path(metadata.required("connectionString")?);
        let database = Database::open(path, SCHEMA)
            .await
            .map_err(|error| metadata.field_error("connectionString", error.to_string()))?;
        Ok(Arc::new(Self { database }))
    }
}

#[async_trait]
impl LockStore for SqliteLock {
    async fn try_lock(&self, lock: &str, owner: &str, expiry: Duration) -> Result<bool, LockError> {
        let (lock, owner) = (lock.to_owned(), owner.to_owned());
        // The API bounds expiries to an i32 of seconds, far inside what the column holds.
        let expires = expiry_ms(expiry).unwrap_or(i64::MAX);
        let taken = self
            .database
            .run(move |connection| {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                transaction.execute(
                    "DELETE FROM locks WHERE name = ?1 AND expires_ms <= ?2",
                    params![lock, now],
                )?;
                let inserted = transaction.execute(
                    "INSERT OR IGNORE INTO locks (name, owner, expires_ms) VALUES (?1, ?2, ?3)",
                    params![lock, owner, expires],
                )?;
                transaction.commit()?;
                Ok(inserted == 1)
            })
            .await?;
        Ok(taken)
    }

    async fn unlock(&self, lock: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let (lock, owner) = (lock.to_owned(), owner.to_owned());
        let status = self
            .database
            .run(move |connection| {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let holder: Option<(String, i64)> = transaction
                    .query_row(
                        "SELECT owner, expires_ms FROM locks WHERE name = ?1",
                        params![lock],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                let status = match holder {
                    Some((_, expires)) if expires <= now_ms() => {
                        transaction.execute("DELETE FROM locks WHERE name = ?1", params![lock])?;
                        UnlockStatus::LockDoesNotExist
                    }
                    None => UnlockStatus::LockDoesNotExist,
                    Some((holder, _)) if holder != owner => UnlockStatus::LockBelongsToOthers,
                    Some(_) => {
                        transaction.execute("DELETE FROM locks WHERE name = ?1", params![lock])?;
                        UnlockStatus::Success
                    }
                };
                transaction.commit()?;
                Ok(status)
            })
            .await?;
        Ok(status)
    }
}
