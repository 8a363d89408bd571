//! Cryptography: components that hold keys (`crypto.dapr.localstorage`,
//! `crypto.dapr.jwks`) and the operations Dapr's subtle crypto API does with them,
//! locally, as Dapr's `LocalCryptoBaseComponent`: a key is looked up by name, checked
//! against its JWK `use`/`key_ops`/`alg`, then used. Keys never leave the sidecar,
//! except the public half of an asymmetric key ([`get_key`]).
//!
//! The streaming `EncryptAlpha1`/`DecryptAlpha1` API builds on [`wrap_key`] and
//! [`unwrap_key`] with Dapr's `dapr.io/enc/v1` scheme ([`scheme`]).

pub mod algorithms;
mod jwks;
pub mod keys;
mod localstorage;
pub mod scheme;

use std::sync::Arc;

use async_trait::async_trait;

pub use keys::{Hint, Key, Operation, parse_key};

use crate::registry::{Entry, Registry};

/// Why a crypto operation failed, in Dapr's words. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key not found")]
    KeyNotFound,
    #[error("invalid key path: cannot contain '..'")]
    InvalidKeyPath,
    #[error("failed to load key '{name}': {source}")]
    LoadKey {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A key (a file, a JWK, a plaintext key to wrap) could not be read.
    #[error("{0}")]
    Parse(String),
    #[error("no JWKS loaded")]
    NoJwks,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("key type mismatch")]
    KeyTypeMismatch,
    #[error("invalid nonce")]
    InvalidNonce,
    #[error("invalid tag")]
    InvalidTag,
    #[error("invalid plaintext length")]
    InvalidPlaintextLength,
    #[error("invalid ciphertext length")]
    InvalidCiphertextLength,
    #[error("invalid padding")]
    InvalidPadding,
    #[error("invalid digest")]
    InvalidDigest,
    /// Authentication failed: a wrong key, tag, nonce or tampered data.
    #[error("message authentication failed")]
    Failed,
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("key cannot perform the '{0}' operation")]
    OperationNotAllowed(&'static str),
    #[error("key cannot be used with algorithm '{0}'")]
    AlgorithmNotAllowed(String),
    #[error("failed to encode key: {0}")]
    Encode(String),
    #[error(transparent)]
    Rsa(rsa::Error),
    /// What was being done when `source` happened, as Dapr words its wrapped errors.
    #[error("{context}: {source}")]
    Context {
        context: &'static str,
        #[source]
        source: Box<CryptoError>,
    },
}

impl CryptoError {
    fn context(self, context: &'static str) -> Self {
        Self::Context {
            context,
            source: Box::new(self),
        }
    }

    /// Whether, under its contexts, this is "the key does not exist".
    pub fn is_key_not_found(&self) -> bool {
        match self {
            Self::KeyNotFound => true,
            Self::Context { source, .. } => source.is_key_not_found(),
            _ => false,
        }
    }
}

/// A component holding keys by name.
#[async_trait]
pub trait CryptoProvider: Send + Sync {
    /// The key `name` (public, private or symmetric).
    async fn retrieve_key(&self, name: &str) -> Result<Arc<Key>, CryptoError>;
}

/// The public half of key `name`; a symmetric key is "not found", as in Dapr.
pub async fn get_key(provider: &dyn CryptoProvider, name: &str) -> Result<Key, CryptoError> {
    let key = provider.retrieve_key(name).await?;
    key.public().ok_or(CryptoError::KeyNotFound)
}

async fn usable(
    provider: &dyn CryptoProvider,
    name: &str,
    op: Operation,
    algorithm: &str,
    retrieving: &'static str,
) -> Result<Arc<Key>, CryptoError> {
    let key = provider
        .retrieve_key(name)
        .await
        .map_err(|error| error.context(retrieving))?;
    key.can(op)?;
    key.allows(algorithm)?;
    Ok(key)
}

/// Encrypts with key `name`: the ciphertext and the tag (empty for non-AEAD algorithms).
pub async fn encrypt(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    plaintext: &[u8],
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let key = usable(
        provider,
        name,
        Operation::Encrypt,
        algorithm,
        "failed to retrieve the key",
    )
    .await?;
    algorithms::encrypt(&key, algorithm, plaintext, nonce, aad)
        .map_err(|error| error.context("failed to encrypt data"))
}

/// Decrypts with key `name`.
#[allow(clippy::too_many_arguments)]
pub async fn decrypt(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    ciphertext: &[u8],
    nonce: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = usable(
        provider,
        name,
        Operation::Decrypt,
        algorithm,
        "failed to retrieve the key",
    )
    .await?;
    algorithms::decrypt(&key, algorithm, ciphertext, nonce, tag, aad)
        .map_err(|error| error.context("failed to decrypt data"))
}

/// Wraps `plaintext_key` with key `name`: the key's bytes as Dapr serializes them
/// (raw for a symmetric key, PKCS#8 or SPKI DER for an asymmetric one), encrypted.
pub async fn wrap_key(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    plaintext_key: &Key,
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let plaintext = plaintext_key
        .serialize()
        .map_err(|error| error.context("cannot serialize key"))?;
    let key = usable(
        provider,
        name,
        Operation::WrapKey,
        algorithm,
        "failed to retrieve the key encryption key",
    )
    .await?;
    algorithms::encrypt(&key, algorithm, &plaintext, nonce, aad)
        .map_err(|error| error.context("failed to encrypt data"))
}

/// Unwraps `wrapped` with key `name`: the plaintext key's bytes.
#[allow(clippy::too_many_arguments)]
pub async fn unwrap_key(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    wrapped: &[u8],
    nonce: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = usable(
        provider,
        name,
        Operation::UnwrapKey,
        algorithm,
        "failed to retrieve the key encryption key",
    )
    .await?;
    algorithms::decrypt(&key, algorithm, wrapped, nonce, tag, aad)
        .map_err(|error| error.context("failed to decrypt data"))
}

/// Signs `digest` with key `name`.
pub async fn sign(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    digest: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = usable(
        provider,
        name,
        Operation::Sign,
        algorithm,
        "failed to retrieve the key",
    )
    .await?;
    algorithms::sign(&key, algorithm, digest)
        .map_err(|error| error.context("failed to sign message"))
}

/// Verifies `signature` over `digest` with key `name`.
pub async fn verify(
    provider: &dyn CryptoProvider,
    name: &str,
    algorithm: &str,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let key = usable(
        provider,
        name,
        Operation::Verify,
        algorithm,
        "failed to retrieve the key",
    )
    .await?;
    algorithms::verify(&key, algorithm, digest, signature)
        .map_err(|error| error.context("failed to validate the signature"))
}

/// The crypto components tandem offers.
pub fn registry() -> Registry<dyn CryptoProvider> {
    Registry::new(
        "crypto",
        vec![
            Entry {
                kind: "crypto.dapr.localstorage",
                versions: &["v1"],
                metadata: localstorage::METADATA,
                build: |metadata| Box::pin(localstorage::LocalStorage::build(metadata)),
            },
            Entry {
                kind: "crypto.dapr.jwks",
                versions: &["v1"],
                metadata: jwks::METADATA,
                build: |metadata| Box::pin(jwks::Jwks::build(metadata)),
            },
        ],
    )
}
