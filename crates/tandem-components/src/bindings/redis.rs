//! `bindings.redis`: an output binding on plain Redis keys, compatible with Dapr's.
//!
//! Every operation needs the `key` request metadata:
//! - `create`: `SET key data`, then `EXPIRE` when `ttlInSeconds` (or `ttl`) is given;
//! - `get`: `GET key` (`GETDEL` when the metadata `delete` is `true`), answering the
//!   value, or empty data when there is no such key;
//! - `delete`: `DEL key`;
//! - `increment`: `INCR key`, then `EXPIRE` as `create`.
//!
//! The TTL is read as Dapr reads it: a Go duration (`90s`, `1h`) or a whole number of
//! seconds above zero, truncated to whole seconds for `EXPIRE`.
//!
//! Connections are made as `pubsub.redis` and `state.redis` make them (the shared
//! `redisHost`, `redisPassword`, `redisUsername`, `redisDB`, `dialTimeout`; `enableTLS`
//! is refused by this build), and the server must answer at start, as Dapr pings it.
//!
//! Deliberate difference: a bad TTL is refused before anything is written, and the
//! write and its `EXPIRE` go in one `MULTI` transaction (Dapr writes, then fails the
//! request on the TTL, leaving the value behind without one).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tandem_spec::{ComponentMetadata, ResourceError};

use crate::redis_connection;

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};

pub const METADATA: &[&str] = &[
    "redisHost",
    "redisPassword",
    "redisUsername",
    "redisDB",
    "enableTLS",
    "dialTimeout",
    "redisMaxRetries",
    "redisMaxRetryInterval",
];

const OPERATIONS: &[&str] = &["create", "get", "delete", "increment"];

/// The Redis output binding.
pub struct RedisBinding {
    connection: ConnectionManager,
    host: String,
}

impl RedisBinding {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let (client, host) = redis_connection::client(metadata)?;
        let retries: usize = metadata.number_or("redisMaxRetries", 3)?;
        let max_delay =
            metadata.duration_or("redisMaxRetryInterval", Duration::from_millis(512))?;
        let connection =
            redis_connection::connection_manager(metadata, client, &host, retries, max_delay)
                .await?;
        Ok(Arc::new(Self { connection, host }))
    }

    fn failed(&self, action: &str, error: redis::RedisError) -> BindingError {
        BindingError::failed(format!("{action} on Redis at {}", self.host), error)
    }
}

#[async_trait]
impl Binding for RedisBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let key = match request.metadata.get("key") {
            Some(key) if !key.is_empty() => key.as_str(),
            _ => {
                return Err(BindingError::Invalid(
                    "redis binding: missing key in request metadata".into(),
                ));
            }
        };
        let mut connection = self.connection.clone();
        match request.operation.as_str() {
            "get" => {
                let command = if request.metadata.get("delete").map(String::as_str) == Some("true")
                {
                    "GETDEL"
                } else {
                    "GET"
                };
                let value: Option<Vec<u8>> = redis::cmd(command)
                    .arg(key)
                    .query_async(&mut connection)
                    .await
                    .map_err(|error| self.failed(command, error))?;
                Ok(Some(InvokeResponse {
                    data: value.unwrap_or_default().into(),
                    metadata: Default::default(),
                }))
            }
            "delete" => {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|error| self.failed("DEL", error))?;
                Ok(None)
            }
            operation @ ("create" | "increment") => {
                let ttl = ttl(&request)?;
                let mut pipe = redis::pipe();
                pipe.atomic();
                let command = if operation == "create" {
                    pipe.cmd("SET").arg(key).arg(request.data.as_ref()).ignore();
                    "SET"
                } else {
                    pipe.cmd("INCR").arg(key).ignore();
                    "INCR"
                };
                if let Some(ttl) = ttl {
                    pipe.cmd("EXPIRE").arg(key).arg(ttl.as_secs()).ignore();
                }
                pipe.query_async::<()>(&mut connection)
                    .await
                    .map_err(|error| self.failed(command, error))?;
                Ok(None)
            }
            _ => Err(BindingError::UnsupportedOperation {
                operation: request.operation.clone(),
                supported: OPERATIONS.to_vec(),
            }),
        }
    }
}

/// The request's TTL as Dapr reads it: `ttlInSeconds` or `ttl`, a Go duration
/// (negative ones count as zero) or else a whole number of seconds above zero.
fn ttl(request: &InvokeRequest) -> Result<Option<Duration>, BindingError> {
    let value = request
        .metadata
        .iter()
        .find(|(name, _)| {
            name.eq_ignore_ascii_case("ttlInSeconds") || name.eq_ignore_ascii_case("ttl")
        })
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty());
    let Some(value) = value else {
        return Ok(None);
    };
    super::dapr_ttl("ttl", value)
        .map(Some)
        .map_err(BindingError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl_of(value: &str) -> Result<Option<Duration>, BindingError> {
        ttl(&InvokeRequest {
            operation: "create".into(),
            data: Default::default(),
            metadata: [("ttlInSeconds".to_owned(), value.to_owned())].into(),
        })
    }

    #[test]
    fn ttls_are_read_as_dapr_reads_them() {
        assert_eq!(ttl_of("").unwrap(), None);
        assert_eq!(ttl_of("10").unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(ttl_of("90s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(ttl_of("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(ttl_of("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(ttl_of("-5s").unwrap(), Some(Duration::ZERO));
        assert!(matches!(ttl_of("-5"), Err(BindingError::Invalid(_))));
        assert!(matches!(ttl_of("ten"), Err(BindingError::Invalid(_))));
        assert!(matches!(
            ttl_of("99999999999999999999"),
            Err(BindingError::Invalid(_))
        ));
    }
}
