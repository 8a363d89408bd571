//! The state API: `/v1.0/state/...` and gRPC `GetState`, `SaveState`, ...
//!
//! Keys are prefixed the way Dapr prefixes them (`keyPrefix`: `appid` by default, so
//! `order-processor||order-1`), and every store can have a first-level cache in front
//! of it ([`StateStoreHandle`]): reads are answered from it while fresh, `strong` reads
//! go to the store, and writes through any sidecar invalidate it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_cache::backplane::Backplane;
use tandem_cache::{Cache, Entry, Notice, Settings, Stats};
use tandem_components::state::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore, Stored,
};
use tandem_resiliency::{Failure, Policy, Verdict};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::runtime::Runtime;

/// `consistency` of a read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    #[default]
    Eventual,
    Strong,
}

/// One key to save (or, in a transaction, to delete).
#[derive(Debug, Clone, Default)]
pub struct StateItem {
    pub key: String,
    pub value: Bytes,
    pub etag: Option<String>,
    pub metadata: HashMap<String, String>,
    pub first_write: bool,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum StateOperation {
    Upsert(StateItem),
    Delete(StateItem),
}

/// A value read, with its ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct StateValue {
    pub data: Bytes,
    pub etag: String,
}

/// One key of a bulk read.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkStateItem {
    pub key: String,
    pub value: Option<StateValue>,
    pub error: Option<String>,
}

/// How keys are prefixed in the store (`keyPrefix`).
#[derive(Debug, Clone, PartialEq)]
enum KeyPrefix {
    Text(String),
    None,
}

/// A state store as the runtime uses it: prefixing keys, and with its cache.
pub(crate) struct StateStoreHandle {
    store: Arc<dyn StateStore>,
    /// The component's outbound resiliency policy, around every call to the store.
    policy: Policy,
    prefix: KeyPrefix,
    cache: Option<Cache>,
    backplane: Option<Backplane>,
    actor_state_store: bool,
}

impl StateStoreHandle {
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
            if let Some(address) = backplane_address(metadata) {
                let channel = format!("tandem-cache||{name}");
                let connected = Backplane::connect(&address, channel)
                    .await
                    .map_err(|error| metadata.field_error("cacheBackplane", error))?;
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
        })
    }

    /// Runs one store call under the component's policy. Store failures may be retried;
    /// ETag conflicts are answers, never retried.
    async fn guarded<T, F, Fut>(&self, call: F) -> Result<T, StateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StateError>>,
    {
        if self.policy.is_none() {
            let mut call = call;
            return call().await;
        }
        self.policy
            .run(call, |error| {
                Verdict::retry_if(matches!(error, StateError::Store(_)))
            })
            .await
            .map_err(|failure| match failure {
                Failure::Failed { error, .. } => error,
                other => StateError::unavailable(other),
            })
    }

    fn key(&self, key: &str) -> String {
        match &self.prefix {
            KeyPrefix::Text(prefix) => format!("{prefix}||{key}"),
            KeyPrefix::None => key.to_owned(),
        }
    }

    /// What the store can do, as Dapr's metadata API lists it.
    pub fn capabilities(&self) -> Vec<String> {
        let mut capabilities: Vec<String> =
            ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).into();
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

    async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Stored>, StateError> {
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
        let store = self.store.clone();
        let loaded = cache
            .get_or_load(&key, async {
                store
                    .get(&key)
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
    pub(crate) async fn get_exact(&self, key: &str) -> Result<Option<Stored>, StateError> {
        self.guarded(|| self.store.get(key)).await
    }

    /// Writes `key` exactly as given, expiring after `ttl`.
    pub(crate) async fn set_exact(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), StateError> {
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

    async fn set(&self, item: StateItem) -> Result<String, Error> {
        let request = set_request(self.key(&item.key), item)?;
        let (key, value, has_ttl) = (
            request.key.clone(),
            request.value.clone(),
            request.ttl.is_some(),
        );
        let etag = self
            .store
            .set(request)
            .await
            .map_err(|error| Error::state_save(&error))?;
        // A value with a TTL is not kept: the cache does not know when it expires.
        let now = (!has_ttl).then(|| (value, etag.clone()));
        self.changed(&key, now).await;
        Ok(etag)
    }

    async fn delete(
        &self,
        key: &str,
        etag: Option<String>,
        first_write: bool,
    ) -> Result<(), StateError> {
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

    async fn transact(&self, operations: Vec<StateOperation>) -> Result<(), Error> {
        let mut requests = Vec::with_capacity(operations.len());
        for operation in operations {
            requests.push(match operation {
                StateOperation::Upsert(item) => {
                    Operation::Upsert(set_request(self.key(&item.key), item)?)
                }
                StateOperation::Delete(item) => Operation::Delete(DeleteRequest {
                    key: self.key(&item.key),
                    etag: item.etag,
                    concurrency: concurrency(item.first_write),
                }),
            });
        }
        let keys: Vec<String> = requests
            .iter()
            .map(|operation| operation.key().to_owned())
            .collect();
        let done = self.guarded(|| self.store.transact(requests.clone())).await;
        for key in keys {
            self.changed(&key, None).await;
        }
        done.map_err(|error| Error::state_transaction(&error))
    }
}

fn backplane_address(metadata: &ComponentMetadata) -> Option<String> {
    if let Some(address) = metadata.get("cacheBackplane") {
        return Some(address.to_owned());
    }
    // A Redis state store carries its own notices.
    if metadata.component().kind == "state.redis" {
        let host = metadata.get("redisHost")?;
        let auth = match (metadata.get("redisUsername"), metadata.get("redisPassword")) {
            (Some(user), Some(password)) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            _ => String::new(),
        };
        return Some(format!("redis://{auth}{host}"));
    }
    None
}

fn entry(stored: &Stored) -> Entry {
    Entry {
        value: stored.value.clone(),
        etag: stored.etag.clone(),
    }
}

fn concurrency(first_write: bool) -> Concurrency {
    if first_write {
        Concurrency::FirstWrite
    } else {
        Concurrency::LastWrite
    }
}

fn set_request(key: String, item: StateItem) -> Result<SetRequest, Error> {
    let ttl = match item.metadata.get("ttlInSeconds") {
        None => None,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(-1) => None,
            Ok(seconds) if seconds >= 0 => Some(Duration::from_secs(seconds as u64)),
            _ => {
                return Err(Error::Malformed(format!(
                    "metadata ttlInSeconds of key {} must be a whole number of seconds (or -1 for none), not '{text}'",
                    item.key
                )));
            }
        },
    };
    Ok(SetRequest {
        key,
        value: item.value,
        etag: item.etag.filter(|etag| !etag.is_empty()),
        concurrency: concurrency(item.first_write),
        ttl,
    })
}

impl Runtime {
    pub(crate) fn state_store(&self, name: &str) -> Result<&StateStoreHandle, Error> {
        let stores = &self.components().state_stores;
        if stores.is_empty() {
            return Err(Error::StateStoresNotConfigured);
        }
        stores
            .get(name)
            .ok_or_else(|| Error::StateStoreNotFound(name.to_owned()))
    }

    /// Reads one key.
    pub async fn get_state(
        &self,
        store: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<StateValue>, Error> {
        let handle = self.state_store(store)?;
        let stored = handle
            .get(key, consistency)
            .await
            .map_err(|error| Error::StateGet {
                store: store.to_owned(),
                key: key.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(stored.map(|stored| StateValue {
            data: stored.value,
            etag: stored.etag,
        }))
    }

    /// Reads several keys, `parallelism` at a time; a key that fails carries its error.
    pub async fn bulk_get_state(
        &self,
        store: &str,
        keys: Vec<String>,
        parallelism: usize,
    ) -> Result<Vec<BulkStateItem>, Error> {
        let handle = self.state_store(store)?;
        let limit = Arc::new(tokio::sync::Semaphore::new(parallelism.clamp(1, 100)));
        let reads = keys.into_iter().map(|key| {
            let limit = limit.clone();
            async move {
                let _slot = limit.acquire().await;
                match handle.get(&key, Consistency::Eventual).await {
                    Ok(stored) => BulkStateItem {
                        key,
                        value: stored.map(|stored| StateValue {
                            data: stored.value,
                            etag: stored.etag,
                        }),
                        error: None,
                    },
                    Err(error) => BulkStateItem {
                        key,
                        value: None,
                        error: Some(error.to_string()),
                    },
                }
            }
        });
        Ok(futures_util::future::join_all(reads).await)
    }

    /// Saves every item (each on its own, as Dapr does; use a transaction for all-or-nothing).
    pub async fn save_state(&self, store: &str, items: Vec<StateItem>) -> Result<(), Error> {
        let handle = self.state_store(store)?;
        for item in items {
            if item.key.is_empty() {
                return Err(Error::Malformed("a state item has an empty key".into()));
            }
            handle.set(item).await?;
        }
        Ok(())
    }

    /// Deletes one key (`etag` from `If-Match`).
    pub async fn delete_state(
        &self,
        store: &str,
        key: &str,
        etag: Option<String>,
        first_write: bool,
    ) -> Result<(), Error> {
        let handle = self.state_store(store)?;
        handle
            .delete(key, etag.filter(|etag| !etag.is_empty()), first_write)
            .await
            .map_err(|error| Error::state_delete(key, &error))
    }

    /// Deletes several keys, each on its own.
    pub async fn delete_bulk_state(&self, store: &str, items: Vec<StateItem>) -> Result<(), Error> {
        for item in items {
            self.delete_state(store, &item.key, item.etag, item.first_write)
                .await?;
        }
        Ok(())
    }

    /// Applies every operation, or none.
    pub async fn transact_state(
        &self,
        store: &str,
        operations: Vec<StateOperation>,
    ) -> Result<(), Error> {
        self.state_store(store)?.transact(operations).await
    }
}
