//! `crypto.dapr.localstorage`: keys in files of a local folder (`path`), one key per
//! file, named by the file's name (extension included): `.json` files hold a JWK,
//! `.pem` files a PEM block, any other file is told apart by its content (a JWK, PEM,
//! or a symmetric key, raw or base64) — Dapr's rules. Files are read at each use, so
//! a replaced key takes effect at once.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::keys::{Hint, Key, parse_key};
use super::{CryptoError, CryptoProvider};

pub const METADATA: &[&str] = &["path"];

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn CryptoProvider>, ResourceError> {
        let root = PathBuf::from(metadata.required("path")?);
        let info = tokio::fs::metadata(&root).await.map_err(|error| {
            metadata.field_error(
                "path",
                format!("could not stat path '{}': {error}", root.display()),
            )
        })?;
        if !info.is_dir() {
            return Err(metadata.field_error(
                "path",
                format!("path '{}' is not a directory", root.display()),
            ));
        }
        Ok(Arc::new(Self { root }))
    }
}

/// The key file's hint, from its extension (any case), as Dapr reads it.
fn hint(name: &str) -> Hint {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rfind('.').map(|at| file[at..].to_ascii_lowercase()) {
        Some(extension) if extension == ".json" => Hint::Json,
        Some(extension) if extension == ".pem" => Hint::Pem,
        _ => Hint::None,
    }
}

#[async_trait]
impl CryptoProvider for LocalStorage {
    async fn retrieve_key(&self, name: &str) -> Result<Arc<Key>, CryptoError> {
        // A name never escapes the folder.
        if name.contains("..") {
            return Err(CryptoError::InvalidKeyPath);
        }
        // As Go's filepath.Join: an absolute-looking name is still inside the folder.
        let path = self.root.join(name.trim_start_matches('/'));
        let data = tokio::fs::read(&path)
            .await
            .map_err(|source| CryptoError::LoadKey {
                name: name.to_owned(),
                source,
            })?;
        let key = parse_key(&data, hint(name)).map_err(|error| {
            CryptoError::Parse(format!("failed to parse key from secret: {error}"))
        })?;
        Ok(Arc::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_come_from_the_extension() {
        assert_eq!(hint("a.json"), Hint::Json);
        assert_eq!(hint("a.PEM"), Hint::Pem);
        assert_eq!(hint("dir.pem/a"), Hint::None);
        assert_eq!(hint("symmetric-key-256"), Hint::None);
    }
}
