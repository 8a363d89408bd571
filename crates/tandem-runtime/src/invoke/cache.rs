//! Cached calls (tandem's, beyond Dapr): answers of a slow target kept and reused.
//!
//! A target (app id or HTTP endpoint) whose `targets.apps` entry names a cache policy
//! has its `GET` (or opted-in) calls answered, in order, from
//!
//! 1. the sidecar's first level (`hit-l1`), while the answer is younger than `ttl`;
//! 2. the policy's state store (`hit-l2`), shared by every sidecar using the store;
//! 3. the target itself (`miss`) — called once however many callers wait for the same
//!    key — and the answer is kept in both levels.
//!
//! If the target fails or times out and an answer no older than `ttl + staleIfError`
//! is in the store, that answer is served (`stale`) instead of the error. The key is
//! the method, path, query and the policy's `varyHeaders`; a caller's
//! `Cache-Control: no-cache` skips the cache (and refreshes it). The answer says where
//! it came from in the `X-Tandem-Cache` header. It is the same first-level cache as
//! the state API's ([`tandem_cache`]), not a second one.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tandem_cache::{Cache, Entry, Settings};
use tandem_spec::CacheSpec;

use super::{InvokeRequest, InvokeResponse, Invoker};
use crate::error::Error;

/// The header that says where a cached call's answer came from.
pub const CACHE_HEADER: &str = "x-tandem-cache";

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    FirstLevel,
    SecondLevel,
    Target,
    Stale,
}

impl Source {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Source::FirstLevel => "hit-l1",
            Source::SecondLevel => "hit-l2",
            Source::Target => "miss",
            Source::Stale => "stale",
        })
    }
}

/// An answer as both levels keep it.
#[derive(Serialize, Deserialize)]
struct Kept {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// When the target gave it, in milliseconds since the epoch: how old it is.
    at_ms: u64,
}

impl Kept {
    fn of(response: &InvokeResponse) -> Self {
        Self {
            status: response.status.as_u16(),
            headers: response
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            body: BASE64.encode(&response.body),
            at_ms: now_ms(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("an answer serialises"))
    }

    fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.at_ms))
    }

    fn response(&self) -> Option<InvokeResponse> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            );
        }
        Some(InvokeResponse {
            status: StatusCode::from_u16(self.status).ok()?,
            headers,
            body: Bytes::from(BASE64.decode(&self.body).ok()?),
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// Why the first level got no answer to keep.
#[derive(Clone)]
enum NotKept {
    /// The target failed but an answer within `staleIfError` was found.
    Stale(InvokeResponse),
    /// The target answered with a failing status: passed through, not kept.
    Answered(InvokeResponse),
    Failed(Error),
}

/// The first levels of the targets that have a cache policy, made on first use.
#[derive(Default)]
pub(crate) struct ResponseCaches {
    first_levels: Mutex<HashMap<String, Cache>>,
}

impl ResponseCaches {
    fn first_level(&self, target: &str, spec: &CacheSpec) -> Cache {
        let mut levels = self.first_levels.lock();
        levels
            .entry(target.to_owned())
            .or_insert_with(|| {
                Cache::new(Settings {
                    max_entries: Some(spec.max_entries.unwrap_or(10_000)),
                    max_bytes: None,
                    max_age: spec.ttl,
                })
            })
            .clone()
    }
}

fn cache_key(target: &str, request: &InvokeRequest, spec: &CacheSpec) -> String {
    let mut key = format!(
        "tandem-invoke||{target}||{} /{}?{}",
        request.method,
        request.path.trim_start_matches('/'),
        request.query.as_deref().unwrap_or_default()
    );
    for name in &spec.vary_headers {
        let value = request
            .headers
            .get(name.as_str())
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        key.push_str(&format!("||{}={value}", name.to_ascii_lowercase()));
    }
    key
}

fn skips_cache(request: &InvokeRequest) -> bool {
    request
        .headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"))
        })
}

impl Invoker {
    /// Invokes `request` through the target's cache policy, if it has one.
    /// Whether `request` is answered through a cache policy: its target has one that
    /// covers its method.
    pub(super) fn is_cached(&self, request: &InvokeRequest) -> bool {
        self.resiliency
            .cache_for(&request.target)
            .is_some_and(|(_, spec)| {
                spec.methods
                    .iter()
                    .any(|method| method == request.method.as_str())
            })
    }

    /// Invokes `request` through its target's cache policy ([`is_cached`](Self::is_cached)).
    pub(super) async fn invoke_cached(
        &self,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, Error> {
        let Some((name, spec)) = self.resiliency.cache_for(&request.target).cloned() else {
            return self.invoke_uncached(request).await;
        };
        let key = cache_key(&request.target, &request, &spec);
        let first_level = self.caches.first_level(&request.target, &spec);
        if skips_cache(&request) {
            first_level.invalidate(&key).await;
        }
        let second_level = match &spec.store {
            Some(store) if !self.state.has(store) => {
                return Err(Error::Invoke {
                    app_id: request.target.clone(),
                    reason: format!(
                        "cache policy '{name}' keeps answers in state store '{store}', which is not loaded"
                    ),
                });
            }
            store => store.as_deref(),
        };
        let source = Mutex::new(Source::FirstLevel);
        let load = async {
            // The second level, unless the caller asked for a fresh answer.
            let mut stale = None;
            if let Some(store) = second_level
                && !skips_cache(&request)
                && let Ok(Some(stored)) = self.state.read_shared(store, &key).await
                && let Some(kept) = Kept::decode(&stored.value)
            {
                if kept.age() < spec.ttl {
                    *source.lock() = Source::SecondLevel;
                    return Ok(Some(Entry {
                        value: stored.value,
                        etag: String::new(),
                    }));
                }
                if kept.age() <= spec.ttl + spec.stale_if_error {
                    stale = kept.response();
                }
            }
            *source.lock() = Source::Target;
            let failed = match self.invoke_uncached(request.clone()).await {
                Ok(response) if response.status.is_success() => {
                    let kept = Kept::of(&response).encode();
                    if let Some(store) = second_level {
                        let keep_for = spec.ttl + spec.stale_if_error;
                        if let Err(error) = self
                            .state
                            .write_shared(store, &key, kept.clone(), keep_for)
                            .await
                        {
                            tracing::warn!(target = %request.target, "keeping an answer in the second level failed: {error}");
                        }
                    }
                    return Ok(Some(Entry {
                        value: kept,
                        etag: String::new(),
                    }));
                }
                Ok(response) if response.status.is_server_error() => NotKept::Answered(response),
                Ok(response) => return Err(NotKept::Answered(response)),
                Err(error) => NotKept::Failed(error),
            };
            match stale {
                Some(response) => {
                    *source.lock() = Source::Stale;
                    Err(NotKept::Stale(response))
                }
                None => Err(failed),
            }
        };
        let loaded = first_level.get_or_load(&key, load).await;
        let source = *source.lock();
        let mut response = match loaded {
            Ok(Some(entry)) => match Kept::decode(&entry.value) {
                // Taken from the second level part-way through its life, an entry may
                // reach `ttl` before the first level drops it: never serve it then.
                Some(kept) if source == Source::FirstLevel && kept.age() >= spec.ttl => {
                    first_level.invalidate(&key).await;
                    return Box::pin(self.invoke_cached(request)).await;
                }
                Some(kept) => match kept.response() {
                    Some(response) => response,
                    None => return self.invoke_uncached(request).await,
                },
                None => return self.invoke_uncached(request).await,
            },
            Ok(None) => return self.invoke_uncached(request).await,
            Err(NotKept::Stale(response)) => {
                let mut response = response;
                response
                    .headers
                    .insert(CACHE_HEADER, Source::Stale.header());
                return Ok(response);
            }
            Err(NotKept::Answered(response)) => response,
            Err(NotKept::Failed(error)) => return Err(error),
        };
        response.headers.insert(CACHE_HEADER, source.header());
        Ok(response)
    }
}
