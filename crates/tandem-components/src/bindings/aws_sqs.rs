//! `bindings.aws.sqs`: one SQS queue, written to (`create`) and read from, compatible
//! with Dapr's binding. Spoken through tandem's own small AWS client (`crate::aws`:
//! SigV4, AWS JSON 1.0), so `endpoint` may point at a local emulator.
//!
//! `create` sends the data as the message body (`SendMessage`) and answers once SQS took
//! it. As an input binding it long-polls the queue (`ReceiveMessage`, 20 s, as Dapr) and
//! deletes a message only once the app took it; one the app refused, or one in flight
//! when the sidecar died, comes back after the queue's visibility timeout — SQS's own
//! redelivery, and its redrive policy (a dead-letter queue) applies. When the queue or
//! the endpoint is away, the reader waits (up to 5 s, growing) and tries again, warning
//! once per outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Binding, BindingError, Handle, InputEvent, InvokeRequest, InvokeResponse, Outcome};
use crate::aws::{self, AwsError, Client, CredentialSources, Credentials};

pub const METADATA: &[&str] = &[
    "queueName",
    "region",
    "endpoint",
    "accessKey",
    "secretKey",
    "sessionToken",
];

/// How long one SQS call may take (a long poll waits 20 s of it).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The long poll, as Dapr's.
const WAIT_SECONDS: u32 = 20;
/// Messages taken per receive, handled one after another (Dapr takes one).
const MAX_MESSAGES: u32 = 10;

/// The SQS binding.
pub struct SqsBinding {
    client: Client,
    queue: String,
    /// `{endpoint}` of the queue, for messages.
    url: tokio::sync::OnceCell<String>,
}

impl SqsBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let sources = CredentialSources::default();
        let credentials = Credentials::read(metadata, &sources)?;
        let region = aws::region(metadata, &sources)?;
        let endpoint = aws::endpoint(metadata)?;
        let queue = metadata.required("queueName")?.to_owned();
        let binding = Self {
            client: Client::new(credentials, region, endpoint),
            queue,
            url: tokio::sync::OnceCell::new(),
        };
        // Look the queue up now, as Dapr does at its first use: a wrong name, endpoint
        // or key stops the start with the file and field named.
        binding
            .queue_url()
            .await
            .map_err(|error| metadata.field_error("queueName", error.to_string()))?;
        Ok(Arc::new(binding))
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value, AwsError> {
        self.client
            .json("sqs", "AmazonSQS", action, body, CALL_TIMEOUT)
            .await
    }

    /// The queue's URL, looked up once.
    async fn queue_url(&self) -> Result<String, AwsError> {
        self.url
            .get_or_try_init(|| async {
                let answer = self
                    .call("GetQueueUrl", json!({"QueueName": self.queue}))
                    .await?;
                Ok(answer
                    .get("QueueUrl")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned())
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Binding for SqsBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let body = String::from_utf8(request.data.to_vec()).map_err(|_| {
            BindingError::Invalid("an SQS message body must be text (UTF-8)".into())
        })?;
        let url = self.queue_url().await.map_err(|error| {
            BindingError::failed(format!("finding the queue '{}'", self.queue), error)
        })?;
        self.call("SendMessage", json!({"QueueUrl": url, "MessageBody": body}))
            .await
            .map_err(|error| {
                BindingError::failed(format!("sending to the queue '{}'", self.queue), error)
            })?;
        Ok(None)
    }

    fn reads(&self) -> bool {
        true
    }

    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        let url = self.queue_url().await.map_err(|error| {
            BindingError::failed(format!("finding the queue '{}'", self.queue), error)
        })?;
        let reader = Reader {
            client: self.client.clone(),
            queue: self.queue.clone(),
            url,
            handler,
        };
        Ok(tokio::spawn(reader.run(stop)))
    }
}

struct Reader {
    client: Client,
    queue: String,
    url: String,
    handler: Arc<dyn Handle>,
}

impl Reader {
    async fn run(self, stop: CancellationToken) {
        let in_flight = TaskTracker::new();
        let mut failures = 0u32;
        loop {
            let receive = self.client.json(
                "sqs",
                "AmazonSQS",
                "ReceiveMessage",
                json!({
                    "QueueUrl": self.url,
                    "MaxNumberOfMessages": MAX_MESSAGES,
                    "WaitTimeSeconds": WAIT_SECONDS,
                    "MessageAttributeNames": ["All"],
                }),
                CALL_TIMEOUT,
            );
            let answer = tokio::select! {
                _ = stop.cancelled() => break,
                answer = receive => answer,
            };
            let messages = match answer {
                Ok(answer) => {
                    if failures > 0 {
                        tracing::info!(queue = %self.queue, "reading the SQS queue again");
                    }
                    failures = 0;
                    answer
                        .get("Messages")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                }
                Err(error) => {
                    if failures == 0 {
                        tracing::warn!(queue = %self.queue, "cannot read the SQS queue: {error}; trying again");
                    }
                    failures = failures.saturating_add(1);
                    let wait =
                        Duration::from_millis(250 << failures.min(5)).min(Duration::from_secs(5));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            // One message after another, as Dapr hands them over.
            for message in messages {
                let body = message
                    .get("Body")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(receipt) = message.get("ReceiptHandle").and_then(Value::as_str) else {
                    continue;
                };
                let mut metadata = HashMap::new();
                if let Some(attributes) =
                    message.get("MessageAttributes").and_then(Value::as_object)
                {
                    for (name, attribute) in attributes {
                        if let Some(text) = attribute.get("StringValue").and_then(Value::as_str) {
                            metadata.insert(name.clone(), text.to_owned());
                        }
                    }
                }
                let event = InputEvent {
                    data: body.to_owned().into(),
                    metadata,
                };
                let outcome = self.handler.handle(event).await;
                if matches!(outcome, Outcome::Done | Outcome::Drop) {
                    // Finished even when the sidecar is stopping: the app took it.
                    let (client, url, queue) =
                        (self.client.clone(), self.url.clone(), self.queue.clone());
                    let receipt = receipt.to_owned();
                    in_flight.spawn(async move {
                        let delete = client
                            .json(
                                "sqs",
                                "AmazonSQS",
                                "DeleteMessage",
                                json!({"QueueUrl": url, "ReceiptHandle": receipt}),
                                CALL_TIMEOUT,
                            )
                            .await;
                        if let Err(error) = delete {
                            tracing::warn!(queue = %queue, "a message the app took could not be deleted and will come again: {error}");
                        }
                    });
                }
            }
        }
        in_flight.close();
        in_flight.wait().await;
    }
}
