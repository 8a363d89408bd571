//! `state.redis`: state in Redis, in the layout Dapr's own component uses, so values
//! written by daprd can be read and updated by tandem and the other way round.
//!
//! Each key is a Redis hash: `data` (the value's bytes, untouched) and `version` (a
//! decimal number, which is the ETag). Like daprd, every write bumps the key's own
//! `version` with `HINCRBY`, so a new key starts at 1 and each write adds one: saving
//! `k1`, `k2`, `k3` and then updating `k1` gives ETags 1, 1, 1, 2, as on Dapr. As on
//! Dapr, a key deleted and written again starts over at 1, so an ETag read before the
//! delete can match the new value once more (the ABA problem daprd has too).
//!
//! Where daprd's scripts differ from tandem's rules, tandem keeps the rules every
//! tandem store follows: an ETag naming a key that does not exist is a mismatch
//! (daprd creates the key), and a key that holds something other than a hash is an
//! error (daprd overwrites it). A hash daprd created with `first-write` carries a
//! `first-write` field; daprd then refuses writes to it that bring no ETag, and so does
//! tandem, so the key keeps the protection daprd gave it. Hashes daprd wrote without a
//! `version` (data only) read as version 0, and their next write makes them 1.
//!
//! **Why Lua.** An ETag check is "read the version, compare, write". Done as separate
//! commands, two writers holding the same ETag could both read the old version before
//! either writes, and both would win. Redis runs a script as one step that nothing else
//! interleaves with, so every write and delete — and a whole transaction — is one
//! script: the check and the change happen on the server, atomically.
//!
//! **All or nothing.** Redis does not roll a script back: a command failing halfway
//! leaves the writes before it in place. So everything that can fail is checked before
//! the first write — in Rust before sending (ETags are numbers, TTLs at most
//! [`MAX_TTL`](super::MAX_TTL)) and again in the script's check phase, which touches
//! nothing: the ETags, the keys' types (`HMGET` fails with `WRONGTYPE` on a key that
//! is not a hash), versions `HINCRBY` can increment, TTLs `PEXPIRE` accepts. Only then
//! does the apply phase run, with commands that cannot fail on what was checked. An
//! error answer means nothing was written.
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
use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, Script};
use tandem_spec::{ComponentMetadata, ResourceError};

use crate::redis_connection;

use super::{
    Concurrency, DeleteRequest, Feature, MAX_TTL, Operation, SetRequest, StateError, StateStore,
    StoreError, Stored, parse_version, validate,
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

/// Applies a list of operations atomically.
///
/// `KEYS` are the operations' keys, in order. Operation `i` (from 1) has four
/// arguments from `ARGV[(i-1)*4 + 1]`: its kind (`set`, `first` for a first-write set
/// without an ETag, or `del`), the ETag it carries (`""` for none), the value, and
/// the TTL in milliseconds (`""` for none).
///
/// Answers `{0, v}` when every operation was applied (`v`: the version of the last
/// write, 0 if none), or `{code, i}` when operation `i` failed its check — and then
/// nothing was changed: code 1 is an ETag mismatch, 2 a hash whose `version` is not a
/// number `HINCRBY` can increment, 3 a TTL `PEXPIRE` would refuse.
const APPLY: &str = r#"
-- The largest TTL in milliseconds (MAX_TTL: i64::MAX nanoseconds).
local MAX_TTL_MS = 9223372036854

-- What a key holds: its version as text (false when the key does not exist; "0" for
-- a hash with data but no version) and whether daprd made it with first-write. HMGET
-- fails with WRONGTYPE on a key that is not a hash, which stops the script before any
-- write.
local function stored(key)
  local fields = redis.call('HMGET', key, 'data', 'version', 'first-write')
  local data, version, first_write = fields[1], fields[2], fields[3]
  if version then
    return version, first_write ~= false
  end
  if data then
    return '0', first_write ~= false
  end
  return false, false
end

local seen = {}  -- key -> {version, protected} after the earlier operations

-- Check every operation, as if the ones before it had been applied; change nothing.
for i = 1, #KEYS do
  local key, base = KEYS[i], (i - 1) * 4
  local kind, etag, ttl = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4]
  local state = seen[key]
  if state == nil then
    local version, protected = stored(key)
    state = {version, protected}
  end
  local current, protected = state[1], state[2]
  if etag ~= '' then
    if current == false or current ~= etag then
      return {1, i}
    end
  elseif kind == 'first' and current ~= false then
    return {1, i}
  elseif kind == 'set' and protected then
    -- daprd created it with first-write: a write without an ETag is refused.
    return {1, i}
  end
  if kind == 'del' then
    seen[key] = {false, false}
  else
    -- HINCRBY needs an integer it can add one to without overflowing.
    if current ~= false and (not string.match(current, '^%d+$') or #current > 18) then
      return {2, i}
    end
    if ttl ~= '' and (not string.match(ttl, '^%d+$') or #ttl > 13 or tonumber(ttl) > MAX_TTL_MS) then
      return {3, i}
    end
    seen[key] = {tostring((tonumber(current) or 0) + 1), protected}
  end
end

-- Every check passed: apply.
local last = 0
for i = 1, #KEYS do
  local key, base = KEYS[i], (i - 1) * 4
  if ARGV[base + 1] == 'del' then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'data', ARGV[base + 3])
    last = redis.call('HINCRBY', key, 'version', 1)
    local ttl = ARGV[base + 4]
    if ttl ~= '' then
      redis.call('PEXPIRE', key, ttl)
    else
      redis.call('PERSIST', key)
    end
  end
end
return {0, last}
"#;

pub struct RedisState {
    connection: ConnectionManager,
    /// Where the store connects, for the cache's invalidation notices.
    info: ConnectionInfo,
    apply: Script,
    /// `ttlInSeconds`: the TTL of writes that do not bring their own.
    default_ttl: Option<Duration>,
    host: String,
}

impl RedisState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let (client, host) = redis_connection::client(metadata)?;
        let info = client.get_connection_info().clone();

        // Dapr's defaults: 3 retries, backing off up to 2 s.
        let retries: usize = metadata.number_or("maxRetries", 3)?;
        let max_backoff = metadata.duration_or("maxRetryBackoff", Duration::from_secs(2))?;
        let default_ttl = match metadata.number_or::<i64>("ttlInSeconds", 0)? {
            // Dapr uses -1 for "never expires"; 0 or less is no default TTL.
            seconds if seconds > 0 => Some(Duration::from_secs(seconds.unsigned_abs())),
            _ => None,
        };
        if default_ttl.is_some_and(|ttl| ttl > MAX_TTL) {
            return Err(metadata.field_error(
                "ttlInSeconds",
                format!("must be at most {} seconds", MAX_TTL.as_secs()),
            ));
        }

        let connection =
            redis_connection::connection_manager(metadata, client, &host, retries, max_backoff)
                .await?;
        Ok(Arc::new(Self {
            connection,
            info,
            apply: Script::new(APPLY),
            default_ttl,
            host,
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

    fn store_error(&self, action: impl Into<String>, source: redis::RedisError) -> StateError {
        StoreError::Redis {
            host: self.host.clone(),
            action: action.into(),
            source,
        }
        .into()
    }

    /// Runs `operations` in one script: all of them, or none. Returns the version of
    /// the last write.
    async fn apply(&self, operations: &[Operation]) -> Result<u64, StateError> {
        // Everything Rust can check, before anything is sent.
        validate(operations)?;
        let mut invocation = self.apply.prepare_invoke();
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
        let (code, detail): (i64, i64) = self
            .retrying(
                |mut connection| async move { invocation.invoke_async(&mut connection).await },
            )
            .await
            .map_err(|error| self.store_error("applying a write", error))?;
        let failed = || {
            usize::try_from(detail)
                .ok()
                .and_then(|index| operations.get(index.checked_sub(1)?))
                .map(|operation| operation.key().to_owned())
                .unwrap_or_default()
        };
        match code {
            0 => Ok(u64::try_from(detail).unwrap_or_default()),
            1 => Err(StateError::EtagMismatch(failed())),
            2 => Err(StoreError::RedisKey {
                host: self.host.clone(),
                key: failed(),
                problem: "its version is not a number that can be incremented",
            }
            .into()),
            // Rust refused such TTLs already; the script checks again so that the
            // apply phase can never meet one.
            _ => Err(super::InvalidRequest::TtlOutOfRange {
                key: failed(),
                ttl: Duration::MAX,
            }
            .into()),
        }
    }
}

/// The answer to `HMGET key data version`.
fn stored(reply: Vec<Option<Vec<u8>>>) -> Option<Stored> {
    let mut fields = reply.into_iter();
    let data = fields.next().flatten()?;
    // A hash with data but no version (not written by Dapr or tandem) has version 0,
    // as the write script sees it.
    let etag = fields.next().flatten().map_or_else(
        || "0".to_owned(),
        |version| String::from_utf8_lossy(&version).into_owned(),
    );
    Some(Stored {
        value: Bytes::from(data),
        etag,
    })
}

#[async_trait]
impl StateStore for RedisState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let mut command = redis::cmd("HMGET");
        command.arg(key).arg("data").arg("version");
        let command = &command;
        let reply: Vec<Option<Vec<u8>>> = self
            .retrying(|mut connection| async move { command.query_async(&mut connection).await })
            .await
            .map_err(|error| self.store_error(format!("HMGET {key}"), error))?;
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

    fn features(&self) -> &'static [Feature] {
        &[Feature::Etag, Feature::Transactional, Feature::Ttl]
    }

    fn notice_channel(&self) -> Option<ConnectionInfo> {
        Some(self.info.clone())
    }
}
