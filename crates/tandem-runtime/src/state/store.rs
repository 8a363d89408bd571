//! One state store as the runtime uses it: keys prefixed the way Dapr prefixes them,
//! every call under the component's outbound resiliency policy, and the first-level
//! cache in front (reads answered from it while fresh, `strong` reads and writes going
//! to the store, writes through any sidecar invalidating it over the backplane).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_cache::backplane::{self, Backplane};
use tandem_cache::{Cache, Entry, Notice, Settings, Stats};
use tandem_components::state::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore, Stored,
};
use tandem_resiliency::{Failure, Policy, Verdict};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio_util::sync::CancellationToken;

use super::Consistency;

/// How keys are prefixed in the store (`keyPrefix`).
#[derive(Debug, Clone, PartialEq)]
enum KeyPrefix {
    Text(String),
    None,
}

/// A state store with its prefix, policy and cache.
pub(crate) struct StoreHandle {
    store: Arc<dyn StateStore>,
    /// The component's outbound resiliency policy, around every call to the store.
    policy: Policy,
    prefix: KeyPrefix,
    cache: Option<Cache>,
    backplane: Option<Backplane>,
    actor_state_store: bool,
    outbox: Option<super::outbox::OutboxConfig>,
}

/// A store call's failure: the store's own, or the policy giving up on it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreCallError {
    #[error(transparent)]
    Store(#[from] StateError),
    #[error("{0}")]
    GaveUp(String),
}

impl StoreCallError {
    /// Whether the request itself was at fault (a TTL beyond what the store takes).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, StoreCallError::Store(StateError::Invalid(_)))
    }

    /// What the ETag had to do with it, if anything.
    pub fn etag_problem(&self) -> Option<crate::error::EtagProblem> {
        use crate::error::EtagProblem;
        match self {
            StoreCallError::Store(StateError::EtagMismatch(_)) => Some(EtagProblem::Mismatch),
            StoreCallError::Store(StateError::InvalidEtag(_)) => Some(EtagProblem::Invalid),
            _ => None,
        }
    }
}

impl StoreHandle {
    /// Wraps `store`, reading `keyPrefix`, `actorStateStore` and the cache settings
    /// (`cacheTTL` turns the first level on; `cacheMaxEntries`, `cacheMaxBytes`,
    /// `cacheBackplane` shape it) from its metadata.
    pub async fn new(
        store: Arc<dyn StateStore>,
        policy: Policy,
        metadata: &ComponentMetadata,
        app_id: &str,
        namespace: Option<&str>,
        stop: &CancellationToken,
    ) -> Result<Self, ResourceError> {
        let name = metadata.component().name.clone();
        let prefix = match metadata.get("keyPrefix").unwrap_or("appid") {
            "appid" => KeyPrefix::Text(app_id.to_owned()),
            "name" => KeyPrefix::Text(name.clone()),
            "namespace" => KeyPrefix::Text(match namespace {
                Some(namespace) => format!("{namespace}.{app_id}"),
                None => app_id.to_owned(),
            }),
            "none" => KeyPrefix::None,
            other if other.contains("||") => {
                return Err(metadata.field_error("keyPrefix", "must not contain `||`"));
            }
            other => KeyPrefix::Text(other.to_owned()),
        };
        let actor_state_store = metadata.bool_or("actorStateStore", false)?;
        let outbox = super::outbox::OutboxConfig::read(metadata)?;
        let (mut cache, mut backplane) = (None, None);
        if metadata.get("cacheTTL").is_some() {
            let max_age = metadata.duration_or("cacheTTL", Duration::ZERO)?;
            if max_age.is_zero() {
                return Err(metadata.field_error(
                    "cacheTTL",
                    format!("'{max_age:?}' turns the cache off; leave it out instead"),
                ));
            }
            let settings = Settings {
                max_entries: metadata
                    .get("cacheMaxEntries")
                    .map(|_| metadata.number_or("cacheMaxEntries", 0))
                    .transpose()?,
                max_bytes: metadata
                    .get("cacheMaxBytes")
                    .map(|_| metadata.number_or("cacheMaxBytes", 0))
                    .transpose()?,
                max_age,
            };
            let l1 = Cache::new(settings);
            // An explicit backplane wins; else a store that has a Redis of its own
            // (state.redis) carries the notices itself.
            let server =
                match metadata.get("cacheBackplane") {
                    Some(address) => Some(backplane::parse_address(address).map_err(|error| {
                        metadata.field_error("cacheBackplane", error.to_string())
                    })?),
                    None => store.notice_channel(),
                };
            if let Some(server) = server {
                let channel = format!("tandem-cache||{name}");
                let connected = Backplane::connect(server, channel)
                    .await
                    .map_err(|error| metadata.field_error("cacheBackplane", error.to_string()))?;
                tokio::spawn(connected.clone().listen(l1.clone(), stop.child_token()));
                backplane = Some(connected);
            } else {
                tracing::info!(
                    store = %name,
                    "first-level cache without a backplane: writes through other sidecars are seen within cacheTTL ({max_age:?})"
                );
            }
            cache = Some(l1);
        }
        Ok(Self {
            store,
            policy,
            prefix,
            cache,
            backplane,
            actor_state_store,
            outbox,
        })
    }

    /// Runs one store call under the component's policy. Store failures may be
    /// retried; ETag conflicts and invalid requests are answers, never retried.
    async fn guarded<T, F, Fut>(&self, call: F) -> Result<T, StoreCallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StateError>>,
    {
        if self.policy.is_none() {
            let mut call = call;
            return call().await.map_err(StoreCallError::Store);
        }
        self.policy
            // A store or connection failure may pass; an ETag answer or an invalid
            // request never will.
            .run(call, |error| Verdict::retry_if(error.is_retryable()))
            .await
            .map_err(|failure| match failure {
                Failure::Failed { error, .. } => StoreCallError::Store(error),
                other => StoreCallError::GaveUp(other.to_string()),
            })
    }

    /// The key as stored: `appid||key` by default.
    pub fn key(&self, key: &str) -> String {
        match &self.prefix {
            KeyPrefix::Text(prefix) => format!("{prefix}||{key}"),
            KeyPrefix::None => key.to_owned(),
        }
    }

    /// Every live value in the store, for the query API, keyed as daprd answers
    /// queries: every app's keys, not only this one's (daprd's stores query the whole
    /// table), each shortened to [`original_key`]. tandem's own records (actor
    /// placement, cached invocations: keys whose first part starts with `tandem-`) are
    /// left out, as they are no app's state. `None` when the store cannot list its
    /// keys.
    pub async fn scan(&self) -> Result<Option<Vec<(String, Stored)>>, StoreCallError> {
        let found = self.guarded(|| self.store.scan("")).await?;
        Ok(found.map(|found| {
            found
                .into_iter()
                .filter(|(key, _)| !key.starts_with("tandem-"))
                .map(|(key, stored)| (original_key(&key).to_owned(), stored))
                .collect()
        }))
    }

    /// The store's outbox settings, if it has one.
    pub fn outbox(&self) -> Option<&super::outbox::OutboxConfig> {
        self.outbox.as_ref()
    }

    /// Whether this is the actor state store (`actorStateStore: "true"`).
    pub fn is_actor_state_store(&self) -> bool {
        self.actor_state_store
    }

    /// The store itself, for the actor runtime: it keeps its own key layout and
    /// placement records, without prefixes or the first-level cache.
    pub fn raw(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }

    /// What the store can do, as Dapr's metadata API lists it.
    pub fn capabilities(&self) -> Vec<String> {
        let mut capabilities: Vec<String> = self
            .store
            .features()
            .iter()
            .map(|feature| feature.as_str().to_owned())
            .collect();
        if self.actor_state_store {
            capabilities.push("ACTOR".into());
        }
        capabilities
    }

    pub async fn cache_stats(&self) -> Option<Stats> {
        match &self.cache {
            Some(cache) => Some(cache.stats().await),
            None => None,
        }
    }

    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<Stored>, StoreCallError> {
        let key = self.key(key);
        let Some(cache) = &self.cache else {
            return self.guarded(|| self.store.get(&key)).await;
        };
        if consistency == Consistency::Strong {
            let stored = self.guarded(|| self.store.get(&key)).await?;
            match &stored {
                Some(stored) => cache.put(&key, entry(stored)).await,
                None => cache.invalidate(&key).await,
            }
            return Ok(stored);
        }
        // A cold key is read once for every caller waiting on it, under the policy.
        let loaded = cache
            .get_or_load(&key, async {
                self.guarded(|| self.store.get(&key))
                    .await
                    .map(|stored| stored.as_ref().map(entry))
            })
            .await?;
        Ok(loaded.map(|entry| Stored {
            value: entry.value,
            etag: entry.etag,
        }))
    }

    /// Reads `key` exactly as given (no prefix, no first level): for the sidecar's own
    /// entries, such as cached answers shared by every app using the store.
    pub async fn get_exact(&self, key: &str) -> Result<Option<Stored>, StoreCallError> {
        self.guarded(|| self.store.get(key)).await
    }

    /// Writes `key` exactly as given, expiring after `ttl`.
    pub async fn set_exact(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), StoreCallError> {
        let request = SetRequest {
            key: key.to_owned(),
            value,
            etag: None,
            concurrency: Concurrency::LastWrite,
            ttl: Some(ttl),
        };
        self.guarded(|| self.store.set(request.clone()))
            .await
            .map(|_| ())
    }

    async fn changed(&self, key: &str, now: Option<(Bytes, String)>) {
        let Some(cache) = &self.cache else { return };
        let etag = now.as_ref().map(|(_, etag)| etag.clone());
        match now {
            Some((value, etag)) => cache.put(key, Entry { value, etag }).await,
            None => cache.invalidate(key).await,
        }
        if let Some(backplane) = &self.backplane {
            backplane
                .announce(&Notice {
                    key: key.to_owned(),
                    etag,
                    origin: cache.origin().to_owned(),
                })
                .await;
        }
    }

    /// Writes one value (its key already prefixed by [`key`](Self::key)); returns
    /// its new ETag.
    pub async fn set(&self, request: SetRequest) -> Result<String, StoreCallError> {
        let (key, value, has_ttl) = (
            request.key.clone(),
            request.value.clone(),
            request.ttl.is_some(),
        );
        let written = self.guarded(|| self.store.set(request.clone())).await;
        match &written {
            // A value with a TTL is not kept: the cache does not know when it expires.
            Ok(etag) => {
                let now = (!has_ttl).then(|| (value, etag.clone()));
                self.changed(&key, now).await;
            }
            // The write may or may not have happened (a lost reply): forget the key.
            Err(StoreCallError::GaveUp(_)) => self.changed(&key, None).await,
            Err(StoreCallError::Store(error)) if error.is_retryable() => {
                self.changed(&key, None).await;
            }
            Err(_) => {}
        }
        written
    }

    pub async fn delete(
        &self,
        key: &str,
        etag: Option<String>,
        first_write: bool,
    ) -> Result<(), StoreCallError> {
        let key = self.key(key);
        let request = DeleteRequest {
            key: key.clone(),
            etag,
            concurrency: concurrency(first_write),
        };
        let deleted = self.guarded(|| self.store.delete(request.clone())).await;
        self.changed(&key, None).await;
        deleted
    }

    /// Applies every operation (keys already prefixed), or none.
    pub async fn transact(&self, operations: Vec<Operation>) -> Result<(), StoreCallError> {
        let keys: Vec<String> = operations
            .iter()
            .map(|operation| operation.key().to_owned())
            .collect();
        let done = self
            .guarded(|| self.store.transact(operations.clone()))
            .await;
        for key in keys {
            self.changed(&key, None).await;
        }
        done
    }
}

fn entry(stored: &Stored) -> Entry {
    Entry {
        value: stored.value.clone(),
        etag: stored.etag.clone(),
    }
}

pub(crate) fn concurrency(first_write: bool) -> Concurrency {
    if first_write {
        Concurrency::FirstWrite
    } else {
        Concurrency::LastWrite
    }
}

/// A stored key as daprd shows it in query answers: the part after the first `||`
/// and before any second one (`app||key` → `key`, `ns.app||key` → `key`, a key
/// without a prefix unchanged) — daprd's rule, so answers name keys as daprd's do.
pub fn original_key(stored: &str) -> &str {
    let mut parts = stored.splitn(3, "||");
    let first = parts.next().unwrap_or(stored);
    parts.next().unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::original_key;

    #[test]
    fn query_answers_name_keys_as_daprd_does() {
        assert_eq!(original_key("demo||1"), "1");
        assert_eq!(original_key("prod.demo||order-7"), "order-7");
        assert_eq!(original_key("plain"), "plain");
        assert_eq!(original_key("app||a||b"), "a");
        assert_eq!(original_key("app||"), "");
    }
}
