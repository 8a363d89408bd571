//! `crypto.dapr.jwks`: keys from a JSON Web Key Set, looked up by `kid`. The set
//! (`jwks`) is, as Dapr reads it, an `http(s)://` URL (fetched within
//! `requestTimeout`, fetched again every `minRefreshInterval`; a failed refresh keeps
//! the keys it had), a path to a file (read again when it changes), or the JSON itself,
//! optionally base64-encoded.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::keys::{Key, parse_jwks};
use super::{CryptoError, CryptoProvider};

pub const METADATA: &[&str] = &["jwks", "requestTimeout", "minRefreshInterval"];

const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(600);
/// How often a JWKS file is checked for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

type KeySet = RwLock<Vec<Arc<Key>>>;

pub struct Jwks {
    keys: Arc<KeySet>,
}

fn parse(data: &[u8]) -> Result<Vec<Arc<Key>>, CryptoError> {
    Ok(parse_jwks(data)?.into_iter().map(Arc::new).collect())
}

impl Jwks {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn CryptoProvider>, ResourceError> {
        let location = metadata.required("jwks")?.to_owned();
        // As Dapr: values under a millisecond (or a second) mean the default.
        let timeout = Some(metadata.duration_or("requestTimeout", DEFAULT_REQUEST_TIMEOUT)?)
            .filter(|timeout| *timeout >= Duration::from_millis(1))
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let refresh = Some(metadata.duration_or("minRefreshInterval", DEFAULT_MIN_REFRESH)?)
            .filter(|refresh| *refresh >= Duration::from_secs(1))
            .unwrap_or(DEFAULT_MIN_REFRESH);
        let error = |message: String| metadata.field_error("jwks", message);
        if location.starts_with("https://") || location.starts_with("http://") {
            if location.starts_with("http://") {
                tracing::warn!(
                    component = %metadata.component().describe(),
                    "Loading JWK from an HTTP endpoint without TLS: this is not recommended on production environments."
                );
            }
            let fetcher = Fetcher::new(location, timeout).map_err(|e| error(e.to_string()))?;
            let keys = fetcher
                .fetch()
                .await
                .map_err(|e| error(format!("failed to fetch JWKS: {e}")))?;
            let keys = Arc::new(RwLock::new(keys));
            tokio::spawn(refresh_from_url(Arc::downgrade(&keys), fetcher, refresh));
            return Ok(Arc::new(Self { keys }));
        }
        if let Ok(info) = std::fs::metadata(&location)
            && info.is_file()
        {
            let data = tokio::fs::read(&location)
                .await
                .map_err(|e| error(format!("failed to read JWKS file: {e}")))?;
            let keys =
                parse(&data).map_err(|e| error(format!("failed to parse JWKS file: {e}")))?;
            let keys = Arc::new(RwLock::new(keys));
            tokio::spawn(reload_file(
                Arc::downgrade(&keys),
                location.into(),
                info.modified().ok(),
            ));
            return Ok(Arc::new(Self { keys }));
        }
        let json = STANDARD_NO_PAD
            .decode(location.trim_end_matches('='))
            .unwrap_or_else(|_| location.clone().into_bytes());
        let keys = parse(&json).map_err(|_| {
            error("failed to parse property 'location': not a URL, path to local file, or JSON value (optionally base64-encoded)".into())
        })?;
        Ok(Arc::new(Self {
            keys: Arc::new(RwLock::new(keys)),
        }))
    }
}

#[async_trait]
impl CryptoProvider for Jwks {
    async fn retrieve_key(&self, name: &str) -> Result<Arc<Key>, CryptoError> {
        self.keys
            .read()
            .iter()
            .find(|key| key.kid.as_deref() == Some(name))
            .cloned()
            .ok_or(CryptoError::KeyNotFound)
    }
}

/// Fetches a JWKS over HTTP(S), with the web PKI roots, within a timeout.
struct Fetcher {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >,
    url: http::Uri,
    timeout: Duration,
}

impl Fetcher {
    fn new(
        url: String,
        timeout: Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let url: http::Uri = url.parse()?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url,
            timeout,
        })
    }

    async fn fetch(&self) -> Result<Vec<Arc<Key>>, Box<dyn std::error::Error + Send + Sync>> {
        let get = async {
            let response = self.client.get(self.url.clone()).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                return Err(format!("the server answered {status}").into());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(parse(&body)?)
        };
        tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

async fn refresh_from_url(keys: Weak<KeySet>, fetcher: Fetcher, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let fetched = fetcher.fetch().await;
        // The component is gone: stop.
        let Some(keys) = keys.upgrade() else { return };
        match fetched {
            Ok(fresh) => *keys.write() = fresh,
            Err(error) => {
                tracing::warn!(url = %fetcher.url, "Error while refreshing JWKS cache: {error}");
            }
        }
    }
}

async fn reload_file(keys: Weak<KeySet>, path: std::path::PathBuf, mut seen: Option<SystemTime>) {
    loop {
        tokio::time::sleep(FILE_POLL).await;
        if keys.strong_count() == 0 {
            return;
        }
        let modified = tokio::fs::metadata(&path)
            .await
            .and_then(|info| info.modified())
            .ok();
        if modified.is_none() || modified == seen {
            continue;
        }
        seen = modified;
        let loaded = match tokio::fs::read(&path).await {
            Ok(data) => parse(&data),
            Err(error) => Err(CryptoError::Parse(error.to_string())),
        };
        let Some(keys) = keys.upgrade() else { return };
        match loaded {
            Ok(fresh) => *keys.write() = fresh,
            Err(error) => {
                tracing::error!(path = %path.display(), "Error reading JWKS from disk: {error}");
            }
        }
    }
}
