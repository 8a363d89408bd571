//! Dapr resource files, read the way `daprd` reads them.
//!
//! A resources path holds `*.yaml`/`*.yml` files, each with one or more YAML documents.
//! [`load`] turns them into typed [`Resources`]: [`Component`]s, [`HttpEndpoint`]s and
//! [`Resiliency`] policies (other kinds are skipped for now), and
//! [`Component::resolve`] turns a component's `spec.metadata` into plain values: secret
//! references through the component's `auth.secretStore`, `envRef`s through the
//! environment, and `{appID}`/`{uuid}`/`{namespace}` templates. Every error is a
//! [`ResourceError`] naming the file, the resource and the field.
#![forbid(unsafe_code)]

mod component;
mod duration;
mod error;
mod http_endpoint;
mod load;
mod metadata;
mod resiliency;
mod suggest;

pub use component::{Component, MetadataItem, MetadataSource, SecretLookup, Templates};
pub use duration::{DurationError, MAX_DURATION, parse_duration};
pub use error::ResourceError;
pub use http_endpoint::HttpEndpoint;
pub use load::{LoadOptions, Resources, load};
pub use metadata::ComponentMetadata;
pub use resiliency::{
    ActorBreakerScope, ActorTargetPolicies, BUILT_IN_RETRIES, BackoffPolicy, BreakerCounts,
    CacheSpec, CircuitBreakerSpec, Comparison, ComponentTargets, Counter, Policies, Resiliency,
    RetryMatching, RetrySpec, TargetPolicies, Targets, TripCondition, TripExpression,
    parse_resiliency, parse_status_codes,
};
pub use suggest::closest;
