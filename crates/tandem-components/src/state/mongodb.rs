//! `state.mongodb`: state in a MongoDB collection, in the document layout of Dapr's own
//! component, so tandem and daprd can share a collection.
//!
//! **Documents** are daprd's: `{_id: key, value, _etag, _ttl}`, in the collection
//! `collectionName` (default `daprCollection`) of the database `databaseName` (default
//! `daprStore`). tandem hands a store bytes, not typed values, so the value is kept the
//! way daprd keeps what it is given: a JSON object or array becomes a BSON document or
//! array (as daprd stores a JSON value saved through its HTTP API, so Mongo queries on
//! `value.<field>` see it); anything else — a JSON string, number or `true`, or text that
//! is not JSON — is kept as a BSON string of its bytes (as daprd stores the bytes of a
//! gRPC save), and bytes that are not UTF-8 as BSON binary. Reading turns a document
//! back into compact JSON, as daprd does, so objects and arrays come back without the
//! whitespace they were written with; every other value reads back byte for byte.
//! Numbers in them are stored as doubles, as daprd's HTTP API stores them (it decodes
//! JSON into Go's `float64`) — but whole numbers beyond 2^53, which a double would
//! round, are kept exact as 64-bit integers — and read back as daprd renders them: whole
//! doubles as integers on reads (`1036`), with their point in query answers (`1036.0`,
//! daprd's relaxed Extended JSON, which the Python SDK's `state_store_query` example
//! prints). An
//! object whose field names MongoDB cannot store as they are (starting with `$`, or
//! holding a NUL), or that is nested deeper than MongoDB allows, is kept as a string.
//!
//! **ETags** are daprd's: a random UUID in `_etag`, new on every write; one that is not a
//! UUID is refused as invalid. The ETag check is the filter of the write itself
//! (`{_id, _etag}`), so of two writers holding the same ETag exactly one changes the
//! document. `first-write` without an ETag is an upsert that may only replace an expired
//! document, so an existing key fails on the unique `_id` (duplicate key, code 11000),
//! which is reported as an ETag mismatch, as on daprd. Unlike daprd, a write whose ETag
//! names a key that does not exist fails instead of creating it (the rule every tandem
//! store follows).
//!
//! **TTL.** A write with `ttlInSeconds` sets `_ttl` to the expiry date (daprd: the
//! server's `$$NOW` plus the TTL; here the sidecar's clock); a write without one sets it
//! to `null`, so the value is permanent again. The component creates daprd's TTL index
//! on `_ttl` (`expireAfterSeconds: 0`), so MongoDB deletes expired documents itself —
//! within a minute — and every read and ETag check ignores them at once.
//!
//! **Transactions** are one MongoDB transaction on one session (snapshot read concern,
//! majority write concern, as daprd). MongoDB has transactions only on a replica set
//! (or a sharded cluster), and, as daprd, the component uses them only when the
//! connection names one (`replicaSet=` in `params` or `connectionString`); without it a
//! transaction is refused with an error saying so.
//!
//! **The query API** runs in the sidecar, as for every tandem store: [`StateStore::scan`]
//! lists the live documents (under a key prefix: an anchored `_id` regex) and
//! [`super::query`] filters, sorts and pages them. daprd instead translates the query
//! into a `find` on `value.<path>`; the answers are the same for JSON values, and this
//! way pages, tokens and the order of equal results are those of every other store.
//!
//! **Timeouts.** Every call is bounded by `operationTimeout` (default 5 s, as daprd).
//!
//! **No DNS SRV.** daprd's `server` (a `mongodb+srv://` name) needs the driver's DNS
//! resolver, which tandem leaves out of its binary: `server` and `mongodb+srv://` are
//! refused with an error saying to list the hosts instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReadConcern, WriteConcern,
};
use mongodb::{Client, ClientSession, Collection, IndexModel};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value as Json;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, Operation, SetRequest, StateError, StateStore, StoreError,
    Stored, check_ttl,
};

pub const METADATA: &[&str] = &[
    "connectionString",
    "host",
    "server",
    "username",
    "password",
    "params",
    "databaseName",
    "collectionName",
    "writeConcern",
    "readConcern",
    "operationTimeout",
];

/// Why `server` and `mongodb+srv://` are refused.
const NO_SRV: &str = "DNS SRV names (server, mongodb+srv://) are not available in this \
     build of tandem: give the servers as host (host:port, comma-separated) or as a \
     mongodb:// connectionString";

const DEFAULT_DATABASE: &str = "daprStore";
const DEFAULT_COLLECTION: &str = "daprCollection";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The fields of daprd's documents.
const ID: &str = "_id";
const VALUE: &str = "value";
const ETAG: &str = "_etag";
const TTL: &str = "_ttl";

/// MongoDB's duplicate key error: a second document with the same `_id`.
const DUPLICATE_KEY: i32 = 11000;

/// How deep a JSON value may nest and still be a document: MongoDB refuses documents
/// nested more than 100 levels, and the stored document adds one.
const MAX_DEPTH: usize = 98;

/// What a user name or password may hold unencoded in a connection string: RFC 3986's
/// unreserved characters. daprd splices them in as they are, which breaks on `@`, `:`
/// or `/`; tandem percent-encodes them.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a MongoDB call failed.
#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error("{action}: {source}")]
    Driver {
        action: &'static str,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("{action}: no answer within {timeout:?} (operationTimeout)")]
    Timeout {
        action: &'static str,
        timeout: Duration,
    },
    /// A document that is not a state value of daprd's layout.
    #[error("key {key} is not a state value: {problem}")]
    Document { key: String, problem: String },
    /// A transaction without a replica set, which MongoDB cannot run.
    #[error(
        "transactions need a MongoDB replica set: name it with replicaSet=<name> in params \
         or connectionString (as daprd requires)"
    )]
    NoReplicaSet,
}

pub struct MongoState {
    client: Client,
    collection: Collection<Document>,
    /// `database.collection`, for errors.
    name: String,
    timeout: Duration,
    replica_set: bool,
}

/// The settings, as read and checked from the metadata.
struct Settings {
    uri: String,
    /// Where the connection goes, for errors: hosts and database, never a password.
    target: String,
    /// Strings that must never appear in an error: the password, as given and encoded.
    secrets: Vec<String>,
    database: String,
    collection: String,
    write_concern: WriteConcern,
    read_concern: ReadConcern,
    timeout: Duration,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let database = metadata.string_or("databaseName", DEFAULT_DATABASE);
        if database.is_empty()
            || database.len() > 63
            || database.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            return Err(metadata.field_error(
                "databaseName",
                format!(
                    "'{database}' is not a MongoDB database name: at most 63 characters, \
                     none of / \\ . \" $, spaces or NUL"
                ),
            ));
        }
        let collection = metadata.string_or("collectionName", DEFAULT_COLLECTION);
        if collection.contains(['$', '\0']) || collection.starts_with("system.") {
            return Err(metadata.field_error(
                "collectionName",
                format!(
                    "'{collection}' is not a MongoDB collection name: no $ or NUL, and not \
                     starting with `system.`"
                ),
            ));
        }
        let timeout = metadata.duration_or("operationTimeout", DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(metadata.field_error("operationTimeout", "must be more than 0"));
        }
        let write_concern = write_concern(metadata)?;
        let read_concern = match metadata.get("readConcern") {
            None | Some("local") => ReadConcern::local(),
            Some("majority") => ReadConcern::majority(),
            Some("available") => ReadConcern::available(),
            Some("linearizable") => ReadConcern::linearizable(),
            Some("snapshot") => ReadConcern::snapshot(),
            Some(other) => {
                return Err(metadata.field_error(
                    "readConcern",
                    format!(
                        "'{other}' is not a read concern: local, majority, available, \
                         linearizable or snapshot"
                    ),
                ));
            }
        };

        let username = metadata.get("username");
        let password = metadata.get("password");
        let mut secrets = Vec::new();
        if let Some(password) = password {
            secrets.push(password.to_owned());
            secrets.push(utf8_percent_encode(password, USERINFO).to_string());
        }
        let (uri, target) = if let Some(uri) = metadata.get("connectionString") {
            if uri.starts_with("mongodb+srv://") {
                return Err(metadata.field_error("connectionString", NO_SRV));
            }
            if !uri.starts_with("mongodb://") {
                return Err(metadata.field_error("connectionString", "must start with mongodb://"));
            }
            // The hosts, without any user and password before an `@`.
            let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
            let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
            let (userinfo, hosts) = authority.rsplit_once('@').unwrap_or(("", authority));
            // Its password, as written and decoded, is a secret too.
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password.to_owned());
                secrets.push(
                    percent_encoding::percent_decode_str(password)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
            (uri.to_owned(), format!("{hosts}/{database}"))
        } else {
            let hosts = match (metadata.get("host"), metadata.get("server")) {
                (Some(host), None) => host,
                (_, Some(_)) => return Err(metadata.field_error("server", NO_SRV)),
                (None, None) => {
                    return Err(metadata.field_error(
                        "host",
                        "one of host, server or connectionString is required",
                    ));
                }
            };
            if hosts.contains(['/', '?', '@']) {
                return Err(metadata.field_error(
                    "host",
                    format!("'{hosts}' is not host[:port][,host[:port]...]"),
                ));
            }
            let credentials = match (username, password) {
                (Some(user), Some(password)) => format!(
                    "{}:{}@",
                    utf8_percent_encode(user, USERINFO),
                    utf8_percent_encode(password, USERINFO)
                ),
                (None, None) => String::new(),
                (Some(_), None) => {
                    return Err(
                        metadata.field_error("password", "is required when username is set")
                    );
                }
                (None, Some(_)) => {
                    return Err(
                        metadata.field_error("username", "is required when password is set")
                    );
                }
            };
            let params = match metadata.get("params") {
                None => String::new(),
                Some(params) if params.starts_with('?') => params.to_owned(),
                Some(params) => format!("?{params}"),
            };
            // As daprd: the database is the string's path (with credentials, the
            // default authSource).
            (
                format!("mongodb://{credentials}{hosts}/{database}{params}"),
                format!("{hosts}/{database}"),
            )
        };
        Ok(Self {
            uri,
            target,
            secrets,
            database,
            collection,
            write_concern,
            read_concern,
            timeout,
        })
    }

    /// `message` with every secret replaced.
    fn redact(&self, message: String) -> String {
        self.secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .fold(message, |message, secret| message.replace(secret, "***"))
    }
}

/// `writeConcern`: `majority` or a number of members, journaled, as daprd.
fn write_concern(metadata: &ComponentMetadata) -> Result<WriteConcern, ResourceError> {
    let w = match metadata.get("writeConcern") {
        None => Acknowledgment::Nodes(1),
        Some("majority") => Acknowledgment::Majority,
        Some(nodes) => Acknowledgment::Nodes(nodes.trim().parse().map_err(|_| {
            metadata.field_error(
                "writeConcern",
                format!("'{nodes}' is not a write concern: majority or a number of members"),
            )
        })?),
    };
    Ok(WriteConcern::builder()
        .w(w)
        .journal(true)
        .w_timeout(DEFAULT_TIMEOUT)
        .build())
}

impl MongoState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let settings = Settings::read(metadata)?;
        let field = if metadata.get("connectionString").is_some() {
            "connectionString"
        } else {
            "host"
        };
        let connect_error = |message: String| {
            metadata.field_error(
                field,
                settings.redact(format!(
                    "cannot connect to MongoDB at {}: {message}",
                    settings.target
                )),
            )
        };

        let mut options =
            tokio::time::timeout(settings.timeout, ClientOptions::parse(&settings.uri))
                .await
                .map_err(|_| connect_error(format!("no answer within {:?}", settings.timeout)))?
                .map_err(|error| connect_error(error.to_string()))?;
        options.app_name = Some(match options.app_name.take() {
            Some(name) => format!("tandem:{name}"),
            None => "tandem".to_owned(),
        });
        // A server that cannot be reached is reported within operationTimeout, not
        // after the driver's default 30 s.
        options
            .server_selection_timeout
            .get_or_insert(settings.timeout);
        let replica_set = options.repl_set_name.is_some();
        let client =
            Client::with_options(options).map_err(|error| connect_error(error.to_string()))?;
        let collection = client
            .database(&settings.database)
            .collection_with_options::<Document>(
                &settings.collection,
                CollectionOptions::builder()
                    .write_concern(settings.write_concern.clone())
                    .read_concern(settings.read_concern.clone())
                    .build(),
            );

        // Connect now, so a wrong address or password stops the sidecar with an error
        // naming the field; then daprd's TTL index, so MongoDB deletes expired values.
        let prepare = async {
            client
                .database("admin")
                .run_command(doc! {"ping": 1})
                .await
                .map_err(|error| connect_error(error.to_string()))?;
            let index = IndexModel::builder()
                .keys(doc! {TTL: 1})
                .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                .build();
            collection.create_index(index).await.map_err(|error| {
                metadata.field_error(
                    "collectionName",
                    settings.redact(format!(
                        "cannot create the TTL index on {}.{} at {}: {error}",
                        settings.database, settings.collection, settings.target
                    )),
                )
            })?;
            Ok::<_, ResourceError>(())
        };
        tokio::time::timeout(settings.timeout, prepare)
            .await
            .map_err(|_| connect_error(format!("no answer within {:?}", settings.timeout)))??;
        if !replica_set {
            tracing::info!(
                component = %metadata.component().name,
                "connected to MongoDB without a replica set (no replicaSet= in the connection): \
                 transactions are not available, and the store cannot hold actor state"
            );
        }
        Ok(Arc::new(Self {
            client,
            collection,
            name: format!("{}.{}", settings.database, settings.collection),
            timeout: settings.timeout,
            replica_set,
        }))
    }

    fn error(&self, error: MongoError) -> StateError {
        StoreError::MongoDb {
            collection: self.name.clone(),
            source: Box::new(error),
        }
        .into()
    }

    fn driver(&self, action: &'static str) -> impl Fn(mongodb::error::Error) -> StateError + '_ {
        move |source| self.error(MongoError::Driver { action, source })
    }

    /// `work`, bounded by `operationTimeout`.
    async fn bounded<T>(
        &self,
        action: &'static str,
        work: impl Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(self.error(MongoError::Timeout {
                    action,
                    timeout: self.timeout,
                }))
            })
    }

    /// One write, in `session`'s transaction if given. The request was validated.
    async fn write(
        &self,
        request: &SetRequest,
        session: Option<&mut ClientSession>,
    ) -> Result<String, StateError> {
        let now = now_millis();
        let etag = uuid::Uuid::new_v4().to_string();
        let expiry = match request.ttl {
            Some(ttl) => Bson::DateTime(DateTime::from_millis(
                now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            )),
            None => Bson::Null,
        };
        let document = doc! {
            ID: &request.key,
            VALUE: encode(&request.value),
            ETAG: &etag,
            TTL: expiry,
        };
        let given = request.etag.as_deref().filter(|etag| !etag.is_empty());
        let (filter, upsert) = match (given, request.concurrency) {
            (Some(given), _) => {
                let mut filter = doc! {ID: &request.key, ETAG: given};
                filter.extend(live(now));
                (filter, false)
            }
            // Replaces only an expired document; a live one makes the upsert's insert
            // fail on the unique `_id`.
            (None, Concurrency::FirstWrite) => (
                doc! {ID: &request.key, TTL: {"$lt": DateTime::from_millis(now)}},
                true,
            ),
            (None, Concurrency::LastWrite) => (doc! {ID: &request.key}, true),
        };
        let replace = self.collection.replace_one(filter, document).upsert(upsert);
        let result = match session {
            Some(session) => replace.session(session).await,
            None => replace.await,
        };
        match result {
            Ok(result) if upsert || result.matched_count == 1 => Ok(etag),
            Ok(_) => Err(StateError::EtagMismatch(request.key.clone())),
            Err(error) if is_duplicate_key(&error) => {
                Err(StateError::EtagMismatch(request.key.clone()))
            }
            Err(error) => Err(self.driver("replace_one")(error)),
        }
    }

    /// One delete, in `session`'s transaction if given. The request was validated.
    async fn remove(
        &self,
        request: &DeleteRequest,
        session: Option<&mut ClientSession>,
    ) -> Result<(), StateError> {
        let given = request.etag.as_deref().filter(|etag| !etag.is_empty());
        let mut filter = doc! {ID: &request.key};
        if let Some(given) = given {
            filter.insert(ETAG, given);
            filter.extend(live(now_millis()));
        }
        let delete = self.collection.delete_one(filter);
        let result = match session {
            Some(session) => delete.session(session).await,
            None => delete.await,
        }
        .map_err(self.driver("delete_one"))?;
        if given.is_some() && result.deleted_count == 0 {
            return Err(StateError::EtagMismatch(request.key.clone()));
        }
        Ok(())
    }

    async fn find(
        &self,
        filter: Document,
        doubles: Doubles,
    ) -> Result<Vec<(String, Stored)>, StateError> {
        let cursor = self
            .collection
            .find(filter)
            .sort(doc! {ID: 1})
            .await
            .map_err(self.driver("find"))?;
        let documents: Vec<Document> = cursor.try_collect().await.map_err(self.driver("find"))?;
        documents
            .into_iter()
            .map(|document| self.stored(document, doubles))
            .collect()
    }

    /// The key and stored value of a document of daprd's layout.
    fn stored(
        &self,
        mut document: Document,
        doubles: Doubles,
    ) -> Result<(String, Stored), StateError> {
        let key = match document.remove(ID) {
            Some(Bson::String(key)) => key,
            other => {
                return Err(self.error(MongoError::Document {
                    key: format!("{other:?}"),
                    problem: "_id is not a string".into(),
                }));
            }
        };
        let problem = |problem: &str| {
            self.error(MongoError::Document {
                key: key.clone(),
                problem: problem.to_owned(),
            })
        };
        let Some(Bson::String(etag)) = document.remove(ETAG) else {
            return Err(problem("_etag is missing or not a string"));
        };
        let value = match document.remove(VALUE) {
            Some(value) => decode(value, doubles),
            None => return Err(problem("value is missing")),
        };
        Ok((key, Stored { value, etag }))
    }
}

/// Milliseconds since the epoch, now.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Documents that have not expired: no `_ttl` (or `null`), or one still ahead. MongoDB
/// deletes expired documents only eventually.
fn live(now: i64) -> Document {
    doc! {"$or": [{TTL: Bson::Null}, {TTL: {"$gte": DateTime::from_millis(now)}}]}
}

/// Whether a write failed on the unique `_id` (or another unique index).
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// An ETag of this store is a UUID; anything else cannot match one.
fn check_etag(key: &str, etag: Option<&str>) -> Result<(), StateError> {
    match etag.filter(|etag| !etag.is_empty()) {
        Some(etag) if uuid::Uuid::try_parse(etag).is_err() => {
            Err(StateError::InvalidEtag(key.to_owned()))
        }
        _ => Ok(()),
    }
}

fn validate(operations: &[Operation]) -> Result<(), StateError> {
    for operation in operations {
        match operation {
            Operation::Upsert(set) => {
                check_etag(&set.key, set.etag.as_deref())?;
                check_ttl(&set.key, set.ttl)?;
            }
            Operation::Delete(delete) => check_etag(&delete.key, delete.etag.as_deref())?,
        }
    }
    Ok(())
}

/// The `value` of a document for `bytes` (see the module's summary).
pub(crate) fn encode(bytes: &[u8]) -> Bson {
    let structured = matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['));
    if structured
        && let Ok(json) = serde_json::from_slice::<Json>(bytes)
        && let Some(value) = to_bson(json, 0)
    {
        return value;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Bson::String(text.to_owned()),
        Err(_) => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        }),
    }
}

/// A JSON value as BSON, or `None` if MongoDB cannot store it as a document.
fn to_bson(json: Json, depth: usize) -> Option<Bson> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match json {
        Json::Null => Bson::Null,
        Json::Bool(value) => Bson::Boolean(value),
        // daprd's HTTP API decodes JSON numbers into Go's float64, so every number it
        // stores is a double; so are tandem's, but for whole numbers beyond 2^53,
        // which a double would round: those stay exact as 64-bit integers.
        Json::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(whole), _) if whole.unsigned_abs() > EXACT_DOUBLE => Bson::Int64(whole),
            (_, Some(float)) => Bson::Double(float),
            (_, None) => return None,
        },
        Json::String(text) => Bson::String(text),
        Json::Array(items) => Bson::Array(
            items
                .into_iter()
                .map(|item| to_bson(item, depth + 1))
                .collect::<Option<_>>()?,
        ),
        Json::Object(fields) => {
            let mut document = Document::new();
            for (name, value) in fields {
                if name.starts_with('$') || name.contains('\0') {
                    return None;
                }
                document.insert(name, to_bson(value, depth + 1)?);
            }
            Bson::Document(document)
        }
    })
}

/// The largest whole number every smaller one of which a double holds exactly (2^53).
const EXACT_DOUBLE: u64 = 1 << 53;

/// How a read renders the doubles of a value: daprd renders them one way on reads and
/// another in query answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Doubles {
    /// As daprd's reads (Go's JSON encoder): whole doubles as integers, `1036`.
    Get,
    /// As daprd's query answers (relaxed Extended JSON): whole doubles keep their
    /// point, `1036.0`, as the Python SDK's `state_store_query` example prints them.
    Query,
}

/// The bytes of a document's `value`, as daprd reads them: strings and binary as they
/// are, documents and other values as JSON.
pub(crate) fn decode(value: Bson, doubles: Doubles) -> Bytes {
    match value {
        Bson::String(text) => Bytes::from(text.into_bytes()),
        Bson::Binary(binary) => Bytes::from(binary.bytes),
        other => Bytes::from(to_json(other, doubles).to_string().into_bytes()),
    }
}

/// BSON as plain JSON, its doubles rendered as `doubles` says.
fn to_json(value: Bson, doubles: Doubles) -> Json {
    match value {
        Bson::Null | Bson::Undefined => Json::Null,
        Bson::Boolean(value) => Json::Bool(value),
        Bson::Int32(value) => value.into(),
        Bson::Int64(value) => value.into(),
        #[allow(clippy::cast_precision_loss)] // 2^53 is exact as a double
        Bson::Double(value)
            if doubles == Doubles::Get
                && value.fract() == 0.0
                && value.abs() < EXACT_DOUBLE as f64 =>
        {
            // Exact: the double is a whole number within 2^53.
            #[allow(clippy::cast_possible_truncation)]
            Json::from(value as i64)
        }
        Bson::Double(value) => serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number),
        Bson::String(text) => Json::String(text),
        Bson::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|item| to_json(item, doubles))
                .collect(),
        ),
        Bson::Document(document) => Json::Object(
            document
                .into_iter()
                .map(|(name, value)| (name, to_json(value, doubles)))
                .collect(),
        ),
        Bson::DateTime(date) => date
            .try_to_rfc3339_string()
            .map_or_else(|_| date.timestamp_millis().into(), Json::String),
        Bson::ObjectId(id) => Json::String(id.to_hex()),
        other => other.into_relaxed_extjson(),
    }
}

#[async_trait]
impl StateStore for MongoState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        self.bounded("find_one", async {
            let mut filter = doc! {ID: key};
            filter.extend(live(now_millis()));
            let found = self
                .collection
                .find_one(filter)
                .await
                .map_err(self.driver("find_one"))?;
            found
                .map(|document| {
                    self.stored(document, Doubles::Get)
                        .map(|(_, stored)| stored)
                })
                .transpose()
        })
        .await
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        check_etag(&request.key, request.etag.as_deref())?;
        check_ttl(&request.key, request.ttl)?;
        self.bounded("replace_one", self.write(&request, None))
            .await
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        check_etag(&request.key, request.etag.as_deref())?;
        self.bounded("delete_one", self.remove(&request, None))
            .await
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        validate(&operations)?;
        if operations.is_empty() {
            return Ok(());
        }
        if !self.replica_set {
            return Err(self.error(MongoError::NoReplicaSet));
        }
        self.bounded("transaction", async {
            let mut session = self
                .client
                .start_session()
                .await
                .map_err(self.driver("start a session"))?;
            session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .write_concern(WriteConcern::majority())
                .await
                .map_err(self.driver("start a transaction"))?;
            for operation in &operations {
                let done = match operation {
                    Operation::Upsert(set) => self.write(set, Some(&mut session)).await.map(drop),
                    Operation::Delete(delete) => self.remove(delete, Some(&mut session)).await,
                };
                if let Err(error) = done {
                    // Dropping the session would abort too, but only in the background.
                    let _ = session.abort_transaction().await;
                    return Err(error);
                }
            }
            session
                .commit_transaction()
                .await
                .map_err(self.driver("commit the transaction"))
        })
        .await
    }

    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        let found = self
            .bounded("find", async {
                let mut filter = doc! {ID: {"$in": keys}};
                filter.extend(live(now_millis()));
                self.find(filter, Doubles::Get).await
            })
            .await;
        match found {
            Ok(found) => {
                let mut found: HashMap<String, Stored> = found.into_iter().collect();
                keys.iter().map(|key| Ok(found.remove(key))).collect()
            }
            Err(error) => keys.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, Stored)>>, StateError> {
        self.bounded("find", async {
            let mut filter = doc! {ID: {"$regex": format!("^{}", escape_regex(prefix))}};
            filter.extend(live(now_millis()));
            self.find(filter, Doubles::Query).await.map(Some)
        })
        .await
    }

    fn features(&self) -> &'static [Feature] {
        &[
            Feature::Etag,
            Feature::Transactional,
            Feature::Ttl,
            Feature::Query,
        ]
    }
}

/// `text` as a regular expression matching itself: every ASCII character that is not a
/// letter or digit is escaped, which both MongoDB's PCRE and other engines read as the
/// character itself.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_as_daprd_keeps_them() {
        assert_eq!(
            encode(br#"{"a":1,"b":[true,null,"x"]}"#),
            Bson::Document(doc! {"a": 1.0, "b": [true, Bson::Null, "x"]})
        );
        assert_eq!(encode(b"[1.5]"), Bson::Array(vec![Bson::Double(1.5)]));
        // Numbers are doubles, as daprd's; whole ones a double would round stay exact.
        assert_eq!(
            encode(b"[1036, -7, 9007199254740993]"),
            Bson::Array(vec![
                Bson::Double(1036.0),
                Bson::Double(-7.0),
                Bson::Int64(9_007_199_254_740_993)
            ])
        );
        // JSON strings, numbers and text are strings of their bytes, as a gRPC save.
        assert_eq!(encode(br#""hi""#), Bson::String(r#""hi""#.into()));
        assert_eq!(encode(b"42"), Bson::String("42".into()));
        assert_eq!(encode(b""), Bson::String(String::new()));
        assert_eq!(encode(b"{not json"), Bson::String("{not json".into()));
        assert!(matches!(encode(&[0xff, 0xfe]), Bson::Binary(_)));
        // Field names MongoDB refuses keep the value a string.
        assert_eq!(
            encode(br#"{"$set":1}"#),
            Bson::String(r#"{"$set":1}"#.into())
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(encode(deep.as_bytes()), Bson::String(deep.clone()));
    }

    #[test]
    fn values_read_back_as_daprd_reads_them() {
        for json in [
            &br#"{"product":"falafel"}"#[..],
            br#"{"a":{"b":[1,2.5,"c",null,false]}}"#,
            b"[]",
            b"\"quoted\"",
            b"not json",
            &[0u8, 255, 1],
        ] {
            assert_eq!(decode(encode(json), Doubles::Get).as_ref(), json);
        }
        // What daprd's HTTP API stores: doubles, read back as Go writes them (fields in
        // the document's order).
        assert_eq!(
            decode(Bson::Document(doc! {"n": 3.0, "f": 0.5}), Doubles::Get).as_ref(),
            br#"{"n":3,"f":0.5}"#.as_slice()
        );
        assert_eq!(decode(Bson::Double(42.0), Doubles::Get).as_ref(), b"42");
        assert_eq!(decode(Bson::Boolean(true), Doubles::Get).as_ref(), b"true");
        // Query answers render them as daprd's relaxed Extended JSON does.
        assert_eq!(
            decode(encode(br#"{"person":{"id":1036},"f":0.5}"#), Doubles::Query).as_ref(),
            br#"{"person":{"id":1036.0},"f":0.5}"#.as_slice()
        );
        assert_eq!(
            decode(encode(b"[9007199254740993]"), Doubles::Query).as_ref(),
            b"[9007199254740993]"
        );
    }

    #[test]
    fn etags_are_uuids() {
        assert!(check_etag("k", Some("8b4a3c36-4a4e-4b8e-9d0e-0d8c7a1e2f3a")).is_ok());
        assert!(check_etag("k", None).is_ok());
        assert!(check_etag("k", Some("")).is_ok());
        assert!(matches!(
            check_etag("k", Some("17")),
            Err(StateError::InvalidEtag(_))
        ));
    }

    fn settings(values: &[(&str, &str)]) -> Result<Settings, ResourceError> {
        let component = tandem_spec::Component::new("statestore", "state.mongodb");
        let values = values
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Settings::read(&ComponentMetadata::new(component, values))
    }

    #[test]
    fn connection_strings_are_daprds_with_credentials_encoded() {
        let read = settings(&[
            ("host", "db1:27017,db2:27017"),
            ("username", "me"),
            ("password", "a@b:c/d"),
            ("params", "authSource=admin"),
        ])
        .unwrap();
        assert_eq!(
            read.uri,
            "mongodb://me:a%40b%3Ac%2Fd@db1:27017,db2:27017/daprStore?authSource=admin"
        );
        assert_eq!(read.target, "db1:27017,db2:27017/daprStore");
        let read = settings(&[("host", "db:1"), ("params", "?replicaSet=rs0")]).unwrap();
        assert_eq!(read.uri, "mongodb://db:1/daprStore?replicaSet=rs0");
    }

    #[test]
    fn passwords_are_redacted_wherever_they_come_from() {
        let read = settings(&[("connectionString", "mongodb://app:p%40ss@h:1/?x=1")]).unwrap();
        assert_eq!(read.target, "h:1/daprStore");
        assert_eq!(
            read.redact("mongodb://app:p%40ss@h:1 p@ss".into()),
            "mongodb://app:***@h:1 ***"
        );
        let read = settings(&[("host", "h:1"), ("username", "u"), ("password", "p@ss")]).unwrap();
        assert_eq!(
            read.redact(read.uri.clone()),
            "mongodb://u:***@h:1/daprStore"
        );
    }

    #[test]
    fn prefixes_are_literal_regexes() {
        assert_eq!(escape_regex("app||a.b*"), r"app\|\|a\.b\*");
        assert_eq!(escape_regex("ключ_%"), r"ключ\_\%");
    }
}
