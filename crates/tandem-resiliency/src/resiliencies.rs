//! [`Resiliencies`]: which policy each target gets, from the app's Resiliency resources.
//!
//! A target named under `spec.targets` gets exactly the policies it names. Any other
//! target gets Dapr's *default policies*: policies named by a reserved pattern, looked
//! up from the most specific to the broadest, one kind at a time
//! (<https://docs.dapr.io/operations/resiliency/policies/default-policies/>):
//!
//! | target | names tried, e.g. for retries |
//! |---|---|
//! | app (service invocation) | `DefaultAppRetryPolicy`, `DefaultRetryPolicy` |
//! | component, outbound | `Default<Type>ComponentOutboundRetryPolicy` (`Type`: `Statestore`, `Pubsub`, `Binding`, `Secretstore`, `Configuration`, `Lock`, `Crypto`), `DefaultComponentOutboundRetryPolicy`, `DefaultComponentRetryPolicy`, `DefaultRetryPolicy` |
//! | component, inbound | the same with `Inbound` |
//!
//! Timeouts (`Default…TimeoutPolicy`) and circuit breakers
//! (`Default…CircuitBreakerPolicy`) follow the same pattern.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tandem_spec::{
    ActorBreakerScope, BackoffPolicy, CacheSpec, CircuitBreakerSpec, Resiliency, RetryMatching,
    RetrySpec, TargetPolicies,
};

use crate::breaker::CircuitBreaker;
use crate::policy::Policy;

/// The name under which a resource may override the built-in retries of service
/// invocation.
pub const BUILT_IN_SERVICE_RETRIES: &str = "DaprBuiltInServiceRetries";

/// The policies of one app's Resiliency resources, and the circuit breakers of its
/// targets. Build it once and share it: the breakers live as long as it does.
#[derive(Debug, Default)]
pub struct Resiliencies {
    /// Every resource's policies by name (a later resource's policy of the same name
    /// wins, as in Dapr): where default and built-in policies are looked up.
    timeouts: HashMap<String, Duration>,
    retries: HashMap<String, RetrySpec>,
    circuit_breakers: HashMap<String, CircuitBreakerSpec>,
    /// Named targets, resolved against their own resource's policies.
    apps: HashMap<String, Resolved>,
    components: HashMap<String, Directions>,
    /// `targets.actors`, by actor type: the policies and whose failures a breaker counts.
    actors: HashMap<String, (Resolved, Option<ActorBreakerScope>)>,
    /// One breaker per target and direction, made on first use.
    breakers: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
    /// The response cache policy of each app or HTTP endpoint that has one.
    caches: HashMap<String, (String, CacheSpec)>,
}

#[derive(Debug, Default, Clone)]
struct Directions {
    outbound: Resolved,
    inbound: Resolved,
}

/// A target's policies, names and settings.
#[derive(Debug, Default, Clone)]
struct Resolved {
    timeout: Option<(String, Duration)>,
    retry: Option<(String, RetrySpec)>,
    circuit_breaker: Option<(String, CircuitBreakerSpec)>,
}

/// Which way a component call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the sidecar to the component: state, publish, output bindings.
    Outbound,
    /// From the sidecar into the app for the component: pub/sub deliveries, input
    /// bindings.
    Inbound,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Outbound => "Outbound",
            Direction::Inbound => "Inbound",
        }
    }
}

impl Resiliencies {
    /// The policies of the `resources` that apply to `app_id` (their `scopes` list it
    /// or are empty), in the order given (later ones override earlier ones' policies
    /// and targets of the same name).
    pub fn new(resources: &[Resiliency], app_id: &str) -> Self {
        let mut this = Self::default();
        for resource in resources {
            if !resource.is_in_scope(app_id) {
                tracing::info!(
                    resiliency = %resource.name,
                    "resiliency not used: its scopes do not include app id '{app_id}'"
                );
                continue;
            }
            this.add(resource);
        }
        this
    }

    fn add(&mut self, resource: &Resiliency) {
        let policies = &resource.policies;
        for (name, timeout) in &policies.timeouts {
            self.timeouts.insert(name.clone(), *timeout);
        }
        for (name, retry) in &policies.retries {
            if let Some(retry) = override_built_in(name, retry) {
                self.retries.insert(name.clone(), retry);
            }
        }
        for (name, breaker) in &policies.circuit_breakers {
            self.circuit_breakers.insert(name.clone(), breaker.clone());
        }
        let resolve = |names: &TargetPolicies| Resolved {
            timeout: names
                .timeout
                .as_ref()
                .and_then(|name| Some((name.clone(), *policies.timeouts.get(name)?))),
            retry: names.retry.as_ref().and_then(|name| {
                let spec = policies
                    .retries
                    .get(name)
                    .and_then(|retry| override_built_in(name, retry))
                    .or_else(|| built_in_retry(name))?;
                Some((name.clone(), spec))
            }),
            circuit_breaker: names.circuit_breaker.as_ref().and_then(|name| {
                Some((name.clone(), policies.circuit_breakers.get(name)?.clone()))
            }),
        };
        for (app, names) in &resource.targets.apps {
            self.apps.insert(app.clone(), resolve(names));
            match names
                .cache
                .as_ref()
                .and_then(|name| Some((name.clone(), policies.caches.get(name)?.clone())))
            {
                Some(cache) => self.caches.insert(app.clone(), cache),
                None => self.caches.remove(app),
            };
        }
        for (actor_type, target) in &resource.targets.actors {
            self.actors.insert(
                actor_type.clone(),
                (resolve(&target.policies), target.circuit_breaker_scope),
            );
        }
        for (component, names) in &resource.targets.components {
            self.components.insert(
                component.clone(),
                Directions {
                    outbound: resolve(&names.outbound),
                    inbound: resolve(&names.inbound),
                },
            );
        }
    }

    /// The policy for service invocation calls to app `app_id`: the policies its
    /// `targets.apps` entry names, or else the default app policies.
    pub fn for_app(&self, app_id: &str) -> Policy {
        let resolved = match self.apps.get(app_id) {
            Some(named) => named.clone(),
            None => self.defaults(&["App"]),
        };
        self.policy(format!("app '{app_id}'"), resolved)
    }

    /// The policy for calls to actor `actor_id` of `actor_type`: the policies its
    /// `targets.actors` entry names, or else the default actor policies. A circuit
    /// breaker counts failures per actor id or per type, as `circuitBreakerScope` says
    /// (`both` counts them per id).
    pub fn for_actor(&self, actor_type: &str, actor_id: &str) -> Policy {
        let (resolved, scope) = match self.actors.get(actor_type) {
            Some((named, scope)) => (named.clone(), *scope),
            None => (self.defaults(&["Actor"]), None),
        };
        let target = match scope {
            Some(ActorBreakerScope::Type) => format!("actor type '{actor_type}'"),
            _ => format!("actor '{actor_type}/{actor_id}'"),
        };
        self.policy(target, resolved)
    }

    /// The response cache policy (its name and settings) of calls to `target`, an app
    /// id or an HTTP endpoint's name, if its `targets.apps` entry names one.
    pub fn cache_for(&self, target: &str) -> Option<&(String, CacheSpec)> {
        self.caches.get(target)
    }

    /// Dapr's built-in retries of service invocation (`DaprBuiltInServiceRetries`:
    /// 3 retries, 1s apart, unless a resource overrides it with more) for calls to
    /// `app_id`, or `None` when a `targets.apps` entry names the app: Dapr then relies
    /// on the named policies alone.
    ///
    /// They retry only failures to reach the other side (Dapr: the gRPC codes
    /// `Unavailable` and `Unauthenticated` between sidecars), never the app's answers,
    /// and run inside [`for_app`](Self::for_app)'s policy.
    pub fn built_in_service_retries(&self, app_id: &str) -> Option<Policy> {
        if self.apps.contains_key(app_id) {
            return None;
        }
        let retry = self
            .retries
            .get(BUILT_IN_SERVICE_RETRIES)
            .cloned()
            .or_else(|| built_in_retry(BUILT_IN_SERVICE_RETRIES))?;
        Some(
            Policy::for_target(format!("app '{app_id}' (built-in service retries)"))
                .with_retry(BUILT_IN_SERVICE_RETRIES, retry),
        )
    }

    /// The policy for calls from the sidecar to component `name`, whose `spec.type`
    /// is `component_type` (`state.redis`; it picks the type's default policies).
    pub fn for_component_outbound(&self, name: &str, component_type: &str) -> Policy {
        self.for_component(name, component_type, Direction::Outbound)
    }

    /// The policy for calls from the sidecar into the app for component `name` (pub/sub
    /// deliveries, input bindings), whose `spec.type` is `component_type`.
    pub fn for_component_inbound(&self, name: &str, component_type: &str) -> Policy {
        self.for_component(name, component_type, Direction::Inbound)
    }

    /// The policy for component `name` in `direction`.
    pub fn for_component(&self, name: &str, component_type: &str, direction: Direction) -> Policy {
        let resolved = match self.components.get(name) {
            Some(named) => match direction {
                Direction::Outbound => named.outbound.clone(),
                Direction::Inbound => named.inbound.clone(),
            },
            None => {
                let way = direction.word();
                let mut levels = Vec::new();
                if let Some(block) = block_of(component_type) {
                    levels.push(format!("{block}Component{way}"));
                }
                levels.push(format!("Component{way}"));
                levels.push("Component".into());
                let levels: Vec<&str> = levels.iter().map(String::as_str).collect();
                self.defaults(&levels)
            }
        };
        let target = format!(
            "component '{name}' ({})",
            direction.word().to_ascii_lowercase()
        );
        self.policy(target, resolved)
    }

    /// The default policies for a target whose levels are `levels`, most specific
    /// first; each kind is looked up on its own, the broadest name last.
    fn defaults(&self, levels: &[&str]) -> Resolved {
        fn first<V: Clone>(
            map: &HashMap<String, V>,
            levels: &[&str],
            kind: &str,
        ) -> Option<(String, V)> {
            levels
                .iter()
                .copied()
                .chain([""])
                .map(|level| format!("Default{level}{kind}Policy"))
                .find_map(|name| Some((name.clone(), map.get(&name)?.clone())))
        }
        Resolved {
            timeout: first(&self.timeouts, levels, "Timeout"),
            retry: first(&self.retries, levels, "Retry"),
            circuit_breaker: first(&self.circuit_breakers, levels, "CircuitBreaker"),
        }
    }

    fn policy(&self, target: String, resolved: Resolved) -> Policy {
        let mut policy = Policy::for_target(target.clone());
        if let Some((name, timeout)) = resolved.timeout {
            policy = policy.with_timeout(name, timeout);
        }
        if let Some((name, retry)) = resolved.retry {
            policy = policy.with_retry(name, retry);
        }
        if let Some((name, spec)) = resolved.circuit_breaker {
            let mut breakers = self.breakers.lock();
            let breaker = breakers
                .entry(target.clone())
                .or_insert_with(|| Arc::new(CircuitBreaker::new(name, target, spec)));
            policy = policy.with_breaker(breaker.clone());
        }
        policy
    }
}

/// Dapr's names for the building blocks in default policy names, from a component's
/// `spec.type` (`state.redis` → `Statestore`).
fn block_of(component_type: &str) -> Option<&'static str> {
    let prefix = component_type.split('.').next().unwrap_or_default();
    Some(match prefix {
        "state" => "Statestore",
        "pubsub" => "Pubsub",
        "bindings" => "Binding",
        "secretstores" => "Secretstore",
        "configuration" => "Configuration",
        "lock" => "Lock",
        "crypto" => "Crypto",
        _ => return None,
    })
}

/// Dapr's built-in retries, as its runtime defines them.
fn built_in_retry(name: &str) -> Option<RetrySpec> {
    let constant = |retries| RetrySpec {
        policy: BackoffPolicy::Constant,
        duration: Duration::from_secs(1),
        max_retries: Some(retries),
        matching: RetryMatching::default(),
        ..RetrySpec::DEFAULT
    };
    let exponential = |max_interval, max_retries| RetrySpec {
        policy: BackoffPolicy::Exponential,
        initial_interval: Duration::from_millis(500),
        max_interval,
        max_retries,
        ..RetrySpec::DEFAULT
    };
    Some(match name {
        "DaprBuiltInServiceRetries" | "DaprBuiltInActorRetries" => constant(3),
        "DaprBuiltInActorNotFoundRetries" => constant(5),
        "DaprBuiltInActorReminderRetries" => exponential(Duration::from_secs(60), None),
        "DaprBuiltInInitializationRetries" => exponential(Duration::from_secs(1), Some(3)),
        _ => return None,
    })
}

/// A resource's retry policy `name`, with Dapr's rules for overriding built-in ones:
/// `DaprBuiltInActorNotFoundRetries` cannot be overridden (`None`), and the others
/// cannot be made weaker than 3 retries.
fn override_built_in(name: &str, retry: &RetrySpec) -> Option<RetrySpec> {
    if !tandem_spec::BUILT_IN_RETRIES.contains(&name) {
        return Some(retry.clone());
    }
    if name == "DaprBuiltInActorNotFoundRetries" {
        tracing::warn!("retry policy '{name}' cannot be overridden; Dapr's own is used");
        return None;
    }
    let mut retry = retry.clone();
    if retry.max_retries.is_some_and(|retries| retries < 3) {
        tracing::warn!(
            "retry policy '{name}' overrides a built-in retry with fewer than 3 retries; 3 are made"
        );
        retry.max_retries = Some(3);
    }
    Some(retry)
}

#[cfg(test)]
mod tests;
