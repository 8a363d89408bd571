//! `kind: Resiliency`: named timeouts, retries and circuit breakers, and the targets
//! (apps, components, actors) they apply to.
//!
//! The file format is Dapr's (<https://docs.dapr.io/operations/resiliency/>). Parsing
//! checks everything that can be checked before the sidecar starts — durations, status
//! code lists, trip expressions, and that every policy a target names exists — so a
//! typo stops the sidecar with the file, the resource and the field instead of quietly
//! leaving a target unprotected (Dapr logs such a resource and skips it).
//!
//! The engine that applies these policies is the `tandem-resiliency` crate.
//!
//! The document is read into typed file-format structs (with `deny_unknown_fields`:
//! `maxRetry` is an error with a suggestion, not a policy silently left at its
//! default); each policy kind and the targets live in their own module:
//! [`policies`] (`spec.policies`), [`retry`], [`circuit_breaker`] (and trip
//! expressions), [`cache`], and [`targets`] (checked against the policies).

mod cache;
mod circuit_breaker;
mod policies;
mod retry;
mod targets;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cache::CacheSpec;
pub use circuit_breaker::{
    BreakerCounts, CircuitBreakerSpec, Comparison, Counter, TripCondition, TripExpression,
    TripExpressionError, TripProblem,
};
pub use policies::Policies;
pub use retry::{
    BUILT_IN_RETRIES, BackoffPolicy, RetryMatching, RetrySpec, StatusCodeError,
    UnknownBackoffPolicy, parse_status_codes,
};
pub use targets::{
    ActorBreakerScope, ActorTargetPolicies, ComponentTargets, TargetPolicies, Targets,
    UnknownBreakerScope,
};

use crate::error::ResourceError;
use crate::resource::{Kind, ObjectMetaFile, Origin};
use crate::yaml::Node;

/// A Resiliency resource, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Resiliency {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// `scopes`: the app ids this resource applies to; empty means every app.
    pub scopes: Vec<String>,
    /// The file it came from.
    pub file: Option<PathBuf>,
    /// `spec.policies`.
    pub policies: Policies,
    /// `spec.targets`.
    pub targets: Targets,
}

impl Resiliency {
    /// How errors name this resource: `Resiliency 'myresiliency'`.
    pub fn describe(&self) -> String {
        format!("Resiliency '{}'", self.name)
    }

    /// Whether app `app_id` uses this resource (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }
}

/// Parses one `kind: Resiliency` document.
///
/// Errors name `file`, `Resiliency '<name>'` and the field, e.g.
/// `spec.policies.retries.retryForever.maxRetries`.
pub fn parse_resiliency(
    file: &Path,
    value: yaml_serde::Value,
) -> Result<Resiliency, ResourceError> {
    let node = Node::deserialize(value).map_err(|error| {
        ResourceError::new(format!("not a resource document: {error}")).in_file(file)
    })?;
    from_node(file, &node)
}

/// Parses one `kind: Resiliency` document read from `file`.
pub(crate) fn from_node(file: &Path, node: &Node) -> Result<Resiliency, ResourceError> {
    let origin = Origin::of(file, Kind::Resiliency, node);
    let raw: ResiliencyFile = origin.read(node)?;
    let name = raw
        .metadata
        .required_name(&origin, "a resiliency resource")?;
    for (index, scope) in raw.scopes.iter().enumerate() {
        if scope.trim().is_empty() {
            return Err(origin.error(&format!("scopes[{index}]"), "must be an app id"));
        }
    }
    let spec = raw.metadata.required_spec(
        raw.spec,
        &origin,
        "a resiliency resource needs a `spec` with `policies` and `targets`",
    )?;
    let policies = spec.policies.check(&origin)?;
    let targets = spec.targets.check(&origin, &policies)?;
    Ok(Resiliency {
        name,
        namespace: raw.metadata.namespace,
        scopes: raw.scopes,
        file: Some(file.to_owned()),
        policies,
        targets,
    })
}

/// A Resiliency document. Above `spec`, fields tandem does not use are accepted;
/// within it, every field must be known.
#[derive(Deserialize)]
struct ResiliencyFile {
    #[serde(default)]
    metadata: ObjectMetaFile,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    spec: Option<SpecFile>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `policies` and `targets`"
)]
struct SpecFile {
    #[serde(default)]
    policies: policies::PoliciesFile,
    #[serde(default)]
    targets: targets::TargetsFile,
}

#[cfg(test)]
mod tests;
