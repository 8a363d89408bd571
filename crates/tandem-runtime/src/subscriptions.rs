//! The delivering half of pub/sub: [`Subscriptions`] asks the app what it subscribes to,
//! subscribes through the [`Publisher`]'s brokers, and keeps the delivery tasks so a
//! stopping sidecar can let the deliveries in flight finish.

mod deliver;

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
        }
    }

    /// Reads the app's subscriptions (`GET /dapr/subscribe`) and subscribes to each.
    pub(crate) async fn start(&self, app: &AppChannel) {
        let subscriptions = deliver::discover(app).await.unwrap_or_else(|error| {
            tracing::warn!("could not read the app's subscriptions: {error}");
            Vec::new()
        });
        for subscription in subscriptions {
            self.subscribe(app, subscription).await;
        }
    }

    async fn subscribe(&self, app: &AppChannel, subscription: SubscriptionInfo) {
        let Some(broker) = self.publisher.broker(&subscription.pubsub) else {
            tracing::warn!(
                "the app subscribes to topic '{}' of pubsub '{}', which is not loaded; loaded: {}",
                subscription.topic,
                subscription.pubsub,
                self.publisher.names().join(", ")
            );
            return;
        };
        let request = Subscribe {
            topic: subscription.topic.clone(),
            metadata: subscription.metadata.clone().into_iter().collect(),
        };
        let policy = self
            .resiliency
            .for_component_inbound(&subscription.pubsub, &broker.kind);
        let delivery = deliver::delivery(app, &self.app_id, &subscription, policy);
        match broker
            .pubsub
            .subscribe(request, delivery, self.stop.child_token())
            .await
        {
            Ok(task) => {
                tracing::info!(pubsub = %subscription.pubsub, topic = %subscription.topic, route = %subscription.route, "subscribed");
                self.deliveries.lock().push(task);
                self.active.lock().push(subscription);
            }
            Err(error) => tracing::error!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "subscribing failed: {error}"
            ),
        }
    }

    /// The active subscriptions, for the metadata API.
    pub fn list(&self) -> Vec<SubscriptionInfo> {
        self.active.lock().clone()
    }

    /// Waits for the deliveries in flight to finish after the stop token fired.
    pub(crate) async fn drain(&self) {
        let tasks: Vec<_> = self.deliveries.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}
