//! Helpers shared by the pub/sub component tests: building a component from metadata
//! pairs, a scripted subscriber, and a sidecar that dies mid-delivery.
#![allow(dead_code)] // each test file uses its own share of them
pub mod bindings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tandem_components::pubsub::{self, Deliver, Message, Outcome, PubSub, Subscribe};
use tandem_spec::{Component, ComponentMetadata};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

pub async fn build(kind: &str, values: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let component = Component::new("test", kind);
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pubsub::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .unwrap_or_else(|error| panic!("{kind} builds: {error}"))
}

/// Records deliveries and answers with a scripted outcome.
pub struct Recorder {
    seen: mpsc::UnboundedSender<Bytes>,
    /// Outcomes to give, in order; `Done` once they run out.
    script: Mutex<Vec<Outcome>>,
}

impl Recorder {
    pub fn new(script: Vec<Outcome>) -> (Arc<Self>, mpsc::UnboundedReceiver<Bytes>) {
        let (seen, received) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                seen,
                script: Mutex::new(script),
            }),
            received,
        )
    }
}

#[async_trait]
impl Deliver for Recorder {
    async fn deliver(&self, message: Message) -> Outcome {
        let _ = self.seen.send(message.data);
        let mut script = self.script.lock().await;
        if script.is_empty() {
            Outcome::Done
        } else {
            script.remove(0)
        }
    }
}

/// Takes deliveries and never finishes them, like a sidecar that died mid-delivery.
pub struct Stuck;

#[async_trait]
impl Deliver for Stuck {
    async fn deliver(&self, _: Message) -> Outcome {
        std::future::pending().await
    }
}

/// A sidecar that takes `topic`'s next message and dies before finishing it: its
/// consumer runs on a runtime of its own, which is then dropped with all its tasks.
pub fn crash_mid_delivery(
    broker: impl FnOnce()
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn PubSub>> + Send>>
    + Send
    + 'static,
    topic: &'static str,
) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let broker = broker().await;
            let stop = CancellationToken::new();
            let _task = broker
                .subscribe(subscription(topic), Arc::new(Stuck), stop)
                .await
                .unwrap();
            broker.publish(message(topic, "unfinished")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
}

pub fn message(topic: &str, data: &str) -> Message {
    Message {
        topic: topic.into(),
        data: Bytes::from(data.to_owned()),
        metadata: Default::default(),
    }
}

pub fn subscription(topic: &str) -> Subscribe {
    Subscribe {
        topic: topic.into(),
        metadata: Default::default(),
    }
}

/// Builds `kind` as the component `orders` of `components/{file}`, returning the
/// error's text when it fails (errors name the file, so tests can check they do).
pub async fn try_build(
    kind: &str,
    file: &str,
    values: &[(&str, &str)],
) -> Result<Arc<dyn PubSub>, String> {
    let component = Component {
        file: Some(format!("components/{file}").into()),
        ..Component::new("orders", kind)
    };
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pubsub::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

/// Everything `seen` gets until it has been quiet for `quiet`.
pub async fn drain(seen: &mut mpsc::UnboundedReceiver<Bytes>, quiet: Duration) -> Vec<String> {
    let mut all = Vec::new();
    while let Some(data) = next(seen, quiet).await {
        all.push(data);
    }
    all
}

/// Publishes `p0`, `p1`, ... to `topic` one after another until `publishing` is
/// cleared; the task ends with the messages the broker acknowledged and the number of
/// publishes that failed (each failure pauses 50 ms).
pub fn publish_until_stopped(
    pubsub: Arc<dyn PubSub>,
    topic: &'static str,
    publishing: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let (mut acknowledged, mut failed) = (Vec::new(), 0);
        let mut n = 0;
        while publishing.load(std::sync::atomic::Ordering::Relaxed) {
            let data = format!("p{n}");
            n += 1;
            match pubsub.publish(message(topic, &data)).await {
                Ok(()) => acknowledged.push(data),
                Err(_) => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        (acknowledged, failed)
    })
}

/// Waits up to `within` until every one of `expected` has come on `seen` (some may come
/// twice: at least once); panics naming the ones that did not.
pub async fn expect_every(
    seen: &mut mpsc::UnboundedReceiver<Bytes>,
    expected: std::collections::HashSet<String>,
    within: Duration,
) {
    let mut missing = expected;
    let total = missing.len();
    let deadline = std::time::Instant::now() + within;
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        if let Some(data) = next(seen, Duration::from_millis(500)).await {
            missing.remove(&data);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {total} acknowledged messages were not delivered: {missing:?}",
        missing.len()
    );
}

pub async fn next(
    received: &mut mpsc::UnboundedReceiver<Bytes>,
    within: Duration,
) -> Option<String> {
    tokio::time::timeout(within, received.recv())
        .await
        .ok()
        .flatten()
        .map(|data| String::from_utf8(data.to_vec()).unwrap())
}

/// Runs `openssl` with `args` in `dir`.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes `{name}.key` and `{name}.crt` in `dir`, signed by `ca` (self-signed without).
pub fn certificate(
    dir: &std::path::Path,
    name: &str,
    subject: &str,
    ca: Option<&str>,
    extensions: &str,
) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (key, crt, csr) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("{name}.csr"),
    );
    let Some(ca) = ca else {
        let args = [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout", &key, "-out", &crt, "-days", "1", "-subj", subject,
            ],
        ];
        openssl(dir, &args.concat());
        return;
    };
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", subject],
        ]
        .concat(),
    );
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
}
