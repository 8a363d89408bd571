//! The bindings service: output bindings the app invokes (`POST /v1.0/bindings/{name}`,
//! gRPC `InvokeBinding`), and input bindings whose events go to the app.
//!
//! As in daprd, a component is an output binding when it offers operations and its
//! `direction` (if set) says `output`, and an input binding when it reads and its
//! `direction` (if set) says `input`. An input binding is read only when the app wants
//! it: `direction: input` says so outright; otherwise the sidecar asks — `OPTIONS
//! /{route}` for an HTTP app (any 2xx or 405 means yes), `ListInputBindings` for a gRPC
//! app. Each event is `POST /{route}` (`route` metadata, default the binding's name)
//! with the data as the body and the event's metadata as headers, or `OnBindingEvent`;
//! the app's 2xx (or a gRPC answer) acknowledges it, anything else hands it back to the
//! component, which redelivers it if its system does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use parking_lot::Mutex;
use tandem_components::bindings::{
    Binding, BindingError, Handle, InputEvent, InvokeRequest, InvokeResponse, Outcome,
};
use tandem_resiliency::{Policy, Verdict};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app_channel::AppChannel;
use crate::error::Error;

/// How long the app may take to answer the `OPTIONS` probe, as daprd's default.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One loaded binding.
pub(crate) struct BindingHandle {
    pub binding: Arc<dyn Binding>,
    pub kind: String,
    /// Where the app takes its events: the `route` metadata, or the name.
    pub route: String,
    /// `direction` metadata: `None` when absent (both, as the component allows).
    pub directions: Option<Vec<String>>,
    /// The component's outbound resiliency policy (output operations).
    pub outbound: Policy,
    /// Its inbound policy (events to the app).
    pub inbound: Policy,
}

impl BindingHandle {
    fn allows(&self, direction: &str) -> bool {
        self.directions
            .as_ref()
            .is_none_or(|directions| directions.iter().any(|d| d == direction))
    }

    fn is_output(&self) -> bool {
        !self.binding.operations().is_empty() && self.allows("output")
    }

    fn is_input(&self) -> bool {
        self.binding.reads() && self.allows("input")
    }
}

/// Reads the `direction` metadata: `input`, `output` or both, comma separated.
pub(crate) fn directions(value: Option<&str>) -> Option<Vec<String>> {
    value.map(|value| {
        value
            .split(',')
            .map(|direction| direction.trim().to_ascii_lowercase())
            .filter(|direction| !direction.is_empty())
            .collect()
    })
}

/// An output binding call as the app made it.
#[derive(Debug, Clone, Default)]
pub struct BindingRequest {
    pub name: String,
    pub operation: String,
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// The bindings of one sidecar.
pub struct Bindings {
    bindings: HashMap<String, BindingHandle>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    shutdown: CancellationToken,
}

impl Bindings {
    pub(crate) fn new(
        bindings: HashMap<String, BindingHandle>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            bindings,
            readers: Mutex::default(),
            shutdown,
        }
    }

    /// Does one operation of an output binding, under its outbound policy.
    pub async fn invoke(&self, request: BindingRequest) -> Result<Option<InvokeResponse>, Error> {
        let failed = |reason: String| Error::BindingInvoke {
            name: request.name.clone(),
            reason,
        };
        if request.operation.is_empty() {
            return Err(failed("operation field is missing from request".into()));
        }
        let Some(handle) = self
            .bindings
            .get(&request.name)
            .filter(|handle| handle.is_output())
        else {
            return Err(failed(format!(
                "couldn't find output binding {}",
                request.name
            )));
        };
        let operations = handle.binding.operations();
        if !operations.contains(&request.operation.as_str()) {
            return Err(failed(format!(
                "binding {} does not support operation {}. supported operations:{}",
                request.name,
                request.operation,
                operations.join(" ")
            )));
        }
        let call = InvokeRequest {
            operation: request.operation.clone(),
            data: request.data.clone(),
            metadata: request.metadata.clone(),
        };
        let answer = if handle.outbound.is_none() {
            handle
                .binding
                .invoke(call)
                .await
                .map_err(|error| error.to_string())
        } else {
            handle
                .outbound
                .run(
                    || handle.binding.invoke(call.clone()),
                    // A request the binding refused as such fails the same way again.
                    |error| Verdict::retry_if(!matches!(error, BindingError::Invalid(_))),
                )
                .await
                .map_err(|failure| failure.to_string())
        };
        answer.map_err(failed)
    }

    /// Starts reading the input bindings the app takes events from.
    pub async fn start(&self, app: &AppChannel) {
        let mut grpc_list: Option<Vec<String>> = None;
        for (name, handle) in &self.bindings {
            if !handle.is_input() {
                continue;
            }
            let explicit = handle
                .directions
                .as_ref()
                .is_some_and(|directions| directions.iter().any(|d| d == "input"));
            let wanted = if explicit {
                true
            } else if let Some(grpc) = app.grpc() {
                if grpc_list.is_none() {
                    grpc_list = Some(grpc.list_input_bindings().await.unwrap_or_else(|error| {
                        tracing::warn!("cannot ask the app which input bindings it takes: {error}");
                        Vec::new()
                    }));
                }
                grpc_list.as_ref().is_some_and(|list| list.contains(name))
            } else {
                probe(app, &handle.route).await
            };
            if !wanted {
                tracing::info!(binding = %name, "app has not subscribed to binding {name}");
                continue;
            }
            let handler = Arc::new(ToApp {
                name: name.clone(),
                route: handle.route.clone(),
                app: app.clone(),
                policy: handle.inbound.clone(),
            });
            match handle
                .binding
                .read(handler, self.shutdown.child_token())
                .await
            {
                Ok(reader) => {
                    tracing::info!(binding = %name, kind = %handle.kind, route = %handle.route, "reading input binding");
                    self.readers.lock().push(reader);
                }
                Err(error) => {
                    tracing::error!(binding = %name, "error reading from input binding {name}: {error}");
                }
            }
        }
    }

    /// Waits for the readers to finish once the sidecar stops.
    pub async fn drain(&self) {
        let readers = std::mem::take(&mut *self.readers.lock());
        for reader in readers {
            let _ = reader.await;
        }
    }
}

/// `OPTIONS /{route}` on an HTTP app: does it take this binding's events?
async fn probe(app: &AppChannel, route: &str) -> bool {
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        app.call(Method::OPTIONS, route, json_content(), Bytes::new()),
    )
    .await
    {
        Ok(Ok(answer)) => {
            answer.status.is_success() || answer.status == http::StatusCode::METHOD_NOT_ALLOWED
        }
        Ok(Err(error)) => {
            tracing::warn!(
                "could not invoke OPTIONS method on input binding subscription endpoint {route:?}: {error}"
            );
            false
        }
        Err(_) => {
            tracing::warn!("the app did not answer OPTIONS /{route} within {PROBE_TIMEOUT:?}");
            false
        }
    }
}

fn json_content() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// Delivers one input binding's events to the app.
struct ToApp {
    name: String,
    route: String,
    app: AppChannel,
    policy: Policy,
}

/// Why the app did not take an event.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Call(#[from] crate::app_channel::AppCallError),
    #[error("fails to send binding event to http app channel, status code: {status} body: {body}")]
    Status { status: u16, body: String },
}

impl ToApp {
    async fn send(&self, event: &InputEvent) -> Result<(), Refused> {
        if let Some(grpc) = self.app.grpc() {
            let _permit = self.app.permit().await;
            grpc.on_binding_event(&self.name, event.data.clone(), &event.metadata)
                .await?;
            return Ok(());
        }
        let mut headers = json_content();
        for (key, value) in &event.metadata {
            // Metadata that cannot be a header (a name with a space) is left out
            // rather than failing the event.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let answer = self
            .app
            .call(Method::POST, &self.route, headers, event.data.clone())
            .await?;
        if !answer.status.is_success() {
            return Err(Refused::Status {
                status: answer.status.as_u16(),
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Handle for ToApp {
    async fn handle(&self, event: InputEvent) -> Outcome {
        let result = if self.policy.is_none() {
            self.send(&event).await.map_err(|error| error.to_string())
        } else {
            self.policy
                .run(|| self.send(&event), |_| Verdict::Retryable)
                .await
                .map_err(|failure| failure.to_string())
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(error) => {
                tracing::debug!(binding = %self.name, "error from app consumer for binding [{}]: {error}", self.name);
                Outcome::Retry
            }
        }
    }
}
