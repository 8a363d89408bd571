//! Resolvers: from an app id (and namespace) to the internal addresses of its sidecars.
//!
//! Two ways to know where the sidecars are, one file each:
//! - [`Local`] (`resolver/local.rs`): the machine's registry — every sidecar started
//!   with `tandem run` or `tandem sidecar` here. Plays Dapr's `mdns` (the self-hosted
//!   default) and `sqlite` roles.
//! - [`Dns`] (`resolver/dns.rs`): a DNS name made from a template — Dapr's `kubernetes`
//!   (`{app-id}-tandem.{namespace}.svc.cluster.local`) and `nameformat` resolvers.
//!
//! [`NameResolution`] puts a resolver and a [`Balancer`] together: the answer to "which
//! sidecar do I call for `orders`, and which next if that one is down?".

mod dns;
mod local;

use std::net::SocketAddr;

pub use dns::{DEFAULT_CLUSTER_DOMAIN, Dns, Template};
pub use local::Local;

use crate::balancer::Balancer;

/// What a resolver could not find, said so that the user knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The registry has no live sidecar for the app id.
    #[error(
        "no sidecar with app id '{app_id}'{} is running on this machine (tandem list shows the running ones)",
        in_namespace(.namespace)
    )]
    NotRunning {
        app_id: String,
        namespace: Option<String>,
    },
    /// The DNS lookup of the app id's name failed.
    #[error("cannot find the sidecars of app id '{app_id}': looking up '{name}' failed: {source}")]
    Lookup {
        app_id: String,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The DNS name exists but has no address.
    #[error("cannot find the sidecars of app id '{app_id}': '{name}' has no addresses")]
    NoAddresses { app_id: String, name: String },
    /// The app id cannot be looked up at all.
    #[error("'{app_id}' is not a valid app id: {reason}")]
    InvalidAppId { app_id: String, reason: String },
}

fn in_namespace(namespace: &Option<String>) -> String {
    match namespace {
        Some(namespace) => format!(" in namespace '{namespace}'"),
        None => String::new(),
    }
}

/// A name resolver, chosen by the Configuration's `spec.nameResolution.component`
/// ([`crate::ResolverConfig`]).
#[derive(Debug)]
pub enum Resolver {
    /// The machine's registry.
    Local(Local),
    /// A DNS name per app id.
    Dns(Dns),
}

impl Resolver {
    /// The internal addresses of every live sidecar of `app_id`, sorted. `namespace`:
    /// the target's namespace (`None`: the resolver's default — any namespace for the
    /// local registry, `default` for DNS).
    pub async fn resolve(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if app_id.is_empty() {
            return Err(ResolveError::InvalidAppId {
                app_id: String::new(),
                reason: "it is empty".into(),
            });
        }
        match self {
            Resolver::Local(local) => local.resolve(app_id, namespace).await,
            Resolver::Dns(dns) => dns.resolve(app_id, namespace).await,
        }
    }

    /// The resolver's name as Dapr's Configuration spells it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Resolver::Local(_) => "mdns",
            Resolver::Dns(dns) => dns.name(),
        }
    }
}

/// A resolver and a balancer: the addresses to try for a call, in order.
#[derive(Debug)]
pub struct NameResolution {
    pub resolver: Resolver,
    pub balancer: Balancer,
}

impl NameResolution {
    /// `resolver` with a [`Balancer`] of the default quarantine.
    pub fn new(resolver: Resolver) -> Self {
        Self {
            resolver,
            balancer: Balancer::default(),
        }
    }

    /// Every live sidecar of `app_id`, in the order to try them: this call's
    /// round-robin turn first, quarantined addresses last.
    pub async fn locate(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let addresses = self.resolver.resolve(app_id, namespace).await?;
        Ok(self.balancer.order(app_id, &addresses))
    }

    /// `address` of `app_id` refused a connection: try the others first for a while.
    pub fn unreachable(&self, app_id: &str, address: SocketAddr) {
        self.balancer.report_dead(app_id, address);
    }
}
