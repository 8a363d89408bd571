//! Helpers shared by the binding tests: building a binding from metadata pairs, a
//! scripted input handler, and requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_components::bindings::{self, Binding, Handle, InputEvent, InvokeRequest, Outcome};
use tandem_spec::{Component, ComponentMetadata};
use tokio::sync::{Mutex, mpsc};

/// Builds the binding `name` of type `kind`; the error's text when it cannot be.
pub async fn binding(
    kind: &str,
    name: &str,
    values: &[(&str, &str)],
) -> Result<Arc<dyn Binding>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let metadata = ComponentMetadata::new(Component::new(name, kind), values);
    bindings::registry()
        .build(&metadata)
        .await
        .map_err(|error| error.to_string())
}

/// Records input events and answers with a scripted outcome (`Done` once it runs out).
pub struct Events {
    seen: mpsc::UnboundedSender<InputEvent>,
    script: Mutex<Vec<Outcome>>,
}

impl Events {
    pub fn new(script: Vec<Outcome>) -> (Arc<Self>, mpsc::UnboundedReceiver<InputEvent>) {
        let (seen, received) = mpsc::unbounded_channel();
        let script = Mutex::new(script);
        (Arc::new(Self { seen, script }), received)
    }
}

#[async_trait]
impl Handle for Events {
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

/// A `create` operation with `data` and `metadata`.
pub fn create(data: &str, metadata: &[(&str, &str)]) -> InvokeRequest {
    InvokeRequest {
        operation: "create".into(),
        data: data.to_owned().into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

/// The next event, if one comes `within`.
pub async fn next_event(
    received: &mut mpsc::UnboundedReceiver<InputEvent>,
    within: Duration,
) -> Option<InputEvent> {
    tokio::time::timeout(within, received.recv())
        .await
        .ok()
        .flatten()
}
