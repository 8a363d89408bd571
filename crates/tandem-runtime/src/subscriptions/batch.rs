//! Bulk subscriptions' batching: a broker hands over messages one at a time; a
//! [`Batcher`] gathers them into batches of at most `maxMessagesCount`, waiting at most
//! `maxAwaitDurationMs` after a batch's first message, hands each batch to a
//! [`DeliverBatch`] (the app's bulk endpoint), and gives every message the outcome the
//! app gave its own entry. So each message is still acknowledged — or not — on its own,
//! and a message whose entry the app's answer leaves out is delivered again, never
//! acknowledged.
//!
//! A batch can only be as large as the messages the broker has in flight at once (its
//! delivery slots, e.g. `pubsub.redis`'s `concurrency`); daprd's default bulk subscriber
//! has the same bound.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_components::pubsub::{Deliver, Message, Outcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Where a batch goes: answers one outcome per message, in the batch's order.
#[async_trait]
pub(crate) trait DeliverBatch: Send + Sync {
    async fn deliver_batch(&self, batch: &[Message]) -> Vec<Outcome>;
}

/// How batches are made: `bulkSubscribe`'s `maxMessagesCount` and `maxAwaitDurationMs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSize {
    pub max_messages: usize,
    pub max_wait: Duration,
}

impl BatchSize {
    /// `bulkSubscribe`'s values, with daprd's defaults (100 messages, 1 s) for those
    /// not given or zero.
    pub(crate) fn from_settings(max_messages: Option<u32>, max_wait_ms: Option<u32>) -> Self {
        Self {
            max_messages: max_messages
                .filter(|count| *count > 0)
                .map_or(100, |count| count as usize),
            max_wait: Duration::from_millis(
                max_wait_ms.filter(|ms| *ms > 0).map_or(1000, u64::from),
            ),
        }
    }
}

type Waiting = (Message, oneshot::Sender<Outcome>);

/// Gathers one subscription's messages into batches; see the module's summary.
pub(crate) struct Batcher {
    queue: mpsc::Sender<Waiting>,
}

impl Batcher {
    /// Starts gathering for `target`; the gathering ends when `stop` fires and every
    /// batch in flight has been answered.
    pub(crate) fn new(
        size: BatchSize,
        target: Arc<dyn DeliverBatch>,
        stop: CancellationToken,
    ) -> Self {
        let (queue, waiting) = mpsc::channel(size.max_messages.max(1));
        tokio::spawn(gather(size, waiting, target, stop));
        Self { queue }
    }
}

#[async_trait]
impl Deliver for Batcher {
    async fn deliver(&self, message: Message) -> Outcome {
        let (answer, answered) = oneshot::channel();
        if self.queue.send((message, answer)).await.is_err() {
            return Outcome::Retry;
        }
        // No answer (the subscription stopped mid-batch): delivered again later.
        answered.await.unwrap_or(Outcome::Retry)
    }
}

async fn gather(
    size: BatchSize,
    mut waiting: mpsc::Receiver<Waiting>,
    target: Arc<dyn DeliverBatch>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            first = waiting.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + size.max_wait;
        while batch.len() < size.max_messages {
            tokio::select! {
                next = waiting.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Delivered while the next batch gathers: the broker's slots bound how many
        // batches are in flight.
        let target = target.clone();
        tokio::spawn(async move {
            let (messages, answers): (Vec<Message>, Vec<oneshot::Sender<Outcome>>) =
                batch.into_iter().unzip();
            let outcomes = target.deliver_batch(&messages).await;
            for (index, answer) in answers.into_iter().enumerate() {
                let _ = answer.send(outcomes.get(index).copied().unwrap_or(Outcome::Retry));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::*;

    /// Records batch sizes; answers `Done` except for the data "retry", and leaves out
    /// the answer for "lost".
    #[derive(Default)]
    struct Recorder {
        sizes: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl DeliverBatch for Recorder {
        async fn deliver_batch(&self, batch: &[Message]) -> Vec<Outcome> {
            self.sizes.lock().push(batch.len());
            batch
                .iter()
                .take_while(|message| message.data != "lost")
                .map(|message| {
                    if message.data == "retry" {
                        Outcome::Retry
                    } else {
                        Outcome::Done
                    }
                })
                .collect()
        }
    }

    fn message(data: &'static str) -> Message {
        Message {
            topic: "t".into(),
            data: Bytes::from_static(data.as_bytes()),
            metadata: Default::default(),
        }
    }

    #[tokio::test]
    async fn messages_are_batched_up_to_the_count_and_settled_one_by_one() {
        let recorder = Arc::new(Recorder::default());
        let size = BatchSize {
            max_messages: 3,
            max_wait: Duration::from_millis(200),
        };
        let batcher = Arc::new(Batcher::new(
            size,
            recorder.clone(),
            CancellationToken::new(),
        ));
        let data = ["a", "retry", "b", "c", "lost", "d"];
        let outcomes = futures_util::future::join_all(data.iter().map(|data| {
            let batcher = batcher.clone();
            async move { batcher.deliver(message(data)).await }
        }))
        .await;
        let mut sizes = recorder.sizes.lock().clone();
        sizes.sort_unstable();
        assert_eq!(sizes, [3, 3], "two full batches");
        assert_eq!(outcomes[1], Outcome::Retry);
        assert_eq!(
            outcomes
                .iter()
                .filter(|outcome| **outcome == Outcome::Retry)
                .count(),
            3,
            "the retried message and what an answer left out come again: {outcomes:?}"
        );
    }

    #[tokio::test]
    async fn a_lone_message_waits_at_most_the_await_duration() {
        let recorder = Arc::new(Recorder::default());
        let size = BatchSize {
            max_messages: 100,
            max_wait: Duration::from_millis(100),
        };
        let batcher = Batcher::new(size, recorder.clone(), CancellationToken::new());
        let started = tokio::time::Instant::now();
        assert_eq!(batcher.deliver(message("a")).await, Outcome::Done);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(*recorder.sizes.lock(), [1]);
    }

    #[test]
    fn defaults_are_daprd_s() {
        assert_eq!(
            BatchSize::from_settings(Some(0), None),
            BatchSize {
                max_messages: 100,
                max_wait: Duration::from_secs(1)
            }
        );
        assert_eq!(BatchSize::from_settings(Some(5), Some(50)).max_messages, 5);
    }
}
