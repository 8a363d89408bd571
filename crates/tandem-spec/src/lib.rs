//! Dapr resource files, read the way `daprd` reads them.
//!
//! A resources path holds `*.yaml`/`*.yml` files, each with one or more YAML documents.
//! [`load`] turns them into typed [`Resources`]: [`Component`]s, [`HttpEndpoint`]s,
//! [`Resiliency`] policies and declarative [`Subscription`]s (other kinds are skipped
//! for now); [`load_configuration`]
//! reads the [`Configuration`] that `--config` names. [`Component::resolve`] turns a
//! component's `spec.metadata` into plain values: secret references through the
//! component's `auth.secretStore`, `envRef`s through the environment, and
//! `{appID}`/`{uuid}`/`{namespace}` templates. Every error is a [`ResourceError`]
//! naming the file, the resource and the field.
//!
//! Every kind is parsed one way: the file's documents are read by one loop
//! (`yaml::documents`), dispatched on `kind` (`resource`), and deserialized into typed
//! file-format structs whose errors carry the field's path; checks serde cannot make
//! (a target naming an undefined policy) follow on the typed values. Nothing a file
//! says may panic: durations and counts are range-checked as they are read.
#![forbid(unsafe_code)]

mod component;
mod configuration;
mod duration;
mod error;
mod http_endpoint;
mod load;
mod metadata;
mod resiliency;
mod resource;
mod subscription;
mod suggest;
mod yaml;

pub use component::{
    Component, MetadataItem, MetadataSource, SecretLookup, SecretLookupError, Templates,
};
pub use configuration::{
    Configuration, NameResolutionSpec, SecretScope, Setting, UnusedSection, load_configuration,
    parse_configuration,
};
pub use duration::{DurationError, MAX_DURATION, parse_duration};
pub use error::ResourceError;
pub use http_endpoint::HttpEndpoint;
pub use load::{LoadOptions, Resources, load};
pub use metadata::ComponentMetadata;
pub use resiliency::{
    ActorBreakerScope, ActorTargetPolicies, BUILT_IN_RETRIES, BackoffPolicy, BreakerCounts,
    CacheSpec, CircuitBreakerSpec, Comparison, ComponentTargets, Counter, Policies, Resiliency,
    RetryMatching, RetrySpec, StatusCodeError, TargetPolicies, Targets, TripCondition,
    TripExpression, TripExpressionError, TripProblem, UnknownBackoffPolicy, UnknownBreakerScope,
    parse_resiliency, parse_status_codes,
};
pub use subscription::{
    BulkSubscribe, RoutingRule, SUBSCRIPTION_V1ALPHA1, SUBSCRIPTION_V2ALPHA1, Subscription,
};
pub use suggest::closest;
pub use yaml::Node as YamlNode;
