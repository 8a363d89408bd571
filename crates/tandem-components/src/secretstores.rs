//! Secret stores: where `secretKeyRef`s and the secrets API read from.

mod local_env;
mod local_file;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::registry::{Entry, Registry};

/// All the values of one secret: most stores hold one value under the secret's own
/// name; multi-valued ones hold several.
pub type Secret = BTreeMap<String, String>;

/// Why a secret could not be read. Messages name the secret, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret '{0}' not found")]
    NotFound(String),
    /// The secret exists but its value is not UTF-8 text. (The source error would
    /// carry the value itself, so it is not kept.)
    #[error("secret '{0}' is not valid UTF-8 text")]
    NotText(String),
}

/// A place secrets are read from.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The values of secret `name`.
    async fn get(
        &self,
        name: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Secret, SecretError>;
    /// Every secret in the store, by name.
    async fn bulk(
        &self,
        metadata: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError>;
}

/// The secret stores tandem offers.
pub fn registry() -> Registry<dyn SecretStore> {
    Registry::new(
        "secretstores",
        vec![
            Entry {
                kind: "secretstores.local.file",
                versions: &["v1"],
                metadata: local_file::METADATA,
                build: |metadata| Box::pin(local_file::LocalFile::build(metadata)),
            },
            Entry {
                kind: "secretstores.local.env",
                versions: &["v1"],
                metadata: local_env::METADATA,
                build: |metadata| Box::pin(local_env::LocalEnv::build(metadata)),
            },
        ],
    )
}
