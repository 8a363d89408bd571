//! The delivering half of pub/sub: [`Subscriptions`] asks the app what it subscribes to,
//! subscribes through the [`Publisher`]'s brokers, and keeps the delivery tasks so a
//! stopping sidecar can let the deliveries in flight finish.
//!
//! With app health checks, delivery follows the app's health as in `daprd`: the app's
//! subscriptions are read when it is first healthy, [`pause`](Subscriptions::pause)d
//! when it turns unhealthy — the brokers stop reading and claiming, so what is published
//! meanwhile stays unacknowledged in the broker — and [`resume`](Subscriptions::resume)d
//! when it is healthy again.

mod deliver;
mod stream;

pub use stream::{EventStream, StreamRequest, StreamedEvent};

use std::sync::Arc;

use parking_lot::Mutex;
use tandem_components::pubsub::Subscribe;
use tandem_resiliency::Resiliencies;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app_channel::AppChannel;
use crate::metadata::SubscriptionInfo;
use crate::publish::Publisher;

/// The app's subscriptions and their deliveries.
pub struct Subscriptions {
    app_id: String,
    publisher: Arc<Publisher>,
    resiliency: Arc<Resiliencies>,
    active: Mutex<Vec<SubscriptionInfo>>,
    deliveries: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    /// What the app asked for at `/dapr/subscribe`, read once (`None`: not yet).
    discovered: Mutex<Option<Vec<SubscriptionInfo>>>,
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
    ) -> Self {
        Self {
            app_id: app_id.to_owned(),
            publisher,
            resiliency,
            active: Mutex::default(),
            deliveries: Mutex::default(),
            stop,
            discovered: Mutex::default(),
            round: Mutex::default(),
            streams: Arc::default(),
        }
    }

    /// Reads the app's subscriptions (`GET /dapr/subscribe`) and subscribes to each.
    pub(crate) async fn start(&self, app: &AppChannel) {
        self.resume(app).await;
    }

    /// Subscribes to what the app asks for (read from the app the first time only),
    /// unless subscribed already.
    pub(crate) async fn resume(&self, app: &AppChannel) {
        if self.round.lock().is_some() || self.stop.is_cancelled() {
            return;
        }
        let known = self.discovered.lock().clone();
        let (subscriptions, first) = match known {
            Some(subscriptions) => (subscriptions, false),
            None => {
                let subscriptions = deliver::discover(app).await.unwrap_or_else(|error| {
                    tracing::warn!("could not read the app's subscriptions: {error}");
                    Vec::new()
                });
                *self.discovered.lock() = Some(subscriptions.clone());
                (subscriptions, true)
            }
        };
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
        subscription: &SubscriptionInfo,
        round: &CancellationToken,
        first: bool,
    ) -> bool {
        let Some(broker) = self.publisher.broker(&subscription.pubsub) else {
            tracing::warn!(
                "the app subscribes to topic '{}' of pubsub '{}', which is not loaded; loaded: {}",
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
        let delivery = deliver::delivery(app, &self.app_id, subscription, policy);
        match broker
            .pubsub
            .subscribe(request, delivery, round.child_token())
            .await
        {
            Ok(task) => {
                if first {
                    tracing::info!(pubsub = %subscription.pubsub, topic = %subscription.topic, route = %subscription.route, "subscribed");
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
        let mut list = self.active.lock().clone();
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
