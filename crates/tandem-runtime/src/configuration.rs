//! The configuration building block: `GET /v1.0(-alpha1)/configuration/{store}`,
//! `.../subscribe` and `.../{id}/unsubscribe`, gRPC `GetConfiguration`,
//! `SubscribeConfiguration` (a server stream) and `UnsubscribeConfiguration`.
//! [`Configurations`] owns the loaded stores and every live subscription: it gives each
//! its id, ends it on unsubscribe (or when its gRPC stream goes away, or the sidecar
//! stops), and for HTTP subscribers delivers each change to the app as daprd does —
//! `POST /configuration/{store}/{key}` with `{"id": .., "items": {..}}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tandem_components::configuration::{
    ConfigurationError, ConfigurationRequest, ConfigurationStore, Items,
};
use tandem_resiliency::{Policy, Verdict};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actors::segment;
use crate::app_channel::AppChannel;
use crate::error::Error;

/// How many changes may wait for a slow subscriber before the store's watch waits too.
const WAITING_CHANGES: usize = 64;

/// One loaded configuration store.
pub(crate) struct ConfigurationHandle {
    pub store: Arc<dyn ConfigurationStore>,
    /// Its outbound resiliency policy, as daprd's `ComponentOutboundPolicy`: reads and
    /// the start of a watch.
    pub outbound: Policy,
}

/// One live subscription.
struct Subscription {
    stop: CancellationToken,
}

/// A change to deliver: the subscription's id and the items that changed.
#[derive(Debug, Clone)]
pub struct ConfigurationUpdate {
    pub id: String,
    pub items: Items,
}

/// The configuration stores of one sidecar, by name, and their subscriptions.
pub struct Configurations {
    stores: HashMap<String, ConfigurationHandle>,
    subscriptions: Arc<Mutex<HashMap<String, Subscription>>>,
    app: Option<AppChannel>,
    shutdown: CancellationToken,
}

/// Keys as daprd prints them in messages (Go's `%s` of a slice: `[a b]`).
fn listed(keys: &[String]) -> String {
    format!("[{}]", keys.join(" "))
}

impl Configurations {
    pub(crate) fn new(
        stores: HashMap<String, ConfigurationHandle>,
        app: Option<AppChannel>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            stores,
            subscriptions: Arc::default(),
            app,
            shutdown,
        }
    }

    fn store(&self, name: &str) -> Result<&ConfigurationHandle, Error> {
        if self.stores.is_empty() {
            return Err(Error::ConfigurationStoresNotConfigured);
        }
        self.stores
            .get(name)
            .ok_or_else(|| Error::ConfigurationStoreNotFound(name.to_owned()))
    }

    /// The items of `keys` (every key when empty) that exist in store `store`.
    pub async fn get(
        &self,
        store: &str,
        keys: Vec<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Items, Error> {
        let handle = self.store(store)?;
        let request = ConfigurationRequest { keys, metadata };
        guarded(&handle.outbound, || handle.store.get(&request))
            .await
            .map_err(|cause| Error::ConfigurationGet {
                keys: listed(&request.keys),
                store: store.to_owned(),
                cause,
            })
    }

    /// Starts watching `keys` (every key when empty) in store `store`: the new
    /// subscription's id and its changes, which end when it is unsubscribed or the
    /// sidecar stops. Dropping the receiver ends the subscription too.
    pub async fn subscribe(
        &self,
        store: &str,
        keys: Vec<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<(String, mpsc::Receiver<ConfigurationUpdate>), Error> {
        let handle = self.store(store)?;
        let request = ConfigurationRequest { keys, metadata };
        let id = uuid::Uuid::new_v4().to_string();
        let stop = self.shutdown.child_token();
        let (changes, mut changed) = mpsc::channel(WAITING_CHANGES);
        guarded(&handle.outbound, || {
            handle.store.watch(&request, changes.clone(), stop.clone())
        })
        .await
        .map_err(|cause| Error::ConfigurationSubscribe {
            keys: listed(&request.keys),
            store: store.to_owned(),
            cause,
        })?;
        drop(changes);
        self.subscriptions
            .lock()
            .insert(id.clone(), Subscription { stop: stop.clone() });
        // Tags each change with the id, and forgets the subscription once it ends —
        // whichever side ends it.
        let (updates, received) = mpsc::channel(WAITING_CHANGES);
        let subscriptions = self.subscriptions.clone();
        let tagged = id.clone();
        tokio::spawn(async move {
            loop {
                let items = tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = updates.closed() => break,
                    items = changed.recv() => items,
                };
                let Some(items) = items else { break };
                let update = ConfigurationUpdate {
                    id: tagged.clone(),
                    items,
                };
                if updates.send(update).await.is_err() {
                    break;
                }
            }
            stop.cancel();
            subscriptions.lock().remove(&tagged);
        });
        Ok((id, received))
    }

    /// An HTTP app's subscription: each change is sent to the app's
    /// `POST /configuration/{store}/{key}`, once per key that changed, as daprd sends it.
    pub async fn subscribe_app(
        &self,
        store: &str,
        keys: Vec<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, Error> {
        self.store(store)?;
        let app = self.app.clone().ok_or(Error::AppChannelNil)?;
        let (id, mut updates) = self.subscribe(store, keys, metadata).await?;
        let store = store.to_owned();
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                deliver(&app, &store, &update).await;
            }
        });
        Ok(id)
    }

    /// Ends subscription `id` (of any store, as daprd's gRPC API does).
    pub fn unsubscribe(&self, store: &str, id: &str) -> Result<(), Error> {
        self.store(store)?;
        match self.subscriptions.lock().remove(id) {
            Some(subscription) => {
                subscription.stop.cancel();
                Ok(())
            }
            None => Err(Error::ConfigurationUnsubscribe {
                id: id.to_owned(),
                reason: format!("subscription with id {id} does not exist"),
            }),
        }
    }
}

/// A store call under the store's outbound policy: a store failure may be retried, a
/// request the store cannot serve (an invalid key) is not.
async fn guarded<T, F, Fut>(policy: &Policy, mut call: F) -> Result<T, crate::error::Cause>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConfigurationError>>,
{
    if policy.is_none() {
        return call().await.map_err(Error::cause);
    }
    policy
        .run(call, |error: &ConfigurationError| {
            Verdict::retry_if(!matches!(error, ConfigurationError::Invalid(_)))
        })
        .await
        .map_err(|failure| Error::cause(crate::error::Reason(failure.to_string())))
}

/// The JSON of an update, as daprd encodes it: empty fields are left out.
pub fn update_json(update: &ConfigurationUpdate) -> Value {
    json!({ "id": update.id, "items": items_json(&update.items) })
}

/// Items as daprd encodes them: `{"key": {"value", "version", "metadata"}}`, empty
/// fields left out.
pub fn items_json(items: &Items) -> Value {
    let mut encoded = Map::new();
    for (key, item) in items {
        let mut fields = Map::new();
        if !item.value.is_empty() {
            fields.insert("value".into(), Value::String(item.value.clone()));
        }
        if !item.version.is_empty() {
            fields.insert("version".into(), Value::String(item.version.clone()));
        }
        if !item.metadata.is_empty() {
            fields.insert("metadata".into(), json!(item.metadata));
        }
        encoded.insert(key.clone(), Value::Object(fields));
    }
    Value::Object(encoded)
}

/// Sends one change to the app. A failure is logged, as daprd logs it: the next change
/// carries the key's value again.
async fn deliver(app: &AppChannel, store: &str, update: &ConfigurationUpdate) {
    let body = Bytes::from(update_json(update).to_string());
    for key in update.items.keys() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let path = format!("/configuration/{}/{}", segment(store), segment(key));
        match app.call(Method::POST, &path, headers, body.clone()).await {
            Ok(answer) if answer.status == http::StatusCode::OK => {}
            Ok(answer) => tracing::error!(
                "sending configuration item {key} of {store} to the app: it answered {}",
                answer.status
            ),
            Err(error) => {
                tracing::error!("sending configuration item {key} of {store} to the app: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tandem_components::configuration::ConfigurationItem;
    use tandem_resiliency::Resiliencies;

    use super::*;

    /// A store that fails its first reads as a server would, or every read as a request
    /// it cannot serve.
    struct Flaky {
        failures: AtomicUsize,
        invalid: bool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ConfigurationStore for Flaky {
        async fn get(&self, _: &ConfigurationRequest) -> Result<Items, ConfigurationError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.invalid {
                return Err(ConfigurationError::Invalid("invalid key : 'a b'".into()));
            }
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(ConfigurationError::Postgres {
                    target: "db".into(),
                    message: "the server is restarting".into(),
                });
            }
            let item = ConfigurationItem {
                value: "blue".into(),
                ..ConfigurationItem::default()
            };
            Ok(Items::from([("color".to_owned(), item)]))
        }

        async fn watch(
            &self,
            _: &ConfigurationRequest,
            _: mpsc::Sender<Items>,
            _: CancellationToken,
        ) -> Result<(), ConfigurationError> {
            Ok(())
        }
    }

    /// The `configstore` component's outbound policy: three quick retries.
    fn policy() -> Policy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("resiliency.yaml"),
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  \
             policies:\n    retries:\n      quick:\n        policy: constant\n        \
             duration: 10ms\n        maxRetries: 3\n  targets:\n    components:\n      \
             configstore:\n        outbound:\n          retry: quick\n",
        )
        .unwrap();
        let options = tandem_spec::LoadOptions {
            app_id: "app".into(),
            namespace: None,
        };
        let resources = tandem_spec::load(&[dir.path().to_path_buf()], &options).unwrap();
        Resiliencies::new(&resources.resiliencies, "app")
            .for_component_outbound("configstore", "configuration.redis")
    }

    fn configurations(store: Arc<Flaky>, outbound: Policy) -> Configurations {
        let handle = ConfigurationHandle { store, outbound };
        let stores = HashMap::from([("configstore".to_owned(), handle)]);
        Configurations::new(stores, None, CancellationToken::new())
    }

    #[tokio::test]
    async fn reads_are_retried_under_the_components_policy_but_bad_requests_are_not() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(2),
            invalid: false,
            calls: AtomicUsize::new(0),
        });
        let items = configurations(flaky.clone(), policy())
            .get("configstore", vec!["color".into()], BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(items["color"].value, "blue");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);

        let refused = Arc::new(Flaky {
            failures: AtomicUsize::new(0),
            invalid: true,
            calls: AtomicUsize::new(0),
        });
        let error = configurations(refused.clone(), policy())
            .get("configstore", vec!["a b".into()], BTreeMap::new())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("invalid key"), "{error}");
        assert_eq!(refused.calls.load(Ordering::SeqCst), 1, "not retried");

        // Without a policy, the first failure is the answer.
        let once = Arc::new(Flaky {
            failures: AtomicUsize::new(1),
            invalid: false,
            calls: AtomicUsize::new(0),
        });
        let error = configurations(once, Policy::none())
            .get("configstore", vec!["color".into()], BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("failed to get [color] from Configuration store configstore"),
            "{error}"
        );
    }
}
