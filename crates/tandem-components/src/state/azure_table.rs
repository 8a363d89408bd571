//! `state.azure.tablestorage`: state in an Azure Storage (or Cosmos DB Table API)
//! table, in the entity layout of Dapr's own component, so tandem and daprd can share
//! a table.
//!
//! **Entities** are daprd's: the key's part before the first `||` (the app id) is the
//! `PartitionKey`, the rest the `RowKey` (empty for a key without `||`; in
//! `cosmosDbMode`, which refuses empty row keys, `_dapr_empty_row_key_value_`), the value
//! the string property `Value`. A value that is not UTF-8 text, which daprd cannot
//! store, is kept as an `Edm.Binary` `Value`. Azure forbids `/`, `\`, `#`, `?` and
//! control characters in keys: tandem writes those (and `%`) percent-encoded, so such
//! keys, which daprd cannot store either, work too (daprd would not find a key with
//! `%` that tandem wrote). daprd splits a key with several `||` at every one of them
//! and keeps only the first two parts; tandem splits at the first, so no two keys meet.
//!
//! **ETags** are the entity's own (`W/"datetime'…'"`), checked by Azure on the write
//! itself (`If-Match`), so of two writers holding the same ETag exactly one succeeds;
//! `first-write` without an ETag is an Insert, which fails if the entity exists.
//!
//! **No transactions, no TTL**, as daprd's: the store lists only the ETag feature; a
//! transaction of more than one operation is refused before anything is written, and
//! `ttlInSeconds` is ignored with a warning.
//!
//! **Limits** are Azure's, checked before anything is sent: a property holds at most
//! 64 KiB (so a value: 64 KiB of bytes, or 32 Ki UTF-16 characters of text), a
//! `PartitionKey` or `RowKey` 1 KiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http::Method;
use serde_json::{Value as Json, json};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, InvalidRequest, Operation, SetRequest, StateError,
    StateStore, StoreError, Stored, check_ttl,
};
use crate::azure::{self, Account, Answer, AzureError, Client, Service};

pub const METADATA: &[&str] = &[
    "accountName",
    "storageAccount",
    "storageAccountName",
    "accountKey",
    "accessKey",
    "storageAccessKey",
    "storageAccountKey",
    "tableName",
    "table",
    "storageAccountTable",
    "cosmosDbMode",
    "serviceURL",
    "skipCreateTable",
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

const TABLE_NAMES: &[&str] = &["tableName", "table", "storageAccountTable"];

/// daprd's row key for a key without `||` in Cosmos DB mode.
const COSMOS_EMPTY_ROW_KEY: &str = "_dapr_empty_row_key_value_";

/// Azure's largest property, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Azure's largest `PartitionKey` or `RowKey`, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// daprd's timeout for one call.
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct AzureTableState {
    client: Client,
    table: String,
    cosmos: bool,
    warned_ttl: AtomicBool,
}

impl AzureTableState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let account = Account::read(metadata)?;
        let Some((table_field, table)) = azure::first_of(metadata, TABLE_NAMES) else {
            return Err(metadata.field_error(TABLE_NAMES[0], "is required but not set"));
        };
        if !valid_table_name(table) {
            return Err(metadata.field_error(
                table_field,
                format!(
                    "'{table}' is not a table name: 3 to 63 letters and digits, starting \
                     with a letter"
                ),
            ));
        }
        let cosmos = metadata.bool_or("cosmosDbMode", false)?;
        let skip_create = metadata.bool_or("skipCreateTable", false)?;
        // `serviceURL` names the account's table service itself (on Azurite:
        // `http://127.0.0.1:10002/devstoreaccount1`), as on daprd.
        let base = match metadata.get("serviceURL") {
            Some(value) => {
                let uri: http::Uri = value.trim().parse().map_err(|why| {
                    metadata.field_error("serviceURL", format!("'{value}' is not a URL: {why}"))
                })?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none()
                {
                    return Err(metadata.field_error(
                        "serviceURL",
                        format!("'{value}' is not an http:// or https:// URL"),
                    ));
                }
                value.trim().trim_end_matches('/').to_owned()
            }
            None if cosmos => format!("https://{}.table.cosmos.azure.com", account.name),
            None => format!("https://{}.table.core.windows.net", account.name),
        };
        let store = Self {
            client: Client::new(account, base, Service::Table, 3),
            table: table.to_owned(),
            cosmos,
            warned_ttl: AtomicBool::new(false),
        };

        let started = if skip_create {
            let path = format!("/Tables('{}')", store.table);
            store
                .call(Method::GET, &path, &[], Bytes::new())
                .await
                .and_then(|answer| match answer.status {
                    200 => Ok(()),
                    _ => Err(answer.into_error()),
                })
        } else {
            let body = json!({ "TableName": store.table }).to_string();
            store
                .call(
                    Method::POST,
                    "/Tables",
                    &[("prefer", "return-no-content".to_owned())],
                    Bytes::from(body),
                )
                .await
                .and_then(|answer| match answer.status {
                    201 | 204 => Ok(()),
                    409 if answer
                        .header("x-ms-error-code")
                        .is_some_and(|code| code == "TableAlreadyExists") =>
                    {
                        Ok(())
                    }
                    _ => Err(answer.into_error()),
                })
        };
        if let Err(error) = started {
            let field = match error.status() {
                Some(403) => "accountKey",
                Some(_) => table_field,
                None => {
                    if metadata.get("serviceURL").is_some() {
                        "serviceURL"
                    } else {
                        "accountName"
                    }
                }
            };
            let action = if skip_create {
                "cannot find"
            } else {
                "cannot create"
            };
            return Err(metadata.field_error(
                field,
                format!(
                    "{action} table '{}' at {}: {error}",
                    store.table,
                    store.client.base()
                ),
            ));
        }
        Ok(Arc::new(store))
    }
}

/// 3 to 63 letters and digits, starting with a letter.
fn valid_table_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A key part as Azure allows it: `/`, `\`, `#`, `?`, control characters and `%`
/// itself percent-encoded, everything else as it is.
fn escape_key(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if matches!(c, '/' | '\\' | '#' | '?' | '%') || c.is_control() {
            let mut buffer = [0; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `etag` can be one of Azure Table's: `W/"datetime'…'"`.
fn valid_etag(etag: &str) -> bool {
    etag.starts_with("W/\"") && etag.ends_with('"') && etag.len() > 4 && etag.is_ascii()
}

impl AzureTableState {
    /// `PartitionKey` and `RowKey` of `key`.
    fn keys(&self, key: &str) -> (String, String) {
        let (partition, row) = key.split_once("||").unwrap_or((key, ""));
        let row = if row.is_empty() && self.cosmos {
            COSMOS_EMPTY_ROW_KEY
        } else {
            row
        };
        (escape_key(partition), escape_key(row))
    }

    fn entity_path(&self, key: &str) -> String {
        let (partition, row) = self.keys(key);
        format!(
            "/{}(PartitionKey='{}',RowKey='{}')",
            self.table,
            azure::encode(&partition.replace('\'', "''")),
            azure::encode(&row.replace('\'', "''"))
        )
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, AzureError> {
        let mut headers = vec![
            (
                "accept",
                "application/json;odata=minimalmetadata".to_owned(),
            ),
            ("dataserviceversion", "3.0".to_owned()),
            ("maxdataserviceversion", "3.0;NetFx".to_owned()),
        ];
        if !body.is_empty() {
            headers.push(("content-type", "application/json".to_owned()));
        }
        headers.extend(extra.iter().cloned());
        self.client
            .send(method, path, &[], &headers, body, TIMEOUT)
            .await
    }

    fn failure(&self, action: &'static str, source: AzureError) -> StateError {
        StoreError::Azure {
            service: "table",
            resource: self.table.clone(),
            action,
            source: Box::new(source),
        }
        .into()
    }

    fn check(&self, key: &str, etag: Option<&str>) -> Result<(), StateError> {
        let (partition, row) = self.keys(key);
        if partition.is_empty() || partition.len() > MAX_KEY_BYTES || row.len() > MAX_KEY_BYTES {
            return Err(InvalidRequest::KeyTooLong {
                key: key.to_owned(),
                limit: "1 KiB for the app id and 1 KiB for the rest (with / \\ # ? % \
                        and control characters counted as three bytes)",
            }
            .into());
        }
        if etag
            .filter(|etag| !etag.is_empty())
            .is_some_and(|etag| !valid_etag(etag))
        {
            return Err(StateError::InvalidEtag(key.to_owned()));
        }
        Ok(())
    }

    fn validate_set(&self, set: &SetRequest) -> Result<(), StateError> {
        check_ttl(&set.key, set.ttl)?;
        self.check(&set.key, set.etag.as_deref())?;
        // Azure counts a string property in UTF-16 code units, two bytes each.
        let size = match std::str::from_utf8(&set.value) {
            Ok(text) => text.encode_utf16().count() * 2,
            Err(_) => set.value.len(),
        };
        if size > MAX_VALUE_BYTES {
            return Err(InvalidRequest::ValueTooLarge {
                key: set.key.clone(),
                size,
                max: MAX_VALUE_BYTES,
            }
            .into());
        }
        Ok(())
    }

    fn validate(&self, operation: &Operation) -> Result<(), StateError> {
        match operation {
            Operation::Upsert(set) => self.validate_set(set),
            Operation::Delete(delete) => self.check(&delete.key, delete.etag.as_deref()),
        }
    }

    fn entity(&self, set: &SetRequest) -> Json {
        let (partition, row) = self.keys(&set.key);
        match std::str::from_utf8(&set.value) {
            Ok(text) => json!({ "PartitionKey": partition, "RowKey": row, "Value": text }),
            Err(_) => json!({
                "PartitionKey": partition,
                "RowKey": row,
                "Value@odata.type": "Edm.Binary",
                "Value": base64::engine::general_purpose::STANDARD.encode(&set.value),
            }),
        }
    }

    async fn put(&self, set: &SetRequest) -> Result<String, StateError> {
        if set.ttl.is_some() && !self.warned_ttl.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                table = %self.table,
                "a write asked for a TTL, which is ignored: state.azure.tablestorage has no \
                 TTLs, as on daprd"
            );
        }
        let body = Bytes::from(self.entity(set).to_string());
        let etag = set.etag.as_deref().filter(|etag| !etag.is_empty());
        let answer = match (etag, set.concurrency) {
            // Update Entity: only if the stored one carries this ETag.
            (Some(etag), _) => {
                self.call(
                    Method::PUT,
                    &self.entity_path(&set.key),
                    &[("if-match", etag.to_owned())],
                    body,
                )
                .await
            }
            // Insert Entity: fails if it exists.
            (None, Concurrency::FirstWrite) => {
                self.call(
                    Method::POST,
                    &format!("/{}", self.table),
                    &[("prefer", "return-no-content".to_owned())],
                    body,
                )
                .await
            }
            // Insert Or Replace Entity.
            (None, Concurrency::LastWrite) => {
                self.call(Method::PUT, &self.entity_path(&set.key), &[], body)
                    .await
            }
        }
        .map_err(|error| self.failure("write entity", error))?;
        match answer.status {
            201 | 204 => answer
                .header("etag")
                .map(str::to_owned)
                .ok_or_else(|| self.failure("write entity", unexpected(answer, "no ETag"))),
            412 | 409 => Err(StateError::EtagMismatch(set.key.clone())),
            404 if etag.is_some() => Err(StateError::EtagMismatch(set.key.clone())),
            _ => Err(self.failure("write entity", answer.into_error())),
        }
    }

    async fn remove(&self, delete: &DeleteRequest) -> Result<(), StateError> {
        let etag = delete.etag.as_deref().filter(|etag| !etag.is_empty());
        let answer = self
            .call(
                Method::DELETE,
                &self.entity_path(&delete.key),
                &[("if-match", etag.unwrap_or("*").to_owned())],
                Bytes::new(),
            )
            .await
            .map_err(|error| self.failure("delete entity", error))?;
        match answer.status {
            204 => Ok(()),
            404 if etag.is_none() => Ok(()),
            404 | 412 => Err(StateError::EtagMismatch(delete.key.clone())),
            _ => Err(self.failure("delete entity", answer.into_error())),
        }
    }

    /// The value of an entity's JSON: its `Value`, text or `Edm.Binary`.
    fn value_of(&self, key: &str, entity: &Json) -> Result<Bytes, StateError> {
        let problem = |problem: &str| -> StateError {
            StoreError::AzureEntity {
                table: self.table.clone(),
                key: key.to_owned(),
                problem: problem.to_owned(),
            }
            .into()
        };
        let Some(value) = entity.get("Value") else {
            // daprd answers an entity without `Value` as no value.
            return Ok(Bytes::new());
        };
        let Some(text) = value.as_str() else {
            return Err(problem("`Value` is not a string or binary property"));
        };
        if entity.get("Value@odata.type").and_then(Json::as_str) == Some("Edm.Binary") {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|_| problem("`Value` is binary but not base64"))
        } else {
            Ok(Bytes::copy_from_slice(text.as_bytes()))
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
impl StateStore for AzureTableState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        self.check(key, None)?;
        let answer = self
            .call(Method::GET, &self.entity_path(key), &[], Bytes::new())
            .await
            .map_err(|error| self.failure("get entity", error))?;
        match answer.status {
            200 => {
                let Some(etag) = answer.header("etag").map(str::to_owned) else {
                    return Err(self.failure("get entity", unexpected(answer, "no ETag")));
                };
                let entity: Json = serde_json::from_slice(&answer.body).map_err(|why| {
                    StateError::from(StoreError::AzureEntity {
                        table: self.table.clone(),
                        key: key.to_owned(),
                        problem: format!("not JSON: {why}"),
                    })
                })?;
                Ok(Some(Stored {
                    value: self.value_of(key, &entity)?,
                    etag,
                }))
            }
            404 => Ok(None),
            _ => Err(self.failure("get entity", answer.into_error())),
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
            // As daprd's, the store has no transactions: refused rather than half
            // applied.
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
    fn names_keys_and_etags() {
        assert!(valid_table_name("state1"));
        for bad in ["ab", "1abc", "a-bc", "a_bc"] {
            assert!(!valid_table_name(bad), "{bad}");
        }
        assert_eq!(escape_key("a/b#c?d\\e%f\u{1}"), "a%2Fb%23c%3Fd%5Ce%25f%01");
        assert_eq!(escape_key("ключ 🔑"), "ключ 🔑");
        assert!(valid_etag("W/\"datetime'2026-12-04T13%3A00%3A00.1Z'\""));
        for bad in ["", "not-an-etag", "\"0x1\"", "W/\""] {
            assert!(!valid_etag(bad), "{bad}");
        }
    }
}
