//! `pubsub.aws.snssqs`: AWS SNS topics fanning out to SQS queues, compatible with Dapr's
//! component (its metadata names, defaults, entity names and message envelope).
//!
//! **Mapping.** A topic is an SNS topic named after it, sanitized as Dapr does (only
//! `A-Z a-z 0-9 - _`, at most 80 characters, `.fifo` appended with `fifo`). Each
//! consumer group — `consumerID`, the app id by default — is *one* SQS queue (also
//! sanitized), subscribed to every topic the app subscribes to, with the queue policy
//! that lets those topics send to it. SNS hands the queue a notification envelope; its
//! `Message` is delivered, to the subscription of the topic its `TopicArn` names.
//! Replicas of one app share the queue, so each message reaches one of them; different
//! apps have different queues and each gets every message. Unless
//! `disableEntityManagement` is set, topics, queues, the dead-letter queue with its
//! redrive policy and the subscriptions are created when missing (creation is
//! idempotent); with it, they must exist and are only looked up.
//!
//! **Publishing** is SNS `Publish`: it returns once SNS accepted the message; any
//! failure is returned. As in SNS, a message published to a topic no queue subscribes
//! to yet reaches no one.
//!
//! **Receiving** long-polls the queue (`messageWaitTimeSeconds`, up to
//! `messageMaxNumber` messages, each hidden for `messageVisibilityTimeout` seconds once
//! received). A message is deleted only once the app answered Done or Drop. A Retry (or
//! a sidecar that dies mid-delivery) leaves it alone: SQS makes it visible again when
//! its visibility timeout ends, so the timeout is also the retry delay, as in Dapr.
//! Without a dead-letter queue, a message received `messageRetryLimit` times is deleted
//! without delivery (kept, with `disableDeleteOnRetryLimit`, until its visibility timeout
//! ends — Dapr makes it visible at once, which only spins); with
//! `sqsDeadLettersQueueName`, SQS itself moves a message received more than
//! `messageReceiveLimit` times to that queue. Deliveries run in parallel
//! (`concurrencyMode`, at most `concurrencyLimit` at once, 0 for no limit) or one at a
//! time (`single`, which keeps a FIFO queue's order).
//!
//! **Outages.** A failed receive makes the loop wait (250 ms, doubling up to 5 s) and
//! set everything up again before polling — after an endpoint that lost its state (an
//! emulator's restart) topics, queue, policy and subscriptions are back by themselves.
//! A publish that finds its topic gone creates it again (and this component's own
//! subscriptions to it) and publishes once more; while the endpoint is away publishes
//! fail.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::{RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Deliver, Message, Outcome, PubSub, PubSubError, Subscribe};
use crate::aws::{self, AwsError, CredentialSources, Credentials};

pub const METADATA: &[&str] = &[
    "accessKey",
    "secretKey",
    "sessionToken",
    "region",
    "endpoint",
    "partition",
    "consumerID",
    "sqsDeadLettersQueueName",
    "fifo",
    "fifoMessageGroupID",
    "messageVisibilityTimeout",
    "messageRetryLimit",
    "disableDeleteOnRetryLimit",
    "messageReceiveLimit",
    "messageWaitTimeSeconds",
    "messageMaxNumber",
    "disableEntityManagement",
    "assetsManagementTimeoutSeconds",
    "accountID",
    "concurrencyMode",
    "concurrencyLimit",
    // Dapr's deprecated names, still read.
    "awsAccountID",
    "awsSecret",
    "awsRegion",
];

/// How long one publish, delete or visibility change may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest name SNS and SQS take.
const MAX_NAME_LENGTH: usize = 80;
const FIFO_SUFFIX: &str = ".fifo";
/// The receive loop's wait after a failure, doubled per failure in a row up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const SNS_VERSION: &str = "2010-03-31";

/// Settings read from the component's metadata.
#[derive(Clone)]
struct Settings {
    credentials: Credentials,
    region: String,
    partition: String,
    endpoint: Option<http::Uri>,
    /// `consumerID`, as written (sanitized when naming the queue).
    queue_name: String,
    dead_letters_queue: Option<String>,
    fifo: bool,
    fifo_group: String,
    visibility_timeout: u32,
    retry_limit: u64,
    disable_delete_on_retry_limit: bool,
    receive_limit: u64,
    wait_seconds: u32,
    max_messages: u32,
    disable_entity_management: bool,
    assets_timeout: Duration,
    account_id: Option<String>,
    parallel: bool,
    concurrency_limit: usize,
}

impl Settings {
    fn read(
        metadata: &ComponentMetadata,
        sources: &CredentialSources,
    ) -> Result<Self, ResourceError> {
        let credentials = Credentials::read(metadata, sources)?;
        let region = aws::region(metadata, sources)?;
        let endpoint = aws::endpoint(metadata)?;
        let queue_name = metadata.required("consumerID")?.to_owned();
        let positive = |name: &str, default: u64| -> Result<u64, ResourceError> {
            let value: i64 = metadata.number_or(name, i64::try_from(default).unwrap_or(0))?;
            u64::try_from(value)
                .ok()
                .filter(|value| *value > 0)
                .ok_or_else(|| {
                    metadata.field_error(name, format!("is {value}; it must be greater than 0"))
                })
        };
        let visibility_timeout = positive("messageVisibilityTimeout", 10)?;
        // SQS takes 0..=43200 seconds (12 hours).
        if visibility_timeout > 43_200 {
            return Err(metadata.field_error(
                "messageVisibilityTimeout",
                format!("is {visibility_timeout}; SQS takes at most 43200 (12 hours)"),
            ));
        }
        let retry_limit = positive("messageRetryLimit", 10)?;
        if retry_limit < 2 {
            return Err(metadata.field_error(
                "messageRetryLimit",
                format!("is {retry_limit}; it must be greater than 1"),
            ));
        }
        let receive_limit: i64 = metadata.number_or("messageReceiveLimit", 0)?;
        let receive_limit = u64::try_from(receive_limit).map_err(|_| {
            metadata.field_error(
                "messageReceiveLimit",
                format!("is {receive_limit}; it must not be negative"),
            )
        })?;
        let dead_letters_queue = metadata.get("sqsDeadLettersQueueName").map(str::to_owned);
        match (receive_limit > 0, dead_letters_queue.is_some()) {
            (true, false) => {
                return Err(metadata.field_error(
                    "sqsDeadLettersQueueName",
                    "is required with messageReceiveLimit: to use an SQS dead-letter queue, set both",
                ));
            }
            (false, true) => {
                return Err(metadata.field_error(
                    "messageReceiveLimit",
                    "is required with sqsDeadLettersQueueName: to use an SQS dead-letter queue, set both",
                ));
            }
            _ => {}
        }
        let disable_delete_on_retry_limit = metadata.bool_or("disableDeleteOnRetryLimit", false)?;
        if disable_delete_on_retry_limit && dead_letters_queue.is_some() {
            return Err(metadata.field_error(
                "disableDeleteOnRetryLimit",
                "cannot be true when sqsDeadLettersQueueName is set: remove one of them",
            ));
        }
        let wait_seconds = positive("messageWaitTimeSeconds", 2)?;
        if wait_seconds > 20 {
            return Err(metadata.field_error(
                "messageWaitTimeSeconds",
                format!("is {wait_seconds}; SQS long polls for at most 20 seconds"),
            ));
        }
        let max_messages = positive("messageMaxNumber", 10)?;
        if max_messages > 10 {
            return Err(metadata.field_error(
                "messageMaxNumber",
                format!("is {max_messages}; it must be at most 10"),
            ));
        }
        let parallel = match metadata.string_or("concurrencyMode", "parallel").as_str() {
            "parallel" => true,
            "single" => false,
            other => {
                return Err(metadata.field_error(
                    "concurrencyMode",
                    format!("'{other}' is not parallel or single"),
                ));
            }
        };
        let concurrency_limit: i64 = metadata.number_or("concurrencyLimit", 0)?;
        let concurrency_limit = usize::try_from(concurrency_limit).map_err(|_| {
            metadata.field_error(
                "concurrencyLimit",
                format!("is {concurrency_limit}; it must be 0 (no limit) or more"),
            )
        })?;
        let assets_seconds: f64 = metadata.number_or("assetsManagementTimeoutSeconds", 5.0)?;
        if !(assets_seconds > 0.0 && assets_seconds <= 3600.0) {
            return Err(metadata.field_error(
                "assetsManagementTimeoutSeconds",
                format!("is {assets_seconds}; it must be more than 0 and at most 3600"),
            ));
        }
        // Dapr resolves the account through STS unless given exactly 12 digits' worth.
        let account_id = metadata
            .get("accountID")
            .filter(|id| id.len() == 12)
            .map(str::to_owned);
        if let Some(id) = metadata.get("accountID")
            && id.len() != 12
        {
            tracing::warn!(
                "{}: accountID '{id}' is not 12 characters long and is ignored; the account is looked up with STS",
                metadata.component().describe()
            );
        }
        let partition = metadata
            .get("partition")
            .map_or_else(|| aws::partition_of(&region).to_owned(), str::to_owned);
        let fifo_group = metadata.string_or("fifoMessageGroupID", &queue_name);
        Ok(Self {
            credentials,
            region,
            partition,
            endpoint,
            queue_name,
            dead_letters_queue,
            fifo: metadata.bool_or("fifo", false)?,
            fifo_group,
            visibility_timeout: u32::try_from(visibility_timeout).unwrap_or(u32::MAX),
            retry_limit,
            disable_delete_on_retry_limit,
            receive_limit,
            wait_seconds: u32::try_from(wait_seconds).unwrap_or(20),
            max_messages: u32::try_from(max_messages).unwrap_or(10),
            disable_entity_management: metadata.bool_or("disableEntityManagement", false)?,
            assets_timeout: Duration::from_secs_f64(assets_seconds),
            account_id,
            parallel,
            concurrency_limit,
        })
    }
}

/// A topic or queue name as SNS and SQS take it, made as Dapr makes it: only
/// `A-Z a-z 0-9 - _` kept, at most 80 characters, with `.fifo` at the end for FIFO.
fn sanitize(name: &str, fifo: bool) -> String {
    let name = if fifo {
        name.strip_suffix(FIFO_SUFFIX).unwrap_or(name)
    } else {
        name
    };
    let mut kept: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(MAX_NAME_LENGTH)
        .collect();
    if fifo {
        kept.truncate(MAX_NAME_LENGTH - FIFO_SUFFIX.len());
        kept.push_str(FIFO_SUFFIX);
    }
    kept
}

/// An SQS queue's URL (to call it) and ARN (to subscribe it).
#[derive(Clone, Debug)]
struct Queue {
    url: String,
    arn: String,
}

/// This consumer's queue and its dead-letter queue, once set up.
#[derive(Clone, Debug)]
struct Queues {
    main: Queue,
    dead: Option<Queue>,
}

/// One topic's subscriber.
#[derive(Clone)]
struct Handler {
    id: u64,
    topic: String,
    deliver: Arc<dyn Deliver>,
    tasks: TaskTracker,
}

#[derive(Default)]
struct Subscriptions {
    /// By sanitized topic name, which is what an envelope's `TopicArn` ends with.
    handlers: HashMap<String, Handler>,
    /// Stops the running receive loop; `None` when none runs.
    receiving: Option<CancellationToken>,
    next_id: u64,
}

pub struct SnsSqs {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    client: aws::Client,
    account_id: String,
    /// Topic ARNs by sanitized name.
    topics: parking_lot::Mutex<HashMap<String, String>>,
    /// Taken for writing while topics, queues and subscriptions are set up, and for
    /// reading by publishes: a publish never slips between a topic's re-creation and
    /// this component's subscription to it.
    entities: RwLock<()>,
    subscriptions: parking_lot::Mutex<Subscriptions>,
    /// Set when a call failed in a way that may mean the endpoint lost its state (an
    /// emulator restarted, entities deleted): the next publish first sets this
    /// component's subscriptions up again, so that it never succeeds into a topic its
    /// own queue is no longer subscribed to.
    stale: AtomicBool,
}

impl SnsSqs {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn PubSub>, ResourceError> {
        let settings = Settings::read(metadata, &CredentialSources::default())?;
        let client = aws::Client::new(
            settings.credentials.clone(),
            settings.region.clone(),
            settings.endpoint.clone(),
        );
        // Dapr asks STS for the account at start-up unless it is given; that also
        // checks the endpoint and the credentials before the first publish.
        let account_id = match &settings.account_id {
            Some(id) => id.clone(),
            None => caller_account(&client, settings.assets_timeout)
                .await
                .map_err(|error| {
                    let field = if settings.endpoint.is_some() {
                        "endpoint"
                    } else {
                        "accountID"
                    };
                    metadata.field_error(
                        field,
                        format!(
                            "cannot look up the AWS account (STS GetCallerIdentity): {error}; \
                             check the endpoint, region and credentials, or set accountID"
                        ),
                    )
                })?,
        };
        Ok(Arc::new(Self {
            inner: Arc::new(Inner {
                settings,
                client,
                account_id,
                topics: Default::default(),
                entities: RwLock::new(()),
                subscriptions: Default::default(),
                stale: AtomicBool::new(false),
            }),
        }))
    }
}

/// The account of the credentials, from STS.
async fn caller_account(client: &aws::Client, timeout: Duration) -> Result<String, AwsError> {
    let answer = client
        .query("sts", "2011-06-15", "GetCallerIdentity", &[], timeout)
        .await?;
    aws::xml_value(&answer, "Account").ok_or_else(|| AwsError::Unexpected {
        endpoint: client.endpoint("sts").to_string(),
        what: "GetCallerIdentity without an Account".to_owned(),
    })
}

fn aws_error(
    service: &'static str,
    action: impl Into<String>,
) -> impl FnOnce(AwsError) -> PubSubError {
    let action = action.into();
    move |source| PubSubError::Aws {
        service,
        action,
        source: Box::new(source),
    }
}

impl Inner {
    fn arn(&self, service: &str, name: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{name}",
            self.settings.partition, self.settings.region, self.account_id
        )
    }

    async fn sns(
        &self,
        action: &str,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, AwsError> {
        self.client
            .query("sns", SNS_VERSION, action, params, timeout)
            .await
    }

    async fn sqs(&self, action: &str, body: Value, timeout: Duration) -> Result<Value, AwsError> {
        self.client
            .json("sqs", "AmazonSQS", action, body, timeout)
            .await
    }

    /// The ARN of `topic`'s SNS topic: remembered, or created (or, with
    /// `disableEntityManagement`, looked up).
    async fn topic_arn(&self, topic: &str) -> Result<String, PubSubError> {
        let name = sanitize(topic, self.settings.fifo);
        if let Some(arn) = self.topics.lock().get(&name) {
            return Ok(arn.clone());
        }
        self.set_up_topic(topic).await
    }

    /// Creates `topic`'s SNS topic (or checks that it exists) and remembers its ARN.
    async fn set_up_topic(&self, topic: &str) -> Result<String, PubSubError> {
        let settings = &self.settings;
        let name = sanitize(topic, settings.fifo);
        let timeout = settings.assets_timeout;
        let arn = if settings.disable_entity_management {
            let arn = self.arn("sns", &name);
            self.sns(
                "GetTopicAttributes",
                &[("TopicArn".to_owned(), arn.clone())],
                timeout,
            )
            .await
            .map_err(aws_error("SNS", format!("find topic '{name}' ({arn})")))?;
            arn
        } else {
            let mut params = vec![
                ("Name".to_owned(), name.clone()),
                ("Tags.member.1.Key".to_owned(), "dapr-topic-name".to_owned()),
                ("Tags.member.1.Value".to_owned(), topic.to_owned()),
            ];
            if settings.fifo {
                for (n, (key, value)) in
                    [("FifoTopic", "true"), ("ContentBasedDeduplication", "true")]
                        .into_iter()
                        .enumerate()
                {
                    params.push((format!("Attributes.entry.{}.key", n + 1), key.to_owned()));
                    params.push((
                        format!("Attributes.entry.{}.value", n + 1),
                        value.to_owned(),
                    ));
                }
            }
            let answer = self
                .sns("CreateTopic", &params, timeout)
                .await
                .map_err(aws_error("SNS", format!("create topic '{name}'")))?;
            aws::xml_value(&answer, "TopicArn").ok_or_else(|| PubSubError::Aws {
                service: "SNS",
                action: format!("create topic '{name}'"),
                source: Box::new(AwsError::Unexpected {
                    endpoint: self.client.endpoint("sns").to_string(),
                    what: "CreateTopic without a TopicArn".to_owned(),
                }),
            })?
        };
        self.topics.lock().insert(name, arn.clone());
        Ok(arn)
    }

    /// Creates (or finds) an SQS queue named after `name`.
    async fn set_up_queue(&self, name: &str) -> Result<Queue, PubSubError> {
        let settings = &self.settings;
        let sanitized = sanitize(name, settings.fifo);
        let timeout = settings.assets_timeout;
        let url = if settings.disable_entity_management {
            self.sqs(
                "GetQueueUrl",
                json!({"QueueName": sanitized, "QueueOwnerAWSAccountId": self.account_id}),
                timeout,
            )
            .await
            .map_err(aws_error("SQS", format!("find queue '{sanitized}'")))?
        } else {
            let mut request = json!({"QueueName": sanitized, "tags": {"dapr-queue-name": name}});
            if settings.fifo {
                request["Attributes"] =
                    json!({"FifoQueue": "true", "ContentBasedDeduplication": "true"});
            }
            self.sqs("CreateQueue", request, timeout)
                .await
                .map_err(aws_error("SQS", format!("create queue '{sanitized}'")))?
        };
        let url = string_field(&url, "QueueUrl")
            .ok_or_else(|| unexpected_sqs(self, "a queue without a QueueUrl"))?;
        let attributes = self
            .sqs(
                "GetQueueAttributes",
                json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
                timeout,
            )
            .await
            .map_err(aws_error(
                "SQS",
                format!("read the ARN of queue '{sanitized}'"),
            ))?;
        let arn = attributes
            .get("Attributes")
            .and_then(|attributes| string_field(attributes, "QueueArn"))
            .ok_or_else(|| unexpected_sqs(self, "GetQueueAttributes without a QueueArn"))?;
        Ok(Queue { url, arn })
    }

    /// Sets up everything `topics` need: each topic, the queue (and dead-letter queue
    /// with its redrive policy), the queue policy letting the topics send to it, and
    /// the subscriptions. Idempotent. Callers hold `entities` for writing.
    async fn set_up(&self, topics: &[String]) -> Result<Queues, PubSubError> {
        let settings = &self.settings;
        let mut arns = Vec::with_capacity(topics.len());
        for topic in topics {
            arns.push(self.set_up_topic(topic).await?);
        }
        let main = self.set_up_queue(&settings.queue_name).await?;
        let dead = match &settings.dead_letters_queue {
            Some(name) => Some(self.set_up_queue(name).await?),
            None => None,
        };
        let queues = Queues { main, dead };
        if settings.disable_entity_management {
            return Ok(queues);
        }
        let timeout = settings.assets_timeout;
        if let Some(dead) = &queues.dead {
            let policy = json!({
                "deadLetterTargetArn": dead.arn,
                "maxReceiveCount": settings.receive_limit.to_string(),
            });
            self.sqs(
                "SetQueueAttributes",
                json!({"QueueUrl": queues.main.url, "Attributes": {"RedrivePolicy": policy.to_string()}}),
                timeout,
            )
            .await
            .map_err(aws_error("SQS", "set the dead-letter queue's redrive policy"))?;
        }
        self.allow_topics(&queues.main, &arns).await?;
        for arn in &arns {
            let params = [
                ("TopicArn".to_owned(), arn.clone()),
                ("Protocol".to_owned(), "sqs".to_owned()),
                ("Endpoint".to_owned(), queues.main.arn.clone()),
            ];
            self.sns("Subscribe", &params, timeout)
                .await
                .map_err(aws_error(
                    "SNS",
                    format!("subscribe queue {} to topic {arn}", queues.main.arn),
                ))?;
        }
        Ok(queues)
    }

    /// Adds to the queue's policy a statement letting each topic send to it, keeping
    /// the statements already there (other apps' topics).
    async fn allow_topics(&self, queue: &Queue, topic_arns: &[String]) -> Result<(), PubSubError> {
        let timeout = self.settings.assets_timeout;
        let attributes = self
            .sqs(
                "GetQueueAttributes",
                json!({"QueueUrl": queue.url, "AttributeNames": ["Policy"]}),
                timeout,
            )
            .await
            .map_err(aws_error("SQS", "read the queue policy"))?;
        let mut policy = attributes
            .get("Attributes")
            .and_then(|attributes| string_field(attributes, "Policy"))
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"Version": "2012-10-17"}));
        if !policy.get("Statement").is_some_and(Value::is_array) {
            policy["Statement"] = json!([]);
        }
        let statements = policy["Statement"]
            .as_array_mut()
            .expect("made an array above");
        let mut changed = false;
        for arn in topic_arns {
            let present = statements.iter().any(|statement| {
                statement.get("Resource").and_then(Value::as_str) == Some(queue.arn.as_str())
                    && statement
                        .pointer("/Condition/ArnEquals/aws:SourceArn")
                        .and_then(Value::as_str)
                        == Some(arn.as_str())
            });
            if !present {
                statements.push(json!({
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": arn}},
                }));
                changed = true;
            }
        }
        if changed {
            self.sqs(
                "SetQueueAttributes",
                json!({"QueueUrl": queue.url, "Attributes": {"Policy": policy.to_string()}}),
                timeout,
            )
            .await
            .map_err(aws_error(
                "SQS",
                "set the queue policy letting SNS send to it",
            ))?;
        }
        Ok(())
    }

    /// Every subscribed topic, as the app named it.
    fn subscribed_topics(&self) -> Vec<String> {
        self.subscriptions
            .lock()
            .handlers
            .values()
            .map(|handler| handler.topic.clone())
            .collect()
    }

    /// After a failure that may have cost the endpoint its state: sets this
    /// component's subscriptions up again and forgets the topics it knew, so they are
    /// created again when next published to.
    async fn recover(&self) -> Result<(), PubSubError> {
        let _writing = self.entities.write().await;
        if !self.stale.load(Ordering::Acquire) {
            return Ok(());
        }
        let topics = self.subscribed_topics();
        self.topics.lock().clear();
        if !topics.is_empty() {
            self.set_up(&topics).await?;
        }
        self.stale.store(false, Ordering::Release);
        Ok(())
    }

    async fn publish_once(&self, arn: &str, text: &str) -> Result<(), AwsError> {
        let mut params = vec![
            ("TopicArn".to_owned(), arn.to_owned()),
            ("Message".to_owned(), text.to_owned()),
        ];
        if self.settings.fifo {
            params.push((
                "MessageGroupId".to_owned(),
                self.settings.fifo_group.clone(),
            ));
        }
        self.sns("Publish", &params, OPERATION_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// Long-polls the queue once.
    async fn receive(&self, queue: &Queue) -> Result<Vec<Value>, AwsError> {
        let settings = &self.settings;
        let answer = self
            .sqs(
                "ReceiveMessage",
                json!({
                    "QueueUrl": queue.url,
                    "MaxNumberOfMessages": settings.max_messages,
                    "VisibilityTimeout": settings.visibility_timeout,
                    "WaitTimeSeconds": settings.wait_seconds,
                    "AttributeNames": ["All"],
                    "MessageSystemAttributeNames": ["All"],
                }),
                Duration::from_secs(u64::from(settings.wait_seconds)) + OPERATION_TIMEOUT,
            )
            .await?;
        Ok(match answer.get("Messages") {
            Some(Value::Array(messages)) => messages.clone(),
            _ => Vec::new(),
        })
    }

    async fn delete(&self, queue: &Queue, receipt: &str) -> Result<(), AwsError> {
        self.sqs(
            "DeleteMessage",
            json!({"QueueUrl": queue.url, "ReceiptHandle": receipt}),
            OPERATION_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Receives until `stop` fires. After a failed receive it waits — longer after
    /// each failure in a row — and sets everything up again before receiving: the
    /// endpoint may have lost the queue, the topics or the subscriptions.
    async fn consume(self: Arc<Self>, mut queues: Queues, stop: CancellationToken) {
        let slots = (self.settings.parallel && self.settings.concurrency_limit > 0)
            .then(|| Arc::new(Semaphore::new(self.settings.concurrency_limit)));
        let queue = &self.settings.queue_name;
        let mut failures: u32 = 0;
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                received = self.receive(&queues.main) => received,
            };
            let error = match received {
                Ok(messages) => {
                    if failures > 0 {
                        tracing::info!(queue = %queue, "receiving from SQS again");
                        failures = 0;
                    }
                    for message in messages {
                        self.clone().handle(&queues, message, slots.as_ref()).await;
                    }
                    continue;
                }
                Err(error) => error,
            };
            self.stale.store(true, Ordering::Release);
            failures = failures.saturating_add(1);
            if failures == 1 {
                tracing::warn!(queue = %queue, "receiving from SQS failed: {error}; retrying");
            } else {
                tracing::debug!(queue = %queue, "receiving from SQS failed again: {error}");
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
                let topics = self.subscribed_topics();
                let set_up = {
                    let _writing = self.entities.write().await;
                    self.set_up(&topics).await
                };
                match set_up {
                    Ok(fresh) => {
                        self.stale.store(false, Ordering::Release);
                        queues = fresh;
                        break;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::debug!(queue = %queue, "setting up SNS/SQS again failed: {error}");
                    }
                }
            }
        }
    }

    /// Checks one received message against the limits and hands it to its topic's
    /// subscriber; deletes it once the subscriber is done with it.
    async fn handle(
        self: Arc<Self>,
        queues: &Queues,
        message: Value,
        slots: Option<&Arc<Semaphore>>,
    ) {
        let settings = &self.settings;
        let queue_name = &settings.queue_name;
        let Some(receipt) = string_field(&message, "ReceiptHandle") else {
            tracing::warn!(queue = %queue_name, "SQS returned a message without a receipt handle; ignored");
            return;
        };
        let id = string_field(&message, "MessageId").unwrap_or_default();
        let received = message
            .pointer("/Attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(1);
        if queues.dead.is_none() && received >= settings.retry_limit {
            if settings.disable_delete_on_retry_limit {
                tracing::warn!(queue = %queue_name, message = %id, "message received {received} times (messageRetryLimit); not delivered, left in the queue (disableDeleteOnRetryLimit)");
            } else {
                tracing::warn!(queue = %queue_name, message = %id, "message received {received} times (messageRetryLimit); deleted without delivery");
                if let Err(error) = self.delete(&queues.main, &receipt).await {
                    tracing::warn!(queue = %queue_name, message = %id, "deleting the message failed: {error}");
                }
            }
            return;
        }
        if queues.dead.is_some() && received > settings.retry_limit {
            tracing::warn!(queue = %queue_name, message = %id, "message received {received} times, more than messageRetryLimit; not delivered (SQS moves it to the dead-letter queue after messageReceiveLimit receives)");
            return;
        }
        let envelope = string_field(&message, "Body")
            .and_then(|body| serde_json::from_str::<Value>(&body).ok());
        let (Some(data), Some(topic_arn)) = (
            envelope
                .as_ref()
                .and_then(|envelope| string_field(envelope, "Message")),
            envelope
                .as_ref()
                .and_then(|envelope| string_field(envelope, "TopicArn")),
        ) else {
            tracing::warn!(queue = %queue_name, message = %id, "not an SNS notification (no Message and TopicArn); left in the queue");
            return;
        };
        let topic = topic_arn.rsplit(':').next().unwrap_or_default().to_owned();
        let Some(handler) = self.subscriptions.lock().handlers.get(&topic).cloned() else {
            tracing::debug!(queue = %queue_name, message = %id, "no subscription here for topic '{topic}'; left in the queue");
            return;
        };
        let tasks = handler.tasks.clone();
        let main = queues.main.clone();
        let inner = self.clone();
        let job = async move {
            let outcome = handler
                .deliver
                .deliver(Message {
                    topic: handler.topic.clone(),
                    data: Bytes::from(data),
                    metadata: Default::default(),
                })
                .await;
            match outcome {
                Outcome::Done | Outcome::Drop => {
                    if let Err(error) = inner.delete(&main, &receipt).await {
                        // Not lost: it comes back after its visibility timeout.
                        tracing::warn!(topic = %handler.topic, message = %id, "deleting a delivered message from SQS failed, it will be delivered again: {error}");
                    }
                }
                // Left to SQS: visible again once its visibility timeout ends.
                Outcome::Retry => {}
            }
        };
        if settings.parallel {
            let slot = match slots {
                Some(slots) => match slots.clone().acquire_owned().await {
                    Ok(slot) => Some(slot),
                    Err(_) => return,
                },
                None => None,
            };
            tasks.spawn(async move {
                job.await;
                drop(slot);
            });
        } else {
            let _ = tasks.spawn(job).await;
        }
    }
}

/// The wait after `failures` failures in a row: 250 ms, doubled per failure, at most 5 s.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

fn string_field(value: &Value, name: &str) -> Option<String> {
    value.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn unexpected_sqs(inner: &Inner, what: &str) -> PubSubError {
    PubSubError::Aws {
        service: "SQS",
        action: "set up the queue".to_owned(),
        source: Box::new(AwsError::Unexpected {
            endpoint: inner.client.endpoint("sqs").to_string(),
            what: what.to_owned(),
        }),
    }
}

#[async_trait]
impl PubSub for SnsSqs {
    async fn publish(&self, message: Message) -> Result<(), PubSubError> {
        let inner = &self.inner;
        let text = std::str::from_utf8(&message.data).map_err(|_| PubSubError::InvalidMessage {
            topic: message.topic.clone(),
            message: "SNS takes text: the data is not UTF-8".to_owned(),
        })?;
        let name = sanitize(&message.topic, inner.settings.fifo);
        let mut again = true;
        loop {
            if inner.stale.load(Ordering::Acquire) {
                inner.recover().await?;
            }
            let _reading = inner.entities.read().await;
            let arn = match inner.topic_arn(&message.topic).await {
                Ok(arn) => arn,
                Err(error) => {
                    inner.stale.store(true, Ordering::Release);
                    return Err(error);
                }
            };
            let Err(error) = inner.publish_once(&arn, text).await else {
                return Ok(());
            };
            if error.may_have_lost_state() {
                inner.stale.store(true, Ordering::Release);
            }
            // The topic is gone (the endpoint lost its state): set up again — the
            // topic, and this component's own subscriptions — and publish once more.
            if again && error.is_not_found() && !inner.settings.disable_entity_management {
                tracing::info!(topic = %message.topic, "SNS topic not found ({error}); creating it again");
                inner.topics.lock().remove(&name);
                again = false;
                continue;
            }
            return Err(PubSubError::Aws {
                service: "SNS",
                action: format!("publish to topic '{}' ({arn})", message.topic),
                source: Box::new(error),
            });
        }
    }

    async fn subscribe(
        &self,
        subscription: Subscribe,
        deliver: Arc<dyn Deliver>,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, PubSubError> {
        let inner = self.inner.clone();
        let topic = subscription.topic;
        let queues = {
            let _writing = inner.entities.write().await;
            inner.set_up(std::slice::from_ref(&topic)).await?
        };
        let name = sanitize(&topic, inner.settings.fifo);
        let handler = {
            let mut subscriptions = inner.subscriptions.lock();
            subscriptions.next_id += 1;
            let handler = Handler {
                id: subscriptions.next_id,
                topic: topic.clone(),
                deliver,
                tasks: TaskTracker::new(),
            };
            subscriptions.handlers.insert(name.clone(), handler.clone());
            if subscriptions.receiving.is_none() {
                let receiving = CancellationToken::new();
                subscriptions.receiving = Some(receiving.clone());
                tokio::spawn(inner.clone().consume(queues, receiving));
            }
            handler
        };
        Ok(tokio::spawn(async move {
            stop.cancelled().await;
            {
                let mut subscriptions = inner.subscriptions.lock();
                if subscriptions.handlers.get(&name).map(|h| h.id) == Some(handler.id) {
                    subscriptions.handlers.remove(&name);
                }
                if subscriptions.handlers.is_empty()
                    && let Some(receiving) = subscriptions.receiving.take()
                {
                    receiving.cancel();
                }
            }
            handler.tasks.close();
            handler.tasks.wait().await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_spec::Component;

    use super::*;

    fn nowhere() -> CredentialSources {
        CredentialSources {
            env: |_| None,
            home: None,
        }
    }

    fn settings(values: &[(&str, &str)]) -> Result<Settings, ResourceError> {
        let mut all: BTreeMap<String, String> = [
            ("consumerID", "app"),
            ("region", "us-east-1"),
            ("accessKey", "AKID"),
            ("secretKey", "hunter2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in values {
            all.insert(k.to_string(), v.to_string());
        }
        Settings::read(
            &ComponentMetadata::new(Component::new("aws", "pubsub.aws.snssqs"), all),
            &nowhere(),
        )
    }

    #[test]
    fn defaults_are_dapr_s() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.visibility_timeout, 10);
        assert_eq!(settings.retry_limit, 10);
        assert_eq!(settings.wait_seconds, 2);
        assert_eq!(settings.max_messages, 10);
        assert_eq!(settings.receive_limit, 0);
        assert_eq!(settings.assets_timeout, Duration::from_secs(5));
        assert_eq!(settings.concurrency_limit, 0);
        assert!(settings.parallel);
        assert!(!settings.fifo);
        assert!(!settings.disable_entity_management);
        assert!(!settings.disable_delete_on_retry_limit);
        assert_eq!(settings.dead_letters_queue, None);
        assert_eq!(settings.fifo_group, "app", "the consumer id, as in Dapr");
        assert_eq!(settings.partition, "aws");
        assert_eq!(settings.account_id, None);
        assert!(settings.endpoint.is_none());
    }

    #[test]
    fn wrong_values_are_refused_by_name_without_echoing_secrets() {
        for (values, name) in [
            (
                &[("messageVisibilityTimeout", "0")][..],
                "messageVisibilityTimeout",
            ),
            (
                &[("messageVisibilityTimeout", "ten")],
                "messageVisibilityTimeout",
            ),
            (&[("messageRetryLimit", "1")], "messageRetryLimit"),
            (&[("messageWaitTimeSeconds", "0")], "messageWaitTimeSeconds"),
            (
                &[("messageWaitTimeSeconds", "21")],
                "messageWaitTimeSeconds",
            ),
            (&[("messageMaxNumber", "11")], "messageMaxNumber"),
            (&[("messageMaxNumber", "0")], "messageMaxNumber"),
            (&[("messageReceiveLimit", "3")], "sqsDeadLettersQueueName"),
            (&[("sqsDeadLettersQueueName", "dlq")], "messageReceiveLimit"),
            (&[("messageReceiveLimit", "-1")], "messageReceiveLimit"),
            (
                &[
                    ("messageReceiveLimit", "3"),
                    ("sqsDeadLettersQueueName", "dlq"),
                    ("disableDeleteOnRetryLimit", "true"),
                ],
                "disableDeleteOnRetryLimit",
            ),
            (&[("concurrencyMode", "many")], "concurrencyMode"),
            (&[("concurrencyLimit", "-1")], "concurrencyLimit"),
            (
                &[("assetsManagementTimeoutSeconds", "0")],
                "assetsManagementTimeoutSeconds",
            ),
            (&[("fifo", "maybe")], "fifo"),
            (&[("endpoint", "localhost:4566")], "endpoint"),
            (&[("consumerID", "")], "consumerID"),
            (&[("region", "")], "region"),
        ] {
            let error = settings(values)
                .err()
                .unwrap_or_else(|| panic!("{values:?} is refused"))
                .to_string();
            assert!(error.contains(name), "{values:?}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let error = settings(&[("secretKey", "")]).err().unwrap().to_string();
        assert!(
            error.contains("secretKey") && !error.contains("hunter2"),
            "{error}"
        );
    }

    #[test]
    fn values_are_read_as_dapr_reads_them() {
        let settings = settings(&[
            ("fifo", "true"),
            ("fifoMessageGroupID", "group"),
            ("messageReceiveLimit", "3"),
            ("sqsDeadLettersQueueName", "dead"),
            ("assetsManagementTimeoutSeconds", "0.5"),
            ("accountID", "123456789012"),
            ("concurrencyMode", "single"),
            ("endpoint", "http://127.0.0.1:5000"),
            ("awsRegion", "cn-north-1"),
            ("region", ""),
        ])
        .unwrap();
        assert!(settings.fifo && !settings.parallel);
        assert_eq!(settings.fifo_group, "group");
        assert_eq!(settings.receive_limit, 3);
        assert_eq!(settings.dead_letters_queue.as_deref(), Some("dead"));
        assert_eq!(settings.assets_timeout, Duration::from_millis(500));
        assert_eq!(settings.account_id.as_deref(), Some("123456789012"));
        assert_eq!(settings.region, "cn-north-1");
        assert_eq!(settings.partition, "aws-cn");
        assert_eq!(
            settings.endpoint.unwrap().to_string(),
            "http://127.0.0.1:5000/"
        );
    }

    #[test]
    fn the_receive_loop_backs_off_up_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_secs(4));
        assert_eq!(backoff(6), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn names_are_sanitized_as_dapr_does() {
        assert_eq!(sanitize("orders.v1/eu", false), "ordersv1eu");
        assert_eq!(sanitize("my_app-1", false), "my_app-1");
        assert_eq!(sanitize("orders", true), "orders.fifo");
        assert_eq!(sanitize("orders.fifo", true), "orders.fifo");
        assert_eq!(sanitize("orders.fifo", false), "ordersfifo");
        let long = "x".repeat(100);
        assert_eq!(sanitize(&long, false).len(), 80);
        let fifo = sanitize(&long, true);
        assert_eq!(fifo.len(), 80);
        assert!(fifo.ends_with(".fifo"));
    }
}
