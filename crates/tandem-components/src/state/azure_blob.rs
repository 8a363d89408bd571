//! `state.azure.blobstorage`: state in an Azure Storage blob container, in the layout
//! of Dapr's own component, so tandem and daprd can share a container.
//!
//! **Blobs** are daprd's: one block blob per key, holding the value's bytes as they
//! are. In `v2` (what daprd recommends) the blob's name is the whole key
//! (`appid||key`); in `v1` it is the part after `||`, as daprd's `v1` names it (so
//! apps sharing a `v1` container share its keys).
//!
//! **ETags** are the blob's own `ETag` (quoted, as Azure sends it and daprd hands it
//! out). ETag checks are Azure's `If-Match` on the write itself, so of two writers
//! holding the same ETag exactly one succeeds; `first-write` without an ETag is a put
//! on `If-None-Match: *`. Something that cannot be one of Azure's ETags
//! (`"0x` and hex digits) is refused as invalid.
//!
//! **No transactions, no TTL**, as daprd's: the store lists only the ETag feature; a
//! transaction of more than one operation is refused before anything is written (one
//! operation is carried out alone), and `ttlInSeconds` is ignored with a warning.
//!
//! **Start**: the container is created if missing (with `publicAccessLevel`), unless
//! `disableEntityManagement`, as daprd does; either way one call at start checks the
//! account, key and endpoint, so a wrong one stops the start with the field named.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, InvalidRequest, Operation, SetRequest, StateError,
    StateStore, StoreError, Stored, check_ttl,
};
use crate::azure::{self, Account, Answer, AzureError, Client, Service};

pub const METADATA: &[&str] = &[
    // The account and its key, under every name Dapr reads.
    "accountName",
    "storageAccount",
    "storageAccountName",
    "accountKey",
    "accessKey",
    "storageAccessKey",
    "storageAccountKey",
    "containerName",
    "container",
    "storageAccountContainer",
    "endpoint",
    "storageEndpoint",
    "storageAccountEndpoint",
    "queueEndpointUrl",
    "publicAccessLevel",
    "retryCount",
    "getBlobRetryCount",
    "disableEntityManagement",
    // Only Dapr's blob binding decodes values; its state store reads and ignores it.
    "decodeBase64",
    // Azure AD, managed identities and connection strings: refused by name.
    "azureTenantId",
    "azureClientId",
    "azureClientSecret",
    "azureCertificate",
    "azureCertificateFile",
    "azureCertificatePassword",
    "azureFederatedTokenFile",
    "azureEnvironment",
    "connectionString",
];

const CONTAINER_NAMES: &[&str] = &["containerName", "container", "storageAccountContainer"];

/// The longest one call may take: a value of several megabytes on a slow link.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Azure's longest blob name, in characters.
const MAX_NAME_CHARS: usize = 1024;

pub struct AzureBlobState {
    client: Client,
    container: String,
    /// `v1`: blob names are the key's part after `||`.
    strip_prefix: bool,
    /// Whether the TTL-ignored warning was logged.
    warned_ttl: AtomicBool,
}

impl AzureBlobState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let account = Account::read(metadata)?;
        let Some((container_field, container)) = azure::first_of(metadata, CONTAINER_NAMES) else {
            return Err(metadata.field_error(CONTAINER_NAMES[0], "is required but not set"));
        };
        if !valid_container_name(container) {
            return Err(metadata.field_error(
                container_field,
                format!(
                    "'{container}' is not a blob container name: 3 to 63 lowercase letters, \
                     digits and single hyphens, starting and ending with a letter or digit"
                ),
            ));
        }
        let access = match metadata.get("publicAccessLevel") {
            None | Some("none") => None,
            Some(level @ ("blob" | "container")) => Some(level.to_owned()),
            Some(other) => {
                return Err(metadata.field_error(
                    "publicAccessLevel",
                    format!("'{other}' is not one of none, blob and container"),
                ));
            }
        };
        // `getBlobRetryCount` is Dapr's older name; it wins when both are set, as on
        // daprd.
        let mut retries = metadata.number_or::<u32>("retryCount", 3)?;
        retries = metadata.number_or::<u32>("getBlobRetryCount", retries)?;
        metadata.bool_or("decodeBase64", false)?;
        let manage = !metadata.bool_or("disableEntityManagement", false)?;
        let base = azure::service_url(metadata, azure::ENDPOINT, &account, "blob")?;
        let strip_prefix = metadata.component().version == "v1";
        let store = Self {
            client: Client::new(account, base, Service::Blob, retries),
            container: container.to_owned(),
            strip_prefix,
            warned_ttl: AtomicBool::new(false),
        };

        let path = format!("/{}", store.container);
        let query = [("restype", "container")];
        let started = if manage {
            let headers: Vec<(&str, String)> = access
                .map(|level| ("x-ms-blob-public-access", level))
                .into_iter()
                .collect();
            store
                .client
                .send(Method::PUT, &path, &query, &headers, Bytes::new(), TIMEOUT)
                .await
                .and_then(|answer| match answer.status {
                    201 => Ok(()),
                    409 if answer.header("x-ms-error-code") == Some("ContainerAlreadyExists") => {
                        Ok(())
                    }
                    _ => Err(answer.into_error()),
                })
        } else {
            store
                .client
                .send(Method::HEAD, &path, &query, &[], Bytes::new(), TIMEOUT)
                .await
                .and_then(|answer| match answer.status {
                    200 => Ok(()),
                    _ => Err(answer.into_error()),
                })
        };
        if let Err(error) = started {
            // Refused: the key (403) or else the container; not answered: the endpoint.
            let field = match error.status() {
                Some(403) => "accountKey",
                Some(_) => container_field,
                None => azure::first_of(metadata, azure::ENDPOINT)
                    .map_or("accountName", |(field, _)| field),
            };
            let action = if manage {
                "cannot create"
            } else {
                "cannot find"
            };
            return Err(metadata.field_error(
                field,
                format!(
                    "{action} blob container '{}' at {}: {error}",
                    store.container,
                    store.client.base()
                ),
            ));
        }
        Ok(Arc::new(store))
    }
}

/// 3 to 63 of lowercase letters, digits and hyphens; no leading, trailing or double
/// hyphen.
fn valid_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Whether `etag` can be one of Azure's: `"0x` and hex digits, quoted or not.
fn valid_etag(etag: &str) -> bool {
    let bare = etag
        .strip_prefix('"')
        .and_then(|etag| etag.strip_suffix('"'))
        .unwrap_or(etag);
    bare.strip_prefix("0x").is_some_and(|hex| {
        (1..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Azure's ETag as sent in `If-Match`: quoted.
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

impl AzureBlobState {
    /// The blob's name for `key`, as daprd's version names it.
    fn name<'a>(&self, key: &'a str) -> &'a str {
        if !self.strip_prefix {
            return key;
        }
        // daprd's v1: the part after `||` when there is exactly one, else the first part.
        let parts: Vec<&str> = key.split("||").collect();
        if parts.len() == 2 { parts[1] } else { parts[0] }
    }

    fn path(&self, key: &str) -> String {
        let name = self.name(key);
        // `.` and `..` would be dot segments of the URL, which a server or proxy may
        // resolve away (Azurite does not): sent encoded, they name the blob.
        let encoded = if name.bytes().all(|b| b == b'.') {
            "%2E".repeat(name.len())
        } else {
            azure::encode(name)
        };
        format!("/{}/{encoded}", self.container)
    }

    fn failure(&self, action: &'static str, source: AzureError) -> StateError {
        StoreError::Azure {
            service: "blob container",
            resource: self.container.clone(),
            action,
            source: Box::new(source),
        }
        .into()
    }

    fn check(&self, key: &str, etag: Option<&str>) -> Result<(), StateError> {
        let name = self.name(key);
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(InvalidRequest::KeyTooLong {
                key: key.to_owned(),
                limit: "1024 characters (and at least one)",
            }
            .into());
        }
        if etag.is_some_and(|etag| !valid_etag(etag)) {
            return Err(StateError::InvalidEtag(key.to_owned()));
        }
        Ok(())
    }

    fn validate(&self, operation: &Operation) -> Result<(), StateError> {
        match operation {
            Operation::Upsert(set) => self.validate_set(set),
            Operation::Delete(delete) => self.check(&delete.key, delete.etag.as_deref()),
        }
    }

    fn validate_set(&self, set: &SetRequest) -> Result<(), StateError> {
        check_ttl(&set.key, set.ttl)?;
        self.check(&set.key, set.etag.as_deref())
    }

    async fn put(&self, set: &SetRequest) -> Result<String, StateError> {
        if set.ttl.is_some() && !self.warned_ttl.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                container = %self.container,
                "a write asked for a TTL, which is ignored: state.azure.blobstorage has no \
                 TTLs, as on daprd"
            );
        }
        let etag = set.etag.as_deref().filter(|etag| !etag.is_empty());
        let mut headers = vec![("x-ms-blob-type", "BlockBlob".to_owned())];
        match (etag, set.concurrency) {
            (Some(etag), _) => headers.push(("if-match", quoted(etag))),
            (None, Concurrency::FirstWrite) => headers.push(("if-none-match", "*".to_owned())),
            (None, Concurrency::LastWrite) => {}
        }
        let answer = self
            .client
            .send(
                Method::PUT,
                &self.path(&set.key),
                &[],
                &headers,
                set.value.clone(),
                TIMEOUT,
            )
            .await
            .map_err(|error| self.failure("put blob", error))?;
        match answer.status {
            201 => answer
                .header("etag")
                .map(str::to_owned)
                .ok_or_else(|| self.failure("put blob", unexpected(answer, "no ETag"))),
            // 412: the ETag differs; 409: `If-None-Match: *` met a blob; 404: an ETag
            // given for a blob that is gone.
            412 | 409 => Err(StateError::EtagMismatch(set.key.clone())),
            404 if etag.is_some() => Err(StateError::EtagMismatch(set.key.clone())),
            _ => Err(self.failure("put blob", answer.into_error())),
        }
    }

    async fn remove(&self, delete: &DeleteRequest) -> Result<(), StateError> {
        let etag = delete.etag.as_deref().filter(|etag| !etag.is_empty());
        let headers: Vec<(&str, String)> = etag
            .map(|etag| ("if-match", quoted(etag)))
            .into_iter()
            .collect();
        let answer = self
            .client
            .send(
                Method::DELETE,
                &self.path(&delete.key),
                &[],
                &headers,
                Bytes::new(),
                TIMEOUT,
            )
            .await
            .map_err(|error| self.failure("delete blob", error))?;
        match answer.status {
            202 => Ok(()),
            404 if etag.is_none() => Ok(()),
            404 | 412 => Err(StateError::EtagMismatch(delete.key.clone())),
            _ => Err(self.failure("delete blob", answer.into_error())),
        }
    }
}

fn unexpected(answer: Answer, what: &str) -> AzureError {
    AzureError::Unexpected {
        endpoint: answer.endpoint,
        what: what.to_owned(),
    }
}

#[async_trait]
impl StateStore for AzureBlobState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        self.check(key, None)?;
        let answer = self
            .client
            .send(
                Method::GET,
                &self.path(key),
                &[],
                &[],
                Bytes::new(),
                TIMEOUT,
            )
            .await
            .map_err(|error| self.failure("get blob", error))?;
        match answer.status {
            200 => {
                let Some(etag) = answer.header("etag").map(str::to_owned) else {
                    return Err(self.failure("get blob", unexpected(answer, "no ETag")));
                };
                Ok(Some(Stored {
                    value: answer.body,
                    etag,
                }))
            }
            404 => Ok(None),
            _ => Err(self.failure("get blob", answer.into_error())),
        }
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        self.validate_set(&request)?;
        self.put(&request).await
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        self.check(&request.key, request.etag.as_deref())?;
        self.remove(&request).await
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        for operation in &operations {
            self.validate(operation)?;
        }
        if operations.len() > 1 {
            // Blobs cannot be written together: refused rather than half applied.
            return Err(InvalidRequest::TooManyOperations {
                count: operations.len(),
                max: 1,
            }
            .into());
        }
        match operations.first() {
            None => Ok(()),
            Some(Operation::Upsert(set)) => self.put(set).await.map(drop),
            Some(Operation::Delete(delete)) => self.remove(delete).await,
        }
    }

    fn features(&self) -> &'static [Feature] {
        &[Feature::Etag]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_etags() {
        assert!(valid_container_name("state-1"));
        for bad in ["ab", "-ab", "ab-", "a--b", "Abc", "a_b"] {
            assert!(!valid_container_name(bad), "{bad}");
        }
        assert!(valid_etag("\"0x8DC1A2B3C4D5E6F\""));
        assert!(valid_etag("0x8DC1A2B3C4D5E6F"));
        for bad in ["", "\"\"", "0x", "not-an-etag", "\"0xZZ\"", "7"] {
            assert!(!valid_etag(bad), "{bad}");
        }
        assert_eq!(quoted("0x1"), "\"0x1\"");
        assert_eq!(quoted("\"0x1\""), "\"0x1\"");
    }
}
