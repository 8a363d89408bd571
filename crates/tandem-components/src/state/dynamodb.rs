//! `state.aws.dynamodb`: state in a DynamoDB table, in the item layout of Dapr's own
//! component, so tandem and daprd can share a table.
//!
//! **Items** are daprd's: the key in the string attribute `partitionKey` (default
//! `key`), the value in `value`, the ETag in `etag`, and with `ttlAttributeName` set the
//! expiry as epoch seconds in that number attribute (the attribute DynamoDB's own TTL
//! deletion should be pointed at). The table must exist, with `partitionKey` as its
//! string hash key, as for daprd. tandem hands a store bytes, so values are written as
//! daprd writes the bytes of a gRPC save, a binary (`B`) attribute; a string (`S`) value
//! daprd stored from its HTTP API reads as its text.
//!
//! **ETags** are daprd's: a random 64-bit number in hex, new on every write. One that
//! cannot be such a number is refused as invalid. ETag checks are DynamoDB condition
//! expressions on the write itself, so of two writers holding the same ETag exactly one
//! succeeds; `first-write` without an ETag is a put on condition that the key does not
//! exist. A transaction is one `TransactWriteItems` call, in which every operation
//! keeps its condition (daprd drops the ETag of a delete there); several operations on
//! one key are folded into one, as DynamoDB allows one per item: the first one's
//! condition, the last one's effect.
//!
//! **TTL** needs `ttlAttributeName`, as on daprd: without it `ttlInSeconds` is ignored
//! (and the store does not list the TTL feature). The expiry is rounded to the nearest
//! second. DynamoDB deletes expired items only eventually, so reads, ETag checks and
//! `first-write` treat an item whose expiry has passed as missing, at once.
//!
//! **Reads are strongly consistent** (`ConsistentRead`), so a read right after a write
//! sees it; bulk reads are `BatchGetItem` calls of up to 100 keys.
//!
//! **Limits** are DynamoDB's, checked before anything is sent: an item holds at most
//! 400 KB, a key 2048 bytes, a transaction 100 operations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value as Json, json};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, InvalidRequest, Operation, SetRequest, StateError,
    StateStore, StoreError, Stored, check_ttl,
};
use crate::aws::{self, AwsError, Client, CredentialSources, Credentials};

pub const METADATA: &[&str] = &[
    "table",
    "accessKey",
    "secretKey",
    "sessionToken",
    "region",
    "endpoint",
    "ttlAttributeName",
    "partitionKey",
    // Dapr's deprecated names of `region`, `accessKey` and `secretKey`, still read.
    "awsRegion",
    "awsAccountID",
    "awsSecret",
    // Dapr's IAM Roles Anywhere and role assumption: refused with an error, never
    // silently ignored (tandem would sign with other credentials than intended).
    "assumeRoleArn",
    "sessionName",
    "trustAnchorArn",
    "trustProfileArn",
];

/// DynamoDB's limits.
const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_KEY_BYTES: usize = 2048;
const MAX_TRANSACTION: usize = 100;
const MAX_BATCH_GET: usize = 100;

/// The longest one call may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The JSON 1.0 target prefix of DynamoDB's API version.
const TARGET: &str = "DynamoDB_20120810";

pub struct DynamoDbState {
    client: Client,
    table: String,
    partition_key: String,
    ttl_attribute: Option<String>,
    /// Whether the TTL-ignored warning was logged.
    warned_ttl: AtomicBool,
}

impl DynamoDbState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        for unsupported in [
            "assumeRoleArn",
            "sessionName",
            "trustAnchorArn",
            "trustProfileArn",
        ] {
            if metadata.get(unsupported).is_some() {
                return Err(metadata.field_error(
                    unsupported,
                    "role assumption and IAM Roles Anywhere are not available in tandem: \
                     give accessKey and secretKey (and sessionToken), or the environment's \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ));
            }
        }
        let table = metadata.required("table")?.to_owned();
        if !valid_table_name(&table) {
            return Err(metadata.field_error(
                "table",
                format!(
                    "'{table}' is not a DynamoDB table name: 3 to 255 letters, digits, \
                     `_`, `-` and `.` (or a table ARN)"
                ),
            ));
        }
        let partition_key = metadata.string_or("partitionKey", "key");
        let ttl_attribute = metadata.get("ttlAttributeName").map(str::to_owned);
        for (field, name) in [
            ("partitionKey", Some(&partition_key)),
            ("ttlAttributeName", ttl_attribute.as_ref()),
        ] {
            if let Some(name) = name
                && ["value", "etag"].contains(&name.as_str())
            {
                return Err(metadata.field_error(
                    field,
                    format!("'{name}' is an attribute the store itself writes: pick another"),
                ));
            }
        }
        if ttl_attribute.as_ref() == Some(&partition_key) {
            return Err(metadata.field_error(
                "ttlAttributeName",
                format!("'{partition_key}' is also the partitionKey: pick another"),
            ));
        }
        let sources = CredentialSources::default();
        let credentials = Credentials::read(metadata, &sources)?;
        let region = aws::region(metadata, &sources)?;
        let endpoint = aws::endpoint(metadata)?;
        let store = Self {
            client: Client::new(credentials, region, endpoint),
            table,
            partition_key,
            ttl_attribute,
            warned_ttl: AtomicBool::new(false),
        };

        // As daprd: read a key that does not exist, so a wrong table, key schema,
        // endpoint or credentials stop the start with the field named.
        let probe = json!({
            "TableName": store.table,
            "Key": store.key_of("tandem-probe"),
            "ConsistentRead": false,
        });
        if let Err(error) = store.call("GetItem", probe).await {
            let field = match error.code() {
                Some("ValidationException") => "partitionKey",
                Some(code) if code.contains("Token") || code.contains("Signature") => "accessKey",
                _ => "table",
            };
            return Err(metadata.field_error(
                field,
                format!("cannot read DynamoDB table '{}': {error}", store.table),
            ));
        }
        Ok(Arc::new(store))
    }
}

/// A table name (3 to 255 of `[A-Za-z0-9_.-]`) or a table ARN.
fn valid_table_name(name: &str) -> bool {
    if name.starts_with("arn:") {
        return name.contains(":table/");
    }
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Seconds since the epoch, with fractions.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A new ETag, as daprd makes them: 64 random bits in hex.
fn new_etag() -> String {
    format!("{:x}", rand::random::<u64>())
}

/// Whether `etag` can be one of daprd's: at most 16 hex digits.
fn valid_etag(etag: &str) -> bool {
    !etag.is_empty() && etag.len() <= 16 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a condition expression checks of the stored item.
#[derive(Clone, Copy, PartialEq)]
enum Condition<'a> {
    None,
    /// The item exists, has not expired and carries this ETag.
    Etag(&'a str),
    /// The item does not exist (or has expired).
    Missing,
}

/// What a write does to the item.
enum Effect<'a> {
    Put(&'a SetRequest),
    Delete,
}

/// One item's part of a write: the condition and the effect.
struct Planned<'a> {
    key: &'a str,
    condition: Condition<'a>,
    effect: Effect<'a>,
}

impl<'a> Planned<'a> {
    fn condition_of(operation: &'a Operation) -> Condition<'a> {
        match operation {
            Operation::Upsert(set) => match (set.etag.as_deref(), set.concurrency) {
                (Some(etag), _) => Condition::Etag(etag),
                (None, Concurrency::FirstWrite) => Condition::Missing,
                (None, Concurrency::LastWrite) => Condition::None,
            },
            Operation::Delete(delete) => delete
                .etag
                .as_deref()
                .map_or(Condition::None, Condition::Etag),
        }
    }

    fn effect_of(operation: &'a Operation) -> Effect<'a> {
        match operation {
            Operation::Upsert(set) => Effect::Put(set),
            Operation::Delete(_) => Effect::Delete,
        }
    }
}

/// Folds `operations` into one write per key, in the order keys first appear: the
/// first operation's condition against what is stored, the last one's effect. A later
/// operation whose own condition cannot hold at its turn — an ETag (the stored one then
/// is an ETag written in this transaction, which the caller cannot know), or
/// `first-write` right after a write of the key — makes the whole request a mismatch,
/// as it would be if the operations ran one after another.
fn plan(operations: &[Operation]) -> Result<Vec<Planned<'_>>, StateError> {
    let mut planned: Vec<Planned<'_>> = Vec::with_capacity(operations.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for operation in operations {
        let key = operation.key();
        match index.get(key) {
            None => {
                index.insert(key, planned.len());
                planned.push(Planned {
                    key,
                    condition: Planned::condition_of(operation),
                    effect: Planned::effect_of(operation),
                });
            }
            Some(&at) => {
                let earlier = &mut planned[at];
                let holds = match Planned::condition_of(operation) {
                    Condition::None => true,
                    Condition::Etag(_) => false,
                    Condition::Missing => matches!(earlier.effect, Effect::Delete),
                };
                if !holds {
                    return Err(StateError::EtagMismatch(key.to_owned()));
                }
                earlier.effect = Planned::effect_of(operation);
            }
        }
    }
    Ok(planned)
}

impl DynamoDbState {
    fn key_of(&self, key: &str) -> Json {
        json!({ self.partition_key.as_str(): { "S": key } })
    }

    async fn call(&self, action: &str, body: Json) -> Result<Json, AwsError> {
        self.client
            .json("dynamodb", TARGET, action, body, TIMEOUT)
            .await
    }

    fn failure(&self, action: &'static str, source: AwsError) -> StateError {
        StoreError::DynamoDb {
            table: self.table.clone(),
            action,
            source: Box::new(source),
        }
        .into()
    }

    /// Checks a request before anything is sent: ETags, TTLs, key and item sizes.
    fn validate(&self, operations: &[Operation]) -> Result<(), StateError> {
        if operations.len() > MAX_TRANSACTION {
            return Err(InvalidRequest::TooManyOperations {
                count: operations.len(),
                max: MAX_TRANSACTION,
            }
            .into());
        }
        for operation in operations {
            let key = operation.key();
            self.check_key(key)?;
            let etag = match operation {
                Operation::Upsert(set) => {
                    check_ttl(key, set.ttl)?;
                    let size = self.item_size(set);
                    if size > MAX_ITEM_BYTES {
                        return Err(InvalidRequest::ValueTooLarge {
                            key: key.to_owned(),
                            size,
                            max: MAX_ITEM_BYTES,
                        }
                        .into());
                    }
                    set.etag.as_deref()
                }
                Operation::Delete(delete) => delete.etag.as_deref(),
            };
            if etag.is_some_and(|etag| !valid_etag(etag)) {
                return Err(StateError::InvalidEtag(key.to_owned()));
            }
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(InvalidRequest::KeyTooLong {
                key: key.to_owned(),
                limit: "2048 bytes",
            }
            .into());
        }
        Ok(())
    }

    /// The item's size as DynamoDB counts it (names and values; a number at most 21
    /// bytes), an upper bound.
    fn item_size(&self, set: &SetRequest) -> usize {
        let ttl = self
            .ttl_attribute
            .as_ref()
            .filter(|_| set.ttl.is_some())
            .map_or(0, |name| name.len() + 21);
        self.partition_key.len()
            + set.key.len()
            + "value".len()
            + set.value.len()
            + "etag".len()
            + 16
            + ttl
    }

    /// The TTL attribute's name when `ttl` should be written, warning once when it is
    /// ignored for lack of `ttlAttributeName`.
    fn ttl_of(&self, set: &SetRequest) -> Option<(String, i64)> {
        let ttl = set.ttl?;
        let Some(name) = &self.ttl_attribute else {
            if !self.warned_ttl.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    table = %self.table,
                    "a write asked for a TTL, which is ignored: set ttlAttributeName on the \
                     state.aws.dynamodb component to use TTLs"
                );
            }
            return None;
        };
        // Rounded to the nearest second; `check_ttl` keeps it far inside i64.
        let expires = (now() + ttl.as_secs_f64()).round() as i64;
        Some((name.clone(), expires))
    }

    /// The item a put writes, and its new ETag.
    fn item(&self, set: &SetRequest) -> (Map<String, Json>, String) {
        let etag = new_etag();
        let mut item = Map::new();
        item.insert(self.partition_key.clone(), json!({ "S": set.key }));
        item.insert(
            "value".into(),
            json!({ "B": base64::engine::general_purpose::STANDARD.encode(&set.value) }),
        );
        item.insert("etag".into(), json!({ "S": etag }));
        if let Some((name, expires)) = self.ttl_of(set) {
            item.insert(name, json!({ "N": expires.to_string() }));
        }
        (item, etag)
    }

    /// The condition expression of `condition`, with its names and values, if any.
    fn condition(&self, condition: Condition<'_>) -> Option<Map<String, Json>> {
        let mut names = Map::new();
        let mut values = Map::new();
        let expression = match condition {
            Condition::None => return None,
            Condition::Etag(etag) => {
                names.insert("#etag".into(), json!("etag"));
                values.insert(":etag".into(), json!({ "S": etag }));
                match &self.ttl_attribute {
                    Some(ttl) => {
                        names.insert("#ttl".into(), json!(ttl));
                        values.insert(":now".into(), json!({ "N": format!("{:.3}", now()) }));
                        "#etag = :etag AND (attribute_not_exists(#ttl) OR #ttl > :now)"
                    }
                    None => "#etag = :etag",
                }
            }
            Condition::Missing => {
                names.insert("#key".into(), json!(self.partition_key));
                match &self.ttl_attribute {
                    Some(ttl) => {
                        names.insert("#ttl".into(), json!(ttl));
                        values.insert(":now".into(), json!({ "N": format!("{:.3}", now()) }));
                        "attribute_not_exists(#key) OR #ttl <= :now"
                    }
                    None => "attribute_not_exists(#key)",
                }
            }
        };
        let mut part = Map::new();
        part.insert("ConditionExpression".into(), json!(expression));
        part.insert("ExpressionAttributeNames".into(), Json::Object(names));
        if !values.is_empty() {
            part.insert("ExpressionAttributeValues".into(), Json::Object(values));
        }
        Some(part)
    }

    /// One planned write as a `Put` or `Delete` body (for `PutItem`/`DeleteItem` and
    /// inside `TransactWriteItems`), and the ETag it writes.
    fn request(&self, planned: &Planned<'_>) -> (&'static str, Map<String, Json>, Option<String>) {
        let mut body = Map::new();
        body.insert("TableName".into(), json!(self.table));
        let (kind, etag) = match planned.effect {
            Effect::Put(set) => {
                let (item, etag) = self.item(set);
                body.insert("Item".into(), Json::Object(item));
                ("Put", Some(etag))
            }
            Effect::Delete => {
                body.insert("Key".into(), self.key_of(planned.key));
                ("Delete", None)
            }
        };
        if let Some(condition) = self.condition(planned.condition) {
            body.extend(condition);
        }
        (kind, body, etag)
    }

    /// Applies `operations` all or none; the ETag of the last put.
    async fn write(&self, operations: &[Operation]) -> Result<Option<String>, StateError> {
        self.validate(operations)?;
        let planned = plan(operations)?;
        match planned.as_slice() {
            [] => Ok(None),
            [one] => {
                let (kind, body, etag) = self.request(one);
                let action = if kind == "Put" {
                    "PutItem"
                } else {
                    "DeleteItem"
                };
                match self.call(action, Json::Object(body)).await {
                    Ok(_) => Ok(etag),
                    Err(error) if error.code() == Some("ConditionalCheckFailedException") => {
                        Err(StateError::EtagMismatch(one.key.to_owned()))
                    }
                    Err(error) => Err(self.failure(
                        if kind == "Put" {
                            "PutItem"
                        } else {
                            "DeleteItem"
                        },
                        error,
                    )),
                }
            }
            many => {
                let mut items = Vec::with_capacity(many.len());
                let mut last = None;
                for planned in many {
                    let (kind, body, etag) = self.request(planned);
                    last = etag.or(last);
                    items.push(json!({ kind: body }));
                }
                let body = json!({ "TransactItems": items });
                match self.call("TransactWriteItems", body).await {
                    Ok(_) => Ok(last),
                    Err(error) => Err(self.transaction_failure(many, error)),
                }
            }
        }
    }

    /// A cancelled transaction whose reasons name a failed condition is an ETag
    /// mismatch of that item; anything else (conflicts, throttling) is the store's.
    fn transaction_failure(&self, planned: &[Planned<'_>], error: AwsError) -> StateError {
        if error.code() == Some("TransactionCanceledException")
            && let AwsError::Service { message, .. } = &error
            && let Some(reasons) = cancellation_reasons(message)
            && let Some(at) = reasons.iter().position(|r| r == "ConditionalCheckFailed")
            && let Some(planned) = planned.get(at)
        {
            return StateError::EtagMismatch(planned.key.to_owned());
        }
        self.failure("TransactWriteItems", error)
    }

    /// Reads `keys` (strongly consistent), 100 per call; expired items are missing.
    async fn read(&self, keys: &[String]) -> Result<HashMap<String, Stored>, StateError> {
        for key in keys {
            self.check_key(key)?;
        }
        let mut unique: Vec<&str> = Vec::with_capacity(keys.len());
        let mut seen = HashSet::new();
        for key in keys {
            if seen.insert(key.as_str()) {
                unique.push(key);
            }
        }
        let mut found = HashMap::with_capacity(unique.len());
        if let [key] = unique.as_slice() {
            let body = json!({
                "TableName": self.table,
                "Key": self.key_of(key),
                "ConsistentRead": true,
            });
            let answer = self
                .call("GetItem", body)
                .await
                .map_err(|error| self.failure("GetItem", error))?;
            if let Some(item) = answer.get("Item").and_then(Json::as_object) {
                self.collect(item, &mut found)?;
            }
            return Ok(found);
        }
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let mut pending: Vec<Json> = chunk.iter().map(|key| self.key_of(key)).collect();
            // Unprocessed keys (throttling) are asked again, backing off a little.
            let mut attempt = 0u32;
            while !pending.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                attempt += 1;
                let body = json!({
                    "RequestItems": {
                        self.table.as_str(): { "Keys": pending, "ConsistentRead": true }
                    }
                });
                let answer = self
                    .call("BatchGetItem", body)
                    .await
                    .map_err(|error| self.failure("BatchGetItem", error))?;
                // One table per request: its answers are the only entry, whatever
                // name (or ARN) DynamoDB files them under.
                let tables = |field: &str| {
                    answer
                        .get(field)
                        .and_then(Json::as_object)
                        .into_iter()
                        .flat_map(|tables| tables.values())
                };
                for item in tables("Responses").filter_map(Json::as_array).flatten() {
                    if let Some(item) = item.as_object() {
                        self.collect(item, &mut found)?;
                    }
                }
                pending = tables("UnprocessedKeys")
                    .filter_map(|table| table.get("Keys").and_then(Json::as_array))
                    .flatten()
                    .cloned()
                    .collect();
                if attempt >= 10 && !pending.is_empty() {
                    return Err(StoreError::DynamoDbItem {
                        table: self.table.clone(),
                        key: String::new(),
                        problem: format!("{} keys stayed unprocessed", pending.len()),
                    }
                    .into());
                }
            }
        }
        Ok(found)
    }

    /// Adds a read item to `found` unless it has expired.
    fn collect(
        &self,
        item: &Map<String, Json>,
        found: &mut HashMap<String, Stored>,
    ) -> Result<(), StateError> {
        let bad = |key: &str, problem: String| {
            StateError::from(StoreError::DynamoDbItem {
                table: self.table.clone(),
                key: key.to_owned(),
                problem,
            })
        };
        let Some(key) = item
            .get(&self.partition_key)
            .and_then(|value| value.get("S"))
            .and_then(Json::as_str)
        else {
            return Err(bad(
                "",
                format!("no string attribute '{}'", self.partition_key),
            ));
        };
        if let Some(name) = &self.ttl_attribute
            && let Some(expiry) = item.get(name)
        {
            let expires = expiry
                .get("N")
                .and_then(Json::as_str)
                .and_then(|n| n.parse::<f64>().ok())
                .ok_or_else(|| bad(key, format!("'{name}' is not a number")))?;
            if expires <= now() {
                return Ok(());
            }
        }
        let value = match item.get("value") {
            None => Bytes::new(),
            Some(value) => {
                if let Some(binary) = value.get("B").and_then(Json::as_str) {
                    base64::engine::general_purpose::STANDARD
                        .decode(binary)
                        .map(Bytes::from)
                        .map_err(|error| bad(key, format!("'value' is not base64: {error}")))?
                } else if let Some(text) = value.get("S").and_then(Json::as_str) {
                    Bytes::from(text.to_owned())
                } else {
                    return Err(bad(key, "'value' is neither binary nor a string".into()));
                }
            }
        };
        let etag = item
            .get("etag")
            .and_then(|etag| etag.get("S"))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        found.insert(key.to_owned(), Stored { value, etag });
        Ok(())
    }
}

/// The reasons of a cancelled transaction, from DynamoDB's message: `Transaction
/// cancelled, please refer cancellation reasons for specific reasons [None,
/// ConditionalCheckFailed]`, one per item in order.
fn cancellation_reasons(message: &str) -> Option<Vec<String>> {
    let start = message.rfind('[')?;
    let end = start + message[start..].find(']')?;
    Some(
        message[start + 1..end]
            .split(',')
            .map(|reason| reason.trim().to_owned())
            .collect(),
    )
}

#[async_trait]
impl StateStore for DynamoDbState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        Ok(self.read(&[key.to_owned()]).await?.remove(key))
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        let operations = [Operation::Upsert(normalise_set(request))];
        Ok(self.write(&operations).await?.unwrap_or_default())
    }

    async fn delete(&self, mut request: DeleteRequest) -> Result<(), StateError> {
        request.etag = request.etag.filter(|etag| !etag.is_empty());
        self.write(&[Operation::Delete(request)]).await.map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        let operations: Vec<Operation> = operations
            .into_iter()
            .map(|operation| match operation {
                Operation::Upsert(set) => Operation::Upsert(normalise_set(set)),
                Operation::Delete(mut delete) => {
                    delete.etag = delete.etag.filter(|etag| !etag.is_empty());
                    Operation::Delete(delete)
                }
            })
            .collect();
        self.write(&operations).await.map(|_| ())
    }

    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        match self.read(keys).await {
            Ok(found) => keys.iter().map(|key| Ok(found.get(key).cloned())).collect(),
            Err(error) => keys.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    fn features(&self) -> &'static [Feature] {
        // As daprd: TTLs only with a TTL attribute.
        if self.ttl_attribute.is_some() {
            &[Feature::Etag, Feature::Transactional, Feature::Ttl]
        } else {
            &[Feature::Etag, Feature::Transactional]
        }
    }
}

/// Empty ETags mean none, as everywhere.
fn normalise_set(mut set: SetRequest) -> SetRequest {
    set.etag = set.etag.filter(|etag| !etag.is_empty());
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(key: &str, etag: Option<&str>, concurrency: Concurrency) -> Operation {
        Operation::Upsert(SetRequest {
            key: key.into(),
            value: Bytes::new(),
            etag: etag.map(str::to_owned),
            concurrency,
            ttl: None,
        })
    }

    fn delete(key: &str, etag: Option<&str>) -> Operation {
        Operation::Delete(DeleteRequest {
            key: key.into(),
            etag: etag.map(str::to_owned),
            concurrency: Concurrency::LastWrite,
        })
    }

    #[test]
    fn operations_on_one_key_fold_into_one_write() {
        let operations = [
            upsert("a", Some("1f"), Concurrency::LastWrite),
            upsert("b", None, Concurrency::LastWrite),
            delete("a", None),
        ];
        let planned = plan(&operations).unwrap();
        assert_eq!(planned.len(), 2);
        assert!(planned[0].key == "a" && planned[0].condition == Condition::Etag("1f"));
        assert!(matches!(planned[0].effect, Effect::Delete));

        // first-write after a delete of the key holds; after a write it cannot.
        let operations = [
            delete("a", None),
            upsert("a", None, Concurrency::FirstWrite),
        ];
        let planned = plan(&operations).unwrap();
        assert!(matches!(planned[0].effect, Effect::Put(_)));
        for operations in [
            [
                upsert("a", None, Concurrency::LastWrite),
                upsert("a", None, Concurrency::FirstWrite),
            ],
            [
                upsert("a", None, Concurrency::LastWrite),
                upsert("a", Some("1f"), Concurrency::LastWrite),
            ],
        ] {
            assert!(matches!(
                plan(&operations),
                Err(StateError::EtagMismatch(_))
            ));
        }
    }

    #[test]
    fn etags_are_daprs_hex_numbers() {
        let etag = new_etag();
        assert!(valid_etag(&etag), "{etag}");
        assert!(valid_etag("ffffffffffffffff"));
        for bad in ["", "not-an-etag", "12345678901234567", "0x1"] {
            assert!(!valid_etag(bad), "{bad}");
        }
    }

    #[test]
    fn cancellation_reasons_are_read_from_the_message() {
        assert_eq!(
            cancellation_reasons(
                "Transaction cancelled, please refer cancellation reasons for specific \
                 reasons [None, ConditionalCheckFailed]"
            ),
            Some(vec!["None".to_owned(), "ConditionalCheckFailed".to_owned()])
        );
        assert_eq!(cancellation_reasons("no list"), None);
    }

    #[test]
    fn table_names_are_checked() {
        assert!(valid_table_name("state-table.v1_x"));
        assert!(valid_table_name(
            "arn:aws:dynamodb:us-east-1:123456789012:table/state"
        ));
        for bad in ["ab", "a b", "tab/le", &"x".repeat(256)] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }
}
