//! The first level of tandem's multi-level cache.
//!
//! A [`Cache`] sits in the sidecar in front of a slower second level (a state store,
//! later a service's answers). It is bounded (entries or bytes), never serves an entry
//! older than its `max_age`, and makes one load per cold key however many callers ask
//! at once (stampede protection). Writes through this sidecar update it; writes
//! through other sidecars reach it as [`Notice`]s over a [`backplane`], and while the
//! backplane is down the cache is emptied and bypassed, so it is never stale beyond
//! `max_age`.
#![forbid(unsafe_code)]

pub mod backplane;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A cached value and the version it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub etag: String,
}

/// How big and how fresh a cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// At most this many entries...
    pub max_entries: Option<u64>,
    /// ...or at most this many bytes of keys and values.
    pub max_bytes: Option<u64>,
    /// The longest an entry is served without asking the second level.
    pub max_age: Duration,
}

/// What the cache has done, for the metadata API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Reads answered from the first level.
    pub l1_hits: u64,
    /// Reads that went to the second level and found the key.
    pub l2_hits: u64,
    /// Reads that went to the second level and did not find it.
    pub misses: u64,
    /// Reads of the second level (one per cold key, however many callers wait for it).
    pub store_reads: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Whether the first level is in use (false while its backplane is down).
    pub active: bool,
}

/// An invalidation notice: a key changed (to `etag`, or was deleted) somewhere.
/// Values never travel on the backplane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The sidecar that made the change: it ignores its own notices.
    pub origin: String,
}

/// The first-level cache.
#[derive(Clone)]
pub struct Cache {
    entries: moka::future::Cache<String, Entry>,
    counters: Arc<Counters>,
    /// False while the backplane is down: reads bypass the cache.
    active: Arc<AtomicBool>,
    /// Identifies this sidecar in notices.
    origin: Arc<str>,
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    store_reads: AtomicU64,
}

impl Cache {
    pub fn new(settings: Settings) -> Self {
        let mut builder = moka::future::Cache::builder().time_to_live(settings.max_age);
        builder = match (settings.max_bytes, settings.max_entries) {
            (Some(bytes), _) => builder
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.value.len() + entry.etag.len())
                        .unwrap_or(u32::MAX)
                })
                .max_capacity(bytes),
            (None, Some(entries)) => builder.max_capacity(entries),
            (None, None) => builder.max_capacity(10_000),
        };
        Self {
            entries: builder.build(),
            counters: Arc::default(),
            active: Arc::new(AtomicBool::new(true)),
            origin: Arc::from(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// This sidecar's name in notices.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The value of `key`: from the first level when fresh, else from `load` — called
    /// once for all the callers waiting on the same cold key — and kept for next time.
    pub async fn get_or_load<E, F>(&self, key: &str, load: F) -> Result<Option<Entry>, E>
    where
        E: Clone + Send + Sync + 'static,
        F: Future<Output = Result<Option<Entry>, E>>,
    {
        if !self.active.load(Ordering::Acquire) {
            return self.load_counted(load).await;
        }
        if let Some(entry) = self.entries.get(key).await {
            self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(entry));
        }
        // `try_get_with` runs one load per key and shares its outcome with every caller
        // waiting meanwhile. A missing key is not cached: it travels as an `Err`.
        let loaded_here = AtomicBool::new(false);
        let loaded = self
            .entries
            .try_get_with(key.to_owned(), async {
                loaded_here.store(true, Ordering::Relaxed);
                match self.load_counted(load).await {
                    Ok(Some(entry)) => Ok(entry),
                    Ok(None) => Err(Missing::Absent),
                    Err(error) => Err(Missing::Failed(error)),
                }
            })
            .await;
        match loaded {
            Ok(entry) => {
                // Waiting on another caller's load is still an answer from this level.
                if !loaded_here.load(Ordering::Relaxed) {
                    self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(entry))
            }
            Err(missing) => match &*missing {
                Missing::Absent => Ok(None),
                Missing::Failed(error) => Err(error.clone()),
            },
        }
    }

    async fn load_counted<E, F>(&self, load: F) -> Result<Option<Entry>, E>
    where
        F: Future<Output = Result<Option<Entry>, E>>,
    {
        self.counters.store_reads.fetch_add(1, Ordering::Relaxed);
        let loaded = load.await;
        match &loaded {
            Ok(Some(_)) => self.counters.l2_hits.fetch_add(1, Ordering::Relaxed),
            Ok(None) => self.counters.misses.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        loaded
    }

    /// Records a value this sidecar just wrote.
    pub async fn put(&self, key: &str, entry: Entry) {
        if self.active.load(Ordering::Acquire) {
            self.entries.insert(key.to_owned(), entry).await;
        }
    }

    /// Forgets `key` (it changed or was deleted).
    pub async fn invalidate(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Applies a notice from another sidecar: drops the key if held and not already at
    /// the notice's version.
    pub async fn apply(&self, notice: &Notice) {
        if notice.origin == *self.origin {
            return;
        }
        if let Some(held) = self.entries.get(&notice.key).await
            && notice.etag.as_deref() != Some(held.etag.as_str())
        {
            self.entries.invalidate(&notice.key).await;
        }
    }

    /// Empties the cache and stops using it (the backplane is down), or starts again.
    pub fn set_active(&self, active: bool) {
        if !active {
            self.entries.invalidate_all();
        }
        self.active.store(active, Ordering::Release);
    }

    /// Counts so far; entries and bytes after the cache's pending housekeeping.
    pub async fn stats(&self) -> Stats {
        self.entries.run_pending_tasks().await;
        Stats {
            l1_hits: self.counters.l1_hits.load(Ordering::Relaxed),
            l2_hits: self.counters.l2_hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            store_reads: self.counters.store_reads.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            active: self.active.load(Ordering::Acquire),
        }
    }
}

enum Missing<E> {
    Absent,
    Failed(E),
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache(max_age: Duration) -> Cache {
        Cache::new(Settings {
            max_entries: Some(100),
            max_bytes: None,
            max_age,
        })
    }

    fn entry(value: &str, etag: &str) -> Entry {
        Entry {
            value: Bytes::from(value.to_owned()),
            etag: etag.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_a_cold_key_load_once() {
        let cache = cache(Duration::from_secs(60));
        let loads = Arc::new(AtomicUsize::new(0));
        let reads = (0..100).map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load::<String, _>("k", async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some(entry("v", "1")))
                    })
                    .await
            })
        });
        for read in reads.collect::<Vec<_>>() {
            assert_eq!(read.await.unwrap().unwrap(), Some(entry("v", "1")));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let stats = cache.stats().await;
        assert_eq!(
            (stats.store_reads, stats.l2_hits, stats.l1_hits),
            (1, 1, 99)
        );
    }

    #[tokio::test]
    async fn missing_keys_and_errors_are_not_cached() {
        let cache = cache(Duration::from_secs(60));
        assert_eq!(
            cache
                .get_or_load::<String, _>("k", async { Ok(None) })
                .await,
            Ok(None)
        );
        assert_eq!(
            cache
                .get_or_load::<String, _>("k", async { Err("down".to_owned()) })
                .await,
            Err("down".to_owned())
        );
        assert_eq!(
            cache
                .get_or_load::<String, _>("k", async { Ok(Some(entry("v", "1"))) })
                .await,
            Ok(Some(entry("v", "1")))
        );
        assert_eq!(cache.stats().await.misses, 1);
    }

    #[tokio::test]
    async fn entries_expire_after_max_age() {
        let cache = cache(Duration::from_millis(100));
        cache.put("k", entry("old", "1")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let fresh = cache
            .get_or_load::<String, _>("k", async { Ok(Some(entry("new", "2"))) })
            .await;
        assert_eq!(fresh, Ok(Some(entry("new", "2"))));
    }

    #[tokio::test]
    async fn notices_drop_only_other_versions_and_never_our_own() {
        let cache = cache(Duration::from_secs(60));
        cache.put("k", entry("v", "2")).await;
        let notice = |etag: &str, origin: &str| Notice {
            key: "k".into(),
            etag: Some(etag.into()),
            origin: origin.into(),
        };
        cache.apply(&notice("3", cache.origin())).await;
        cache.apply(&notice("2", "elsewhere")).await;
        assert_eq!(
            cache.stats().await.entries,
            1,
            "same version or our own notice: kept"
        );
        cache.apply(&notice("3", "elsewhere")).await;
        assert_eq!(cache.stats().await.entries, 0);
    }

    #[tokio::test]
    async fn an_inactive_cache_is_empty_and_bypassed() {
        let cache = cache(Duration::from_secs(60));
        cache.put("k", entry("v", "1")).await;
        cache.set_active(false);
        let loads = AtomicUsize::new(0);
        for _ in 0..2 {
            cache
                .get_or_load::<String, _>("k", async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok(Some(entry("v2", "2")))
                })
                .await
                .unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        let stats = cache.stats().await;
        assert!(!stats.active);
        assert_eq!(stats.entries, 0);
    }
}
