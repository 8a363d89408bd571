//! `state.in-memory`: state in this sidecar's memory, for tests and demos.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    DeleteRequest, Feature, InvalidRequest, Operation, SetRequest, StateError, StateStore, Stored,
    check_etag, parse_version, validate,
};

pub const METADATA: &[&str] = &[];

struct Entry {
    value: Bytes,
    version: u64,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    last_version: u64,
}

impl Table {
    /// The live entry of `key`, forgetting it if it expired.
    fn live(&mut self, key: &str) -> Option<&Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires.is_some_and(|at| at <= Instant::now()))
        {
            self.entries.remove(key);
        }
        self.entries.get(key)
    }

    fn check(
        &mut self,
        key: &str,
        etag: Option<&str>,
        concurrency: super::Concurrency,
    ) -> Result<(), StateError> {
        parse_version(key, etag)?;
        let stored = self.live(key).map(|entry| entry.version.to_string());
        check_etag(key, etag, stored.as_deref(), concurrency)
    }

    fn apply(&mut self, operation: Operation) -> Result<Option<String>, StateError> {
        match operation {
            Operation::Upsert(set) => {
                self.check(&set.key, set.etag.as_deref(), set.concurrency)?;
                let expires = match set.ttl {
                    None => None,
                    // `validate` refused TTLs past MAX_TTL; this only guards against a
                    // clock that cannot count that far.
                    Some(ttl) => Some(Instant::now().checked_add(ttl).ok_or_else(|| {
                        InvalidRequest::TtlOutOfRange {
                            key: set.key.clone(),
                            ttl,
                        }
                    })?),
                };
                self.last_version += 1;
                let version = self.last_version;
                self.entries.insert(
                    set.key,
                    Entry {
                        value: set.value,
                        version,
                        expires,
                    },
                );
                Ok(Some(version.to_string()))
            }
            Operation::Delete(delete) => {
                self.check(
                    &delete.key,
                    delete.etag.as_deref(),
                    super::Concurrency::LastWrite,
                )?;
                self.entries.remove(&delete.key);
                Ok(None)
            }
        }
    }
}

pub struct InMemory {
    table: Mutex<Table>,
}

impl InMemory {
    pub async fn build(_: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        Ok(Arc::new(Self {
            table: Mutex::default(),
        }))
    }
}

#[async_trait]
impl StateStore for InMemory {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let mut table = self.table.lock();
        Ok(table.live(key).map(|entry| Stored {
            value: entry.value.clone(),
            etag: entry.version.to_string(),
        }))
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        let request = Operation::Upsert(request);
        validate(std::slice::from_ref(&request))?;
        let mut table = self.table.lock();
        Ok(table.apply(request)?.unwrap_or_default())
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        let mut table = self.table.lock();
        table.apply(Operation::Delete(request)).map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        validate(&operations)?;
        let mut table = self.table.lock();
        // Check everything first against a scratch copy of the touched keys, so a
        // failing operation leaves the table as it was.
        let mut scratch = Table {
            entries: HashMap::new(),
            last_version: table.last_version,
        };
        for operation in &operations {
            if let Some(entry) = table.live(operation.key()) {
                scratch.entries.insert(
                    operation.key().to_owned(),
                    Entry {
                        value: entry.value.clone(),
                        version: entry.version,
                        expires: entry.expires,
                    },
                );
            }
        }
        for operation in operations.iter().cloned() {
            scratch.apply(operation)?;
        }
        // The scratch run proved every operation applies: this cannot fail halfway.
        for operation in operations {
            table.apply(operation)?;
        }
        Ok(())
    }

    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, Stored)>>, StateError> {
        let now = Instant::now();
        let table = self.table.lock();
        Ok(Some(
            table
                .entries
                .iter()
                .filter(|(key, entry)| {
                    key.starts_with(prefix) && entry.expires.is_none_or(|at| at > now)
                })
                .map(|(key, entry)| {
                    (
                        key.clone(),
                        Stored {
                            value: entry.value.clone(),
                            etag: entry.version.to_string(),
                        },
                    )
                })
                .collect(),
        ))
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
