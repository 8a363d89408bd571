//! The cryptography building block: gRPC `SubtleGetKeyAlpha1` … `SubtleVerifyAlpha1`,
//! the `EncryptAlpha1`/`DecryptAlpha1` streams and `PUT /v1.0-alpha1/crypto/{name}/
//! encrypt|decrypt`. [`Crypto`] owns the loaded crypto components, checks requests in
//! daprd's order and answers with daprd's errors.
//!
//! The subtle calls answer a failed operation with a generic message ("failed to
//! encrypt"), as daprd does: a precise one could be a padding oracle. Streams use
//! Dapr's `dapr.io/enc/v1` scheme: [`Crypto::encryptor`] wraps a fresh file key with the
//! component's key, [`DecryptSession`] reads the header, unwraps and decrypts as the
//! ciphertext arrives.

use std::collections::HashMap;
use std::sync::Arc;

use tandem_components::crypto::scheme::{self, Cipher, Decryptor, Encryptor, Header, KeyWrap};
use tandem_components::crypto::{self as components, CryptoProvider, Hint, parse_key};

use crate::error::Error;

/// The largest chunk a stream answers with: one sealed segment and a byte, as daprd's
/// buffer.
pub const STREAM_CHUNK: usize = scheme::SEGMENT_SIZE + scheme::SEGMENT_OVERHEAD + 1;

/// How `SubtleGetKeyAlpha1` writes a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// A PEM `PUBLIC KEY` block.
    Pem,
    /// A JSON Web Key.
    Json,
}

/// What an encryption stream asks for (its first message, or the HTTP headers).
#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    pub component: String,
    pub key_name: String,
    pub key_wrap_algorithm: String,
    /// Empty: `AES-GCM`.
    pub data_encryption_cipher: String,
    pub omit_decryption_key_name: bool,
    pub decryption_key_name: String,
}

/// The crypto components of one sidecar, by name.
pub struct Crypto {
    providers: HashMap<String, Arc<dyn CryptoProvider>>,
}

fn operation(reason: impl std::fmt::Display) -> Error {
    Error::Crypto(reason.to_string())
}

impl Crypto {
    pub(crate) fn new(providers: HashMap<String, Arc<dyn CryptoProvider>>) -> Self {
        Self { providers }
    }

    /// The component `name`, as daprd's `CryptoValidateRequest` finds it.
    fn provider(&self, name: &str) -> Result<&dyn CryptoProvider, Error> {
        self.handle(name).map(AsRef::as_ref)
    }

    fn handle(&self, name: &str) -> Result<&Arc<dyn CryptoProvider>, Error> {
        if self.providers.is_empty() {
            return Err(Error::CryptoProvidersNotConfigured);
        }
        if name.is_empty() {
            return Err(Error::CryptoBadRequest("missing component name".into()));
        }
        self.providers
            .get(name)
            .ok_or_else(|| Error::CryptoProviderNotFound(name.to_owned()))
    }

    /// Checks that component `name` can be used (for the HTTP door, before its headers).
    pub fn check_component(&self, name: &str) -> Result<(), Error> {
        self.provider(name).map(|_| ())
    }

    /// The public half of key `name`: the name asked for (daprd answers a `kid` only for
    /// its Azure Key Vault component's keys) and the key in `format`.
    pub async fn get_key(
        &self,
        component: &str,
        name: &str,
        format: KeyFormat,
    ) -> Result<(String, String), Error> {
        let provider = self.provider(component)?;
        let get_key = |cause: components::CryptoError| Error::CryptoGetKey {
            name: name.to_owned(),
            cause: Arc::new(cause),
        };
        let key = components::get_key(provider, name).await.map_err(get_key)?;
        let text = match format {
            KeyFormat::Pem => key.public_pem(),
            KeyFormat::Json => key.public_jwk(),
        }
        .map_err(get_key)?;
        Ok((name.to_owned(), text))
    }

    /// `SubtleEncryptAlpha1`: the ciphertext and tag.
    pub async fn encrypt(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        plaintext: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let provider = self.provider(component)?;
        components::encrypt(provider, key_name, algorithm, plaintext, nonce, aad)
            .await
            .map_err(|error| hidden(error, "failed to encrypt"))
    }

    /// `SubtleDecryptAlpha1`: the plaintext.
    #[allow(clippy::too_many_arguments)]
    pub async fn decrypt(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        ciphertext: &[u8],
        nonce: &[u8],
        tag: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let provider = self.provider(component)?;
        components::decrypt(provider, key_name, algorithm, ciphertext, nonce, tag, aad)
            .await
            .map_err(|error| hidden(error, "failed to decrypt"))
    }

    /// `SubtleWrapKeyAlpha1`: the plaintext key is read as daprd reads it (JWK, PEM,
    /// raw or base64 bytes), then wrapped.
    pub async fn wrap_key(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        plaintext_key: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let provider = self.provider(component)?;
        let key = parse_key(plaintext_key, Hint::None)
            .map_err(|error| operation(format!("failed to parse plaintext key: {error}")))?;
        components::wrap_key(provider, key_name, algorithm, &key, nonce, aad)
            .await
            .map_err(|error| hidden(error, "failed to wrap key"))
    }

    /// `SubtleUnwrapKeyAlpha1`: the unwrapped key's bytes.
    #[allow(clippy::too_many_arguments)]
    pub async fn unwrap_key(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        wrapped: &[u8],
        nonce: &[u8],
        tag: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let provider = self.provider(component)?;
        components::unwrap_key(provider, key_name, algorithm, wrapped, nonce, tag, aad)
            .await
            .map_err(|error| hidden(error, "failed to unwrap key"))
    }

    /// `SubtleSignAlpha1`: the signature.
    pub async fn sign(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        digest: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let provider = self.provider(component)?;
        components::sign(provider, key_name, algorithm, digest)
            .await
            .map_err(|error| hidden(error, "failed to sign"))
    }

    /// `SubtleVerifyAlpha1`: whether the signature is valid.
    pub async fn verify(
        &self,
        component: &str,
        key_name: &str,
        algorithm: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, Error> {
        let provider = self.provider(component)?;
        components::verify(provider, key_name, algorithm, digest, signature)
            .await
            .map_err(|error| hidden(error, "failed to verify signature"))
    }

    /// Starts encrypting a stream: checks the options as daprd does (the component
    /// first), makes a file key and wraps it with the component's key. The encryptor's
    /// header goes out first.
    pub async fn encryptor(&self, options: &EncryptOptions) -> Result<Encryptor, Error> {
        let provider = self.provider(&options.component)?;
        let wrap = KeyWrap::parse(&options.key_wrap_algorithm).map_err(operation)?;
        let cipher = if options.data_encryption_cipher.is_empty() {
            Cipher::default()
        } else {
            Cipher::parse(&options.data_encryption_cipher).map_err(operation)?
        };
        let (file_key, nonce_prefix) = scheme::new_file_key();
        let plaintext_key = parse_key(&file_key, Hint::None).map_err(operation)?;
        let (wrapped, _tag) = components::wrap_key(
            provider,
            &options.key_name,
            wrap.algorithm(),
            &plaintext_key,
            &[],
            &[],
        )
        .await
        .map_err(|error| operation(format!("failed to wrap the file key: {error}")))?;
        let key_name = if options.omit_decryption_key_name {
            ""
        } else if options.decryption_key_name.is_empty() {
            &options.key_name
        } else {
            &options.decryption_key_name
        };
        Encryptor::new(&file_key, nonce_prefix, wrap, &wrapped, cipher, key_name).map_err(operation)
    }

    /// Starts decrypting a stream with component `component`; `key_name` (if not
    /// empty) overrides the one the message's header names.
    pub fn decrypt_session(
        &self,
        component: &str,
        key_name: &str,
    ) -> Result<DecryptSession, Error> {
        let provider = Arc::clone(self.handle(component)?);
        Ok(DecryptSession {
            provider,
            key_name: key_name.to_owned(),
            state: DecryptState::Header(Vec::new()),
        })
    }
}

/// daprd's subtle answer to a failed operation: the reason is logged at debug level
/// only, the caller gets `failed to perform operation: {what}`.
fn hidden(error: components::CryptoError, what: &str) -> Error {
    tracing::debug!("failed to perform operation: {error}");
    operation(what)
}

enum DecryptState {
    /// The header has not all arrived yet.
    Header(Vec<u8>),
    Body(Decryptor),
}

/// One message being decrypted; only verified plaintext comes out of it.
pub struct DecryptSession {
    provider: Arc<dyn CryptoProvider>,
    key_name: String,
    state: DecryptState,
}

impl DecryptSession {
    /// Takes more ciphertext; returns the plaintext it completes.
    pub async fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, Error> {
        match &mut self.state {
            DecryptState::Body(decryptor) => decryptor.update(data).map_err(operation),
            DecryptState::Header(pending) => {
                pending.extend_from_slice(data);
                // The header ends with a newline: reading it again is only worth it when
                // one arrived (or the header is too long), so tiny chunks cost little.
                if !data.contains(&b'\n') && pending.len() < scheme::SEGMENT_SIZE {
                    return Ok(Vec::new());
                }
                let Some((header, used)) = Header::read(pending).map_err(operation)? else {
                    return Ok(Vec::new());
                };
                let rest = pending.split_off(used);
                let mut decryptor = self.open(header).await?;
                let out = decryptor.update(&rest).map_err(operation)?;
                self.state = DecryptState::Body(decryptor);
                Ok(out)
            }
        }
    }

    /// Ends the message: the last plaintext.
    pub async fn finish(mut self) -> Result<Vec<u8>, Error> {
        match std::mem::replace(&mut self.state, DecryptState::Header(Vec::new())) {
            DecryptState::Body(decryptor) => decryptor.finish().map_err(operation),
            DecryptState::Header(pending) => Err(operation(Header::truncated(&pending))),
        }
    }

    async fn open(&self, header: Header) -> Result<Decryptor, Error> {
        let key_name = if self.key_name.is_empty() {
            header.key_name.clone()
        } else {
            self.key_name.clone()
        };
        if key_name.is_empty() {
            return Err(operation(scheme::SchemeError::KeyMissing));
        }
        // As daprd: an unwrap failure is not reported as such; the header's MAC then
        // fails, and the caller learns only that the message did not verify.
        let file_key = components::unwrap_key(
            self.provider.as_ref(),
            &key_name,
            header.wrap.algorithm(),
            &header.wrapped_key,
            &[],
            &[],
            &[],
        )
        .await
        .inspect_err(|error| tracing::debug!("failed to unwrap the file key: {error}"))
        .ok();
        header.open(file_key.as_deref()).map_err(operation)
    }
}
