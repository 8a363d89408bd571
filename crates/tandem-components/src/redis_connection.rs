//! Connecting to Redis from component metadata, shared by `pubsub.redis` and
//! `state.redis`: the same fields (`redisHost`, `redisPassword`, `redisUsername`,
//! `redisDB`, `enableTLS`, `dialTimeout`) mean the same thing in both, and errors name
//! the field at fault.

use std::time::Duration;

use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tandem_spec::{ComponentMetadata, ResourceError};

/// The metadata of Dapr's shared Redis settings, as the lock and configuration stores
/// read them (the state store and broker add their own).
pub(crate) const METADATA: &[&str] = &[
    "redisHost",
    "redisPassword",
    "redisUsername",
    "redisDB",
    "redisType",
    "enableTLS",
    "failover",
    "sentinelMasterName",
    "dialTimeout",
    "readTimeout",
    "writeTimeout",
    "maxRetries",
    "maxRetryBackoff",
    "poolSize",
    "idleTimeout",
];

/// A client for the Redis the metadata describes, and its `host:port` for messages.
pub(crate) fn client(metadata: &ComponentMetadata) -> Result<(Client, String), ResourceError> {
    let host = metadata.required("redisHost")?.to_owned();
    if metadata.bool_or("enableTLS", false)? {
        return Err(metadata.field_error(
            "enableTLS",
            "TLS connections to Redis are not available in this build of tandem",
        ));
    }
    let db: i64 = metadata.number_or("redisDB", 0)?;
    let info = redis::IntoConnectionInfo::into_connection_info(format!("redis://{host}/{db}"))
        .map_err(|error| {
            metadata.field_error(
                "redisHost",
                format!("'{host}' is not a Redis address: {error}"),
            )
        })?;
    let mut settings = info.redis_settings().clone();
    if let Some(password) = metadata.get("redisPassword") {
        settings = settings.set_password(password);
    }
    if let Some(username) = metadata.get("redisUsername") {
        settings = settings.set_username(username);
    }
    let client = Client::open(info.set_redis_settings(settings))
        .map_err(|error| metadata.field_error("redisHost", error.to_string()))?;
    Ok((client, host))
}

/// A reconnecting connection, established now so an unreachable server is reported at
/// start: `retries` attempts per request, backing off up to `max_delay`.
pub(crate) async fn connection_manager(
    metadata: &ComponentMetadata,
    client: Client,
    host: &str,
    retries: usize,
    max_delay: Duration,
) -> Result<ConnectionManager, ResourceError> {
    let dial_timeout = metadata.duration_or("dialTimeout", Duration::from_secs(5))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(dial_timeout))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(retries)
        .set_max_delay(max_delay);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|error| {
            metadata.field_error(
                "redisHost",
                format!("cannot connect to Redis at {host}: {error}"),
            )
        })
}
