//! The [`Runtime`]: one sidecar's components, app channel and lifecycle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_components::pubsub::{PubSub, Subscribe};
use tandem_components::secretstores::SecretStore;
use tandem_spec::ResourceError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app_channel::AppChannel;
use crate::components::{self, Components};
use crate::config::SidecarConfig;
use crate::deliver;
use crate::error::Error;
use crate::invoke::{Peers, ResponseCaches, SharedLocator};
use crate::metadata::{MetadataSnapshot, SubscriptionInfo};

/// One sidecar's building blocks.
pub struct Runtime {
    config: SidecarConfig,
    components: Components,
    app: Option<AppChannel>,
    /// Finds other apps' sidecars; `None` where invocation is not set up.
    locator: Option<SharedLocator>,
    peers: Peers,
    /// The first levels of cached calls, per target.
    response_caches: ResponseCaches,
    subscriptions: Mutex<Vec<SubscriptionInfo>>,
    deliveries: Mutex<Vec<JoinHandle<()>>>,
    extended: Mutex<BTreeMap<String, String>>,
    outbound_ready: AtomicBool,
    ready: AtomicBool,
    /// Fired to stop the whole sidecar (Ctrl-C, `POST /v1.0/shutdown`, app exit).
    shutdown: CancellationToken,
}

impl Runtime {
    /// Loads the components of `config`; the first step of the sidecar's start.
    pub async fn load(
        config: SidecarConfig,
        shutdown: CancellationToken,
        locator: Option<SharedLocator>,
    ) -> Result<Arc<Self>, ResourceError> {
        let components = components::load(&config, &shutdown).await?;

        let app = config
            .app_port
            .map(|port| AppChannel::new(&config.app_host, port, config.app_api_token.as_deref()));
        Ok(Arc::new(Self {
            config,
            components,
            app,
            locator,
            peers: Peers::new(),
            response_caches: ResponseCaches::default(),
            subscriptions: Mutex::default(),
            deliveries: Mutex::default(),
            extended: Mutex::default(),
            outbound_ready: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            shutdown,
        }))
    }

    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    pub fn config(&self) -> &SidecarConfig {
        &self.config
    }

    /// The token fired when the sidecar stops.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Asks the sidecar to stop gracefully (`POST /v1.0/shutdown`, gRPC `Shutdown`).
    pub fn shutdown(&self) {
        tracing::info!("shutdown requested through the API");
        self.shutdown.cancel();
    }

    pub(crate) fn app_channel(&self) -> Option<&AppChannel> {
        self.app.as_ref()
    }

    pub(crate) fn locator(&self) -> Option<&SharedLocator> {
        self.locator.as_ref()
    }

    /// The Resiliency resources' policies (and their circuit breakers' state).
    pub(crate) fn resiliency(&self) -> &tandem_resiliency::Resiliencies {
        &self.components.resiliency
    }

    /// The `spec.type` of component `name` (it picks Dapr's default policies).
    pub(crate) fn component_kind(&self, name: &str) -> &str {
        self.components
            .registered
            .iter()
            .find(|component| component.name == name)
            .map(|component| component.kind.as_str())
            .unwrap_or_default()
    }

    pub(crate) fn response_caches(&self) -> &ResponseCaches {
        &self.response_caches
    }

    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    pub(crate) fn components(&self) -> &Components {
        &self.components
    }

    /// The outbound resiliency policy of pub/sub `name`.
    pub(crate) fn publish_policy(&self, name: &str) -> Option<&tandem_resiliency::Policy> {
        self.components
            .publish_policies
            .get(name)
            .filter(|policy| !policy.is_none())
    }

    pub(crate) fn pubsub(&self, name: &str) -> Option<&Arc<dyn PubSub>> {
        self.components.pubsubs.get(name)
    }

    pub(crate) fn secret_store(&self, name: &str) -> Result<&Arc<dyn SecretStore>, Error> {
        if self.components.secret_stores.is_empty() {
            return Err(Error::SecretStoresNotConfigured);
        }
        self.components
            .secret_stores
            .get(name)
            .ok_or_else(|| Error::SecretStoreNotFound(name.to_owned()))
    }

    /// `GET /v1.0/healthz/outbound`: the APIs are up and components loaded.
    pub fn is_outbound_ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire)
    }

    /// `GET /v1.0/healthz`: fully started, subscriptions included.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the APIs as serving: apps may call out from now on.
    pub fn mark_outbound_ready(&self) {
        self.outbound_ready.store(true, Ordering::Release);
    }

    /// The last start step: waits for the app's port, subscribes to what the app asks
    /// for, then reports ready. Without an app port the sidecar is ready at once.
    pub async fn connect_app(self: &Arc<Self>) {
        if let Some(app) = &self.app {
            if !matches!(self.config.app_protocol.as_str(), "http" | "h2c") {
                tracing::warn!(
                    "app protocol '{}': tandem does not call into {} apps yet, so this app's subscriptions are not read; \
                     calling the sidecar from the app works",
                    self.config.app_protocol,
                    self.config.app_protocol
                );
                self.ready.store(true, Ordering::Release);
                return;
            }
            tracing::info!("waiting for the app on {}:{}", app.host(), app.port());
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    listening = app.wait_until_listening(Duration::from_secs(5)) => {
                        if listening { break; }
                        tracing::info!("still waiting for the app on port {}", app.port());
                    }
                }
            }
            let subscriptions = deliver::discover(app).await.unwrap_or_else(|error| {
                tracing::warn!("could not read the app's subscriptions: {error}");
                Vec::new()
            });
            for subscription in subscriptions {
                self.subscribe(app, subscription).await;
            }
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(app_id = %self.config.app_id, "sidecar ready");
    }

    async fn subscribe(&self, app: &AppChannel, subscription: SubscriptionInfo) {
        let Some(broker) = self.pubsub(&subscription.pubsub) else {
            tracing::warn!(
                "the app subscribes to topic '{}' of pubsub '{}', which is not loaded; loaded: {}",
                subscription.topic,
                subscription.pubsub,
                self.components
                    .pubsubs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return;
        };
        let request = Subscribe {
            topic: subscription.topic.clone(),
            metadata: subscription.metadata.clone().into_iter().collect(),
        };
        let policy = self.resiliency().for_component_inbound(
            &subscription.pubsub,
            self.component_kind(&subscription.pubsub),
        );
        let delivery = deliver::delivery(app, &self.config.app_id, &subscription, policy);
        match broker
            .subscribe(request, delivery, self.shutdown.child_token())
            .await
        {
            Ok(task) => {
                tracing::info!(pubsub = %subscription.pubsub, topic = %subscription.topic, route = %subscription.route, "subscribed");
                self.deliveries.lock().expect("deliveries lock").push(task);
                self.subscriptions
                    .lock()
                    .expect("subscriptions lock")
                    .push(subscription);
            }
            Err(error) => tracing::error!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "subscribing failed: {error}"
            ),
        }
    }

    /// Waits for the deliveries in flight to finish after the shutdown token fired.
    pub async fn drain(&self) {
        let tasks: Vec<_> = self
            .deliveries
            .lock()
            .expect("deliveries lock")
            .drain(..)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// `GET /v1.0/metadata`.
    pub async fn metadata(&self) -> MetadataSnapshot {
        let mut components = self.components.registered.clone();
        for info in &mut components {
            if let Some(store) = self.components.state_stores.get(&info.name) {
                info.capabilities = store.capabilities();
                info.cache = store.cache_stats().await;
            }
        }
        MetadataSnapshot {
            app_id: self.config.app_id.clone(),
            runtime_version: concat!("tandem-", env!("CARGO_PKG_VERSION")).to_owned(),
            components,
            subscriptions: self
                .subscriptions
                .lock()
                .expect("subscriptions lock")
                .clone(),
            extended: self.extended.lock().expect("extended lock").clone(),
            app_port: self.config.app_port,
            app_protocol: self.config.app_protocol.clone(),
            app_host: self.config.app_host.clone(),
        }
    }

    /// `PUT /v1.0/metadata/{key}`: a custom attribute shown under `extended`.
    pub fn set_metadata(&self, key: &str, value: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::Malformed("the metadata key is empty".into()));
        }
        self.extended
            .lock()
            .expect("extended lock")
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}
