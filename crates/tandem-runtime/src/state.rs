//! The state building block: `/v1.0/state/...` and gRPC `GetState`, `SaveState`, ...
//!
//! [`StateService`] owns the loaded state stores. Every request is checked whole before
//! anything is written — keys (not empty, no `||`), TTLs (Dapr's range) — so a request
//! answered with an error has written nothing; keys are then prefixed the way Dapr
//! prefixes them (`keyPrefix`: `appid` by default, so `order-processor||order-1`) and
//! each store call goes through the store's handle ([`store`]): its resiliency policy
//! and its first-level cache.

mod outbox;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_cache::Stats;
use tandem_components::state::query::{Query, QueryPage};
use tandem_components::state::{DeleteRequest, Operation, SetRequest, Stored};

use crate::error::Error;

pub(crate) use outbox::{OutboxParts, start as start_outbox};
pub(crate) use store::StoreHandle;
use store::{StoreCallError, concurrency};

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

/// The longest `ttlInSeconds` Dapr's state stores accept (their shared parser's
/// range is -1 to `MaxInt32`).
pub const MAX_TTL_SECONDS: i64 = i32::MAX as i64;

/// The state stores of one sidecar, by name.
pub struct StateService {
    stores: HashMap<String, StoreHandle>,
    /// Publishing for the stores with an outbox.
    outbox: Option<OutboxParts>,
}

impl StateService {
    pub(crate) fn new(stores: HashMap<String, StoreHandle>, outbox: Option<OutboxParts>) -> Self {
        Self { stores, outbox }
    }

    /// The stores with an outbox, and its settings.
    pub(crate) fn outboxes(&self) -> Vec<(String, outbox::OutboxConfig)> {
        let mut outboxes: Vec<_> = self
            .stores
            .iter()
            .filter_map(|(name, handle)| Some((name.clone(), handle.outbox()?.clone())))
            .collect();
        outboxes.sort_by(|a, b| a.0.cmp(&b.0));
        outboxes
    }

    /// The actor state store, by name: the one store with `actorStateStore: "true"`
    /// (with several, the first by name, as a warning says).
    pub(crate) fn actor_store(
        &self,
    ) -> Option<(String, Arc<dyn tandem_components::state::StateStore>)> {
        let mut names: Vec<&String> = self
            .stores
            .iter()
            .filter(|(_, handle)| handle.is_actor_state_store())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        if names.len() > 1 {
            tracing::warn!(
                "several state stores set actorStateStore: {}; actors use '{}'",
                names
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                names[0]
            );
        }
        let name = names.first()?;
        Some(((*name).clone(), self.stores[*name].raw()))
    }

    fn store(&self, name: &str) -> Result<&StoreHandle, Error> {
        if self.stores.is_empty() {
            return Err(Error::StateStoresNotConfigured);
        }
        self.stores
            .get(name)
            .ok_or_else(|| Error::StateStoreNotFound(name.to_owned()))
    }

    /// Reads one key.
    pub async fn get(
        &self,
        store: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<StateValue>, Error> {
        let handle = self.store(store)?;
        check_key(store, key)?;
        let stored = handle
            .get(key, consistency)
            .await
            .map_err(|error| Error::StateGet {
                store: store.to_owned(),
                key: key.to_owned(),
                cause: Error::cause(error),
            })?;
        Ok(stored.map(value))
    }

    /// Reads several keys, `parallelism` at a time; a key that fails carries its error.
    pub async fn bulk_get(
        &self,
        store: &str,
        keys: Vec<String>,
        parallelism: usize,
    ) -> Result<Vec<BulkStateItem>, Error> {
        let handle = self.store(store)?;
        for key in &keys {
            check_key(store, key)?;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(parallelism.clamp(1, 100)));
        let reads = keys.into_iter().map(|key| {
            let limit = limit.clone();
            async move {
                let _slot = limit.acquire().await;
                match handle.get(&key, Consistency::Eventual).await {
                    Ok(stored) => BulkStateItem {
                        key,
                        value: stored.map(value),
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

    /// Saves every item, each on its own as Dapr does (use a transaction for
    /// all-or-nothing). Every item is checked before the first is written.
    pub async fn save(&self, store: &str, items: Vec<StateItem>) -> Result<(), Error> {
        let handle = self.store(store)?;
        let requests = items
            .into_iter()
            .map(|item| set_request(handle, store, item))
            .collect::<Result<Vec<_>, _>>()?;
        for request in requests {
            handle
                .set(request)
                .await
                .map_err(|error| save_failed(store, error))?;
        }
        Ok(())
    }

    /// Runs a query (Dapr's query language, the request body as sent) over the values
    /// in store `store` — all of them, as daprd's stores query the whole table. The
    /// query itself runs here, over what the store lists.
    pub async fn query(&self, store: &str, body: &[u8]) -> Result<QueryPage, Error> {
        let handle = self.store(store)?;
        let failed = |detail: String| Error::StateQuery {
            store: store.to_owned(),
            detail,
        };
        if !handle.capabilities().iter().any(|c| c == "QUERY_API") {
            return Err(Error::StateQueryNotSupported(store.to_owned()));
        }
        let query = Query::parse(body)
            .map_err(|error| failed(format!("failed to parse JSON query body: {error}")))?;
        let values = handle
            .scan()
            .await
            .map_err(|error| failed(error.to_string()))?
            .ok_or_else(|| Error::StateQueryNotSupported(store.to_owned()))?;
        Ok(query.run(values))
    }

    /// Deletes one key (`etag` from `If-Match`).
    pub async fn delete(
        &self,
        store: &str,
        key: &str,
        etag: Option<String>,
        first_write: bool,
    ) -> Result<(), Error> {
        let handle = self.store(store)?;
        check_key(store, key)?;
        handle
            .delete(key, etag.filter(|etag| !etag.is_empty()), first_write)
            .await
            .map_err(|error| delete_failed(key, error))
    }

    /// Deletes several keys, each on its own; every key is checked first.
    pub async fn delete_bulk(&self, store: &str, items: Vec<StateItem>) -> Result<(), Error> {
        let handle = self.store(store)?;
        for item in &items {
            check_key(store, &item.key)?;
        }
        for item in items {
            handle
                .delete(
                    &item.key,
                    item.etag.filter(|etag| !etag.is_empty()),
                    item.first_write,
                )
                .await
                .map_err(|error| delete_failed(&item.key, error))?;
        }
        Ok(())
    }

    /// Applies every operation, or none.
    pub async fn transact(
        &self,
        store: &str,
        operations: Vec<StateOperation>,
    ) -> Result<(), Error> {
        let handle = self.store(store)?;
        let operations = match (handle.outbox(), &self.outbox) {
            (Some(config), Some(parts)) if !operations.is_empty() => {
                // Everything is checked before the outbox publishes anything.
                for operation in &operations {
                    match operation {
                        StateOperation::Upsert(item) => {
                            set_request(handle, store, item.clone())?;
                        }
                        StateOperation::Delete(item) => check_key(store, &item.key)?,
                    }
                }
                parts.stage(config, operations).await?
            }
            _ => operations,
        };
        let mut requests = Vec::with_capacity(operations.len());
        for operation in operations {
            requests.push(match operation {
                StateOperation::Upsert(item) => {
                    Operation::Upsert(set_request(handle, store, item)?)
                }
                StateOperation::Delete(item) => {
                    check_key(store, &item.key)?;
                    Operation::Delete(DeleteRequest {
                        key: handle.key(&item.key),
                        etag: item.etag.filter(|etag| !etag.is_empty()),
                        concurrency: concurrency(item.first_write),
                    })
                }
            });
        }
        if requests.is_empty() {
            return Ok(());
        }
        handle.transact(requests).await.map_err(|error| {
            if error.is_invalid_request() {
                return Error::Malformed(error.to_string());
            }
            Error::StateTransaction {
                etag: error.etag_problem(),
                cause: Error::cause(error),
            }
        })
    }

    /// Reads an entry of the sidecar's own (no key prefix, no first level), such as a
    /// cached answer every sidecar using the store shares.
    pub(crate) async fn read_shared(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<Stored>, Error> {
        self.store(store)?
            .get_exact(key)
            .await
            .map_err(|error| Error::StateGet {
                store: store.to_owned(),
                key: key.to_owned(),
                cause: Error::cause(error),
            })
    }

    /// Writes an entry of the sidecar's own, expiring after `ttl`.
    pub(crate) async fn write_shared(
        &self,
        store: &str,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.store(store)?
            .set_exact(key, value, ttl)
            .await
            .map_err(|error| save_failed(store, error))
    }

    /// Whether a store of that name is loaded.
    pub(crate) fn has(&self, store: &str) -> bool {
        self.stores.contains_key(store)
    }

    /// What the metadata API shows of store `name`: its capabilities and cache.
    pub(crate) async fn describe(&self, name: &str) -> Option<(Vec<String>, Option<Stats>)> {
        let handle = self.stores.get(name)?;
        Some((handle.capabilities(), handle.cache_stats().await))
    }
}

fn value(stored: Stored) -> StateValue {
    StateValue {
        data: stored.value,
        etag: stored.etag,
    }
}

fn save_failed(store: &str, error: StoreCallError) -> Error {
    if error.is_invalid_request() {
        return Error::Malformed(error.to_string());
    }
    Error::StateSave {
        store: store.to_owned(),
        etag: error.etag_problem(),
        cause: Error::cause(error),
    }
}

fn delete_failed(key: &str, error: StoreCallError) -> Error {
    Error::StateDelete {
        key: key.to_owned(),
        etag: error.etag_problem(),
        cause: Error::cause(error),
    }
}

/// A key as Dapr accepts it: not empty, and without the `||` that separates the
/// prefix from the key.
fn check_key(store: &str, key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::Malformed(r#""key" is a required field"#.into()));
    }
    if key.contains("||") {
        return Err(Error::IllegalStateKey {
            store: store.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// The write for `item`, checked: its key, its ETag and its `ttlInSeconds`.
fn set_request(handle: &StoreHandle, store: &str, item: StateItem) -> Result<SetRequest, Error> {
    check_key(store, &item.key)?;
    let ttl = ttl(&item)?;
    Ok(SetRequest {
        key: handle.key(&item.key),
        value: item.value,
        etag: item.etag.filter(|etag| !etag.is_empty()),
        concurrency: concurrency(item.first_write),
        ttl,
    })
}

/// `metadata.ttlInSeconds` of a write, as Dapr's stores read it: -1 to 2147483647;
/// zero or less means the value never expires.
fn ttl(item: &StateItem) -> Result<Option<Duration>, Error> {
    let Some(text) = item.metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    match text.trim().parse::<i64>() {
        Ok(seconds) if (-1..=MAX_TTL_SECONDS).contains(&seconds) => {
            Ok((seconds > 0).then(|| Duration::from_secs(seconds.unsigned_abs())))
        }
        _ => Err(Error::Malformed(format!(
            "incorrect value for metadata 'ttlInSeconds' of key '{}': must be a whole number of seconds from -1 to {MAX_TTL_SECONDS}, not '{text}'",
            item.key
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(ttl: &str) -> StateItem {
        StateItem {
            key: "k".into(),
            metadata: [("ttlInSeconds".to_owned(), ttl.to_owned())].into(),
            ..StateItem::default()
        }
    }

    #[test]
    fn ttls_are_read_in_daprs_range() {
        assert_eq!(ttl(&item("60")).unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(ttl(&item("-1")).unwrap(), None);
        assert_eq!(ttl(&item("0")).unwrap(), None);
        assert_eq!(
            ttl(&item("2147483647")).unwrap(),
            Some(Duration::from_secs(2147483647))
        );
        for bad in ["2147483648", "9223372036854775807", "-2", "1.5", "", "ten"] {
            let error = ttl(&item(bad)).unwrap_err().to_string();
            assert!(error.contains("ttlInSeconds"), "{bad}: {error}");
        }
    }

    #[test]
    fn keys_are_checked_as_dapr_checks_them() {
        assert!(check_key("s", "order-1").is_ok());
        assert!(matches!(check_key("s", ""), Err(Error::Malformed(_))));
        assert!(matches!(
            check_key("s", "a||b"),
            Err(Error::IllegalStateKey { .. })
        ));
    }
}
