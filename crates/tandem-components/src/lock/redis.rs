//! `lock.redis`: locks in a standalone Redis, compatible with Dapr's component: the
//! lock's key holds its owner, set with `SET NX EX` so taking it is one atomic step,
//! and given back by a script that deletes the key only for its owner.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{LockError, LockStore, UnlockStatus};

pub const METADATA: &[&str] = crate::redis_connection::METADATA;

/// Deletes the lock only for its owner: `-1` nobody holds it, `-2` another owner does,
/// otherwise what `DEL` answered.
const UNLOCK: &str = r#"
local owner = redis.call("GET", KEYS[1])
if owner == false then return -1 end
if owner ~= ARGV[1] then return -2 end
return redis.call("DEL", KEYS[1])
"#;

pub struct RedisLock {
    connection: ConnectionManager,
    host: String,
    unlock: redis::Script,
}

impl RedisLock {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn LockStore>, ResourceError> {
        // Dapr's lock needs one node: with replicas or a cluster a lock could be held
        // twice after a failover.
        if metadata.bool_or("failover", false)? {
            return Err(metadata.field_error(
                "failover",
                "lock.redis works with a standalone Redis only, as Dapr's",
            ));
        }
        if metadata
            .get("redisType")
            .is_some_and(|kind| kind.eq_ignore_ascii_case("cluster"))
        {
            return Err(metadata.field_error(
                "redisType",
                "lock.redis works with a standalone Redis only (`node`), as Dapr's",
            ));
        }
        let (client, host) = crate::redis_connection::client(metadata)?;
        let retries: usize = metadata.number_or("maxRetries", 3)?;
        let backoff = metadata.duration_or("maxRetryBackoff", Duration::from_secs(2))?;
        let connection =
            crate::redis_connection::connection_manager(metadata, client, &host, retries, backoff)
                .await?;
        Ok(Arc::new(Self {
            connection,
            host,
            unlock: redis::Script::new(UNLOCK),
        }))
    }

    fn error(&self, source: redis::RedisError) -> LockError {
        LockError::Redis {
            host: self.host.clone(),
            source,
        }
    }
}

#[async_trait]
impl LockStore for RedisLock {
    async fn try_lock(&self, lock: &str, owner: &str, expiry: Duration) -> Result<bool, LockError> {
        let mut connection = self.connection.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(lock)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut connection)
            .await
            .map_err(|error| self.error(error))?;
        Ok(taken.is_some())
    }

    async fn unlock(&self, lock: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let mut connection = self.connection.clone();
        let answer: i64 = self
            .unlock
            .key(lock)
            .arg(owner)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.error(error))?;
        Ok(match answer {
            -1 => UnlockStatus::LockDoesNotExist,
            -2 => UnlockStatus::LockBelongsToOthers,
            // 0: the key expired between GET and DEL, inside one script: cannot happen.
            _ => UnlockStatus::Success,
        })
    }
}
