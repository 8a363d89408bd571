//! The delivering half of pub/sub: [`Subscriptions`] combines the declarative
//! subscriptions (`Subscription` resources, `declarative.rs`) with what the app asks
//! for at `/dapr/subscribe` (`programmatic.rs`) as daprd does, subscribes through the
//! [`Publisher`]'s brokers, and keeps the delivery tasks so a stopping sidecar can let
//! the deliveries in flight finish. Each event's route comes from the subscription's
//! routing rules (`routing.rs`, CEL); `deliver.rs` delivers it and dead-letters what
//! the app refuses.
//!
//! With app health checks, delivery follows the app's health as in `daprd`: the app's
//! subscriptions are read when it is first healthy, [`pause`](Subscriptions::pause)d
//! when it turns unhealthy — the brokers stop reading and claiming, so what is published
//! meanwhile stays unacknowledged in the broker — and [`resume`](Subscriptions::resume)d
//! when it is healthy again.

mod batch;
mod bulk;
mod declarative;
mod deliver;
mod programmatic;
mod routing;
mod stream;

pub use stream::{EventStream, StreamRequest, StreamedEvent};

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tandem_components::pubsub::Subscribe;
use tandem_resiliency::Resiliencies;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use declarative::from_resources;
use routing::Routing;

use crate::app_channel::AppChannel;
use crate::metadata::SubscriptionInfo;
use crate::publish::Publisher;

/// One subscription, ready to be made: the topic its events come from and how each
/// finds its route.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub pubsub: String,
    pub topic: String,
    pub routing: Routing,
    /// Subscription metadata: `rawPayload`, and settings handed to the broker.
    pub metadata: BTreeMap<String, String>,
    pub dead_letter_topic: Option<String>,
    /// Read and shown; events are delivered one at a time for now.
    pub bulk: tandem_spec::BulkSubscribe,
    pub source: Source,
}

/// Where a subscription was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `Subscription` resource, by name.
    Declarative(String),
    /// The app's `/dapr/subscribe` answer.
    Programmatic,
}

impl Subscription {
    /// How the metadata API shows it.
    pub(crate) fn info(&self) -> SubscriptionInfo {
        SubscriptionInfo {
            pubsub: self.pubsub.clone(),
            topic: self.topic.clone(),
            rules: self.routing.describe(),
            metadata: self.metadata.clone(),
            dead_letter_topic: self.dead_letter_topic.clone().unwrap_or_default(),
            origin: match self.source {
                Source::Declarative(_) => "DECLARATIVE",
                Source::Programmatic => "PROGRAMMATIC",
            },
        }
    }

    /// How logs name it.
    fn describe(&self) -> String {
        match &self.source {
            Source::Declarative(name) => format!("Subscription '{name}'"),
            Source::Programmatic => "the app's subscription (/dapr/subscribe)".into(),
        }
    }
}

/// The app's subscriptions and their deliveries.
pub struct Subscriptions {
    app_id: String,
    publisher: Arc<Publisher>,
    resiliency: Arc<Resiliencies>,
    /// The `Subscription` resources for this app, in file order.
    declared: Vec<Subscription>,
    active: Mutex<Vec<Subscription>>,
    deliveries: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    /// What the app asked for at `/dapr/subscribe`, read once (`None`: not yet).
    discovered: Mutex<Option<Vec<Subscription>>>,
    /// Stops the current round of subscriptions (a child of `stop`): fired on pause.
    round: Mutex<Option<CancellationToken>>,
    /// The open streaming subscriptions, for the metadata API.
    streams: Arc<Mutex<Vec<(u64, SubscriptionInfo)>>>,
}

impl Subscriptions {
    pub(crate) fn new(
        app_id: &str,
        publisher: Arc<Publisher>,
        resiliency: Arc<Resiliencies>,
        stop: CancellationToken,
        declared: Vec<Subscription>,
    ) -> Self {
        Self {
            app_id: app_id.to_owned(),
            publisher,
            resiliency,
            declared,
            active: Mutex::default(),
            deliveries: Mutex::default(),
            stop,
            discovered: Mutex::default(),
            round: Mutex::default(),
            streams: Arc::default(),
        }
    }

    /// Reads the app's subscriptions (`GET /dapr/subscribe`) and subscribes to them and
    /// the declarative ones.
    pub(crate) async fn start(&self, app: &AppChannel) {
        self.resume(app).await;
    }

    /// Subscribes to the declarative subscriptions and what the app asks for (read
    /// from the app the first time only), unless subscribed already.
    pub(crate) async fn resume(&self, app: &AppChannel) {
        if self.round.lock().is_some() || self.stop.is_cancelled() {
            return;
        }
        let known = self.discovered.lock().clone();
        let (programmatic, first) = match known {
            Some(subscriptions) => (subscriptions, false),
            None => {
                let subscriptions = programmatic::discover(app).await.unwrap_or_else(|error| {
                    tracing::warn!("could not read the app's subscriptions: {error}");
                    Vec::new()
                });
                *self.discovered.lock() = Some(subscriptions.clone());
                (subscriptions, true)
            }
        };
        let subscriptions = declarative::merge(&self.declared, programmatic);
        let round = self.stop.child_token();
        *self.round.lock() = Some(round.clone());
        let mut active = Vec::new();
        for subscription in subscriptions {
            if self.subscribe(app, &subscription, &round, first).await {
                active.push(subscription);
            }
        }
        *self.active.lock() = active;
        if !first {
            tracing::info!("pub/sub delivery to the app resumed");
        }
    }

    /// Stops reading from the brokers and waits for the deliveries in flight; nothing
    /// more is taken from a broker until [`resume`](Self::resume).
    pub(crate) async fn pause(&self) {
        let Some(round) = self.round.lock().take() else {
            return;
        };
        round.cancel();
        tracing::info!(
            "pub/sub delivery to the app paused: new messages stay in the broker until it is healthy"
        );
        self.drain().await;
    }

    /// Subscribes to one topic for this round; `false` when it could not.
    async fn subscribe(
        &self,
        app: &AppChannel,
        subscription: &Subscription,
        round: &CancellationToken,
        first: bool,
    ) -> bool {
        let Some(broker) = self.publisher.broker(&subscription.pubsub) else {
            tracing::warn!(
                "{} to topic '{}' names pubsub '{}', which is not loaded; loaded: {}",
                subscription.describe(),
                subscription.topic,
                subscription.pubsub,
                self.publisher.names().join(", ")
            );
            return false;
        };
        let request = Subscribe {
            topic: subscription.topic.clone(),
            metadata: subscription.metadata.clone().into_iter().collect(),
        };
        let policy = self
            .resiliency
            .for_component_inbound(&subscription.pubsub, &broker.kind);
        let stop = round.child_token();
        let single = deliver::delivery(
            app,
            &self.app_id,
            subscription,
            policy,
            self.publisher.clone(),
            stop.clone(),
        );
        let delivery: Arc<dyn tandem_components::pubsub::Deliver> = if subscription.bulk.enabled {
            let size = batch::BatchSize::from_settings(
                subscription.bulk.max_messages_count,
                subscription.bulk.max_await_duration_ms,
            );
            Arc::new(batch::Batcher::new(
                size,
                Arc::new(bulk::BulkDelivery { single }),
                stop.clone(),
            ))
        } else {
            single
        };
        match broker.pubsub.subscribe(request, delivery, stop).await {
            Ok(task) => {
                if first {
                    tracing::info!(
                        pubsub = %subscription.pubsub, topic = %subscription.topic,
                        routes = %subscription.routing.paths(),
                        dead_letter_topic = subscription.dead_letter_topic.as_deref().unwrap_or_default(),
                        "subscribed ({})", subscription.describe()
                    );
                }
                self.deliveries.lock().push(task);
                true
            }
            Err(error) => {
                tracing::error!(
                    pubsub = %subscription.pubsub, topic = %subscription.topic,
                    "subscribing failed: {error}"
                );
                false
            }
        }
    }

    /// The active subscriptions, for the metadata API: the app's, then the open
    /// streams'.
    pub fn list(&self) -> Vec<SubscriptionInfo> {
        let mut list: Vec<SubscriptionInfo> =
            self.active.lock().iter().map(Subscription::info).collect();
        list.extend(self.streams.lock().iter().map(|(_, info)| info.clone()));
        list
    }

    /// Waits for the deliveries in flight to finish after the stop token fired.
    pub(crate) async fn drain(&self) {
        let tasks: Vec<_> = self.deliveries.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}
