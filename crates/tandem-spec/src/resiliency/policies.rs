//! `spec.policies`: the named timeouts, retries, circuit breakers and caches.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::cache::{CacheFile, CacheSpec};
use super::circuit_breaker::{CircuitBreakerFile, CircuitBreakerSpec};
use super::retry::{RetryFile, RetrySpec};
use crate::error::ResourceError;
use crate::resource::Origin;
use crate::yaml::fields::{FileDuration, Parsed};

/// `spec.policies`: policies by name, for targets to refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    /// `timeouts`: how long one attempt may take.
    pub timeouts: BTreeMap<String, Duration>,
    /// `retries`: how often and how far apart failed calls are tried again.
    pub retries: BTreeMap<String, RetrySpec>,
    /// `circuitBreakers`: when to stop calling a target that keeps failing.
    pub circuit_breakers: BTreeMap<String, CircuitBreakerSpec>,
    /// `caches` (tandem's, beyond Dapr): answers of an app or HTTP endpoint kept and
    /// reused for a while.
    pub caches: BTreeMap<String, CacheSpec>,
}

/// `spec.policies` as written.
#[derive(Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a mapping with `timeouts`, `retries`, `circuitBreakers` and `caches`"
)]
pub(super) struct PoliciesFile {
    timeouts: BTreeMap<String, Parsed<FileDuration>>,
    retries: BTreeMap<String, RetryFile>,
    circuit_breakers: BTreeMap<String, CircuitBreakerFile>,
    caches: BTreeMap<String, CacheFile>,
}

impl PoliciesFile {
    pub(super) fn check(self, origin: &Origin) -> Result<Policies, ResourceError> {
        let mut caches = BTreeMap::new();
        for (name, cache) in self.caches {
            let field = format!("spec.policies.caches.{name}");
            caches.insert(name, cache.check(origin, &field)?);
        }
        Ok(Policies {
            timeouts: self
                .timeouts
                .into_iter()
                .map(|(name, Parsed(FileDuration(timeout)))| (name, timeout))
                .collect(),
            retries: self
                .retries
                .into_iter()
                .map(|(name, retry)| (name, retry.into()))
                .collect(),
            circuit_breakers: self
                .circuit_breakers
                .into_iter()
                .map(|(name, breaker)| (name, breaker.into()))
                .collect(),
            caches,
        })
    }
}
