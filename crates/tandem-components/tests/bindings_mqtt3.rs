//! `bindings.mqtt3` against a private Mosquitto on a free port: `create` publishes to the
//! component's topic (or the request's), reading hands each message over with its topic
//! and acknowledges it only once taken.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_components::bindings::{self, Binding, Handle, InputEvent, InvokeRequest, Outcome};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::MosquittoServer;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

async fn binding(values: &[(&str, &str)]) -> Result<Arc<dyn Binding>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let metadata = ComponentMetadata::new(Component::new("sensors", "bindings.mqtt3"), values);
    bindings::registry()
        .build(&metadata)
        .await
        .map_err(|error| error.to_string())
}

/// Records events and answers with a scripted outcome (`Done` once the script runs out).
struct Recorder {
    seen: mpsc::UnboundedSender<InputEvent>,
    script: Mutex<Vec<Outcome>>,
}

#[async_trait]
impl Handle for Recorder {
    async fn handle(&self, event: InputEvent) -> Outcome {
        let _ = self.seen.send(event);
        let mut script = self.script.lock().await;
        if script.is_empty() {
            Outcome::Done
        } else {
            script.remove(0)
        }
    }
}

fn create(data: &str, metadata: &[(&str, &str)]) -> InvokeRequest {
    InvokeRequest {
        operation: "create".into(),
        data: data.to_owned().into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

async fn next(seen: &mut mpsc::UnboundedReceiver<InputEvent>) -> Option<InputEvent> {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn create_publishes_and_reading_hands_over_each_message_with_its_topic() {
    let broker = MosquittoServer::start();
    let url = format!("tcp://{}", broker.address());
    let reader = binding(&[("url", &url), ("topic", "sensors/#")])
        .await
        .unwrap();
    let writer = binding(&[("url", &url), ("topic", "sensors/kitchen")])
        .await
        .unwrap();
    assert_eq!(writer.operations(), ["create"]);

    let (seen, mut received) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder {
        seen,
        script: Mutex::new(vec![Outcome::Retry]),
    });
    let stop = CancellationToken::new();
    let task = reader.read(recorder, stop.clone()).await.unwrap();

    assert_eq!(writer.invoke(create("21.5", &[])).await.unwrap(), None);
    writer
        .invoke(create("19.0", &[("topic", "sensors/hall")]))
        .await
        .unwrap();
    let first = next(&mut received).await.expect("the first reading");
    assert_eq!(first.data, "21.5");
    assert_eq!(first.metadata["topic"], "sensors/kitchen");
    // Refused once: offered again before anything is lost.
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let event = next(&mut received).await.expect("more readings");
        rest.push((event.metadata["topic"].clone(), event.data));
    }
    rest.sort();
    assert_eq!(
        rest,
        [
            ("sensors/hall".to_owned(), "19.0".into()),
            ("sensors/kitchen".to_owned(), "21.5".into())
        ]
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn wrong_settings_name_the_field() {
    let error = binding(&[("url", "tcp://127.0.0.1:1")])
        .await
        .err()
        .unwrap();
    assert!(error.contains("topic"), "{error}");
    let error = binding(&[
        ("url", "tcp://127.0.0.1:1"),
        ("topic", "t"),
        ("backOffMaxRetries", "x"),
    ])
    .await
    .err()
    .unwrap();
    assert!(error.contains("backOffMaxRetries"), "{error}");
}
