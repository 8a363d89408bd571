//! `secretstores.local.env`: the sidecar's environment variables as secrets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Secret, SecretError, SecretStore};

pub const METADATA: &[&str] = &["prefix"];

pub struct LocalEnv {
    /// Only variables starting with it are secrets, and it is removed from their names.
    prefix: String,
}

impl LocalEnv {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn SecretStore>, ResourceError> {
        Ok(Arc::new(Self {
            prefix: metadata.string_or("prefix", ""),
        }))
    }
}

#[async_trait]
impl SecretStore for LocalEnv {
    async fn get(&self, name: &str, _: &HashMap<String, String>) -> Result<Secret, SecretError> {
        std::env::var(format!("{}{name}", self.prefix))
            .map(|value| BTreeMap::from([(name.to_owned(), value)]))
            .map_err(|error| match error {
                std::env::VarError::NotPresent => SecretError::NotFound(name.to_owned()),
                std::env::VarError::NotUnicode(_) => SecretError::NotText(name.to_owned()),
            })
    }

    async fn bulk(
        &self,
        _: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(std::env::vars()
            .filter_map(|(name, value)| {
                let name = name.strip_prefix(&self.prefix)?.to_owned();
                (!name.is_empty()).then(|| (name.clone(), BTreeMap::from([(name, value)])))
            })
            .collect())
    }
}
