//! `bindings.mysql`: SQL on MySQL or MariaDB, compatible with Dapr's output binding.
//!
//! - `exec` runs the request's `sql` with `params` (a JSON array, bound to the `?`
//!   placeholders) and answers the metadata `rows-affected`;
//! - `query` answers the rows as a JSON array of objects keyed by column name, as
//!   Dapr's: NULL columns are left out, and no rows at all is `null` (Go's nil slice);
//! - `close` closes the pool: every later request is refused, as in Dapr.
//!
//! Both answer the metadata `operation`, `sql`, `start-time`, `end-time` and
//! `duration`, as the PostgreSQL binding does.
//!
//! `url` is a DSN in the form of Go's MySQL driver, which Dapr takes:
//! `user:password@tcp(host:port)/dbname?param=value`, `unix(/path/to/socket)` for a
//! socket. Of its parameters `tls` (`true`, `skip-verify`, `preferred` — here TLS
//! without verification — `custom`, `false`) and `timeout` (to connect) are honoured;
//! the rest are accepted and ignored, and `parseTime` is always on as Dapr forces it.
//! `pemPath` adds a root certificate for TLS (Dapr registers it as `tls=custom`).
//!
//! Values are written as Dapr's Go driver (`parseTime=true`) has them: integers and
//! floats as numbers, dates and times of day as RFC 3339 in UTC, binary strings and
//! blobs as base64, everything else (`DECIMAL`, `VARCHAR`, `TEXT`, `ENUM`, `SET`,
//! `TIME`) as text. Deliberate differences: a MySQL `JSON` column is its text (Dapr
//! gives its bytes in base64; MariaDB's `JSON` is text in both), and JSON arrays or
//! objects in `params` are sent as their JSON text (Go's driver refuses them).
//!
//! The DSN holds a password: errors name the user, host and database, never the
//! password or the DSN itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{
    Column, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Value,
};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json};
use tandem_spec::{ComponentMetadata, ResourceError};

use super::sql::{OPERATIONS, Statement, Timing, rfc3339_nano};
use super::{Binding, BindingError, InvokeRequest, InvokeResponse};

pub const METADATA: &[&str] = &[
    "url",
    "pemPath",
    "maxIdleConns",
    "maxOpenConns",
    "connMaxLifetime",
    "connMaxIdleTime",
];

/// MySQL's character set number for binary strings.
const BINARY_CHARSET: u16 = 63;

/// The MySQL output binding.
pub struct MySqlBinding {
    /// `None` once closed.
    pool: Mutex<Option<Pool>>,
    target: String,
}

/// What a Go DSN says.
#[derive(Debug, Default, PartialEq)]
struct Dsn {
    user: String,
    password: Option<String>,
    net: String,
    address: String,
    database: String,
    params: Vec<(String, String)>,
}

impl Dsn {
    /// `[user[:password]@][net[(addr)]]/dbname[?param1=value1&paramN=valueN]`, read
    /// as Go's driver reads it: the last `/` ends the address part, the last `@`
    /// before it ends the credentials, the first `:` in those splits user and password.
    fn parse(text: &str) -> Result<Self, &'static str> {
        let slash = text
            .rfind('/')
            .ok_or("a DSN needs a '/' before the database name")?;
        let (left, right) = (&text[..slash], &text[slash + 1..]);
        let mut dsn = Self::default();
        let rest = match left.rfind('@') {
            Some(at) => {
                let credentials = &left[..at];
                match credentials.split_once(':') {
                    Some((user, password)) => {
                        dsn.user = user.to_owned();
                        dsn.password = Some(password.to_owned());
                    }
                    None => dsn.user = credentials.to_owned(),
                }
                &left[at + 1..]
            }
            None => left,
        };
        match rest.find('(') {
            Some(open) => {
                let Some(address) = rest[open + 1..].strip_suffix(')') else {
                    return Err("the address must be in parentheses: tcp(host:port)");
                };
                dsn.net = rest[..open].to_owned();
                dsn.address = address.to_owned();
            }
            None => dsn.net = rest.to_owned(),
        }
        let (database, query) = right.split_once('?').unwrap_or((right, ""));
        dsn.database = unescape(database);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            dsn.params.push((name.to_owned(), unescape(value)));
        }
        if dsn.net.is_empty() {
            dsn.net = "tcp".into();
        }
        if dsn.address.is_empty() {
            dsn.address = match dsn.net.as_str() {
                "unix" => "/tmp/mysql.sock".into(),
                _ => "127.0.0.1:3306".into(),
            };
        }
        Ok(dsn)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Percent-decoding, as Go's `url.PathUnescape`/`QueryUnescape` (`+` kept); a bad
/// escape is left as it is.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a Go DSN and `pemPath` say about reaching the server, shared by
/// `bindings.mysql` (whose DSN is `url`) and `state.mysql` (`connectionString`).
pub(crate) struct Server {
    /// Everything but the database and the pool.
    pub(crate) options: OptsBuilder,
    /// `user@host:port` or `user@unix(path)`, for messages: never the password.
    pub(crate) target: String,
    /// The database the DSN names (empty if none).
    pub(crate) database: String,
    /// The DSN's `timeout`, for connecting (Go's driver has none by default: 20s here).
    pub(crate) connect_timeout: Duration,
}

/// Reads the DSN in metadata field `field` and `pemPath`. Errors name the field, never
/// the DSN itself, which holds the password.
pub(crate) fn server(metadata: &ComponentMetadata, field: &str) -> Result<Server, ResourceError> {
    let dsn = Dsn::parse(metadata.required(field)?).map_err(|why| {
        metadata.field_error(field, format!("illegal Data Source Name (DSN): {why}"))
    })?;
    let mut options = OptsBuilder::default()
        .user(Some(dsn.user.clone()).filter(|user| !user.is_empty()))
        .pass(dsn.password.clone())
        .prefer_socket(false);
    let target;
    match dsn.net.as_str() {
        "unix" => {
            options = options.socket(Some(dsn.address.clone()));
            target = format!("{}@unix({})", dsn.user, dsn.address);
        }
        "tcp" | "tcp4" | "tcp6" => {
            let (host, port) = split_host_port(&dsn.address)
                .ok_or_else(|| metadata.field_error(field, "the DSN's address is not host:port"))?;
            options = options.ip_or_hostname(host.clone()).tcp_port(port);
            target = format!("{}@{host}:{port}", dsn.user);
        }
        other => {
            return Err(metadata.field_error(
                field,
                format!("the DSN's network '{other}' is not tcp or unix"),
            ));
        }
    }
    let pem = metadata.get("pemPath").filter(|path| !path.is_empty());
    let ssl = match dsn.param("tls").unwrap_or("false") {
        "false" | "" => None,
        "true" => Some(SslOpts::default()),
        "skip-verify" | "preferred" => {
            Some(SslOpts::default().with_danger_accept_invalid_certs(true))
        }
        "custom" => Some(SslOpts::default()),
        other => {
            return Err(metadata.field_error(
                field,
                format!(
                    "the DSN's tls '{other}' is not true, false, skip-verify, preferred or custom"
                ),
            ));
        }
    };
    let ssl = match (ssl, pem) {
        (Some(ssl), Some(path)) => {
            let bytes = std::fs::read(path).map_err(|error| {
                metadata.field_error(
                    "pemPath",
                    format!("error reading PEM file from {path}: {error}"),
                )
            })?;
            Some(ssl.with_root_certs(vec![bytes.into()]))
        }
        (ssl, _) => ssl,
    };
    options = options.ssl_opts(ssl);
    let connect_timeout = match dsn.param("timeout") {
        Some(text) => tandem_spec::parse_duration(text)
            .map_err(|error| metadata.field_error(field, format!("the DSN's timeout: {error}")))?,
        None => Duration::from_secs(20),
    };
    Ok(Server {
        options,
        target,
        database: dsn.database,
        connect_timeout,
    })
}

impl MySqlBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let Server {
            options,
            target,
            database,
            connect_timeout,
        } = server(metadata, "url")?;
        let target = format!("{target}/{database}");
        let mut options = options.db_name(Some(database).filter(|db| !db.is_empty()));

        let max_open: usize = metadata.number_or("maxOpenConns", 0)?;
        let max_idle: usize = metadata.number_or("maxIdleConns", 0)?;
        let max = if max_open == 0 { 100 } else { max_open };
        // Go's default keeps two idle connections.
        let min = if max_idle == 0 { 2 } else { max_idle }.min(max);
        let constraints = PoolConstraints::new(min, max)
            .ok_or_else(|| metadata.field_error("maxIdleConns", "exceeds maxOpenConns"))?;
        let mut pool_options = PoolOpts::default().with_constraints(constraints);
        let lifetime = metadata.duration_or("connMaxLifetime", Duration::ZERO)?;
        if !lifetime.is_zero() {
            pool_options = pool_options.with_abs_conn_ttl(Some(lifetime));
        }
        let idle = metadata.duration_or("connMaxIdleTime", Duration::ZERO)?;
        if !idle.is_zero() {
            pool_options = pool_options.with_inactive_connection_ttl(idle);
        }
        options = options.pool_opts(pool_options);

        let pool = Pool::new(options);
        let cannot = |why: String| {
            metadata.field_error("url", format!("unable to ping the DB at {target}: {why}"))
        };
        let ping = async {
            let mut conn = pool.get_conn().await?;
            conn.ping().await
        };
        match tokio::time::timeout(connect_timeout, ping).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = pool.disconnect().await;
                return Err(cannot(error.to_string()));
            }
            Err(_) => {
                let _ = pool.disconnect().await;
                return Err(cannot(format!("no answer within {connect_timeout:?}")));
            }
        }
        Ok(Arc::new(Self {
            pool: Mutex::new(Some(pool)),
            target,
        }))
    }

    async fn run(
        &self,
        operation: &str,
        statement: &Statement,
    ) -> Result<InvokeResponse, BindingError> {
        let pool = self
            .pool
            .lock()
            .clone()
            .ok_or_else(|| BindingError::Invalid("component is closed".into()))?;
        let mut conn = pool.get_conn().await.map_err(|error| {
            BindingError::failed(format!("cannot connect to MySQL at {}", self.target), error)
        })?;
        let timing = Timing::start();
        let params: Vec<Value> = statement.params.iter().map(param).collect();
        // As Go's driver: the text protocol without parameters, a prepared statement
        // with them.
        if operation == "exec" {
            if params.is_empty() {
                conn.query_drop(&statement.sql).await
            } else {
                conn.exec_drop(&statement.sql, Params::Positional(params))
                    .await
            }
            .map_err(sql_error)?;
            return Ok(InvokeResponse {
                data: Default::default(),
                metadata: timing.metadata(operation, &statement.sql, Some(conn.affected_rows())),
            });
        }
        let rows: Vec<Row> = if params.is_empty() {
            conn.query(&statement.sql).await
        } else {
            conn.exec(&statement.sql, Params::Positional(params)).await
        }
        .map_err(sql_error)?;
        let answer: Json = if rows.is_empty() {
            Json::Null
        } else {
            rows.iter()
                .map(|row| Json::Object(row_object(row)))
                .collect()
        };
        Ok(InvokeResponse {
            data: answer.to_string().into(),
            metadata: timing.metadata(operation, &statement.sql, None),
        })
    }
}

#[async_trait]
impl Binding for MySqlBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        match request.operation.as_str() {
            "close" => {
                let pool = self.pool.lock().take();
                if let Some(pool) = pool {
                    pool.disconnect()
                        .await
                        .map_err(|error| BindingError::failed("closing the pool", error))?;
                }
                Ok(None)
            }
            operation @ ("exec" | "query") => {
                if self.pool.lock().is_none() {
                    return Err(BindingError::Invalid("component is closed".into()));
                }
                let statement = Statement::from_request(&request)?;
                self.run(operation, &statement).await.map(Some)
            }
            _ => Err(BindingError::UnsupportedOperation {
                operation: request.operation.clone(),
                supported: OPERATIONS.to_vec(),
            }),
        }
    }
}

/// `host:port`, `host` (port 3306), `[v6]:port`.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 3306,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((address.to_owned(), 3306)),
    }
}

/// A failed statement: the caller's when the server refused it (a server error with
/// its code: syntax, unknown names, duplicates, bad values), the system's otherwise.
fn sql_error(error: mysql_async::Error) -> BindingError {
    match error {
        mysql_async::Error::Server(server) => {
            BindingError::Invalid(format!("error executing query: {server}"))
        }
        other => BindingError::failed("error executing query", other),
    }
}

/// A JSON parameter as Go's driver sends it (`true` as 1); arrays and objects as
/// their JSON text.
fn param(value: &Json) -> Value {
    match value {
        Json::Null => Value::NULL,
        Json::Bool(flag) => Value::Int(i64::from(*flag)),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                Value::Int(int)
            } else if let Some(uint) = number.as_u64() {
                Value::UInt(uint)
            } else {
                Value::Double(number.as_f64().unwrap_or_default())
            }
        }
        Json::String(text) => Value::Bytes(text.clone().into_bytes()),
        other => Value::Bytes(other.to_string().into_bytes()),
    }
}

/// A row as Dapr writes it: column name to value, NULLs left out.
fn row_object(row: &Row) -> Map<String, Json> {
    let mut object = Map::new();
    for (index, column) in row.columns_ref().iter().enumerate() {
        match row.as_ref(index) {
            None | Some(Value::NULL) => {}
            Some(value) => {
                object.insert(column.name_str().into_owned(), json_value(column, value));
            }
        }
    }
    object
}

/// One value as Dapr's Go driver hands it to `json.Marshal`.
fn json_value(column: &Column, value: &Value) -> Json {
    use ColumnType::{
        MYSQL_TYPE_BIT, MYSQL_TYPE_BLOB, MYSQL_TYPE_DATE, MYSQL_TYPE_DATETIME,
        MYSQL_TYPE_DATETIME2, MYSQL_TYPE_DOUBLE, MYSQL_TYPE_FLOAT, MYSQL_TYPE_GEOMETRY,
        MYSQL_TYPE_INT24, MYSQL_TYPE_LONG, MYSQL_TYPE_LONG_BLOB, MYSQL_TYPE_LONGLONG,
        MYSQL_TYPE_MEDIUM_BLOB, MYSQL_TYPE_NEWDATE, MYSQL_TYPE_SHORT, MYSQL_TYPE_STRING,
        MYSQL_TYPE_TIMESTAMP, MYSQL_TYPE_TIMESTAMP2, MYSQL_TYPE_TINY, MYSQL_TYPE_TINY_BLOB,
        MYSQL_TYPE_VAR_STRING, MYSQL_TYPE_YEAR,
    };
    let kind = column.column_type();
    let text = || match value {
        Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.as_sql(true).trim_matches('\'').to_owned(),
    };
    match kind {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG => match value {
            Value::Int(int) => (*int).into(),
            Value::UInt(uint) => (*uint).into(),
            _ => {
                let text = text();
                if column.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
                    text.parse::<u64>().map_or(Json::String(text), Into::into)
                } else {
                    text.parse::<i64>().map_or(Json::String(text), Into::into)
                }
            }
        },
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
            let number = match value {
                // Go writes a float32 with the digits a float32 needs.
                Value::Float(float) => float.to_string().parse::<f64>().ok(),
                Value::Double(double) => Some(*double),
                _ => text().parse::<f64>().ok(),
            };
            number
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::Null, Json::Number)
        }
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2 => date_time(value, &text()),
        MYSQL_TYPE_BIT
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_GEOMETRY
            if column.character_set() == BINARY_CHARSET =>
        {
            let bytes = match value {
                Value::Bytes(bytes) => bytes.clone(),
                _ => text().into_bytes(),
            };
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into()
        }
        _ => match value {
            Value::Time(negative, days, hours, minutes, seconds, micros) => {
                let hours = u64::from(*days) * 24 + u64::from(*hours);
                let mut text = format!(
                    "{}{hours:02}:{minutes:02}:{seconds:02}",
                    if *negative { "-" } else { "" }
                );
                if *micros != 0 {
                    text.push_str(&format!(".{micros:06}"));
                }
                text.into()
            }
            _ => text().into(),
        },
    }
}

/// A date or date-time as Go's `time.Time` in UTC writes it (RFC 3339); the zero
/// date is Go's zero time.
fn date_time(value: &Value, text: &str) -> Json {
    let parts = match value {
        Value::Date(year, month, day, hour, minute, second, micros) => Some((
            i32::from(*year),
            *month,
            *day,
            *hour,
            *minute,
            *second,
            *micros,
        )),
        _ => parse_date_time(text),
    };
    let Some((year, month, day, hour, minute, second, micros)) = parts else {
        return text.into();
    };
    if year == 0 && month == 0 && day == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let built = time::Month::try_from(month)
        .ok()
        .and_then(|month| time::Date::from_calendar_date(year, month, day).ok())
        .and_then(|date| {
            date.with_hms_micro(hour, minute, second, micros)
                .ok()
                .map(time::PrimitiveDateTime::assume_utc)
        });
    built.map_or_else(|| text.into(), |time| rfc3339_nano(time).into())
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` from the text protocol.
fn parse_date_time(text: &str) -> Option<(i32, u8, u8, u8, u8, u8, u32)> {
    let (date, clock) = text.split_once(' ').unwrap_or((text, "00:00:00"));
    let mut date = date.splitn(3, '-');
    let year = date.next()?.parse().ok()?;
    let month = date.next()?.parse().ok()?;
    let day = date.next()?.parse().ok()?;
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock = clock.splitn(3, ':');
    let hour = clock.next()?.parse().ok()?;
    let minute = clock.next()?.parse().ok()?;
    let second = clock.next()?.parse().ok()?;
    let micros = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").get(..6)?.parse().ok()?
    };
    Some((year, month, day, hour, minute, second, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_are_read_as_go_reads_them() {
        let dsn =
            Dsn::parse("root:p@ss:w@rd@tcp(db.example:3307)/orders?tls=skip-verify&timeout=5s")
                .unwrap();
        assert_eq!(dsn.user, "root");
        assert_eq!(dsn.password.as_deref(), Some("p@ss:w@rd"));
        assert_eq!(
            (dsn.net.as_str(), dsn.address.as_str()),
            ("tcp", "db.example:3307")
        );
        assert_eq!(dsn.database, "orders");
        assert_eq!(dsn.param("tls"), Some("skip-verify"));
        assert_eq!(dsn.param("timeout"), Some("5s"));

        let dsn = Dsn::parse("/db").unwrap();
        assert_eq!((dsn.user.as_str(), dsn.password.as_deref()), ("", None));
        assert_eq!(
            (dsn.net.as_str(), dsn.address.as_str()),
            ("tcp", "127.0.0.1:3306")
        );
        let dsn = Dsn::parse("u@unix(/run/mysqld.sock)/my%20db").unwrap();
        assert_eq!(
            (dsn.net.as_str(), dsn.address.as_str()),
            ("unix", "/run/mysqld.sock")
        );
        assert_eq!(dsn.database, "my db");
        assert!(Dsn::parse("no slash").is_err());
        assert!(Dsn::parse("u@tcp(host/db").is_err());
    }

    #[test]
    fn addresses_have_a_default_port() {
        assert_eq!(split_host_port("h:1"), Some(("h".into(), 1)));
        assert_eq!(split_host_port("h"), Some(("h".into(), 3306)));
        assert_eq!(split_host_port("[::1]:5"), Some(("::1".into(), 5)));
        assert_eq!(split_host_port("h:x"), None);
    }

    #[test]
    fn text_dates_are_parsed() {
        assert_eq!(
            parse_date_time("2026-12-04 07:20:00.5"),
            Some((2026, 12, 4, 7, 20, 0, 500_000))
        );
        assert_eq!(
            parse_date_time("2026-01-02"),
            Some((2026, 1, 2, 0, 0, 0, 0))
        );
        assert_eq!(parse_date_time("nonsense"), None);
    }
}
