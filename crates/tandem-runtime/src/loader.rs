//! Turning resource files into live components, one registry per building block: each
//! declared component is claimed by its block's registry (by `spec.type`), its metadata
//! resolved (secrets, environment, templates) and built; the result, [`Loaded`], is
//! what the building blocks' services are made from.

use std::collections::HashMap;
use std::sync::Arc;

use tandem_components::bindings;
use tandem_components::configuration;
use tandem_components::conversation;
use tandem_components::crypto::{self, CryptoProvider};
use tandem_components::lock;
use tandem_components::pubsub;
use tandem_components::secretstores::{self, SecretStore};
use tandem_components::state;
use tandem_spec::{
    LoadOptions, ResourceError, Resources, SecretLookup, SecretLookupError, Templates,
};
use tokio_util::sync::CancellationToken;

use crate::bindings::BindingHandle;
use crate::config::SidecarConfig;
use crate::configuration::ConfigurationHandle;
use crate::conversation::ConversationHandle;
use crate::invoke::HttpEndpointTarget;
use crate::lock::{KeyPrefix, LockHandle};
use crate::metadata::ComponentInfo;
use crate::publish::Broker;
use crate::state::StoreHandle;

/// The live components of one sidecar, by block and name.
pub(crate) struct Loaded {
    pub brokers: HashMap<String, Broker>,
    pub secret_stores: HashMap<String, Arc<dyn SecretStore>>,
    pub state_stores: HashMap<String, StoreHandle>,
    pub bindings: HashMap<String, BindingHandle>,
    pub locks: HashMap<String, LockHandle>,
    pub configurations: HashMap<String, ConfigurationHandle>,
    pub conversations: HashMap<String, ConversationHandle>,
    pub crypto: HashMap<String, Arc<dyn CryptoProvider>>,
    pub http_endpoints: HashMap<String, HttpEndpointTarget>,
    pub resiliency: tandem_resiliency::Resiliencies,
    pub registered: Vec<ComponentInfo>,
    /// The declarative subscriptions, compiled.
    pub subscriptions: Vec<crate::subscriptions::Subscription>,
}

/// Building blocks Dapr has and tandem does not serve yet: a component of one stops
/// the sidecar with an error that says so (as an unknown type does in daprd), or with
/// `spec.ignoreErrors` is left out with a warning.
const NOT_YET_SERVED: &[&str] = &["middleware", "nameresolution", "workflow"];

/// Loads and initialises every component this sidecar may use. Secret stores come
/// first, since the others' `secretKeyRef`s are read through them.
pub(crate) async fn load(
    config: &SidecarConfig,
    stop: &CancellationToken,
) -> Result<Loaded, ResourceError> {
    let resources = if config.resources_paths.is_empty() {
        Resources {
            components: tandem_components::embedded_defaults(&config.data_dir),
            ..Resources::default()
        }
    } else {
        tandem_spec::load(
            &config.resources_paths,
            &LoadOptions {
                app_id: config.app_id.clone(),
                namespace: config.namespace.clone(),
            },
        )?
    };
    // Compiled before any component connects: a broken routing rule stops the
    // sidecar at once.
    let subscriptions = crate::subscriptions::from_resources(&resources.subscriptions)?;
    let declared = resources.components;
    let resiliency = tandem_resiliency::Resiliencies::new(&resources.resiliencies, &config.app_id);
    let templates = Templates {
        app_id: config.app_id.clone(),
        namespace: config.namespace.clone().unwrap_or_else(|| "default".into()),
    };
    let secret_registry = secretstores::registry();
    let pubsub_registry = pubsub::registry();
    let state_registry = state::registry();
    let binding_registry = bindings::registry();
    let lock_registry = lock::registry();
    let configuration_registry = configuration::registry();
    let conversation_registry = conversation::registry();
    let crypto_registry = crypto::registry();
    let mut components = Loaded {
        brokers: HashMap::new(),
        secret_stores: HashMap::new(),
        state_stores: HashMap::new(),
        bindings: HashMap::new(),
        locks: HashMap::new(),
        configurations: HashMap::new(),
        conversations: HashMap::new(),
        crypto: HashMap::new(),
        http_endpoints: HashMap::new(),
        resiliency,
        registered: Vec::new(),
        subscriptions,
    };

    let (stores, others): (Vec<_>, Vec<_>) = declared
        .into_iter()
        .partition(|component| secret_registry.claims(&component.kind));
    for component in stores {
        let build = async {
            let metadata = component.resolve(&templates, &NoSecrets).await?;
            secret_registry.build(&metadata).await
        };
        let Some(store) = initialised(&component, build).await? else {
            continue;
        };
        components
            .secret_stores
            .insert(component.name.clone(), store);
        components.registered.push(ComponentInfo::of(&component));
    }
    let lookup = StoreLookup(&components.secret_stores);
    let mut brokers = HashMap::new();
    let mut state_stores = HashMap::new();
    let mut registered = Vec::new();
    for component in others {
        let resiliency = &components.resiliency;
        if state_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                let store = state_registry.build(&metadata).await?;
                let policy = resiliency.for_component_outbound(&component.name, &component.kind);
                StoreHandle::new(
                    store,
                    policy,
                    &metadata,
                    &config.app_id,
                    config.namespace.as_deref(),
                    stop,
                )
                .await
            };
            if let Some(handle) = initialised(&component, build).await? {
                state_stores.insert(component.name.clone(), handle);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if pubsub_registry.claims(&component.kind) {
            let build = async {
                let metadata = component
                    .resolve(&templates, &lookup)
                    .await?
                    .with_default("consumerID", config.app_id.clone());
                pubsub_registry.build(&metadata).await
            };
            if let Some(pubsub) = initialised(&component, build).await? {
                let policy = resiliency.for_component_outbound(&component.name, &component.kind);
                brokers.insert(
                    component.name.clone(),
                    Broker {
                        pubsub,
                        kind: component.kind.clone(),
                        policy: (!policy.is_none()).then_some(policy),
                    },
                );
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if binding_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                let binding = binding_registry.build(&metadata).await?;
                Ok(BindingHandle {
                    binding,
                    kind: component.kind.clone(),
                    route: metadata
                        .get("route")
                        .filter(|route| !route.is_empty())
                        .unwrap_or(&component.name)
                        .to_owned(),
                    directions: crate::bindings::directions(metadata.get("direction")),
                    outbound: resiliency.for_component_outbound(&component.name, &component.kind),
                    inbound: resiliency.for_component_inbound(&component.name, &component.kind),
                })
            };
            if let Some(handle) = initialised(&component, build).await? {
                components.bindings.insert(component.name.clone(), handle);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if lock_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                let prefix = KeyPrefix::read(&metadata)?;
                let store = lock_registry.build(&metadata).await?;
                let outbound = resiliency.for_component_outbound(&component.name, &component.kind);
                Ok(LockHandle {
                    store,
                    prefix,
                    outbound,
                })
            };
            if let Some(handle) = initialised(&component, build).await? {
                components.locks.insert(component.name.clone(), handle);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if configuration_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                Ok(ConfigurationHandle {
                    store: configuration_registry.build(&metadata).await?,
                    outbound: resiliency.for_component_outbound(&component.name, &component.kind),
                })
            };
            if let Some(store) = initialised(&component, build).await? {
                components
                    .configurations
                    .insert(component.name.clone(), store);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if conversation_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                Ok(ConversationHandle {
                    component: conversation_registry.build(&metadata).await?,
                    outbound: resiliency.for_component_outbound(&component.name, &component.kind),
                })
            };
            if let Some(handle) = initialised(&component, build).await? {
                components
                    .conversations
                    .insert(component.name.clone(), handle);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        if crypto_registry.claims(&component.kind) {
            let build = async {
                let metadata = component.resolve(&templates, &lookup).await?;
                crypto_registry.build(&metadata).await
            };
            if let Some(provider) = initialised(&component, build).await? {
                components.crypto.insert(component.name.clone(), provider);
                registered.push(ComponentInfo::of(&component));
            }
            continue;
        }
        let block = component.kind.split('.').next().unwrap_or_default();
        if NOT_YET_SERVED.contains(&block) {
            let unserved = component.error(
                Some("spec.type"),
                format!(
                    "tandem does not serve the '{block}' building block yet, so '{}' cannot \
                     be loaded; remove the component, or set `spec.ignoreErrors: true` to \
                     start without it",
                    component.kind
                ),
            );
            if !component.ignore_errors {
                return Err(unserved);
            }
            tracing::warn!("{unserved}; the component is left out (spec.ignoreErrors)");
            continue;
        }
        let unknown = component.error(
            Some("spec.type"),
            format!(
                "unknown component type '{}': tandem supports {}",
                component.kind,
                pubsub_registry
                    .kinds()
                    .chain(state_registry.kinds())
                    .chain(binding_registry.kinds())
                    .chain(lock_registry.kinds())
                    .chain(configuration_registry.kinds())
                    .chain(conversation_registry.kinds())
                    .chain(crypto_registry.kinds())
                    .chain(secret_registry.kinds())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        if !component.ignore_errors {
            return Err(unknown);
        }
        tracing::warn!("{unknown}; the component is left out (spec.ignoreErrors)");
    }
    components.brokers = brokers;
    components.state_stores = state_stores;
    for endpoint in resources.http_endpoints {
        let headers = endpoint.as_component().resolve(&templates, &lookup).await?;
        let mut resolved = http::HeaderMap::new();
        for (name, value) in headers.values() {
            let field = || {
                endpoint.as_component().error(
                    Some("spec.headers"),
                    format!("header '{name}' is not a valid HTTP header"),
                )
            };
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| field())?;
            let value = http::HeaderValue::from_str(value).map_err(|_| field())?;
            resolved.append(name, value);
        }
        components.http_endpoints.insert(
            endpoint.name.clone(),
            HttpEndpointTarget {
                base_url: endpoint.base_url.clone(),
                headers: resolved,
            },
        );
    }

    components.registered.extend(registered);
    Ok(components)
}

/// Initialises `component` with `build`, within its `spec.initTimeout` when it has one.
/// A failure stops the sidecar, unless the component has `spec.ignoreErrors`: then it
/// is logged and the component left out (`None`), as daprd does.
async fn initialised<T>(
    component: &tandem_spec::Component,
    build: impl Future<Output = Result<T, ResourceError>>,
) -> Result<Option<T>, ResourceError> {
    let built = match component.init_timeout {
        None => build.await,
        Some(limit) => tokio::time::timeout(limit, build)
            .await
            .unwrap_or_else(|_| {
                Err(component.error(
                    Some("spec.initTimeout"),
                    format!("not initialised within {limit:?}"),
                ))
            }),
    };
    match built {
        Ok(built) => {
            tracing::info!(component = %component.name, kind = %component.kind, "component loaded");
            Ok(Some(built))
        }
        Err(error) if component.ignore_errors => {
            tracing::warn!("{error}; the component is left out (spec.ignoreErrors)");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Why a `secretKeyRef` could not be read.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("a secret store's own metadata cannot come from a secret store")]
    FromSecretStore,
    #[error("no secret store is loaded")]
    NoStores,
    #[error("no secret store of that name is loaded (loaded: {0})")]
    UnknownStore(String),
    #[error(transparent)]
    Store(#[from] tandem_components::secretstores::SecretError),
    #[error("secret '{name}' has no key '{key}'")]
    NoKey { name: String, key: String },
}

/// Secret stores cannot read their own settings from another store.
struct NoSecrets;

impl SecretLookup for NoSecrets {
    async fn lookup(&self, _: &str, _: &str, _: &str) -> Result<String, SecretLookupError> {
        Err(LookupError::FromSecretStore.into())
    }
}

struct StoreLookup<'a>(&'a HashMap<String, Arc<dyn SecretStore>>);

impl SecretLookup for StoreLookup<'_> {
    async fn lookup(
        &self,
        store: &str,
        name: &str,
        key: &str,
    ) -> Result<String, SecretLookupError> {
        let Some(secrets) = self.0.get(store) else {
            let mut known: Vec<_> = self.0.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(if known.is_empty() {
                LookupError::NoStores
            } else {
                LookupError::UnknownStore(known.join(", "))
            }
            .into());
        };
        let secret = secrets
            .get(name, &HashMap::new())
            .await
            .map_err(LookupError::from)?;
        secret.get(key).cloned().ok_or_else(|| {
            LookupError::NoKey {
                name: name.to_owned(),
                key: key.to_owned(),
            }
            .into()
        })
    }
}
