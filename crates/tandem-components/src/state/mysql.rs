//! `state.mysql`: state in a MySQL or MariaDB table, in the layout of Dapr's own
//! `state.mysql`, so tandem and daprd can share a table.
//!
//! **The table** is Dapr's: `id VARCHAR(255) PRIMARY KEY, value JSON, isbinary BOOLEAN,
//! insertDate, updateDate, eTag VARCHAR(36), expiredate TIMESTAMP NULL, row_id`, in the
//! database `schemaName` (created if missing, as daprd does). When tandem creates the
//! table it adds two things daprd leaves to the server's defaults: the table is
//! `utf8mb4` (any key, emoji included) and `id` compares bytes, without padding where
//! the server has such a collation (`utf8mb4_nopad_bin`, `utf8mb4_0900_bin`), so `a`,
//! `A` and `a ` are three keys. A table daprd created (or created by a daprd before 1.11
//! or 1.17, without `expiredate` or `row_id`) is used as it is, its missing columns
//! added as daprd adds them.
//!
//! **Values.** tandem hands a store bytes, never JSON, so every value is written as
//! daprd writes the bytes of a gRPC `SaveState`: `isbinary = 1` and `value` the JSON
//! string of their base64. That round-trips exactly on both servers (MySQL rewrites
//! JSON documents, so storing JSON as JSON would not). Values daprd stored as JSON
//! (`isbinary = 0`, saved through its HTTP API) are read as the JSON text the server
//! returns.
//!
//! **ETags** are random UUIDs, as daprd's: every write stores a new one. An ETag that
//! is not a UUID can never match one and is refused as invalid. ETag checks are part of
//! the write itself (`UPDATE ... WHERE id = ? AND eTag = ?`, `DELETE ... AND eTag = ?`);
//! InnoDB locks the row and compares against the latest committed version, so of two
//! writers holding the same ETag exactly one changes the row. `first-write` without an
//! ETag is an `INSERT`, and a duplicate key is an ETag mismatch.
//!
//! **TTL.** `expiredate` as daprd keeps it; a write without a TTL clears it. The column
//! holds whole seconds, so the expiry is rounded to the nearest second (daprd truncates
//! the start time instead, which can cut up to a second off). Reads, ETag checks and
//! `first-write` treat an expired row as missing. A `TIMESTAMP` ends at
//! 2038-01-19 03:14:07 UTC: a TTL reaching past that is stored as no expiry (the value
//! is kept longer, never dropped early). A background task deletes expired rows every
//! `cleanupInterval`, taking turns with other sidecars through the `last-cleanup` row
//! of `metadataTableName` exactly as daprd does.
//!
//! **All or nothing.** TTLs past [`MAX_TTL`](super::MAX_TTL), ETags that are not UUIDs
//! and keys longer than the column are refused before anything is sent; a transaction
//! runs in one SQL transaction, rolled back at the first mismatch or error.
//!
//! **Connections.** A `mysql_async` pool; every connection works in UTC
//! (`time_zone = '+00:00'`, so expiry times are unambiguous across daylight saving) and
//! in strict mode (a value the column cannot hold is an error, never truncated). The
//! `connectionString` holds a password: messages name user, host and database only.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, PoolConstraints, PoolOpts, Row, TxOpts, Value};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{
    Concurrency, DeleteRequest, Feature, InvalidRequest, Operation, SetRequest, StateError,
    StateStore, StoreError, Stored, check_ttl,
};

pub const METADATA: &[&str] = &[
    "connectionString",
    "schemaName",
    "tableName",
    "metadataTableName",
    "timeoutInSeconds",
    "pemPath",
    "cleanupInterval",
];

/// The longest key `id VARCHAR(255)` holds, in characters.
const MAX_KEY_CHARS: usize = 255;

/// MySQL's error numbers this store tells apart.
const ER_DUP_ENTRY: u16 = 1062;
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;

/// Keys per bulk read statement, well under the protocol's 65535 placeholders.
const KEYS_PER_READ: usize = 1000;

pub struct MySqlState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Sql,
    /// `timeoutInSeconds`: the longest one request may take, connecting included.
    timeout: Duration,
    /// `user@host:port/schema`, for messages.
    target: String,
}

/// Settings read from the metadata, before anything is connected.
struct Settings {
    schema: String,
    table: String,
    metadata_table: String,
    timeout: Duration,
    /// `None`: no cleanup.
    cleanup: Option<Duration>,
}

impl Settings {
    fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let identifier = |name: &str, default: &str| {
            let value = metadata.string_or(name, default);
            if valid_identifier(&value) {
                Ok(value)
            } else {
                Err(metadata.field_error(
                    name,
                    format!("'{value}' is not a valid name: use 1 to 64 letters, digits and `_`"),
                ))
            }
        };
        let schema = identifier("schemaName", "dapr_state_store")?;
        let table = identifier("tableName", "state")?;
        let metadata_table = identifier("metadataTableName", "dapr_metadata")?;
        if table == metadata_table {
            return Err(metadata.field_error(
                "metadataTableName",
                format!("'{metadata_table}' is also the tableName: use another table"),
            ));
        }
        // Dapr: a whole number of seconds; zero (or none) means the default of 20.
        let timeout = match metadata.number_or::<u64>("timeoutInSeconds", 0)? {
            0 => Duration::from_secs(20),
            seconds => Duration::from_secs(seconds),
        };
        let cleanup = cleanup_interval(metadata)?;
        Ok(Self {
            schema,
            table,
            metadata_table,
            timeout,
            cleanup,
        })
    }
}

/// `cleanupInterval` as Dapr reads it: a Go duration or a number of seconds, one hour
/// if unset; zero or negative turns the cleanup off.
fn cleanup_interval(metadata: &ComponentMetadata) -> Result<Option<Duration>, ResourceError> {
    let Some(text) = metadata.get("cleanupInterval").map(str::trim) else {
        return Ok(Some(Duration::from_secs(3600)));
    };
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let parsed = match magnitude.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => tandem_spec::parse_duration(magnitude).map_err(|why| why.to_string()),
    };
    match parsed {
        Ok(interval) if negative || interval.is_zero() => Ok(None),
        Ok(interval) => Ok(Some(interval)),
        Err(why) => Err(metadata.field_error(
            "cleanupInterval",
            format!("'{text}' is not a duration (such as `30m`) or a number of seconds: {why}"),
        )),
    }
}

/// A table or database name that can go into SQL as it is: what Dapr allows (ASCII
/// letters, digits, `_`), at most MySQL's 64 characters.
fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl MySqlState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let settings = Settings::read(metadata)?;
        let server = crate::bindings::mysql::server(metadata, "connectionString")?;
        if !server.database.is_empty() {
            // daprd splices `schemaName` into the string after the `/`, which with a
            // database there makes a name nobody meant: say so instead.
            return Err(metadata.field_error(
                "connectionString",
                format!(
                    "names the database '{}': leave it out (`user:password@tcp(host:3306)/`) \
                     and set schemaName instead",
                    server.database
                ),
            ));
        }
        let target = format!("{}/{}", server.target, settings.schema);
        let options = server
            .options
            .init(vec![
                "SET time_zone = '+00:00'",
                "SET SESSION sql_mode = TRIM(BOTH ',' FROM CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))",
            ])
            .pool_opts(
                PoolOpts::default().with_constraints(
                    PoolConstraints::new(2, 100).expect("2 idle connections of at most 100"),
                ),
            );
        let pool = Pool::new(options);

        // Connect now, so a wrong address or password stops the sidecar with an error
        // naming the field (and never the password), and create what is missing.
        let prepared = async {
            let mut conn = pool.get_conn().await.map_err(|error| {
                metadata.field_error(
                    "connectionString",
                    format!("cannot connect to MySQL at {}: {error}", server.target),
                )
            })?;
            create_schema(&mut conn, &settings).await.map_err(|error| {
                metadata.field_error(
                    "tableName",
                    format!(
                        "cannot create or use table {}.{} at {}: {error}",
                        settings.schema, settings.table, server.target
                    ),
                )
            })
        };
        let limit = server.connect_timeout.max(settings.timeout);
        let outcome = tokio::time::timeout(limit, prepared)
            .await
            .unwrap_or_else(|_| {
                Err(metadata.field_error(
                    "connectionString",
                    format!(
                        "cannot connect to MySQL at {}: no answer within {limit:?}",
                        server.target
                    ),
                ))
            });
        if let Err(error) = outcome {
            let _ = pool.disconnect().await;
            return Err(error);
        }

        let inner = Arc::new(Inner {
            pool,
            sql: Sql::new(&settings),
            timeout: settings.timeout,
            target,
        });
        if let Some(every) = settings.cleanup {
            tokio::spawn(clean_up_forever(Arc::downgrade(&inner), every));
        }
        Ok(Arc::new(Self { inner }))
    }
}

/// Creates the database, the state table and the metadata table if missing, and adds
/// the columns a table from an older daprd lacks.
async fn create_schema(conn: &mut Conn, settings: &Settings) -> Result<(), mysql_async::Error> {
    let Settings {
        schema,
        table,
        metadata_table,
        ..
    } = settings;
    // Asked first, as daprd does, so a user without CREATE rights can use a database
    // that exists.
    let exists: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?",
            (schema.as_str(),),
        )
        .await?;
    if exists.is_none() {
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{schema}`"))
            .await?;
    }
    // Bytes compared as they are, without trailing-space padding where available.
    let collations: Vec<String> = conn
        .query(
            "SELECT collation_name FROM information_schema.collations \
             WHERE collation_name IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')",
        )
        .await?;
    let collation = collations
        .into_iter()
        .next()
        .unwrap_or_else(|| "utf8mb4_bin".to_owned());
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{schema}`.`{table}` (
            id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL PRIMARY KEY,
            value JSON NOT NULL,
            isbinary BOOLEAN NOT NULL,
            insertDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updateDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
            eTag VARCHAR(36) NOT NULL,
            expiredate TIMESTAMP NULL,
            row_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            INDEX expiredate_idx (expiredate),
            UNIQUE KEY row_id_uidx (row_id)
        ) DEFAULT CHARSET = utf8mb4"
    ))
    .await?;
    let columns: Vec<String> = conn
        .exec(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = ?",
            (schema.as_str(), table.as_str()),
        )
        .await?;
    let has = |name: &str| {
        columns
            .iter()
            .any(|column| column.eq_ignore_ascii_case(name))
    };
    // A daprd before 1.11 made no `expiredate`, one before 1.17 no `row_id`; another
    // sidecar may be adding them at the same moment, hence "duplicate" is fine.
    let mut migrations = Vec::new();
    if !has("expiredate") {
        migrations.push(format!(
            "ALTER TABLE `{schema}`.`{table}` ADD COLUMN expiredate TIMESTAMP NULL"
        ));
        migrations.push(format!(
            "CREATE INDEX expiredate_idx ON `{schema}`.`{table}` (expiredate)"
        ));
    }
    if !has("row_id") {
        migrations.push(format!(
            "ALTER TABLE `{schema}`.`{table}` ADD COLUMN row_id BIGINT UNSIGNED NOT NULL \
             AUTO_INCREMENT, ADD UNIQUE KEY row_id_uidx (row_id)"
        ));
    }
    for statement in migrations {
        match conn.query_drop(statement).await {
            Err(mysql_async::Error::Server(error))
                if [ER_DUP_FIELDNAME, ER_DUP_KEYNAME].contains(&error.code) => {}
            other => other?,
        }
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS `{schema}`.`{metadata_table}` (
            id VARCHAR(255) NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        )"
    ))
    .await
}

/// Whether a row has not expired. `NOW(6)` rather than daprd's whole-second
/// `CURRENT_TIMESTAMP`: with expiry times rounded to the second, a value lives its TTL
/// to within half a second either way.
const LIVE: &str = "(expiredate IS NULL OR expiredate > NOW(6))";

/// The `expiredate` of a write, from the TTL in seconds bound three times (`NULL`:
/// none). Past the end of `TIMESTAMP` (2^31 - 1 seconds since 1970) it is `NULL` too:
/// keeping a value longer beats deleting it early.
const EXPIRES: &str = "CASE WHEN ? IS NULL THEN NULL \
     WHEN ROUND(UNIX_TIMESTAMP(NOW(6)) + ?) > 2147483647 THEN NULL \
     ELSE FROM_UNIXTIME(ROUND(UNIX_TIMESTAMP(NOW(6)) + ?)) END";

/// The statements, built once for the configured tables.
struct Sql {
    table: String,
    upsert: String,
    update_if: String,
    drop_expired: String,
    insert: String,
    delete_if: String,
    delete: String,
    claim_cleanup: String,
    clean_up: String,
}

impl Sql {
    fn new(settings: &Settings) -> Self {
        let t = format!("`{}`.`{}`", settings.schema, settings.table);
        let meta = format!("`{}`.`{}`", settings.schema, settings.metadata_table);
        let columns = "(id, value, isbinary, eTag, expiredate)";
        Self {
            // daprd's last-write is a REPLACE too.
            upsert: format!("REPLACE INTO {t} {columns} VALUES (?, ?, 1, ?, {EXPIRES})"),
            update_if: format!(
                "UPDATE {t} SET value = ?, isbinary = 1, eTag = ?, expiredate = {EXPIRES} \
                 WHERE id = ? AND eTag = ? AND {LIVE}"
            ),
            drop_expired: format!(
                "DELETE FROM {t} WHERE id = ? AND expiredate IS NOT NULL AND expiredate <= NOW(6)"
            ),
            insert: format!("INSERT INTO {t} {columns} VALUES (?, ?, 1, ?, {EXPIRES})"),
            delete_if: format!("DELETE FROM {t} WHERE id = ? AND eTag = ? AND {LIVE}"),
            delete: format!("DELETE FROM {t} WHERE id = ?"),
            // daprd's statement: claims the cleanup unless another sidecar did within
            // the interval (the argument, in milliseconds); 0 rows affected: skip.
            claim_cleanup: format!(
                "INSERT INTO {meta} (id, value) VALUES ('last-cleanup', CURRENT_TIMESTAMP) \
                 ON DUPLICATE KEY UPDATE value = IF(CURRENT_TIMESTAMP > \
                 DATE_ADD(value, INTERVAL ?*1000 MICROSECOND), CURRENT_TIMESTAMP, value)"
            ),
            clean_up: format!(
                "DELETE FROM {t} WHERE expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP"
            ),
            table: t,
        }
    }

    fn read(&self, keys: usize) -> String {
        let marks = vec!["?"; keys].join(", ");
        format!(
            "SELECT id, value, isbinary, eTag FROM {} WHERE id IN ({marks}) AND {LIVE}",
            self.table
        )
    }
}

/// Why a request failed: the store's answer (an ETag mismatch) or the server's error.
enum Failure {
    State(StateError),
    Database(mysql_async::Error),
}

impl From<mysql_async::Error> for Failure {
    fn from(error: mysql_async::Error) -> Self {
        Failure::Database(error)
    }
}

impl From<StateError> for Failure {
    fn from(error: StateError) -> Self {
        Failure::State(error)
    }
}

/// Runs one statement; the number of rows it changed.
async fn execute(
    queryable: &mut impl Queryable,
    statement: &str,
    params: Vec<Value>,
) -> Result<u64, mysql_async::Error> {
    let result = queryable.exec_iter(statement, params).await?;
    let affected = result.affected_rows();
    result.drop_result().await?;
    Ok(affected)
}

/// Checks what can be checked without the server: every ETag is a UUID, every TTL in
/// range, every key fits the column.
fn validate(operations: &[Operation]) -> Result<(), StateError> {
    for operation in operations {
        let (key, etag) = match operation {
            Operation::Upsert(set) => {
                check_ttl(&set.key, set.ttl)?;
                (&set.key, set.etag.as_deref())
            }
            Operation::Delete(delete) => (&delete.key, delete.etag.as_deref()),
        };
        check_key(key)?;
        if let Some(etag) = etag.filter(|etag| !etag.is_empty())
            && uuid::Uuid::try_parse(etag).is_err()
        {
            return Err(StateError::InvalidEtag(key.clone()));
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(InvalidRequest::KeyTooLong {
            key: key.to_owned(),
            limit: "255 characters",
        }
        .into());
    }
    Ok(())
}

/// A value as daprd stores bytes: the JSON string of their base64.
fn encode(value: &[u8]) -> Vec<u8> {
    let mut json = Vec::with_capacity(value.len() * 4 / 3 + 6);
    json.push(b'"');
    json.extend(
        base64::engine::general_purpose::STANDARD
            .encode(value)
            .bytes(),
    );
    json.push(b'"');
    json
}

/// A stored value back: base64 in a JSON string when binary, the JSON text otherwise.
fn decode(key: &str, value: Vec<u8>, binary: bool) -> Result<Bytes, StoreError> {
    if !binary {
        return Ok(Bytes::from(value));
    }
    let bad = |problem: String| StoreError::MySqlValue {
        key: key.to_owned(),
        problem,
    };
    let text: String = serde_json::from_slice(&value)
        .map_err(|error| bad(format!("binary value is not a JSON string: {error}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|error| bad(format!("binary value is not base64: {error}")))
}

/// The TTL in seconds, bound three times for [`EXPIRES`].
fn ttl_params(ttl: Option<Duration>) -> [Value; 3] {
    let value = ttl.map_or(Value::NULL, |ttl| Value::Double(ttl.as_secs_f64()));
    [value.clone(), value.clone(), value]
}

/// Applies one operation; the ETag it wrote, if any.
async fn apply(
    queryable: &mut impl Queryable,
    sql: &Sql,
    operation: &Operation,
) -> Result<Option<String>, Failure> {
    match operation {
        Operation::Upsert(set) => {
            let value = Value::Bytes(encode(&set.value));
            let new_etag = uuid::Uuid::new_v4().to_string();
            let etag = Value::from(new_etag.as_str());
            let [a, b, c] = ttl_params(set.ttl);
            let key = Value::from(set.key.as_str());
            let changed = match (set.etag.as_deref(), set.concurrency) {
                (Some(expected), _) => {
                    let params = vec![value, etag, a, b, c, key, Value::from(expected)];
                    execute(queryable, &sql.update_if, params).await?
                }
                (None, Concurrency::FirstWrite) => {
                    // An expired row is a missing key: clear it out of the way first.
                    execute(queryable, &sql.drop_expired, vec![key.clone()]).await?;
                    let params = vec![key, value, etag, a, b, c];
                    match execute(queryable, &sql.insert, params).await {
                        Err(mysql_async::Error::Server(error)) if error.code == ER_DUP_ENTRY => 0,
                        other => other?,
                    }
                }
                (None, Concurrency::LastWrite) => {
                    let params = vec![key, value, etag, a, b, c];
                    execute(queryable, &sql.upsert, params).await?
                }
            };
            if changed == 0 {
                return Err(StateError::EtagMismatch(set.key.clone()).into());
            }
            Ok(Some(new_etag))
        }
        Operation::Delete(delete) => {
            let key = Value::from(delete.key.as_str());
            match delete.etag.as_deref() {
                Some(expected) => {
                    let params = vec![key, Value::from(expected)];
                    if execute(queryable, &sql.delete_if, params).await? == 0 {
                        return Err(StateError::EtagMismatch(delete.key.clone()).into());
                    }
                }
                None => {
                    execute(queryable, &sql.delete, vec![key]).await?;
                }
            }
            Ok(None)
        }
    }
}

/// Empty ETags mean none, as everywhere.
fn normalise(mut operations: Vec<Operation>) -> Vec<Operation> {
    for operation in &mut operations {
        match operation {
            Operation::Upsert(set) => set.etag = set.etag.take().filter(|e| !e.is_empty()),
            Operation::Delete(delete) => {
                delete.etag = delete.etag.take().filter(|e| !e.is_empty());
            }
        }
    }
    operations
}

impl Inner {
    /// Runs `work` on a pooled connection within `timeout`.
    async fn within<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        let attempt = async {
            let mut conn = self
                .pool
                .get_conn()
                .await
                .map_err(|source| self.error(source))?;
            match work(&mut conn).await {
                Ok(done) => Ok(done),
                Err(Failure::State(error)) => Err(error),
                Err(Failure::Database(source)) => Err(self.error(source)),
            }
        };
        // On timeout the request is dropped; `mysql_async` rolls back an open
        // transaction before the connection is used again.
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::MySqlTimeout {
                    target: self.target.clone(),
                    timeout: self.timeout,
                }
                .into())
            })
    }

    fn error(&self, source: mysql_async::Error) -> StateError {
        StoreError::MySql {
            target: self.target.clone(),
            source,
        }
        .into()
    }

    async fn read(&self, keys: &[String]) -> Result<HashMap<String, Stored>, StateError> {
        for key in keys {
            check_key(key)?;
        }
        let rows = self
            .within(async |conn| {
                let mut rows: Vec<Row> = Vec::new();
                for chunk in keys.chunks(KEYS_PER_READ) {
                    let params: Vec<Value> =
                        chunk.iter().map(|key| Value::from(key.as_str())).collect();
                    rows.extend(
                        conn.exec::<Row, _, _>(self.sql.read(chunk.len()), params)
                            .await?,
                    );
                }
                Ok(rows)
            })
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let (key, value, binary, etag): (String, Vec<u8>, bool, String) =
                mysql_async::from_row_opt(row).map_err(|error| {
                    StateError::from(StoreError::MySqlValue {
                        key: String::new(),
                        problem: format!("unexpected row: {error}"),
                    })
                })?;
            let value = decode(&key, value, binary)?;
            found.insert(key, Stored { value, etag });
        }
        Ok(found)
    }

    /// Applies `operations` all or none; the ETag of the last write.
    async fn write(&self, operations: Vec<Operation>) -> Result<Option<String>, StateError> {
        let operations = normalise(operations);
        validate(&operations)?;
        let sql = &self.sql;
        self.within(async |conn| match operations.as_slice() {
            [] => Ok(None),
            // One statement is atomic on its own (first-write's clearing of an expired
            // row changes nothing anyone can see).
            [operation] => apply(conn, sql, operation).await,
            operations => {
                let mut transaction = conn.start_transaction(TxOpts::default()).await?;
                let mut last = None;
                for operation in operations {
                    match apply(&mut transaction, sql, operation).await {
                        Ok(etag) => last = etag.or(last),
                        Err(failure) => {
                            // Best effort: a failed rollback leaves the connection
                            // marked, and `mysql_async` rolls back before reusing it.
                            let _ = transaction.rollback().await;
                            return Err(failure);
                        }
                    }
                }
                transaction.commit().await?;
                Ok(last)
            }
        })
        .await
    }

    /// daprd's cleanup: claim the turn, then delete expired rows. The number deleted,
    /// or `None` when another sidecar cleaned up within the interval.
    async fn clean_up(&self, every: Duration) -> Result<Option<u64>, StateError> {
        let sql = &self.sql;
        let milliseconds = i64::try_from(every.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_sub(100);
        self.within(async |conn| {
            if execute(conn, &sql.claim_cleanup, vec![Value::Int(milliseconds)]).await? == 0 {
                return Ok(None);
            }
            Ok(Some(execute(conn, &sql.clean_up, Vec::new()).await?))
        })
        .await
    }
}

async fn clean_up_forever(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // The store is gone: stop.
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.clean_up(every).await {
            Ok(Some(deleted)) if deleted > 0 => tracing::debug!(deleted, "deleted expired state"),
            Ok(_) => {}
            Err(error) => tracing::debug!("deleting expired state failed: {error}"),
        }
    }
}

#[async_trait]
impl StateStore for MySqlState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let keys = [key.to_owned()];
        Ok(self.inner.read(&keys).await?.remove(key))
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        let etag = self.inner.write(vec![Operation::Upsert(request)]).await?;
        Ok(etag.unwrap_or_default())
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        self.inner
            .write(vec![Operation::Delete(request)])
            .await
            .map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        self.inner.write(operations).await.map(|_| ())
    }

    fn features(&self) -> &'static [Feature] {
        &[Feature::Etag, Feature::Transactional, Feature::Ttl]
    }

    /// One query per thousand keys.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        match self.inner.read(keys).await {
            Ok(found) => keys.iter().map(|key| Ok(found.get(key).cloned())).collect(),
            Err(error) => keys.iter().map(|_| Err(error.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tandem_spec::Component;

    fn metadata(values: &[(&str, &str)]) -> ComponentMetadata {
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ComponentMetadata::new(Component::new("statestore", "state.mysql"), values)
    }

    #[test]
    fn cleanup_intervals_are_read_as_dapr_reads_them() {
        let interval = |text: &str| cleanup_interval(&metadata(&[("cleanupInterval", text)]));
        assert_eq!(
            cleanup_interval(&metadata(&[])).unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(interval("").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(interval("90").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(interval("20m").unwrap(), Some(Duration::from_secs(1200)));
        for off in ["0", "0s", "-1", "-5m"] {
            assert_eq!(interval(off).unwrap(), None, "{off}");
        }
        let error = interval("soon").unwrap_err().to_string();
        assert!(error.contains("cleanupInterval"), "{error}");
    }

    #[test]
    fn values_round_trip_through_daprs_binary_encoding() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let stored = encode(&bytes);
        assert_eq!(stored.first(), Some(&b'"'));
        assert_eq!(decode("k", stored, true).unwrap(), bytes);
        assert_eq!(encode(b""), b"\"\"");
        assert_eq!(
            decode("k", b"{\"a\": 1}".to_vec(), false).unwrap(),
            &b"{\"a\": 1}"[..]
        );
        assert!(decode("k", b"not json".to_vec(), true).is_err());
        assert!(decode("k", b"\"not base64!\"".to_vec(), true).is_err());
    }

    #[test]
    fn etags_must_be_uuids_and_keys_fit_the_column() {
        let upsert = |key: &str, etag: Option<&str>| {
            validate(&[Operation::Upsert(SetRequest {
                key: key.into(),
                value: Bytes::new(),
                etag: etag.map(str::to_owned),
                concurrency: Concurrency::LastWrite,
                ttl: None,
            })])
        };
        assert!(upsert("k", Some("3f1c2b9e-0000-4000-8000-000000000001")).is_ok());
        assert!(upsert("k", None).is_ok());
        assert!(matches!(
            upsert("k", Some("7")),
            Err(StateError::InvalidEtag(_))
        ));
        assert!(upsert(&"é".repeat(255), None).is_ok());
        assert!(matches!(
            upsert(&"é".repeat(256), None),
            Err(StateError::Invalid(InvalidRequest::KeyTooLong { .. }))
        ));
        assert!(valid_identifier("dapr_state_store"));
        for bad in ["", "a-b", "a.b", "a`b", &"x".repeat(65)] {
            assert!(!valid_identifier(bad), "{bad}");
        }
    }
}
