//! `pubsub.in-memory`: topics inside this sidecar's memory, for tests and demos.
//!
//! Messages live as long as the process does; a message the app asks to retry is
//! redelivered with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tandem_resiliency::exponential_wait;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};

pub const METADATA: &[&str] = &["consumerID", "concurrency"];

pub struct InMemory {
    /// Subscribers of each topic; every subscriber gets every message.
    topics: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Message>>>>,
    concurrency: usize,
}

impl InMemory {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        Ok(Arc::new(Self {
            topics: Mutex::default(),
            concurrency: metadata.number_or("concurrency", 10usize)?.max(1),
        }))
    }
}

#[async_trait]
impl PubSub for InMemory {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let mut topics = self.topics.lock();
        if let Some(subscribers) = topics.get_mut(&message.topic) {
            subscribers.retain(|subscriber| subscriber.send(message.clone()).is_ok());
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, PubSubError> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Message>();
        self.topics
            .lock()
            .entry(subscription.topic)
            .or_default()
            .push(sender);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        Ok(tokio::spawn(async move {
            let in_flight = tokio_util::task::TaskTracker::new();
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    message = receiver.recv() => match message { Some(m) => m, None => break },
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let deliver = deliver.clone();
                let stop = stop.clone();
                in_flight.spawn(async move {
                    let _slot = slot;
                    let mut attempt = 0;
                    while deliver.deliver(message.clone()).await == Outcome::Retry {
                        attempt += 1;
                        let wait = exponential_wait(
                            attempt,
                            Duration::from_millis(100),
                            Duration::from_secs(10),
                        );
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                });
            }
            in_flight.close();
            in_flight.wait().await;
        }))
    }
}
