//! `state.redis`: state in Redis, in the layout Dapr's own component uses, so values
//! written by daprd can be read by tandem and the other way round.
//!
//! Each key is a Redis hash with two fields: `data` (the value's bytes, untouched) and
//! `version` (a decimal number, which is the ETag).
//!
//! **Why Lua.** An ETag check is "read the version, compare, write". Done as separate
//! commands, two writers holding the same ETag could both read the old version before
//! either writes, and both would win. Redis runs a script as one step that nothing else
//! interleaves with, so every write and delete — and a whole transaction — is one
//! script: the check and the change happen on the server, atomically. Redis does not
//! roll a script back, so the script first checks *every* operation (touching nothing)
//! and only then applies them; the apply phase uses commands that cannot fail on a hash
//! key, so a transaction changes everything or nothing. A key holding something other
//! than a hash fails the check phase with `WRONGTYPE`, before any write.
//!
//! **Why versions come from a counter.** Dapr bumps `version` with `HINCRBY`, so a key
//! deleted and written again starts over at 1, and an ETag read before the delete
//! matches the new value (the ABA problem). Here every write takes its version from one
//! counter key per database ([`VERSION_COUNTER`]): the new version is one more than the
//! larger of the counter and the key's current version, so versions only grow, across
//! deletes too, and also for keys daprd wrote with small versions.
//!
//! **TTL.** Redis expires keys natively: the same script sets `PEXPIRE` (millisecond
//! precision) when the write has a TTL (its own, or the component's `ttlInSeconds`),
//! and `PERSIST` when it has none, so a value written without a TTL is permanent again.
//!
//! Connections go through a reconnecting connection manager; scripts are sent by hash
//! (`EVALSHA`) and loaded again when a restarted server answers `NOSCRIPT`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Script;
use redis::aio::ConnectionManager;
use tandem_spec::{ComponentMetadata, ResourceError};

use crate::redis_connection;

use super::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore, Stored,
    parse_version,
};

pub const METADATA: &[&str] = &[
    "redisHost",
    "redisPassword",
    "redisUsername",
    "redisDB",
    "enableTLS",
    "dialTimeout",
    "ttlInSeconds",
    "maxRetries",
    "maxRetryBackoff",
];

/// The key holding the last version handed out in this database.
pub const VERSION_COUNTER: &str = "tandem:state:version";

/// Applies a list of operations atomically.
///
/// `KEYS[1]` is the version counter; `KEYS[2..]` are the operations' keys, in order.
/// Operation `i` (from 1) has four arguments from `ARGV[(i-1)*4 + 1]`: its kind (`set`,
/// `first` for a first-write set without an ETag, or `del`), the ETag it carries (`""`
/// for none), the value, and the TTL in milliseconds (`""` for none).
///
/// Returns the version of the last write (0 if there was none), or `-i` when operation
/// `i` failed its ETag check — and then nothing was changed.
const APPLY: &str = r#"
-- The key's version: a number, or false when the key does not exist. HGET fails with
-- WRONGTYPE on a key that is not a hash, which stops the script before any write.
local function stored(key)
  local version = redis.call('HGET', key, 'version')
  if version then
    return tonumber(version) or -1
  end
  if redis.call('HEXISTS', key, 'data') == 1 then
    return 0
  end
  return false
end

local counter = tonumber(redis.call('GET', KEYS[1])) or 0
local seen = {}      -- key -> its version after the earlier operations (false: deleted)
local versions = {}  -- operation -> the version it writes
local last = 0

-- Check every operation, as if the ones before it had been applied; change nothing.
for i = 2, #KEYS do
  local key, base = KEYS[i], (i - 2) * 4
  local kind, etag = ARGV[base + 1], ARGV[base + 2]
  local current = seen[key]
  if current == nil then
    current = stored(key)
  end
  if etag ~= '' then
    if current == false or current ~= tonumber(etag) then
      return -(i - 1)
    end
  elseif kind == 'first' and current ~= false then
    return -(i - 1)
  end
  if kind == 'del' then
    seen[key] = false
  else
    -- Above both the counter and the key's own version: versions never repeat.
    local version = math.max(counter, current or 0) + 1
    counter = version
    versions[i] = version
    seen[key] = version
    last = version
  end
end

-- Every check passed: apply.
for i = 2, #KEYS do
  local key, base = KEYS[i], (i - 2) * 4
  if ARGV[base + 1] == 'del' then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'data', ARGV[base + 3], 'version', versions[i])
    local ttl = ARGV[base + 4]
    if ttl ~= '' then
      redis.call('PEXPIRE', key, ttl)
    else
      redis.call('PERSIST', key)
    end
  end
end
if last > 0 then
  redis.call('SET', KEYS[1], counter)
end
return last
"#;

pub struct RedisState {
    connection: ConnectionManager,
    apply: Script,
    /// `ttlInSeconds`: the TTL of writes that do not bring their own.
    default_ttl: Option<Duration>,
    host: String,
    /// The server as configured, for the cache's notices.
    server: redis::ConnectionInfo,
}

impl RedisState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let (client, host) = redis_connection::client(metadata)?;
        let server = client.get_connection_info().clone();

        // Dapr's defaults: 3 retries, backing off up to 2 s.
        let retries: usize = metadata.number_or("maxRetries", 3)?;
        let max_backoff = metadata.duration_or("maxRetryBackoff", Duration::from_secs(2))?;
        let default_ttl = match metadata.number_or::<i64>("ttlInSeconds", 0)? {
            // Dapr uses -1 for "never expires"; 0 or less is no default TTL.
            seconds if seconds > 0 => Some(Duration::from_secs(seconds as u64)),
            _ => None,
        };

        let connection =
            redis_connection::connection_manager(metadata, client, &host, retries, max_backoff)
                .await?;
        Ok(Arc::new(Self {
            connection,
            apply: Script::new(APPLY),
            default_ttl,
            host,
            server,
        }))
    }

    /// Sends a request, and sends it once more if the connection turned out to be dead:
    /// after a Redis restart the first request meets the old, closed connection, and
    /// the manager reconnects for the second. (A write whose connection broke after it
    /// was sent may then run twice: harmless without an ETag, and with one the second
    /// attempt reports a mismatch, as for any writer racing another.)
    async fn retrying<T, F, Fut>(&self, mut request: F) -> redis::RedisResult<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match request(self.connection.clone()).await {
            Err(error) if error.is_connection_dropped() => {
                tracing::debug!(host = %self.host, "Redis connection dropped ({error}); retrying once");
                request(self.connection.clone()).await
            }
            result => result,
        }
    }

    fn store_error(&self, what: &str, error: redis::RedisError) -> StateError {
        StateError::Store(format!("Redis at {}: {what}: {error}", self.host))
    }

    /// Runs `operations` in one script: all of them, or none. Returns the version of
    /// the last write.
    async fn apply(&self, operations: &[Operation]) -> Result<u64, StateError> {
        let mut invocation = self.apply.prepare_invoke();
        invocation.key(VERSION_COUNTER);
        for operation in operations {
            invocation.key(operation.key());
        }
        for operation in operations {
            match operation {
                Operation::Upsert(set) => {
                    let etag = parse_version(&set.key, set.etag.as_deref())?;
                    let kind = match (etag, set.concurrency) {
                        (None, Concurrency::FirstWrite) => "first",
                        _ => "set",
                    };
                    let ttl = set
                        .ttl
                        .or(self.default_ttl)
                        .map(|ttl| ttl.as_millis().to_string())
                        .unwrap_or_default();
                    invocation
                        .arg(kind)
                        .arg(etag.map(|etag| etag.to_string()).unwrap_or_default())
                        .arg(set.value.as_ref())
                        .arg(ttl);
                }
                Operation::Delete(delete) => {
                    let etag = parse_version(&delete.key, delete.etag.as_deref())?;
                    invocation
                        .arg("del")
                        .arg(etag.map(|etag| etag.to_string()).unwrap_or_default())
                        .arg("")
                        .arg("");
                }
            }
        }
        let invocation = &invocation;
        let result: i64 = self
            .retrying(
                |mut connection| async move { invocation.invoke_async(&mut connection).await },
            )
            .await
            .map_err(|error| self.store_error("applying a write", error))?;
        if result < 0 {
            let failed = &operations[(-result - 1) as usize];
            return Err(StateError::EtagMismatch(failed.key().to_owned()));
        }
        Ok(result as u64)
    }
}

/// The answer to `HMGET key data version`.
fn stored(reply: Vec<Option<Vec<u8>>>) -> Option<Stored> {
    let mut fields = reply.into_iter();
    let data = fields.next().flatten()?;
    // A hash with data but no version (not written by Dapr or tandem) has version 0,
    // as the write script sees it.
    let etag = fields
        .next()
        .flatten()
        .map(|version| String::from_utf8_lossy(&version).into_owned())
        .unwrap_or_else(|| "0".to_owned());
    Some(Stored {
        value: Bytes::from(data),
        etag,
    })
}

#[async_trait]
impl StateStore for RedisState {
    fn notice_channel(&self) -> Option<redis::ConnectionInfo> {
        Some(self.server.clone())
    }

    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let mut command = redis::cmd("HMGET");
        command.arg(key).arg("data").arg("version");
        let command = &command;
        let reply: Vec<Option<Vec<u8>>> = self
            .retrying(|mut connection| async move { command.query_async(&mut connection).await })
            .await
            .map_err(|error| self.store_error(&format!("HMGET {key}"), error))?;
        Ok(stored(reply))
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        self.apply(&[Operation::Upsert(request)])
            .await
            .map(|version| version.to_string())
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        self.apply(&[Operation::Delete(request)]).await.map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        if operations.is_empty() {
            return Ok(());
        }
        self.apply(&operations).await.map(|_| ())
    }

    /// One round trip for all keys: a pipeline of `HMGET`s. If the pipeline fails as a
    /// whole (one key is not a hash, say), each key is read alone so the others still
    /// get their values.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("HMGET").arg(key).arg("data").arg("version");
        }
        let pipeline = &pipeline;
        let replies: redis::RedisResult<Vec<Vec<Option<Vec<u8>>>>> = self
            .retrying(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await;
        match replies {
            Ok(replies) => replies.into_iter().map(|reply| Ok(stored(reply))).collect(),
            Err(_) => {
                let mut results = Vec::with_capacity(keys.len());
                for key in keys {
                    results.push(self.get(key).await);
                }
                results
            }
        }
    }
}
