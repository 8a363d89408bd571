//! `state.postgresql`: state in a PostgreSQL table.
//!
//! **The table.** One row per key: `key TEXT PRIMARY KEY, value BYTEA, version BIGINT,
//! expires_at TIMESTAMPTZ NULL, updated_at TIMESTAMPTZ`. It is created when the
//! component is built (`CREATE ... IF NOT EXISTS`, under an advisory lock so sidecars
//! starting together do not trip over each other). The layout is tandem's own, not the
//! one of Dapr's `state.postgresql` (which keeps JSONB plus an `isbinary` flag): point
//! the two at different tables.
//!
//! **ETags are versions from a sequence.** Every write takes `nextval` of one sequence
//! per table, so versions only grow — also across a delete and a re-create, so an ETag
//! read before a delete never matches the key written again afterwards (no ABA).
//!
//! **ETag checks are part of the write itself**, never a read followed by a write:
//! `UPDATE ... WHERE key = $1 AND version = $etag`, `DELETE ... WHERE version = $etag`,
//! and for `first-write` an `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the existing
//! row has expired. PostgreSQL locks the row and re-checks the condition against the
//! latest committed version, so of two writers holding the same ETag exactly one
//! changes the row and the other matches nothing (an ETag mismatch). A transaction runs
//! the same statements inside one SQL transaction and rolls back at the first mismatch.
//!
//! **TTL.** A write with a TTL stores `expires_at`; a write without one stores `NULL`,
//! so the value is permanent again. Every read and ETag check ignores expired rows, so
//! they vanish at once; a background task deletes them every `cleanupInterval`.
//!
//! **All or nothing.** TTLs past [`MAX_TTL`](super::MAX_TTL) and malformed ETags are
//! refused before anything is sent; a transaction that meets a mismatch or an error
//! is rolled back, so an error answer means nothing was written.
//!
//! **Connections.** A `deadpool-postgres` pool of `tokio-postgres` connections (at
//! most `maxConns`), each caching its prepared statements. A connection whose socket
//! closed is discarded when it is next taken from the pool, and one that failed with a
//! connection error is taken out of the pool at once, so a restarted server is picked
//! up without rebuilding the component. A request that finds its pooled connection
//! dead (the server restarted while it sat idle) is retried once on a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};

use super::{
    Concurrency, DeleteRequest, Feature, Operation, SetRequest, StateError, StateStore, StoreError,
    Stored, parse_version, validate,
};

pub const METADATA: &[&str] = &[
    "connectionString",
    "tableName",
    "timeout",
    "timeoutInSeconds",
    "cleanupInterval",
    "cleanupIntervalInSeconds",
    "maxConns",
    "connectionMaxIdleTime",
    "metadataTableName",
];

pub struct PostgresState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Sql,
    /// `timeout`: the longest one request may take, connecting included.
    timeout: Duration,
    /// `connectionMaxIdleTime`: idle connections older than this are closed (zero: never).
    max_idle: Duration,
}

impl PostgresState {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn StateStore>, ResourceError> {
        let config = connection_config(metadata)?;
        let timeout = seconds_or_duration(
            metadata,
            "timeout",
            "timeoutInSeconds",
            Duration::from_secs(20),
        )?;
        let cleanup = seconds_or_duration(
            metadata,
            "cleanupInterval",
            "cleanupIntervalInSeconds",
            Duration::from_secs(3600),
        )?;
        let table = Table::parse(&metadata.string_or("tableName", "state"))
            .map_err(|message| metadata.field_error("tableName", message))?;
        let default_size = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
        let max_connections = match metadata.number_or("maxConns", 0usize)? {
            0 => default_size,
            n => n,
        };
        let max_idle = metadata.duration_or("connectionMaxIdleTime", Duration::ZERO)?;

        let (pool, target) = pool(metadata, config, timeout, max_connections.max(1))?;

        // Connect now, so a wrong address or password stops the sidecar with an error
        // naming the field (and never the password), and create the table.
        let mut connection = first_connection(metadata, &pool, &target, timeout).await?;
        create_schema(&mut connection, &table)
            .await
            .map_err(|error| {
                metadata.field_error(
                    "tableName",
                    format!(
                        "cannot create or use table {}: {}",
                        table.name(),
                        describe(&error)
                    ),
                )
            })?;
        drop(connection);

        let inner = Arc::new(Inner {
            pool,
            sql: Sql::new(&table),
            timeout,
            max_idle,
        });
        if !cleanup.is_zero() {
            tokio::spawn(clean_up_forever(Arc::downgrade(&inner), cleanup));
        }
        Ok(Arc::new(Self { inner }))
    }
}

/// Parses `connectionString` (libpq `key=value` pairs or a `postgres://` URL). Parse
/// errors are reported without the string itself, which may hold a password.
pub(crate) fn connection_config(metadata: &ComponentMetadata) -> Result<Config, ResourceError> {
    let text = metadata.required("connectionString")?;
    text.parse::<Config>().map_err(|error| {
        // The parser's own messages name options (`unknown option `foo``), except one
        // that quotes a character of the string: leave that one out.
        let cause = std::error::Error::source(&error)
            .map(std::string::ToString::to_string)
            .filter(|cause| !cause.contains("unexpected character"))
            .map(|cause| format!(" ({cause})"))
            .unwrap_or_default();
        metadata.field_error(
            "connectionString",
            format!(
                "is not a PostgreSQL connection string{cause}: use `host=... port=... user=... \
                 password=... dbname=...` or `postgres://user:password@host:port/dbname`"
            ),
        )
    })
}

/// A pool of at most `size` connections to `config` (connecting within `timeout` unless
/// the connection string says otherwise), shared by the PostgreSQL state store and
/// binding; with the target it connects to, for messages. Nothing is connected yet.
pub(crate) fn pool(
    metadata: &ComponentMetadata,
    mut config: Config,
    timeout: Duration,
    size: usize,
) -> Result<(Pool, String), ResourceError> {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("tandem");
    }
    let target = describe_target(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection is checked (`is_closed`) when taken, without a round trip.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| metadata.field_error("maxConns", error.to_string()))?;
    Ok((pool, target))
}

/// A first connection from `pool` within `timeout`, taken when a component starts so a
/// wrong address or password stops the sidecar with an error naming
/// `connectionString` (never the password).
pub(crate) async fn first_connection(
    metadata: &ComponentMetadata,
    pool: &Pool,
    target: &str,
    timeout: Duration,
) -> Result<Object, ResourceError> {
    let cannot = |why: String| {
        metadata.field_error(
            "connectionString",
            format!("cannot connect to PostgreSQL at {target}: {why}"),
        )
    };
    match tokio::time::timeout(timeout, pool.get()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(cannot(describe_pool(&error))),
        Err(_) => Err(cannot(format!("no answer within {timeout:?}"))),
    }
}

/// `user@host:port/dbname`, for error messages: everything but the password.
pub(crate) fn describe_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let database = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{database}")
}

/// Dapr reads `timeout` and `cleanupInterval` as a Go duration or a number of
/// *seconds*, and still accepts the older `...InSeconds` names.
pub(crate) fn seconds_or_duration(
    metadata: &ComponentMetadata,
    name: &str,
    legacy: &str,
    default: Duration,
) -> Result<Duration, ResourceError> {
    for name in [name, legacy] {
        if let Some(value) = metadata.get(name) {
            if let Ok(seconds) = value.trim().parse::<u64>() {
                return Ok(Duration::from_secs(seconds));
            }
            return metadata.duration_or(name, default);
        }
    }
    Ok(default)
}

/// An error's text with its cause: `tokio-postgres` keeps the server's message (or
/// the I/O error) in the source, not in its own `Display`.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// A pool's error, with the cause of a failed connection attempt.
pub(crate) fn describe_pool(error: &PoolError) -> String {
    match error {
        PoolError::Backend(error) => describe(error),
        PoolError::Timeout(_) => "no connection within the timeout".to_owned(),
        other => other.to_string(),
    }
}

/// Whether `error` means the connection is unusable (rather than a statement failing
/// on a healthy connection).
fn is_broken(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
    }
}

/// The table's (optionally schema-qualified) name, checked so it can be put into SQL.
struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    /// `state` or `schema.state`: letters, digits and `_`, used as written (quoted, so
    /// case-sensitive).
    fn parse(text: &str) -> Result<Self, String> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 50
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        };
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text),
        };
        if !valid(name) || schema.is_some_and(|schema| !valid(schema)) {
            return Err(format!(
                "'{text}' is not a table name: use letters, digits and `_` (at most 50), \
                 optionally after a schema name and a dot (`myschema.state`)"
            ));
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// `"schema"."object"` or `"object"` for an object beside the table.
    fn qualified(&self, object: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{object}\""),
            None => format!("\"{object}\""),
        }
    }

    fn name(&self) -> String {
        self.qualified(&self.name)
    }
}

async fn create_schema(client: &mut Object, table: &Table) -> Result<(), tokio_postgres::Error> {
    let name = table.name();
    let sequence = table.qualified(&format!("{}_version", table.name));
    let index = format!("\"{}_expires_at\"", table.name);
    let transaction = client.transaction().await?;
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide in the catalog; one
    // lock per table name makes sidecars starting together take turns.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('tandem state ' || $1::text))",
            &[&name],
        )
        .await?;
    transaction
        .batch_execute(&format!(
            "CREATE SEQUENCE IF NOT EXISTS {sequence};
             CREATE TABLE IF NOT EXISTS {name} (
                 key TEXT PRIMARY KEY NOT NULL,
                 value BYTEA NOT NULL,
                 version BIGINT NOT NULL,
                 expires_at TIMESTAMPTZ,
                 updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             CREATE INDEX IF NOT EXISTS {index} ON {name} (expires_at) WHERE expires_at IS NOT NULL;
             SELECT key, value, version, expires_at, updated_at FROM {name} LIMIT 0;"
        ))
        .await?;
    transaction.commit().await
}

/// The statements, by [`Query`].
#[derive(Clone, Copy)]
enum Query {
    Read,
    Upsert,
    Create,
    UpdateIf,
    DeleteIf,
    Delete,
    CleanUp,
    Scan,
}

struct Sql {
    text: [String; 8],
}

impl Sql {
    fn new(table: &Table) -> Self {
        let t = table.name();
        let next = format!(
            "nextval('{}')",
            table.qualified(&format!("{}_version", table.name))
        );
        let live = "(expires_at IS NULL OR expires_at > now())";
        // A NULL TTL makes `expires_at` NULL: no expiry.
        let expires = "now() + make_interval(secs => $3)";
        let insert = format!(
            "INSERT INTO {t} AS stored (key, value, version, expires_at, updated_at)
             VALUES ($1, $2, {next}, {expires}, now())
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at"
        );
        Self {
            text: [
                format!("SELECT key, value, version FROM {t} WHERE key = ANY($1) AND {live}"),
                format!("{insert} RETURNING version"),
                // first-write: only a missing key, or one whose row has expired.
                format!(
                    "{insert} WHERE stored.expires_at IS NOT NULL AND stored.expires_at <= now() \
                     RETURNING version"
                ),
                format!(
                    "UPDATE {t} SET value = $2, version = {next}, expires_at = {expires}, updated_at = now()
                     WHERE key = $1 AND version = $4 AND {live} RETURNING version"
                ),
                format!("DELETE FROM {t} WHERE key = $1 AND version = $2 AND {live}"),
                format!("DELETE FROM {t} WHERE key = $1"),
                format!("DELETE FROM {t} WHERE expires_at <= now()"),
                format!("SELECT key, value, version FROM {t} WHERE starts_with(key, $1) AND {live}"),
            ],
        }
    }

    fn text(&self, query: Query) -> &str {
        &self.text[query as usize]
    }
}

/// What a request asks of the database.
enum Work<'a> {
    Read(&'a [String]),
    /// Every live value under a key prefix.
    Scan(&'a str),
    Write(&'a [Operation]),
    CleanUp,
}

enum Done {
    Read(HashMap<String, Stored>),
    Scanned(Vec<(String, Stored)>),
    /// The version of the last write, if any.
    Wrote(Option<i64>),
    CleanedUp(u64),
}

/// Why a request failed: the store's answer (an ETag mismatch, which leaves the
/// connection healthy) or the database's error.
enum Failure {
    State(StateError),
    Database(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::Database(error)
    }
}

impl From<StateError> for Failure {
    fn from(error: StateError) -> Self {
        Failure::State(error)
    }
}

/// A version ETag as the `BIGINT` column holds it (`parse_version` keeps it in range).
fn version(key: &str, etag: Option<&str>) -> Result<Option<i64>, StateError> {
    parse_version(key, etag)?
        .map(|version| i64::try_from(version).map_err(|_| StateError::InvalidEtag(key.to_owned())))
        .transpose()
}

async fn perform(connection: &mut Object, sql: &Sql, work: &Work<'_>) -> Result<Done, Failure> {
    match work {
        Work::Read(keys) => {
            let statement = connection.prepare_cached(sql.text(Query::Read)).await?;
            let rows = connection.query(&statement, &[keys]).await?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                let value: Vec<u8> = row.try_get(1)?;
                let version: i64 = row.try_get(2)?;
                found.insert(
                    row.try_get(0)?,
                    Stored {
                        value: Bytes::from(value),
                        etag: version.to_string(),
                    },
                );
            }
            Ok(Done::Read(found))
        }
        Work::Scan(prefix) => {
            let statement = connection.prepare_cached(sql.text(Query::Scan)).await?;
            let rows = connection.query(&statement, &[prefix]).await?;
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                let value: Vec<u8> = row.try_get(1)?;
                let version: i64 = row.try_get(2)?;
                found.push((
                    row.try_get(0)?,
                    Stored {
                        value: Bytes::from(value),
                        etag: version.to_string(),
                    },
                ));
            }
            Ok(Done::Scanned(found))
        }
        // One operation needs no explicit transaction: its statement is atomic.
        Work::Write([operation]) => Ok(Done::Wrote(apply(&*connection, sql, operation).await?)),
        Work::Write(operations) => {
            let transaction = connection.transaction().await?;
            let mut last = None;
            for operation in *operations {
                // An early return drops the transaction, which rolls it back.
                if let Some(version) = apply(&transaction, sql, operation).await? {
                    last = Some(version);
                }
            }
            transaction.commit().await?;
            Ok(Done::Wrote(last))
        }
        Work::CleanUp => {
            let statement = connection.prepare_cached(sql.text(Query::CleanUp)).await?;
            Ok(Done::CleanedUp(connection.execute(&statement, &[]).await?))
        }
    }
}

/// Applies one operation; returns the version it wrote.
async fn apply(
    client: &impl GenericClient,
    sql: &Sql,
    operation: &Operation,
) -> Result<Option<i64>, Failure> {
    match operation {
        Operation::Upsert(set) => {
            let etag = version(&set.key, set.etag.as_deref())?;
            let value: &[u8] = &set.value;
            // Seconds as a double: exact to the microsecond for any TTL up to MAX_TTL,
            // which `validate` enforced and PostgreSQL's timestamps can hold.
            let ttl: Option<f64> = set.ttl.map(|ttl| ttl.as_secs_f64());
            let row = match (etag, set.concurrency) {
                (Some(etag), _) => {
                    let statement = client.prepare_cached(sql.text(Query::UpdateIf)).await?;
                    client
                        .query_opt(&statement, &[&set.key, &value, &ttl, &etag])
                        .await?
                }
                (None, Concurrency::FirstWrite) => {
                    let statement = client.prepare_cached(sql.text(Query::Create)).await?;
                    client
                        .query_opt(&statement, &[&set.key, &value, &ttl])
                        .await?
                }
                (None, Concurrency::LastWrite) => {
                    let statement = client.prepare_cached(sql.text(Query::Upsert)).await?;
                    client
                        .query_opt(&statement, &[&set.key, &value, &ttl])
                        .await?
                }
            };
            // No row: the ETag did not match, or first-write found the key.
            match row {
                Some(row) => Ok(Some(row.try_get(0)?)),
                None => Err(StateError::EtagMismatch(set.key.clone()).into()),
            }
        }
        Operation::Delete(delete) => {
            match version(&delete.key, delete.etag.as_deref())? {
                Some(etag) => {
                    let statement = client.prepare_cached(sql.text(Query::DeleteIf)).await?;
                    if client.execute(&statement, &[&delete.key, &etag]).await? == 0 {
                        return Err(StateError::EtagMismatch(delete.key.clone()).into());
                    }
                }
                None => {
                    let statement = client.prepare_cached(sql.text(Query::Delete)).await?;
                    client.execute(&statement, &[&delete.key]).await?;
                }
            }
            Ok(None)
        }
    }
}

impl Inner {
    /// Runs `work` on a pooled connection within `timeout`.
    async fn run(&self, work: Work<'_>) -> Result<Done, StateError> {
        if let Work::Write(operations) = &work {
            validate(operations)?;
        }
        if !self.max_idle.is_zero() {
            let max_idle = self.max_idle;
            self.pool
                .retain(|_, metrics| metrics.last_used() <= max_idle);
        }
        let attempt = async {
            let mut retried = false;
            loop {
                let mut connection = self
                    .pool
                    .get()
                    .await
                    .map_err(|source| StoreError::PostgresPool { source })?;
                let reused = Object::metrics(&connection).recycle_count > 0;
                match perform(&mut connection, &self.sql, &work).await {
                    Ok(done) => return Ok(done),
                    Err(Failure::State(error)) => return Err(error),
                    Err(Failure::Database(error)) if is_broken(&error) => {
                        // Never reuse it: take it out of the pool.
                        drop(Object::take(connection));
                        // The connection sat idle while the server went away: try once
                        // more on a new one.
                        if reused && !retried {
                            retried = true;
                            tracing::debug!(
                                "pooled PostgreSQL connection is dead ({}); reconnecting",
                                describe(&error)
                            );
                            continue;
                        }
                        return Err(StoreError::Postgres { source: error }.into());
                    }
                    Err(Failure::Database(error)) => {
                        return Err(StoreError::Postgres { source: error }.into());
                    }
                }
            }
        };
        // On timeout the request is dropped; its connection goes back to the pool,
        // where `tokio-postgres` discards the late answer (and rolls back an open
        // transaction).
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(StoreError::PostgresTimeout(self.timeout).into()))
    }
}

async fn clean_up_forever(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // The store is gone: stop.
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.run(Work::CleanUp).await {
            Ok(Done::CleanedUp(deleted)) if deleted > 0 => {
                tracing::debug!(deleted, "deleted expired state");
            }
            Ok(_) => {}
            Err(error) => tracing::debug!("deleting expired state failed: {error}"),
        }
    }
}

#[async_trait]
impl StateStore for PostgresState {
    async fn get(&self, key: &str) -> Result<Option<Stored>, StateError> {
        let keys = [key.to_owned()];
        match self.inner.run(Work::Read(&keys)).await? {
            Done::Read(mut found) => Ok(found.remove(key)),
            _ => unreachable!("a read answers with values"),
        }
    }

    async fn set(&self, request: SetRequest) -> Result<String, StateError> {
        match self
            .inner
            .run(Work::Write(&[Operation::Upsert(request)]))
            .await?
        {
            Done::Wrote(version) => Ok(version.map(|v| v.to_string()).unwrap_or_default()),
            _ => unreachable!("a write answers with a version"),
        }
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), StateError> {
        self.inner
            .run(Work::Write(&[Operation::Delete(request)]))
            .await
            .map(|_| ())
    }

    async fn transact(&self, operations: Vec<Operation>) -> Result<(), StateError> {
        if operations.is_empty() {
            return Ok(());
        }
        self.inner.run(Work::Write(&operations)).await.map(|_| ())
    }

    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, Stored)>>, StateError> {
        match self.inner.run(Work::Scan(prefix)).await? {
            Done::Scanned(found) => Ok(Some(found)),
            _ => unreachable!("a scan answers with values"),
        }
    }

    fn features(&self) -> &'static [Feature] {
        &[
            Feature::Etag,
            Feature::Transactional,
            Feature::Ttl,
            Feature::Query,
        ]
    }

    /// One query for all keys.
    async fn bulk_get(&self, keys: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        match self.inner.run(Work::Read(keys)).await {
            Ok(Done::Read(found)) => keys.iter().map(|key| Ok(found.get(key).cloned())).collect(),
            Ok(_) => unreachable!("a read answers with values"),
            Err(error) => keys.iter().map(|_| Err(error.clone())).collect(),
        }
    }
}
