//! Virtual actors: `/v1.0/actors/...` and gRPC `InvokeActor`, actor state, timers and
//! reminders — with placement kept in the actor state store itself, so nothing runs
//! besides the sidecars.
//!
//! [`Actors`] routes every call to the one host where the actor is active
//! ([`placement`]: leases, owner records, rendezvous hashing), runs one turn at a time
//! per actor there ([`activation`]), keeps actor state under Dapr's key layout
//! (`{appId}||{type}||{id}||{key}`), fires timers per activation and reminders from
//! the store ([`reminders`]), and calls the app the way daprd does ([`app`]).

mod activation;
pub(crate) mod app;
mod host_config;
mod placement;
mod reminders;
pub(crate) mod schedule;
mod stream_host;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use parking_lot::{Mutex, RwLock};
use tandem_components::state::{Concurrency, Operation, SetRequest, StateError, StateStore};
use tandem_resiliency::{Resiliencies, Verdict};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app_channel::AppChannel;
use crate::error::{Error, Reason};
use crate::invoke::forwardable;
use crate::invoke::peer_auth::PeerKey;
use crate::invoke::peers::{PeerError, Peers};

use activation::{Activation, ActorKey, Entered};
pub(crate) use app::segment;
pub use app::{ActorAnswer, REENTRANCY_HEADER, Turn, TurnKind};
use app::{ActorApp, HttpActorApp};
pub(crate) use host_config::HostConfig;
use placement::{BEAT_INTERVAL, BeatOutcome, DEAD_AFTER, HostEntry, Placement};
pub use reminders::{ReminderInfo, ReminderRequest, TimerRequest};
pub use stream_host::ActorEvents;

/// Calls between sidecars for actors go to this path prefix on the internal port.
pub const FORWARD_PREFIX: &str = "__tandem/actors/";
/// Set on a forwarded call's answer when the receiving host does not hold the actor
/// (any more): the calling host routes the call again.
pub const RETRY_HEADER: &str = "tandem-actor-retry";
/// Names the kind of a forwarded turn (`method`, `reminder`, `timer`).
const TURN_HEADER: &str = "tandem-actor-turn";
/// The callee named in the signature of a forwarded actor call.
const ACTORS_CALLEE: &str = "tandem-actors";
/// How many remote actors' hosts a sidecar remembers (see `Actors::owners`).
const OWNERS_REMEMBERED: usize = 65_536;

/// One actor state operation of a transaction.
#[derive(Debug, Clone)]
pub enum ActorStateOperation {
    Upsert {
        key: String,
        value: Bytes,
        /// `metadata.ttlInSeconds`.
        ttl: Option<Duration>,
    },
    Delete {
        key: String,
    },
}

impl ActorStateOperation {
    /// An upsert's `metadata.ttlInSeconds`, as both doors receive it: a whole number of
    /// seconds up to [`MAX_TTL_SECONDS`](crate::MAX_TTL_SECONDS); zero or less keeps the
    /// value for ever, as in daprd.
    pub fn ttl_in_seconds(text: &str) -> Result<Option<Duration>, Error> {
        let seconds: i64 = text.trim().parse().map_err(|_| {
            Error::Malformed(format!(
                "incorrect value for metadata.ttlInSeconds: '{text}' is not a whole number of seconds"
            ))
        })?;
        if seconds > crate::MAX_TTL_SECONDS {
            return Err(Error::Malformed(format!(
                "incorrect value for metadata.ttlInSeconds: {seconds} is out of range"
            )));
        }
        Ok(u64::try_from(seconds)
            .ok()
            .filter(|seconds| *seconds > 0)
            .map(Duration::from_secs))
    }
}

/// The actors of one type active on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveActors {
    pub actor_type: String,
    pub count: usize,
}

/// The metadata API's view of the actor runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorsInfo {
    /// `INITIALIZING`, `DISABLED` or `RUNNING`.
    pub runtime_status: &'static str,
    pub active: Vec<ActiveActors>,
    pub host_ready: bool,
    /// How placement is done, in words.
    pub placement: String,
}

/// Why one routing attempt did not end the call.
enum Attempt {
    /// Try routing again shortly: the actor is moving, its host is starting or gone.
    Again(String),
    Failed(Error),
}

/// Where an actor's turn runs.
enum Route {
    Here,
    There { host: String, address: SocketAddr },
}

/// The actor state store, as the actor runtime uses it.
struct ActorStore {
    name: String,
    store: Arc<dyn StateStore>,
}

/// What the actor service needs to be made.
pub(crate) struct ActorsParts {
    pub app_id: String,
    pub namespace: Option<String>,
    /// The actor state store (`actorStateStore: "true"`) by name.
    pub store: Option<(String, Arc<dyn StateStore>)>,
    pub resiliency: Arc<Resiliencies>,
    pub peer_key: Arc<PeerKey>,
    pub max_body_size: usize,
    /// Where other sidecars reach this one's internal port.
    pub address: Option<SocketAddr>,
    pub shutdown: CancellationToken,
}

/// The actor runtime of one sidecar.
pub struct Actors {
    app_id: String,
    store: Option<ActorStore>,
    placement: Option<Placement>,
    app: RwLock<Option<Arc<dyn ActorApp>>>,
    config: RwLock<Arc<HostConfig>>,
    active: Mutex<HashMap<ActorKey, Arc<Activation>>>,
    /// Hosts of remote actors seen recently, so warm calls skip the store; at most
    /// [`OWNERS_REMEMBERED`] of them.
    owners: Mutex<HashMap<ActorKey, String>>,
    peers: Peers,
    peer_key: Arc<PeerKey>,
    resiliency: Arc<Resiliencies>,
    address: Option<SocketAddr>,
    observing: AtomicBool,
    /// Set while this host is a member of the placement table.
    hosting: AtomicBool,
    /// Set once the idle scan and reminder loops run.
    hosting_loops: AtomicBool,
    reminders: reminders::Reminders,
    shutdown: CancellationToken,
}

impl Actors {
    pub(crate) fn new(parts: ActorsParts) -> Arc<Self> {
        let placement = parts
            .store
            .as_ref()
            .map(|(_, store)| Placement::new(store.clone(), parts.namespace.as_deref()));
        Arc::new(Self {
            app_id: parts.app_id,
            store: parts.store.map(|(name, store)| ActorStore { name, store }),
            placement,
            app: RwLock::new(None),
            config: RwLock::new(Arc::new(HostConfig::none())),
            active: Mutex::default(),
            owners: Mutex::default(),
            peers: Peers::new(parts.max_body_size),
            peer_key: parts.peer_key,
            resiliency: parts.resiliency,
            address: parts.address,
            observing: AtomicBool::new(false),
            hosting: AtomicBool::new(false),
            hosting_loops: AtomicBool::new(false),
            reminders: reminders::Reminders::default(),
            shutdown: parts.shutdown,
        })
    }

    fn placement(&self) -> Result<&Placement, Error> {
        self.placement.as_ref().ok_or(Error::ActorRuntimeNotFound)
    }

    fn store(&self) -> Result<&ActorStore, Error> {
        self.store.as_ref().ok_or(Error::ActorRuntimeNotFound)
    }

    fn config(&self) -> Arc<HostConfig> {
        self.config.read().clone()
    }

    /// Asks an HTTP app which actors it hosts (`GET /dapr/config`) and, if any, joins
    /// the placement table and starts the lease, reminders and idle scans.
    pub(crate) async fn start_http(self: &Arc<Self>, channel: &AppChannel) {
        let answer = channel
            .call(Method::GET, "/dapr/config", HeaderMap::new(), Bytes::new())
            .await;
        let config = match answer {
            Ok(answer) if answer.status.is_success() => match HostConfig::parse(&answer.body) {
                Ok(config) => config,
                Err(error) => {
                    tracing::error!("actors not hosted: {error}");
                    return;
                }
            },
            // An app without actors answers 404 (or nothing at all).
            Ok(_) | Err(_) => return,
        };
        let app = Arc::new(HttpActorApp {
            channel: channel.clone(),
        });
        self.host(config, app).await;
    }

    /// Hosts the actor types of `config` in `app` (from `/dapr/config`, or from the app's
    /// gRPC actor stream). Calling it again (the app reconnected) replaces both.
    pub(crate) async fn host(self: &Arc<Self>, config: HostConfig, app: Arc<dyn ActorApp>) {
        if config.types.is_empty() {
            return;
        }
        let Some(placement) = &self.placement else {
            tracing::error!(
                "the app hosts actors ({}), but no state store is the actor state store: set `actorStateStore: \"true\"` in one state store's metadata",
                config.types.join(", ")
            );
            return;
        };
        let Some(address) = self.address else {
            tracing::error!("actors not hosted: this sidecar has no internal address");
            return;
        };
        if self.hosting.swap(true, Ordering::AcqRel) {
            // Already a member (the app registered again): its actors go, and the host
            // joins again, as its types may have changed.
            self.deactivate_all_and_warn(true).await;
            placement.leave().await;
        }
        *self.app.write() = Some(app);
        *self.config.write() = Arc::new(config.clone());
        let entry = HostEntry {
            address: address.to_string(),
            app_id: self.app_id.clone(),
            types: config.types.clone(),
        };
        loop {
            match placement.join(entry.clone()).await {
                Ok(id) => {
                    tracing::info!(
                        host = %id,
                        "hosting actor types {} (placement in state store '{}')",
                        config.types.join(", "),
                        self.store.as_ref().map(|store| store.name.as_str()).unwrap_or_default()
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!("joining the actor placement table failed: {error}; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(BEAT_INTERVAL) => {}
                    }
                }
            }
        }
        if let Err(error) = placement.refresh().await {
            tracing::warn!("reading the actor placement table failed: {error}");
        }
        self.spawn_loops();
    }

    /// Starts the lease loop (once per sidecar: two would race each other's beats) and
    /// the idle scan and reminder loops (once: an app that registers again reuses them).
    fn spawn_loops(self: &Arc<Self>) {
        if !self.observing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move { this.lease_loop().await });
        }
        if !self.hosting_loops.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move { this.scan_loop().await });
            let this = self.clone();
            tokio::spawn(async move { reminders::run(this).await });
        }
    }

    /// Renews the lease every beat; on eviction or an expired lease, every local
    /// activation goes and the host joins again.
    async fn lease_loop(self: Arc<Self>) {
        let Some(placement) = &self.placement else {
            return;
        };
        let mut ticks = tokio::time::interval(BEAT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !self.hosting.load(Ordering::Acquire) {
                // Only watching: keep the view fresh.
                if let Err(error) = placement.refresh().await {
                    tracing::debug!("reading the actor placement table failed: {error}");
                }
                continue;
            }
            match placement.beat().await {
                BeatOutcome::Renewed => {}
                BeatOutcome::Failed => {
                    if placement.lease_expired() {
                        tracing::warn!(
                            "this host's actor lease ran out (the actor state store is unreachable): its actors are deactivated"
                        );
                        self.deactivate_all_and_warn(false).await;
                    }
                }
                BeatOutcome::Evicted => {
                    tracing::warn!(
                        "another host evicted this one from actor placement (its lease ran out): deactivating its actors and joining again"
                    );
                    self.deactivate_all_and_warn(false).await;
                    placement.forget_me();
                    let entry = HostEntry {
                        address: self.address.map(|a| a.to_string()).unwrap_or_default(),
                        app_id: self.app_id.clone(),
                        types: self.config().types.clone(),
                    };
                    if let Err(error) = placement.join(entry).await {
                        tracing::warn!("joining the actor placement table again failed: {error}");
                    }
                }
            }
        }
    }

    /// Deactivates actors idle longer than their type's idle timeout, and actors whose
    /// preferred host is now another live host (a host joined: it takes its share).
    async fn scan_loop(self: Arc<Self>) {
        loop {
            // At least every second, as daprd (which ignores `actorScanInterval` now)
            // deactivates close to the idle deadline; more often if the app asks.
            let interval = self
                .config()
                .scan_interval
                .clamp(Duration::from_millis(100), Duration::from_secs(1));
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let config = self.config();
            let me = self.placement.as_ref().and_then(Placement::host_id);
            let now = Instant::now();
            let candidates: Vec<Arc<Activation>> = self.active.lock().values().cloned().collect();
            for activation in candidates {
                let key = activation.key();
                let idle = now.saturating_duration_since(activation.last_used())
                    >= config.settings(&key.actor_type).idle_timeout;
                let moved = config.drain_rebalanced
                    && me.is_some()
                    && self
                        .placement
                        .as_ref()
                        .and_then(|placement| placement.preferred(&key.actor_type, &key.actor_id))
                        .is_some_and(|preferred| Some(&preferred) != me.as_ref());
                if idle || moved {
                    let this = self.clone();
                    let drain = config.drain_timeout;
                    tokio::spawn(async move {
                        if let Some((key, error)) = this.deactivate(&activation, true, drain).await
                        {
                            tracing::warn!(
                                "deactivating idle actor {}/{} in the app: {error}",
                                key.actor_type,
                                key.actor_id
                            );
                        }
                    });
                }
            }
        }
    }

    /// Deactivates one activation once its turn (if any) is done: tells the app, stops
    /// its timers, and (when `release`) frees its owner record. Returns the actor and
    /// why when the app could not be told; the caller says so in the log.
    async fn deactivate(
        &self,
        activation: &Arc<Activation>,
        release: bool,
        wait: Duration,
    ) -> Option<(ActorKey, String)> {
        let key = activation.key().clone();
        let turn = activation.close(wait).await?;
        // The app and the owner record first, the map last: until the activation
        // leaves the map, new calls for it wait and route again, so a new activation
        // here can never adopt a record that is about to be released.
        let app = self.app.read().clone();
        let mut failed = None;
        if let Some(app) = app
            && let Err(error) = app.deactivate(&key.actor_type, &key.actor_id).await
        {
            failed = Some((key.clone(), error));
        }
        if release && let (Some(placement), Some(etag)) = (&self.placement, turn.etag()) {
            placement
                .release(&key.actor_type, &key.actor_id, &etag)
                .await;
        }
        self.remove(activation);
        drop(turn);
        failed
    }

    /// Takes `activation` out of the map, if it is still the one there.
    fn remove(&self, activation: &Arc<Activation>) {
        let mut active = self.active.lock();
        if active
            .get(activation.key())
            .is_some_and(|current| Arc::ptr_eq(current, activation))
        {
            active.remove(activation.key());
        }
    }

    /// An activation another host superseded: gone from here, and from the app.
    fn drop_superseded(self: &Arc<Self>, activation: &Arc<Activation>) {
        activation.supersede();
        self.remove(activation);
        let (this, key) = (self.clone(), activation.key().clone());
        tokio::spawn(async move {
            let app = this.app.read().clone();
            if let Some(app) = app {
                let _ = app.deactivate(&key.actor_type, &key.actor_id).await;
            }
        });
    }

    /// Deactivates every local actor (the lease is gone, or the sidecar stops).
    /// Deactivates every actor here; of those the app could not be told about, returns
    /// how many and the first, for one line in the log rather than one per actor.
    async fn deactivate_all(&self, release: bool) -> Option<(usize, ActorKey, String)> {
        let all: Vec<Arc<Activation>> = self.active.lock().values().cloned().collect();
        let wait = self.config().drain_timeout;
        let closing = all
            .iter()
            .map(|activation| self.deactivate(activation, release, wait));
        let failed: Vec<_> = futures_util::future::join_all(closing)
            .await
            .into_iter()
            .flatten()
            .collect();
        let count = failed.len();
        let (key, error) = failed.into_iter().next()?;
        Some((count, key, error))
    }

    /// Deactivates every actor here, with one warning for those the app did not hear of.
    async fn deactivate_all_and_warn(&self, release: bool) {
        if let Some((count, key, error)) = self.deactivate_all(release).await {
            tracing::warn!(
                "{count} actor(s) deactivated without the app hearing of it (e.g. {}/{}: {error})",
                key.actor_type,
                key.actor_id
            );
        }
    }

    /// The app that hosted actors over `app` is gone (its actor stream ended): its
    /// actors are dropped without calling it, their records freed, and this host
    /// leaves the table until the app registers again.
    pub(crate) async fn unhost(&self, app: &Arc<dyn ActorApp>) {
        let current = self.app.read().clone();
        if !current.is_some_and(|current| Arc::ptr_eq(&current, app)) {
            return;
        }
        *self.app.write() = None;
        self.stop().await;
        *self.config.write() = Arc::new(HostConfig::none());
    }

    /// Stops hosting: deactivates every actor, frees their records, leaves the table.
    pub(crate) async fn stop(&self) {
        if !self.hosting.swap(false, Ordering::AcqRel) {
            return;
        }
        // When the sidecar stops, `tandem run` has usually stopped the app already, so
        // an app that cannot be told is expected: one line, not a warning per actor.
        if let Some((count, key, error)) = self.deactivate_all(true).await {
            tracing::info!(
                "stopped hosting actors: the app did not hear of {count} deactivation(s), as it had most likely stopped first (e.g. {}/{}: {error})",
                key.actor_type,
                key.actor_id
            );
        }
        if let Some(placement) = &self.placement {
            placement.leave().await;
        }
    }

    /// Keeps a view of the placement table for a sidecar that only calls actors.
    async fn observe(self: &Arc<Self>) -> Result<(), Error> {
        let placement = self.placement()?;
        if placement.refreshed().is_none() {
            placement
                .refresh()
                .await
                .map_err(|error| Error::ActorInvoke {
                    reason: format!("reading the actor placement table: {error}"),
                })?;
        }
        if !self.observing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move { this.lease_loop().await });
        }
        Ok(())
    }

    /// Invokes an actor method (or runs a reminder or timer turn) wherever the actor
    /// is, under the resiliency policy for the actor.
    pub async fn invoke(self: &Arc<Self>, turn: Turn) -> Result<ActorAnswer, Error> {
        if turn.actor_type.is_empty() || turn.actor_id.is_empty() {
            return Err(Error::Malformed(
                "the actor type and id must not be empty".into(),
            ));
        }
        self.observe().await?;
        let policy = self.resiliency.for_actor(&turn.actor_type, &turn.actor_id);
        let attempt = || async {
            self.deliver(&turn)
                .await
                .and_then(|answer| judged(&turn, answer))
        };
        if policy.is_none() {
            return attempt().await;
        }
        policy
            .run(attempt, |error| {
                // A method the app does not have will not appear on a retry.
                Verdict::retry_if(!matches!(error, Error::ActorMethodNotFound { .. }))
            })
            .await
            .map_err(|failure| {
                let reason = failure.to_string();
                failure
                    .into_error()
                    .unwrap_or(Error::ActorInvoke { reason })
            })
    }

    /// Routes one call until it runs: here, or on the host that holds the actor.
    async fn deliver(self: &Arc<Self>, turn: &Turn) -> Result<ActorAnswer, Error> {
        let key = ActorKey::new(&turn.actor_type, &turn.actor_id);
        // Long enough for a dead host to be seen dead and its actors taken over.
        let deadline = Instant::now() + DEAD_AFTER + Duration::from_secs(5);
        let mut pause = Duration::from_millis(20);
        loop {
            let attempt = match self.route(&key).await {
                Ok(Some(Route::Here)) => self.run_here(&key, turn, false).await,
                Ok(Some(Route::There { host, address })) => {
                    let forwarded = self.forward(address, turn).await;
                    let mut owners = self.owners.lock();
                    if forwarded.is_err() {
                        owners.remove(&key);
                    } else {
                        // Only a shortcut (a miss reads the owner record): when it is full,
                        // starting afresh keeps it bounded however many ids are called.
                        if owners.len() >= OWNERS_REMEMBERED && !owners.contains_key(&key) {
                            owners.clear();
                        }
                        owners.insert(key.clone(), host);
                    }
                    drop(owners);
                    forwarded
                }
                Ok(None) => Err(Attempt::Failed(Error::ActorNoHost {
                    actor_type: turn.actor_type.clone(),
                })),
                Err(error) => Err(Attempt::Again(error.to_string())),
            };
            match attempt {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Failed(error)) => return Err(error),
                Err(Attempt::Again(reason)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::ActorInvoke { reason });
                    }
                    tracing::debug!(
                        "actor {}/{}: {reason}; routing again",
                        turn.actor_type,
                        turn.actor_id
                    );
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    return Err(Error::ActorInvoke { reason: "the sidecar is stopping".into() });
                }
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Where `key`'s turn runs now; `None` when no host serves its type.
    async fn route(&self, key: &ActorKey) -> Result<Option<Route>, Error> {
        let placement = self.placement()?;
        if self.active.lock().contains_key(key) {
            return Ok(Some(Route::Here));
        }
        let me = placement.host_id();
        let there = |host: String| -> Option<Route> {
            let address = placement.address_of(&host)?.parse().ok()?;
            Some(Route::There { host, address })
        };
        let cached = self.owners.lock().get(key).cloned();
        if let Some(host) = cached
            && placement.is_live(&host)
            && let Some(route) = there(host)
        {
            return Ok(Some(route));
        }
        let owner = placement
            .owner(&key.actor_type, &key.actor_id)
            .await
            .map_err(|error| Error::ActorInvoke {
                reason: error.to_string(),
            })?;
        if let Some(owner) = owner {
            if Some(&owner.host) == me.as_ref() {
                return Ok(Some(Route::Here));
            }
            if placement.is_live(&owner.host)
                && let Some(route) = there(owner.host)
            {
                return Ok(Some(route));
            }
        }
        match placement.preferred(&key.actor_type, &key.actor_id) {
            Some(host) if Some(&host) == me.as_ref() => Ok(Some(Route::Here)),
            Some(host) => Ok(there(host)),
            None => {
                if placement.is_hosted(&key.actor_type) {
                    // Hosts exist but none is live: wait for them.
                    return Err(Error::ActorInvoke {
                        reason: format!("no live host of actor type '{}'", key.actor_type),
                    });
                }
                Ok(None)
            }
        }
    }

    /// Runs a turn on this host: activates the actor if needed (claiming its owner
    /// record), then waits for its turn. A `forwarded` turn the app could not be reached
    /// for is handed back to be routed again: the app is going away (killed before its
    /// sidecar), and the caller's sidecar re-routes once this host is seen gone.
    async fn run_here(
        self: &Arc<Self>,
        key: &ActorKey,
        turn: &Turn,
        forwarded: bool,
    ) -> Result<ActorAnswer, Attempt> {
        let config = self.config();
        if !config.hosts(&key.actor_type) {
            return Err(Attempt::Again(format!(
                "this host does not serve actor type '{}'",
                key.actor_type
            )));
        }
        let app = self
            .app
            .read()
            .clone()
            .ok_or_else(|| Attempt::Again("the app's actors are not registered yet".into()))?;
        let placement = self.placement().map_err(Attempt::Failed)?;
        let activation = {
            let mut active = self.active.lock();
            active
                .entry(key.clone())
                .or_insert_with(|| Activation::new(key.clone()))
                .clone()
        };
        let reentrancy = config.settings(&key.actor_type).reentrancy;
        let chain = turn
            .headers
            .get(REENTRANCY_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let entered = activation
            .enter(reentrancy, chain)
            .await
            .map_err(|error| match error {
                activation::EnterError::Closed => {
                    Attempt::Again("the actor was deactivated".into())
                }
                activation::EnterError::TooDeep => Attempt::Failed(Error::ActorMaxStackDepth),
            })?;
        if !placement.may_run_turns() {
            return Err(Attempt::Again(
                "this host's actor lease is not current".into(),
            ));
        }
        if let Entered::Turn(guard) = &entered
            && guard.etag().is_none()
        {
            match self.claim(key).await {
                Ok(Some(etag)) => guard.set_etag(etag),
                Ok(None) => {
                    drop(entered);
                    self.forget(&activation).await;
                    return Err(Attempt::Again("the actor is active on another host".into()));
                }
                Err(error) => {
                    drop(entered);
                    self.forget(&activation).await;
                    return Err(Attempt::Again(error.to_string()));
                }
            }
        }
        let mut headers = turn.headers.clone();
        if let Some(chain) = entered.chain()
            && let Ok(value) = HeaderValue::from_str(chain)
        {
            headers.insert(REENTRANCY_HEADER, value);
        }
        let call = Turn {
            headers,
            ..turn.clone()
        };
        // The turn runs in a task of its own, holding the turn until the app answers: if
        // the caller goes away mid-turn (a forwarding sidecar killed, a client that hangs
        // up), dropping this future must not end the turn while the app still runs it,
        // or the next call would enter the actor beside it.
        let turn_task = tokio::spawn(async move {
            let answer = app.turn(&call).await;
            activation.touch();
            drop(entered);
            answer
        });
        match turn_task.await {
            Ok(Err(error)) if forwarded && error.undelivered => Err(Attempt::Again(error.reason)),
            Ok(answer) => answer.map_err(|error| {
                Attempt::Failed(Error::ActorInvoke {
                    reason: error.reason,
                })
            }),
            Err(error) => Err(Attempt::Failed(Error::ActorInvoke {
                reason: format!("the turn's task failed: {error}"),
            })),
        }
    }

    /// Drops an activation that never ran (its claim failed).
    async fn forget(&self, activation: &Arc<Activation>) {
        if activation.close(Duration::ZERO).await.is_some() {
            self.remove(activation);
        }
    }

    /// Takes an actor's owner record for this host: a new record, one of its own, or
    /// the record of a host that is gone. `None`: another live host holds it.
    async fn claim(&self, key: &ActorKey) -> Result<Option<String>, Error> {
        let placement = self.placement()?;
        let failed = |error: placement::PlacementError| Error::ActorInvoke {
            reason: error.to_string(),
        };
        let me = placement.host_id();
        // Most activations are of actors no host holds: try the first-write claim before
        // reading the record, one store round trip instead of two. It fails harmlessly
        // when a record exists, and then the record decides.
        if let Some(etag) = placement
            .claim(&key.actor_type, &key.actor_id, None)
            .await
            .map_err(failed)?
        {
            return Ok(Some(etag));
        }
        let owner = placement
            .owner(&key.actor_type, &key.actor_id)
            .await
            .map_err(failed)?;
        match owner {
            // Released between the failed claim and the read.
            None => placement
                .claim(&key.actor_type, &key.actor_id, None)
                .await
                .map_err(failed),
            Some(owner) if Some(&owner.host) == me.as_ref() => Ok(Some(owner.etag)),
            Some(owner) => {
                if placement.is_gone(&owner.host).await.map_err(failed)? {
                    placement
                        .claim(&key.actor_type, &key.actor_id, Some(&owner))
                        .await
                        .map_err(failed)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Sends a turn to the host that holds the actor.
    async fn forward(&self, address: SocketAddr, turn: &Turn) -> Result<ActorAnswer, Attempt> {
        let path = format!(
            "{FORWARD_PREFIX}{}/{}",
            app::segment(&turn.actor_type),
            app::segment(&turn.actor_id)
        );
        let mut headers = forwardable(&turn.headers);
        let (kind, body) = match &turn.kind {
            TurnKind::Method { name } => (format!("method {name}"), turn.body.clone()),
            TurnKind::Reminder { name, .. } => (format!("reminder {name}"), turn.app_body()),
            TurnKind::Timer { name, .. } => (format!("timer {name}"), turn.app_body()),
        };
        let kind = HeaderValue::from_str(&app::segment(&kind))
            .map_err(|error| Attempt::Failed(Error::Malformed(error.to_string())))?;
        headers.insert(TURN_HEADER, kind);
        self.peer_key
            .sign_headers(&mut headers, &self.app_id, ACTORS_CALLEE, "PUT", &path)
            .map_err(|value| {
                Attempt::Failed(Error::Malformed(format!(
                    "'{value}' cannot be sent as a header"
                )))
            })?;
        match self
            .peers
            .send(address, Method::PUT, &path, headers, body)
            .await
        {
            Ok(answer) if answer.headers.contains_key(RETRY_HEADER) => Err(Attempt::Again(
                format!("the host at {address} does not hold the actor"),
            )),
            Ok(answer) => Ok(ActorAnswer {
                status: answer.status,
                headers: forwardable(&answer.headers),
                body: answer.body,
            }),
            Err(PeerError::Unreachable(error)) => Err(Attempt::Again(format!(
                "the actor's host at {address} is unreachable: {error}"
            ))),
            Err(error) => Err(Attempt::Again(format!(
                "calling the actor's host at {address}: {error}"
            ))),
        }
    }

    /// The receiving side of [`forward`](Self::forward): a turn another sidecar sent
    /// here, checked to come from a sidecar of this deployment. Answers with
    /// [`RETRY_HEADER`] when this host does not hold the actor.
    pub async fn serve_forwarded(
        self: &Arc<Self>,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<ActorAnswer, Error> {
        self.peer_key
            .verify_headers(&headers, "PUT", path)
            .map_err(|error| Error::PeerUnauthenticated(error.to_string()))?;
        let rest = path.strip_prefix(FORWARD_PREFIX).unwrap_or_default();
        let mut parts = rest.splitn(2, '/');
        let decode = |part: Option<&str>| {
            part.and_then(percent_decode)
                .ok_or_else(|| Error::Malformed(format!("invalid forwarded actor path '{path}'")))
        };
        let (actor_type, actor_id) = (decode(parts.next())?, decode(parts.next())?);
        let turn_header = headers
            .get(TURN_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let kind = percent_decode(turn_header)
            .ok_or_else(|| Error::Malformed("invalid forwarded turn".into()))?;
        let kind = match kind.split_once(' ') {
            Some(("method", name)) => TurnKind::Method {
                name: name.to_owned(),
            },
            Some(("reminder", name)) => reminders::reminder_turn(name, &body),
            Some(("timer", name)) => reminders::timer_turn(name, &body),
            _ => return Err(Error::Malformed(format!("unknown forwarded turn '{kind}'"))),
        };
        let turn = Turn {
            actor_type,
            actor_id,
            kind,
            headers: forwardable(&headers),
            body,
        };
        let key = ActorKey::new(&turn.actor_type, &turn.actor_id);
        match self.run_here(&key, &turn, true).await {
            Ok(answer) => Ok(answer),
            Err(Attempt::Failed(error)) => Err(error),
            Err(Attempt::Again(reason)) => {
                let mut headers = HeaderMap::new();
                headers.insert(RETRY_HEADER, HeaderValue::from_static("1"));
                Ok(ActorAnswer {
                    status: StatusCode::CONFLICT,
                    headers,
                    body: Bytes::from(reason),
                })
            }
        }
    }

    /// The store key of an actor's state `key`: `{appId}||{type}||{id}||{key}`.
    fn state_key(&self, actor_type: &str, actor_id: &str, key: &str) -> String {
        format!("{}||{actor_type}||{actor_id}||{key}", self.app_id)
    }

    /// Refuses calls that name no actor.
    fn check_names(&self, actor_type: &str, actor_id: &str) -> Result<(), Error> {
        self.store()?;
        if actor_type.is_empty() || actor_id.is_empty() {
            return Err(Error::Malformed(
                "the actor type and id must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The activation of an actor active on this host, or daprd's
    /// `ERR_ACTOR_INSTANCE_MISSING`: state is written from inside a turn, through the
    /// sidecar of the host that runs it.
    fn local_activation(&self, actor_type: &str, actor_id: &str) -> Result<Arc<Activation>, Error> {
        self.check_names(actor_type, actor_id)?;
        self.active
            .lock()
            .get(&ActorKey::new(actor_type, actor_id))
            .cloned()
            .ok_or(Error::ActorInstanceMissing)
    }

    /// `GET /v1.0/actors/{type}/{id}/state/{key}`.
    pub async fn get_state(
        &self,
        actor_type: &str,
        actor_id: &str,
        key: &str,
    ) -> Result<Option<Bytes>, Error> {
        self.check_names(actor_type, actor_id)?;
        let store = self.store()?;
        store
            .store
            .get(&self.state_key(actor_type, actor_id, key))
            .await
            .map(|stored| stored.map(|stored| stored.value))
            .map_err(|error| Error::ActorStateGet {
                cause: Error::cause(error),
            })
    }

    /// `POST /v1.0/actors/{type}/{id}/state`: all operations or none. While the actor
    /// is active here, the transaction is fenced by its owner record, so a superseded
    /// activation cannot write.
    pub async fn transact_state(
        self: &Arc<Self>,
        actor_type: &str,
        actor_id: &str,
        operations: Vec<ActorStateOperation>,
    ) -> Result<(), Error> {
        let activation = Some(self.local_activation(actor_type, actor_id)?);
        let store = self.store()?;
        let mut writes = Vec::with_capacity(operations.len() + 1);
        for operation in operations {
            writes.push(match operation {
                ActorStateOperation::Upsert { key, value, ttl } => Operation::Upsert(SetRequest {
                    key: self.state_key(actor_type, actor_id, &key),
                    value,
                    etag: None,
                    concurrency: Concurrency::LastWrite,
                    ttl,
                }),
                ActorStateOperation::Delete { key } => {
                    Operation::Delete(tandem_components::state::DeleteRequest {
                        key: self.state_key(actor_type, actor_id, &key),
                        etag: None,
                        concurrency: Concurrency::LastWrite,
                    })
                }
            });
        }
        if writes.is_empty() {
            return Ok(());
        }
        let fence = activation.as_ref().and_then(|activation| {
            let etag = activation.etag()?;
            self.placement.as_ref()?.fence(actor_type, actor_id, &etag)
        });
        let fenced = fence.is_some();
        if let Some(fence) = fence {
            writes.push(Operation::Upsert(fence));
        }
        match store.store.transact(writes).await {
            Ok(()) => {
                if fenced
                    && let (Some(activation), Some(placement)) = (&activation, &self.placement)
                {
                    match placement.own_etag(actor_type, actor_id).await {
                        Some(etag) => activation.update_etag(etag),
                        None => self.drop_superseded(activation),
                    }
                }
                Ok(())
            }
            Err(StateError::EtagMismatch(_)) if fenced => {
                if let Some(activation) = &activation {
                    self.drop_superseded(activation);
                }
                Err(Error::ActorStateTransaction {
                    cause: Arc::new(Reason(format!(
                        "actor {actor_type}/{actor_id} is now active on another host; this activation may no longer write its state"
                    ))),
                })
            }
            Err(error) => Err(Error::ActorStateTransaction {
                cause: Error::cause(error),
            }),
        }
    }

    /// Registers (or replaces) a timer of an active actor.
    pub async fn register_timer(self: &Arc<Self>, request: TimerRequest) -> Result<(), Error> {
        self.check_names(&request.actor_type, &request.actor_id)?;
        let not_here = |why: &str| Error::ActorTimerCreate {
            reason: format!(
                "can't create timer for actor {}||{}: {why}",
                request.actor_type, request.actor_id
            ),
        };
        if !self.config().hosts(&request.actor_type) {
            return Err(not_here("actor type not registered"));
        }
        let activation = self
            .local_activation(&request.actor_type, &request.actor_id)
            .map_err(|_| not_here("the actor is not active on this host"))?;
        let schedule = request
            .schedule()
            .map_err(|error| Error::ActorTimerCreate {
                reason: error.to_string(),
            })?;
        let stop = activation.set_timer(&request.name);
        let this = self.clone();
        tokio::spawn(async move {
            reminders::run_timer(this, activation, request, schedule, stop).await;
        });
        Ok(())
    }

    /// Removes a timer; removing one that does not exist is not an error.
    pub fn unregister_timer(
        &self,
        actor_type: &str,
        actor_id: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.store()?;
        let key = ActorKey::new(actor_type, actor_id);
        if let Some(activation) = self.active.lock().get(&key) {
            activation.cancel_timer(name);
        }
        Ok(())
    }

    /// Runs a timer's turn on the activation that set it, if it is still active.
    async fn timer_turn(self: &Arc<Self>, activation: &Arc<Activation>, turn: Turn) -> bool {
        let current = self.active.lock().get(activation.key()).cloned();
        if !current.is_some_and(|current| Arc::ptr_eq(&current, activation)) {
            return false;
        }
        match self.run_here(activation.key(), &turn, false).await {
            Ok(answer) if !answer.status.is_success() => tracing::warn!(
                "timer of actor {}/{} answered {}",
                turn.actor_type,
                turn.actor_id,
                answer.status
            ),
            Ok(_) => {}
            Err(Attempt::Again(reason)) => {
                tracing::debug!(
                    "timer of actor {}/{} not run: {reason}",
                    turn.actor_type,
                    turn.actor_id
                );
                return false;
            }
            Err(Attempt::Failed(error)) => tracing::warn!(
                "timer of actor {}/{} failed: {error}",
                turn.actor_type,
                turn.actor_id
            ),
        }
        true
    }

    /// The metadata API's actor section.
    pub fn info(&self) -> ActorsInfo {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for type_name in &self.config().types {
            counts.insert(type_name.clone(), 0);
        }
        for key in self.active.lock().keys() {
            *counts.entry(key.actor_type.clone()).or_default() += 1;
        }
        let hosting = self.hosting.load(Ordering::Acquire);
        ActorsInfo {
            runtime_status: if self.store.is_none() {
                "DISABLED"
            } else {
                "RUNNING"
            },
            active: counts
                .into_iter()
                .map(|(actor_type, count)| ActiveActors { actor_type, count })
                .collect(),
            host_ready: hosting,
            placement: match &self.store {
                Some(_) => "placement: connected".into(),
                None => "placement: disconnected".into(),
            },
        }
    }

    pub(crate) fn reminders(&self) -> &reminders::Reminders {
        &self.reminders
    }
}

/// The header with which an app marks an answer as the actor's own error, passed to
/// the caller as it is (daprd reads it case-insensitively).
pub const ACTOR_ERROR_HEADER: &str = "x-daprerrorresponseheader";

/// A method turn's answer as daprd judges it: exactly 200 is success; an answer the
/// app marked as the actor's error goes back as it is; 404 means no such method;
/// anything else is a failed call carrying the app's status and body.
fn judged(turn: &Turn, answer: ActorAnswer) -> Result<ActorAnswer, Error> {
    let TurnKind::Method { name } = &turn.kind else {
        return Ok(answer);
    };
    if answer.status == StatusCode::OK || answer.headers.contains_key(ACTOR_ERROR_HEADER) {
        return Ok(answer);
    }
    if answer.status == StatusCode::NOT_FOUND {
        return Err(Error::ActorMethodNotFound {
            path: format!("actors/{}/{}/method/{name}", turn.actor_type, turn.actor_id),
        });
    }
    Err(Error::ActorInvoke {
        reason: format!(
            "error from actor service: ({}) {}",
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body)
        ),
    })
}

/// Decodes a percent-encoded path segment.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}
