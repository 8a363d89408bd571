//! The secrets API: `GET /v1.0/secrets/{store}/{key}`, `.../bulk`, gRPC `GetSecret`.

use std::collections::{BTreeMap, HashMap};

use tandem_components::secretstores::Secret;

use crate::error::Error;
use crate::runtime::Runtime;

impl Runtime {
    /// The values of secret `key` in store `store`.
    pub async fn get_secret(
        &self,
        store: &str,
        key: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Secret, Error> {
        let secrets = self.secret_store(store)?;
        secrets
            .get(key, metadata)
            .await
            .map_err(|error| Error::SecretGet {
                store: store.to_owned(),
                key: key.to_owned(),
                reason: error.to_string(),
            })
    }

    /// Every secret of store `store`.
    pub async fn bulk_secrets(
        &self,
        store: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, Error> {
        let secrets = self.secret_store(store)?;
        secrets
            .bulk(metadata)
            .await
            .map_err(|error| Error::BulkSecretGet {
                store: store.to_owned(),
                reason: error.to_string(),
            })
    }
}
