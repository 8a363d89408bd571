//! The [`Runtime`]: one sidecar's building-block services, held together, and its
//! lifecycle (loaded → APIs serving → app connected → ready → stopping).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tandem_spec::ResourceError;
use tokio_util::sync::CancellationToken;

use crate::actors::{Actors, ActorsParts};
use crate::app_channel::AppChannel;
use crate::app_health::AppHealth;
use crate::bindings::Bindings;
use crate::config::SidecarConfig;
use crate::configuration::Configurations;
use crate::conversation::Conversations;
use crate::crypto::Crypto;
use crate::error::Error;
use crate::invoke::{Invoker, InvokerParts, Locate};
use crate::loader;
use crate::lock::Locks;
use crate::metadata::{ComponentInfo, MetadataSnapshot};
use crate::publish::Publisher;
use crate::secrets::Secrets;
use crate::state::StateService;
use crate::subscriptions::Subscriptions;

/// One sidecar: a service per building block, and its lifecycle. The front doors call
/// the services ([`publisher`](Self::publisher), [`state`](Self::state), ...) directly.
pub struct Runtime {
    config: SidecarConfig,
    app: Option<AppChannel>,
    /// The app's health, probed when `--enable-app-health-check` is on and the app has
    /// a port.
    app_health: Option<AppHealth>,
    publisher: Arc<Publisher>,
    subscriptions: Subscriptions,
    state: Arc<StateService>,
    invoker: Invoker,
    secrets: Secrets,
    bindings: Bindings,
    locks: Locks,
    configurations: Configurations,
    conversations: Conversations,
    crypto: Crypto,
    actors: Arc<Actors>,
    /// The loaded components, for the metadata API.
    registered: Vec<ComponentInfo>,
    /// Attributes apps set with `PUT /v1.0/metadata/{key}`.
    extended: Mutex<BTreeMap<String, String>>,
    outbound_ready: AtomicBool,
    ready: AtomicBool,
    /// Fired to stop the whole sidecar (Ctrl-C, `POST /v1.0/shutdown`, app exit).
    shutdown: CancellationToken,
}

impl Runtime {
    /// Loads the components of `config` and makes the services; the first step of the
    /// sidecar's start.
    pub async fn load(
        config: SidecarConfig,
        shutdown: CancellationToken,
        locator: Option<Arc<dyn Locate>>,
    ) -> Result<Arc<Self>, ResourceError> {
        let loaded = loader::load(&config, &shutdown).await?;
        let app = config.app_port.map(|port| {
            AppChannel::for_protocol(
                &config.app_protocol,
                &config.app_host,
                port,
                config.app_api_token.as_deref(),
                config.max_body_size,
            )
            .with_max_concurrency(config.app_max_concurrency)
        });
        let app_health = match (&app, &config.app_health) {
            (Some(_), Some(_)) => Some(AppHealth::new()),
            _ => None,
        };
        let resiliency = Arc::new(loaded.resiliency);
        let publisher = Arc::new(Publisher::new(&config.app_id, loaded.brokers));
        let outbox = crate::state::OutboxParts {
            publisher: publisher.clone(),
            app_id: config.app_id.clone(),
            namespace: config.namespace.clone(),
        };
        let state = Arc::new(StateService::new(loaded.state_stores, Some(outbox.clone())));
        tokio::spawn(crate::state::start_outbox(
            state.clone(),
            outbox,
            shutdown.child_token(),
        ));
        let subscriptions = Subscriptions::new(
            &config.app_id,
            publisher.clone(),
            resiliency.clone(),
            shutdown.clone(),
            loaded.subscriptions,
        );
        let actors = Actors::new(ActorsParts {
            app_id: config.app_id.clone(),
            namespace: config.namespace.clone(),
            store: state.actor_store(),
            resiliency: resiliency.clone(),
            peer_key: config.peer_key.clone(),
            max_body_size: config.max_body_size,
            address: config.host_address,
            shutdown: shutdown.clone(),
        });
        let invoker = Invoker::new(InvokerParts {
            app_id: config.app_id.clone(),
            namespace: config.namespace.clone(),
            app: app.clone(),
            locator,
            endpoints: loaded.http_endpoints,
            resiliency,
            state: state.clone(),
            peer_key: config.peer_key.clone(),
            max_body_size: config.max_body_size,
            app_health: app_health.as_ref().map(AppHealth::watch),
        });
        let configurations =
            Configurations::new(loaded.configurations, app.clone(), shutdown.clone());
        Ok(Arc::new(Self {
            app,
            app_health,
            publisher,
            subscriptions,
            state,
            invoker,
            secrets: Secrets::new(loaded.secret_stores, config.secret_scopes.clone()),
            bindings: Bindings::new(loaded.bindings, shutdown.clone()),
            locks: Locks::new(loaded.locks, config.app_id.clone()),
            configurations,
            conversations: Conversations::new(loaded.conversations),
            crypto: Crypto::new(loaded.crypto),
            actors,
            registered: loaded.registered,
            extended: Mutex::default(),
            outbound_ready: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            shutdown,
            config,
        }))
    }

    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    pub fn config(&self) -> &SidecarConfig {
        &self.config
    }

    /// Pub/sub: publishing.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Pub/sub: the app's subscriptions.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// State management.
    pub fn state(&self) -> &StateService {
        &self.state
    }

    /// Service invocation.
    pub fn invoker(&self) -> &Invoker {
        &self.invoker
    }

    /// Secrets.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Distributed locks.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// The conversation components.
    pub fn conversations(&self) -> &Conversations {
        &self.conversations
    }

    /// The crypto components.
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    /// Configuration stores and their subscriptions.
    pub fn configurations(&self) -> &Configurations {
        &self.configurations
    }

    /// Bindings.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// Actors.
    pub fn actors(&self) -> &Arc<Actors> {
        &self.actors
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

    /// The app's health while health checks are on: `true` while healthy. `None`
    /// without health checks (the app is taken as healthy).
    pub fn app_health(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.app_health.as_ref().map(AppHealth::watch)
    }

    /// The last start step: waits for the app's port, subscribes to what the app asks
    /// for, then reports ready. Without an app port the sidecar is ready at once.
    ///
    /// With health checks, as in `daprd`: probing starts once the port is open and the
    /// sidecar is ready at once; the subscriptions start when the app is first
    /// healthy, pause while it is unhealthy and resume when it is healthy again.
    pub async fn connect_app(self: &Arc<Self>) {
        if let Some(app) = &self.app {
            if let Some(health) = &self.app_health {
                if !self.wait_for_app(app).await {
                    return;
                }
                if !calls_into(&self.config.app_protocol) {
                    tracing::warn!(
                        "app protocol '{}': tandem probes the app's health but does not call into {} apps yet, so this app's subscriptions are not read",
                        self.config.app_protocol,
                        self.config.app_protocol
                    );
                }
                self.start_actors(app).await;
                if calls_into(&self.config.app_protocol) {
                    self.bindings.start(app).await;
                }
                self.follow_app_health(app, health.watch());
                let (prober, port) = (self.clone(), app.port());
                tokio::spawn(async move {
                    if let (Some(health), Some(settings)) =
                        (&prober.app_health, &prober.config.app_health)
                    {
                        let app_host = prober.config.app_host.clone();
                        health
                            .probe(
                                settings,
                                &prober.config.app_protocol,
                                &app_host,
                                port,
                                prober.shutdown.clone(),
                            )
                            .await;
                    }
                });
                self.ready.store(true, Ordering::Release);
                tracing::info!(app_id = %self.config.app_id, "sidecar ready");
                return;
            }
            if !calls_into(&self.config.app_protocol) {
                tracing::warn!(
                    "app protocol '{}': tandem does not call into {} apps yet, so this app's subscriptions are not read; \
                     calling the sidecar from the app works",
                    self.config.app_protocol,
                    self.config.app_protocol
                );
                self.ready.store(true, Ordering::Release);
                return;
            }
            if !self.wait_for_app(app).await {
                return;
            }
            self.start_actors(app).await;
            self.subscriptions.start(app).await;
            self.bindings.start(app).await;
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!(app_id = %self.config.app_id, "sidecar ready");
    }

    /// Hosts the actors an HTTP app declares in `GET /dapr/config`.
    async fn start_actors(&self, app: &AppChannel) {
        if app.grpc().is_none() {
            self.actors.start_http(app).await;
        }
    }

    /// Waits until the app listens on its port; `false` when the sidecar stopped first.
    async fn wait_for_app(&self, app: &AppChannel) -> bool {
        tracing::info!("waiting for the app on {}:{}", app.host(), app.port());
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                listening = app.wait_until_listening(Duration::from_secs(5)) => {
                    if listening { return true; }
                    tracing::info!("still waiting for the app on port {}", app.port());
                }
            }
        }
    }

    /// Starts the app's subscriptions whenever it becomes healthy and pauses them
    /// whenever it becomes unhealthy, until the sidecar stops.
    fn follow_app_health(
        self: &Arc<Self>,
        app: &AppChannel,
        mut health: tokio::sync::watch::Receiver<bool>,
    ) {
        let (runtime, app) = (self.clone(), app.clone());
        tokio::spawn(async move {
            let delivers = calls_into(&runtime.config.app_protocol);
            let mut first = true;
            loop {
                tokio::select! {
                    _ = runtime.shutdown.cancelled() => return,
                    changed = health.wait_for(|healthy| *healthy) => if changed.is_err() { return },
                }
                // Healthy again after a failure: the app may have restarted, with its
                // actors gone from its memory: it registers them again.
                if !std::mem::take(&mut first) {
                    runtime.start_actors(&app).await;
                }
                if delivers {
                    runtime.subscriptions.resume(&app).await;
                }
                tokio::select! {
                    _ = runtime.shutdown.cancelled() => return,
                    changed = health.wait_for(|healthy| !*healthy) => if changed.is_err() { return },
                }
                runtime.subscriptions.pause().await;
            }
        });
    }

    /// Waits for the deliveries in flight to finish after the shutdown token fired.
    pub async fn drain(&self) {
        self.subscriptions.drain().await;
        self.bindings.drain().await;
        self.actors.stop().await;
    }

    /// `GET /v1.0/metadata`.
    pub async fn metadata(&self) -> MetadataSnapshot {
        let mut components = self.registered.clone();
        for info in &mut components {
            if let Some((capabilities, cache)) = self.state.describe(&info.name).await {
                info.capabilities = capabilities;
                info.cache = cache;
            }
        }
        MetadataSnapshot {
            app_id: self.config.app_id.clone(),
            runtime_version: concat!("tandem-", env!("CARGO_PKG_VERSION")).to_owned(),
            components,
            subscriptions: self.subscriptions.list(),
            http_endpoints: self.invoker.endpoint_names(),
            extended: self.extended.lock().clone(),
            app_port: self.config.app_port,
            app_protocol: self.config.app_protocol.clone(),
            app_host: self.config.app_host.clone(),
            app_max_concurrency: self.config.app_max_concurrency,
            app_health: self.config.app_health.clone(),
            actors: self.actors.info(),
        }
    }

    /// `PUT /v1.0/metadata/{key}`: a custom attribute shown under `extended`.
    pub fn set_metadata(&self, key: &str, value: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::Malformed("the metadata key is empty".into()));
        }
        self.extended
            .lock()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

/// Whether tandem calls into apps of `protocol` (`--app-protocol`).
fn calls_into(protocol: &str) -> bool {
    matches!(protocol, "http" | "h2c" | "https" | "grpc" | "grpcs")
}
