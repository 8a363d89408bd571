//! `spec.targets`: which apps, components and actors use which policies, checked
//! against the policies the resource defines.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;

use super::policies::Policies;
use super::retry::BUILT_IN_RETRIES;
use crate::error::ResourceError;
use crate::resource::Origin;
use crate::suggest::closest;
use crate::yaml::fields::{CountError, FieldText, Parsed, count};

/// `spec.targets`: what the named policies apply to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// `apps`: service invocation calls to these app ids.
    pub apps: BTreeMap<String, TargetPolicies>,
    /// `components`: calls to components (`outbound`) and from them into the app
    /// (`inbound`, e.g. pub/sub deliveries).
    pub components: BTreeMap<String, ComponentTargets>,
    /// `actors`: calls to actors of these types.
    pub actors: BTreeMap<String, ActorTargetPolicies>,
}

/// The policies one target uses, by name; `None` means none of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicies {
    pub timeout: Option<String>,
    pub retry: Option<String>,
    pub circuit_breaker: Option<String>,
    /// `cache` (apps and HTTP endpoints only): the response cache policy.
    pub cache: Option<String>,
}

/// `targets.components.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentTargets {
    /// Calls from the sidecar to the component: state, publish, output bindings.
    pub outbound: TargetPolicies,
    /// Calls from the sidecar into the app for the component: pub/sub deliveries,
    /// input bindings.
    pub inbound: TargetPolicies,
}

/// `targets.actors.<type>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorTargetPolicies {
    pub policies: TargetPolicies,
    /// `circuitBreakerScope`: required with a `circuitBreaker`.
    pub circuit_breaker_scope: Option<ActorBreakerScope>,
    /// `circuitBreakerCacheSize`: how many actor breakers to keep (Dapr: 5000).
    pub circuit_breaker_cache_size: Option<u32>,
}

/// Whose failures an actor circuit breaker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorBreakerScope {
    /// `id`: each actor on its own.
    Id,
    /// `type`: all actors of the type together.
    Type,
    /// `both`.
    Both,
}

impl FieldText for ActorBreakerScope {
    const EXPECTED: &'static str = "`id`, `type` or `both`";
}

impl FromStr for ActorBreakerScope {
    type Err = UnknownBreakerScope;

    fn from_str(text: &str) -> Result<Self, UnknownBreakerScope> {
        match text.trim() {
            "id" => Ok(ActorBreakerScope::Id),
            "type" => Ok(ActorBreakerScope::Type),
            "both" => Ok(ActorBreakerScope::Both),
            _ => Err(UnknownBreakerScope(text.to_owned())),
        }
    }
}

/// A `circuitBreakerScope` other than `id`, `type` or `both`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be `id`, `type` or `both`, not `{0}`")]
pub struct UnknownBreakerScope(pub String);

/// `spec.targets` as written.
#[derive(Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a mapping with `apps`, `components` and `actors`"
)]
pub(super) struct TargetsFile {
    apps: BTreeMap<String, AppTargetFile>,
    components: BTreeMap<String, ComponentTargetFile>,
    actors: BTreeMap<String, ActorTargetFile>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a target: a mapping of policy kinds to policy names, e.g. `{timeout: general, retry: important}`"
)]
struct AppTargetFile {
    timeout: Option<Parsed<PolicyName>>,
    retry: Option<Parsed<PolicyName>>,
    circuit_breaker: Option<Parsed<PolicyName>>,
    /// Accepted and checked as in Dapr; tandem keeps one breaker per app id.
    #[allow(dead_code)]
    circuit_breaker_cache_size: Option<Parsed<CacheSize>>,
    cache: Option<Parsed<PolicyName>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a component target: a mapping with `outbound` and `inbound`"
)]
struct ComponentTargetFile {
    outbound: Option<DirectionFile>,
    inbound: Option<DirectionFile>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a mapping of policy kinds to policy names, e.g. `{timeout: general, retry: important}`"
)]
struct DirectionFile {
    timeout: Option<Parsed<PolicyName>>,
    retry: Option<Parsed<PolicyName>>,
    circuit_breaker: Option<Parsed<PolicyName>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an actor target: a mapping of policy kinds to policy names, e.g. `{timeout: general, retry: important}`"
)]
struct ActorTargetFile {
    timeout: Option<Parsed<PolicyName>>,
    retry: Option<Parsed<PolicyName>>,
    circuit_breaker: Option<Parsed<PolicyName>>,
    circuit_breaker_scope: Option<Parsed<ActorBreakerScope>>,
    circuit_breaker_cache_size: Option<Parsed<CacheSize>>,
}

/// The name of a policy, as a target refers to it.
struct PolicyName(String);

/// An empty policy name.
#[derive(Debug, thiserror::Error)]
#[error("must be the name of a policy")]
struct EmptyPolicyName;

impl FieldText for PolicyName {
    const EXPECTED: &'static str = "the name of a policy";
}

impl FromStr for PolicyName {
    type Err = EmptyPolicyName;

    fn from_str(text: &str) -> Result<Self, EmptyPolicyName> {
        match text.trim() {
            "" => Err(EmptyPolicyName),
            name => Ok(PolicyName(name.to_owned())),
        }
    }
}

/// `circuitBreakerCacheSize`: how many breakers to keep.
struct CacheSize(u32);

impl FieldText for CacheSize {
    const EXPECTED: &'static str = "a number of circuit breakers";
}

impl FromStr for CacheSize {
    type Err = CountError;

    fn from_str(text: &str) -> Result<Self, CountError> {
        count(
            text,
            1..=i128::from(u32::MAX),
            "a number of circuit breakers, from 1 to 4294967295",
        )
        .map(CacheSize)
    }
}

/// The policies one target names, before they are looked up.
struct Named {
    timeout: Option<Parsed<PolicyName>>,
    retry: Option<Parsed<PolicyName>>,
    circuit_breaker: Option<Parsed<PolicyName>>,
    cache: Option<Parsed<PolicyName>>,
}

impl Named {
    /// Checks that every policy named at `field` is defined in `policies`.
    fn check(
        self,
        origin: &Origin,
        field: &str,
        policies: &Policies,
    ) -> Result<TargetPolicies, ResourceError> {
        let look_up = |named: Option<Parsed<PolicyName>>,
                       key: &str,
                       defined: Vec<&str>,
                       kind: &str,
                       section: &str|
         -> Result<Option<String>, ResourceError> {
            let Some(Parsed(PolicyName(name))) = named else {
                return Ok(None);
            };
            // Dapr's built-in retries exist without being defined.
            let built_in = key == "retry" && BUILT_IN_RETRIES.contains(&name.as_str());
            if defined.contains(&name.as_str()) || built_in {
                return Ok(Some(name));
            }
            let hint = match closest(&name, defined.iter().copied()) {
                Some(close) => format!("; did you mean '{close}'?"),
                None if defined.is_empty() => format!("; this resource defines no {section}"),
                None => format!("; it defines: {}", defined.join(", ")),
            };
            Err(origin.error(
                &format!("{field}.{key}"),
                format!("{kind} '{name}' is not defined in `spec.policies.{section}`{hint}"),
            ))
        };
        Ok(TargetPolicies {
            timeout: look_up(
                self.timeout,
                "timeout",
                names(&policies.timeouts),
                "timeout",
                "timeouts",
            )?,
            retry: look_up(
                self.retry,
                "retry",
                names(&policies.retries),
                "retry policy",
                "retries",
            )?,
            circuit_breaker: look_up(
                self.circuit_breaker,
                "circuitBreaker",
                names(&policies.circuit_breakers),
                "circuit breaker",
                "circuitBreakers",
            )?,
            cache: look_up(
                self.cache,
                "cache",
                names(&policies.caches),
                "cache policy",
                "caches",
            )?,
        })
    }
}

/// The names a map of policies defines.
fn names<V>(policies: &BTreeMap<String, V>) -> Vec<&str> {
    policies.keys().map(String::as_str).collect()
}

impl TargetsFile {
    pub(super) fn check(
        self,
        origin: &Origin,
        policies: &Policies,
    ) -> Result<Targets, ResourceError> {
        let mut targets = Targets::default();
        for (name, app) in self.apps {
            let field = format!("spec.targets.apps.{name}");
            let named = Named {
                timeout: app.timeout,
                retry: app.retry,
                circuit_breaker: app.circuit_breaker,
                cache: app.cache,
            };
            targets
                .apps
                .insert(name, named.check(origin, &field, policies)?);
        }
        for (name, component) in self.components {
            let field = format!("spec.targets.components.{name}");
            let direction = |file: Option<DirectionFile>, key: &str| match file {
                None => Ok(TargetPolicies::default()),
                Some(file) => Named {
                    timeout: file.timeout,
                    retry: file.retry,
                    circuit_breaker: file.circuit_breaker,
                    cache: None,
                }
                .check(origin, &format!("{field}.{key}"), policies),
            };
            let checked = ComponentTargets {
                outbound: direction(component.outbound, "outbound")?,
                inbound: direction(component.inbound, "inbound")?,
            };
            targets.components.insert(name, checked);
        }
        for (name, actor) in self.actors {
            let field = format!("spec.targets.actors.{name}");
            let named = Named {
                timeout: actor.timeout,
                retry: actor.retry,
                circuit_breaker: actor.circuit_breaker,
                cache: None,
            };
            let checked = ActorTargetPolicies {
                policies: named.check(origin, &field, policies)?,
                circuit_breaker_scope: actor.circuit_breaker_scope.map(|Parsed(scope)| scope),
                circuit_breaker_cache_size: actor
                    .circuit_breaker_cache_size
                    .map(|Parsed(CacheSize(size))| size),
            };
            // Dapr refuses an actor circuit breaker without a scope.
            if checked.policies.circuit_breaker.is_some() && checked.circuit_breaker_scope.is_none()
            {
                return Err(origin.error(
                    &format!("{field}.circuitBreakerScope"),
                    "an actor target with a `circuitBreaker` needs a `circuitBreakerScope`: `id`, `type` or `both`",
                ));
            }
            targets.actors.insert(name, checked);
        }
        Ok(targets)
    }
}
