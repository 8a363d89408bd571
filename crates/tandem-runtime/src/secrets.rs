//! The secrets building block: `GET /v1.0/secrets/{store}/{key}`, `.../bulk`, gRPC
//! `GetSecret`/`GetBulkSecret`. [`Secrets`] owns the loaded secret stores and applies the
//! Configuration's secret scopes (`spec.secrets.scopes`): a secret a scope denies is
//! refused by name, and left out of a bulk answer, as daprd does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tandem_components::secretstores::{Secret, SecretStore};
use tandem_spec::SecretScope;

use crate::error::Error;

/// The secret stores of one sidecar, by name.
pub struct Secrets {
    stores: HashMap<String, Arc<dyn SecretStore>>,
    scopes: Vec<SecretScope>,
}

impl Secrets {
    pub(crate) fn new(
        stores: HashMap<String, Arc<dyn SecretStore>>,
        scopes: Vec<SecretScope>,
    ) -> Self {
        Self { stores, scopes }
    }

    /// Whether the app may read `key` of `store`: stores without a scope allow all.
    fn allowed(&self, store: &str, key: &str) -> bool {
        self.scopes
            .iter()
            .find(|scope| scope.store_name == store)
            .is_none_or(|scope| scope.allows(key))
    }

    fn store(&self, name: &str) -> Result<&Arc<dyn SecretStore>, Error> {
        if self.stores.is_empty() {
            return Err(Error::SecretStoresNotConfigured);
        }
        self.stores
            .get(name)
            .ok_or_else(|| Error::SecretStoreNotFound(name.to_owned()))
    }

    /// The values of secret `key` in store `store`.
    pub async fn get(
        &self,
        store: &str,
        key: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Secret, Error> {
        let secrets = self.store(store)?;
        if key.is_empty() {
            return Err(Error::Malformed(format!(
                "the secret key is empty in secret store {store}"
            )));
        }
        if !self.allowed(store, key) {
            return Err(Error::SecretPermissionDenied {
                store: store.to_owned(),
                key: key.to_owned(),
            });
        }
        secrets
            .get(key, metadata)
            .await
            .map_err(|error| Error::SecretGet {
                store: store.to_owned(),
                key: key.to_owned(),
                cause: Error::cause(error),
            })
    }

    /// Every secret of store `store`.
    pub async fn bulk(
        &self,
        store: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, Error> {
        let mut secrets =
            self.store(store)?
                .bulk(metadata)
                .await
                .map_err(|error| Error::BulkSecretGet {
                    store: store.to_owned(),
                    cause: Error::cause(error),
                })?;
        secrets.retain(|key, _| self.allowed(store, key));
        Ok(secrets)
    }
}
