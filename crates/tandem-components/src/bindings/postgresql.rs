//! `bindings.postgresql` (also `bindings.postgres`): SQL on PostgreSQL, compatible with
//! Dapr's output binding.
//!
//! - `exec` runs the request's `sql` with `params` (a JSON array, bound to `$1`, `$2`,
//!   ...) and answers the metadata `rows-affected`;
//! - `query` answers the rows as a JSON array of arrays of column values (as Dapr's
//!   pgx `rows.Values()`), `[]` when there is none;
//! - `close` closes the pool: every later request is refused, as in Dapr.
//!
//! Both `exec` and `query` answer the metadata `operation`, `sql`, `start-time`,
//! `end-time` (RFC 3339 with nanoseconds, UTC) and `duration` (a Go duration).
//!
//! Parameters are sent as text and the server converts them to the types the statement
//! needs, so `"42"` and `42` both fill an `integer`; JSON arrays fill PostgreSQL arrays
//! and objects fill `json`/`jsonb`.
//!
//! Values are written as pgx writes them: numbers (`numeric` exactly, as a JSON
//! number), booleans, text, `json`/`jsonb` as their JSON, `bytea` as base64,
//! timestamps and dates as RFC 3339. Deliberate differences: `uuid` is its usual text
//! (pgx gives an array of 16 byte values), and a column of a type not listed here
//! (intervals, arrays, geometric types, ...) is refused with a message asking for a
//! cast to `text`, rather than written in some form of our own.
//!
//! The connection string is a secret: errors name the user, host, port and database,
//! never the string itself. Database errors of the caller's making (syntax, unknown
//! names, bad values, constraint violations: SQLSTATE classes 22, 23, 42) are not
//! retried by resiliency policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::BytesMut;
use deadpool_postgres::Pool;
use serde_json::value::RawValue;
use tandem_spec::{ComponentMetadata, ResourceError};
use time::{Date, Month, OffsetDateTime};
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::state::postgresql::{
    connection_config, describe, describe_pool, first_connection, pool, seconds_or_duration,
};

use super::sql::{OPERATIONS, Statement, Timing};
use super::{Binding, BindingError, InvokeRequest, InvokeResponse};

pub const METADATA: &[&str] = &[
    "connectionString",
    "timeout",
    "timeoutInSeconds",
    "maxConns",
    "connectionMaxIdleTime",
];

/// The PostgreSQL output binding.
pub struct PostgresBinding {
    pool: Pool,
    target: String,
    closed: AtomicBool,
}

impl PostgresBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let config = connection_config(metadata)?;
        let timeout = seconds_or_duration(
            metadata,
            "timeout",
            "timeoutInSeconds",
            Duration::from_secs(20),
        )?;
        if timeout < Duration::from_secs(1) {
            return Err(metadata.field_error("timeout", "must be at least 1s"));
        }
        let default_size = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
        let size = match metadata.number_or("maxConns", 0i64)? {
            n if n <= 0 => default_size,
            n => usize::try_from(n).unwrap_or(default_size),
        };
        // Accepted for Dapr's sake; the pool keeps connections while they work.
        metadata.duration_or("connectionMaxIdleTime", Duration::ZERO)?;
        let (pool, target) = pool(metadata, config, timeout, size)?;
        // Connect now, as Dapr pings at start: a wrong address or password stops the
        // sidecar with an error naming the field, never the password.
        drop(first_connection(metadata, &pool, &target, timeout).await?);
        Ok(Arc::new(Self {
            pool,
            target,
            closed: AtomicBool::new(false),
        }))
    }

    async fn run(
        &self,
        operation: &str,
        statement: &Statement,
    ) -> Result<InvokeResponse, BindingError> {
        let client = self.pool.get().await.map_err(|error| {
            BindingError::failed(
                format!("cannot connect to PostgreSQL at {}", self.target),
                describe_pool(&error),
            )
        })?;
        let timing = Timing::start();
        let prepared = client
            .prepare(&statement.sql)
            .await
            .map_err(|error| sql_error(&error))?;
        if prepared.params().len() != statement.params.len() {
            return Err(BindingError::Invalid(format!(
                "the statement has {} parameters but params has {} values",
                prepared.params().len(),
                statement.params.len()
            )));
        }
        let params: Vec<TextParam<'_>> = statement.params.iter().map(TextParam).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        if operation == "exec" {
            let rows = client
                .execute(&prepared, &params)
                .await
                .map_err(|error| sql_error(&error))?;
            return Ok(InvokeResponse {
                data: Default::default(),
                metadata: timing.metadata(operation, &statement.sql, Some(rows)),
            });
        }
        let rows = client
            .query(&prepared, &params)
            .await
            .map_err(|error| sql_error(&error))?;
        let mut table: Vec<Vec<Box<RawValue>>> = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for (index, column) in row.columns().iter().enumerate() {
                let Raw(bytes) = row
                    .try_get::<_, Raw<'_>>(index)
                    .map_err(|error| BindingError::failed("reading a row", error))?;
                let value = json_value(column.type_(), bytes).map_err(|why| {
                    BindingError::Invalid(format!(
                        "column {} of type {}: {why}; cast it to text in the query",
                        column.name(),
                        column.type_()
                    ))
                })?;
                values.push(value);
            }
            table.push(values);
        }
        let data = serde_json::to_vec(&table)
            .map_err(|error| BindingError::failed("writing the rows as JSON", error))?;
        Ok(InvokeResponse {
            data: data.into(),
            metadata: timing.metadata(operation, &statement.sql, None),
        })
    }
}

#[async_trait]
impl Binding for PostgresBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        match request.operation.as_str() {
            "close" => {
                self.closed.store(true, Ordering::SeqCst);
                self.pool.close();
                Ok(None)
            }
            operation @ ("exec" | "query") => {
                if self.closed.load(Ordering::SeqCst) {
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

/// A failed statement: the caller's when the server says so by its SQLSTATE class.
fn sql_error(error: &tokio_postgres::Error) -> BindingError {
    let callers = error.code().is_some_and(|code| {
        let code = code.code();
        code.starts_with("22") || code.starts_with("23") || code.starts_with("42")
    });
    if callers {
        BindingError::Invalid(format!("error executing query: {}", describe(error)))
    } else {
        BindingError::failed("error executing query", describe(error))
    }
}

/// A JSON parameter, sent in text form for the server to convert.
#[derive(Debug)]
struct TextParam<'a>(&'a serde_json::Value);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match text_form(self.0, ty) {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The text PostgreSQL reads for `value` as a `ty`; `None` for SQL NULL.
fn text_form(value: &serde_json::Value, ty: &Type) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Array(items) if matches!(ty.kind(), Kind::Array(_)) => {
            let element = match ty.kind() {
                Kind::Array(element) => element,
                _ => ty,
            };
            let items: Vec<String> = items
                .iter()
                .map(|item| match text_form(item, element) {
                    None => "NULL".to_owned(),
                    Some(text) => {
                        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                })
                .collect();
            Some(format!("{{{}}}", items.join(",")))
        }
        other => Some(other.to_string()),
    }
}

/// A column's value in PostgreSQL's binary form, whatever its type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A value as JSON text, as Go's encoder writes what pgx decodes.
fn json_value(ty: &Type, raw: Option<&[u8]>) -> Result<Box<RawValue>, String> {
    let Some(raw) = raw else {
        return json(&serde_json::Value::Null);
    };
    let short = || "a value shorter than its type".to_owned();
    let value: serde_json::Value = match *ty {
        Type::BOOL => raw.first().map(|byte| *byte != 0).ok_or_else(short)?.into(),
        Type::INT2 => i16::from_be_bytes(fixed(raw).ok_or_else(short)?).into(),
        Type::INT4 => i32::from_be_bytes(fixed(raw).ok_or_else(short)?).into(),
        Type::INT8 => i64::from_be_bytes(fixed(raw).ok_or_else(short)?).into(),
        Type::OID => u32::from_be_bytes(fixed(raw).ok_or_else(short)?).into(),
        Type::FLOAT4 => float(f64::from(f32::from_be_bytes(fixed(raw).ok_or_else(short)?))),
        Type::FLOAT8 => float(f64::from_be_bytes(fixed(raw).ok_or_else(short)?)),
        Type::NUMERIC => return numeric(raw).and_then(raw_json),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            String::from_utf8_lossy(raw).into_owned().into()
        }
        Type::CHAR => char::from(raw.first().copied().unwrap_or_default())
            .to_string()
            .into(),
        Type::JSON => return raw_json(String::from_utf8_lossy(raw).into_owned()),
        Type::JSONB => {
            // A version byte (1), then the text.
            let text = raw.get(1..).ok_or_else(short)?;
            return raw_json(String::from_utf8_lossy(text).into_owned());
        }
        Type::BYTEA => base64::engine::general_purpose::STANDARD.encode(raw).into(),
        Type::UUID => {
            let bytes: [u8; 16] = fixed(raw).ok_or_else(short)?;
            uuid::Uuid::from_bytes(bytes).to_string().into()
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(fixed(raw).ok_or_else(short)?);
            match micros {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                micros => {
                    let time = epoch2000()
                        .checked_add(time::Duration::microseconds(micros))
                        .ok_or("a timestamp out of range")?;
                    super::sql::rfc3339_nano(time).into()
                }
            }
        }
        Type::DATE => {
            let days = i32::from_be_bytes(fixed(raw).ok_or_else(short)?);
            match days {
                i32::MAX => "infinity".into(),
                i32::MIN => "-infinity".into(),
                days => {
                    let time = epoch2000()
                        .checked_add(time::Duration::days(i64::from(days)))
                        .ok_or("a date out of range")?;
                    super::sql::rfc3339_nano(time).into()
                }
            }
        }
        _ => return Err("a type the binding cannot write as JSON".into()),
    };
    json(&value)
}

fn json(value: &serde_json::Value) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value).map_err(|error| error.to_string())
}

fn raw_json(text: String) -> Result<Box<RawValue>, String> {
    RawValue::from_string(text).map_err(|error| format!("not JSON: {error}"))
}

/// A float as JSON; NaN and infinities (which JSON has not) as null.
fn float(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into)
}

fn fixed<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

fn epoch2000() -> OffsetDateTime {
    Date::from_calendar_date(2000, Month::January, 1).map_or(OffsetDateTime::UNIX_EPOCH, |date| {
        date.midnight().assume_utc()
    })
}

/// `numeric`'s binary form as a JSON number (`null` for NaN and the infinities):
/// a count of base-10 000 digits, the weight of the first, a sign, the display scale,
/// then the digits.
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |at: usize| -> Result<u16, String> {
        raw.get(at..at + 2)
            .and_then(fixed::<2>)
            .map(u16::from_be_bytes)
            .ok_or_else(|| "a numeric shorter than its header".to_owned())
    };
    let count = usize::from(word(0)?);
    let weight = i64::from(word(2)?.cast_signed());
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    match sign {
        0x0000 | 0x4000 => {}
        // NaN, +Infinity, -Infinity.
        _ => return Ok("null".into()),
    }
    let mut digits = String::with_capacity(count * 4);
    for index in 0..count {
        digits.push_str(&format!("{:04}", word(8 + index * 2)?));
    }
    // The decimal point falls after `weight + 1` groups of four digits.
    let point = (weight + 1) * 4;
    let (whole, mut fraction) = if point <= 0 {
        let zeros = usize::try_from(-point).unwrap_or(0);
        ("0".to_owned(), "0".repeat(zeros) + &digits)
    } else {
        let point = usize::try_from(point).unwrap_or(0);
        if point >= digits.len() {
            (
                digits.clone() + &"0".repeat(point - digits.len()),
                String::new(),
            )
        } else {
            (digits[..point].to_owned(), digits[point..].to_owned())
        }
    };
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(whole);
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&u16::try_from(digits.len()).unwrap().to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&sign.to_be_bytes());
        raw.extend_from_slice(&scale.to_be_bytes());
        for digit in digits {
            raw.extend_from_slice(&digit.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_are_exact_json_numbers() {
        assert_eq!(
            numeric(&numeric_bytes(0, 0, 2, &[12, 5000])).unwrap(),
            "12.50"
        );
        assert_eq!(
            numeric(&numeric_bytes(1, 0x4000, 0, &[1, 0])).unwrap(),
            "-10000"
        );
        assert_eq!(numeric(&numeric_bytes(-1, 0, 4, &[5])).unwrap(), "0.0005");
        assert_eq!(
            numeric(&numeric_bytes(-2, 0, 6, &[1200])).unwrap(),
            "0.000012"
        );
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&numeric_bytes(0, 0xC000, 0, &[])).unwrap(), "null");
        assert!(numeric(&[0, 1]).is_err());
        assert!(numeric(&numeric_bytes(0, 0, 0, &[1])[..9]).is_err());
    }

    #[test]
    fn arrays_are_written_as_postgres_array_literals() {
        let value = serde_json::json!(["a\"b", null, 3]);
        assert_eq!(
            text_form(&value, &Type::TEXT_ARRAY).as_deref(),
            Some(r#"{"a\"b",NULL,"3"}"#)
        );
        assert_eq!(
            text_form(&value, &Type::JSONB).as_deref(),
            Some(r#"["a\"b",null,3]"#)
        );
    }
}
