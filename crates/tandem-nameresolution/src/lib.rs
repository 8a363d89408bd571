//! How sidecars find each other by app id.
//!
//! Service invocation needs one thing from this crate: "where are the sidecars of app
//! `orders` right now?". Three parts answer it:
//!
//! - [`registry`]: every sidecar running on this machine writes one small JSON file
//!   under `<tandem home>/apps/` ([`Registration`]) and removes it when it stops;
//!   [`list`] reads them back, pruning the files of processes that died without
//!   cleaning up. `tandem list` and `tandem stop` read the same files.
//! - [`Resolver`]: turns an app id (and namespace) into the internal addresses of every
//!   live instance — from the registry ([`Local`], Dapr's `mdns`/`sqlite` role), or from
//!   DNS ([`Dns`]: Dapr's `kubernetes` and `nameformat` resolvers).
//! - [`Balancer`]: hands those addresses out round robin per app id and keeps an
//!   address that refused a connection out of the rotation for a few seconds.
//!
//! Which resolver a sidecar uses comes from a Dapr `Configuration` resource's
//! `spec.nameResolution` ([`ResolverConfig::from_configuration`]); without one it is the
//! local registry. [`NameResolution`] ties a resolver and a balancer together.
#![forbid(unsafe_code)]

mod balancer;
mod config;
pub mod registry;
mod resolver;

pub use balancer::{Balancer, DEFAULT_QUARANTINE};
pub use config::{KubernetesConfig, ResolverConfig};
pub use registry::{Entry, Registration, list};
pub use resolver::{
    DEFAULT_CLUSTER_DOMAIN, Dns, Local, NameResolution, ResolveError, Resolver, Template,
};
