//! Response caches (tandem's, beyond Dapr): `spec.policies.caches`.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ResourceError;
use crate::resource::Origin;
use crate::yaml::fields::{CountError, FieldText, FileDuration, Parsed, count};

/// A response cache policy: which calls to a target are answered from a cache, and for
/// how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// `ttl`: how long an answer is served without calling the target again.
    pub ttl: Duration,
    /// `store`: the state store that keeps answers as the second level, shared by
    /// every sidecar using it; without one, answers live only in this sidecar.
    pub store: Option<String>,
    /// `staleIfError`: how long past `ttl` an answer may still be served when the
    /// target fails or times out.
    pub stale_if_error: Duration,
    /// `methods`: the HTTP methods whose answers are cached (default `GET`).
    pub methods: Vec<String>,
    /// `varyHeaders`: request headers that are part of the cache key.
    pub vary_headers: Vec<String>,
    /// `maxEntries`: the first level's size.
    pub max_entries: Option<u64>,
}

/// A cache policy as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a cache policy: a mapping such as `{ttl: 30s, store: statestore}`"
)]
pub(super) struct CacheFile {
    ttl: Option<Parsed<FileDuration>>,
    store: Option<String>,
    stale_if_error: Option<Parsed<FileDuration>>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    vary_headers: Vec<String>,
    max_entries: Option<Parsed<MaxEntries>>,
}

impl CacheFile {
    /// The policy at `field` (`spec.policies.caches.<name>`), which needs a `ttl`.
    pub(super) fn check(self, origin: &Origin, field: &str) -> Result<CacheSpec, ResourceError> {
        let Some(Parsed(FileDuration(ttl))) = self.ttl else {
            return Err(origin.error(field, "a cache policy needs a `ttl`, e.g. `ttl: 30s`"));
        };
        if ttl.is_zero() {
            return Err(origin.error(&format!("{field}.ttl"), "must be longer than zero"));
        }
        let mut methods: Vec<String> = self
            .methods
            .iter()
            .map(|method| method.trim().to_ascii_uppercase())
            .collect();
        if methods.is_empty() {
            methods.push("GET".into());
        }
        Ok(CacheSpec {
            ttl,
            store: self.store,
            stale_if_error: self
                .stale_if_error
                .map_or(Duration::ZERO, |Parsed(FileDuration(stale))| stale),
            methods,
            vary_headers: self.vary_headers,
            max_entries: self.max_entries.map(|Parsed(MaxEntries(count))| count),
        })
    }
}

/// `maxEntries`: the first level's size.
struct MaxEntries(u64);

impl FieldText for MaxEntries {
    const EXPECTED: &'static str = "a number of entries";
}

impl std::str::FromStr for MaxEntries {
    type Err = CountError;

    fn from_str(text: &str) -> Result<Self, CountError> {
        count(
            text,
            1..=i128::from(u64::MAX),
            "a number of entries, 1 or more",
        )
        .map(MaxEntries)
    }
}
