//! `configuration.redis`: settings in Redis string keys, as Dapr's component keeps them —
//! a key's value is `value||version` (the version optional). Changes are watched through
//! Redis keyspace notifications (`__keyspace@{db}__:{key}`), which the component turns on
//! (`notify-keyspace-events Kg$xe`, as Dapr's does); each notification is answered with a
//! fresh read of the key, so the app gets the value as it is, not a diff.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::Client;
use redis::aio::ConnectionManager;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    ConfigurationError, ConfigurationItem, ConfigurationRequest, ConfigurationStore, Items,
};

pub const METADATA: &[&str] = crate::redis_connection::METADATA;

/// The events a watch needs: generic (`DEL`, `EXPIRE`...), string (`SET`), expired and
/// evicted keys — what Dapr's component asks Redis for.
const NOTIFY_EVENTS: &str = "Kg$xe";

/// The pause before a watch whose connection dropped connects again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

pub struct RedisConfiguration {
    client: Client,
    connection: ConnectionManager,
    host: String,
    db: i64,
}

impl RedisConfiguration {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn ConfigurationStore>, ResourceError> {
        if metadata
            .get("redisType")
            .is_some_and(|kind| kind.eq_ignore_ascii_case("cluster"))
        {
            return Err(metadata.field_error(
                "redisType",
                "a Redis cluster is not available for configuration in this build of tandem \
                 (keyspace notifications are per node); use `node`",
            ));
        }
        if metadata.bool_or("failover", false)? {
            return Err(metadata.field_error(
                "failover",
                "Redis Sentinel is not available in this build of tandem",
            ));
        }
        let (client, host) = crate::redis_connection::client(metadata)?;
        let db = client.get_connection_info().redis_settings().db();
        let retries: usize = metadata.number_or("maxRetries", 3)?;
        let backoff = metadata.duration_or("maxRetryBackoff", Duration::from_secs(2))?;
        let connection = crate::redis_connection::connection_manager(
            metadata,
            client.clone(),
            &host,
            retries,
            backoff,
        )
        .await?;
        Ok(Arc::new(Self {
            client,
            connection,
            host,
            db,
        }))
    }

    fn error(&self, source: redis::RedisError) -> ConfigurationError {
        ConfigurationError::Redis {
            host: self.host.clone(),
            source,
        }
    }

    /// The items of `keys` that hold a value (strings only, as Dapr's: a key of another
    /// type, or an empty value, is left out).
    async fn read(&self, keys: &[String]) -> Result<Items, ConfigurationError> {
        let mut connection = self.connection.clone();
        let keys = if keys.is_empty() {
            redis::cmd("KEYS")
                .arg("*")
                .query_async::<Vec<String>>(&mut connection)
                .await
                .map_err(|error| self.error(error))?
        } else {
            keys.to_vec()
        };
        let mut items = Items::new();
        for key in keys {
            let stored: Option<String> = match redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
            {
                Ok(stored) => stored,
                Err(error) if is_wrong_type(&error) => continue,
                Err(error) => return Err(self.error(error)),
            };
            let Some(stored) = stored else { continue };
            let item = parse(&stored);
            if !item.value.is_empty() {
                items.insert(key, item);
            }
        }
        Ok(items)
    }

    /// The keyspace channel of `key`.
    fn channel(&self, key: &str) -> String {
        format!("__keyspace@{}__:{key}", self.db)
    }

    /// Turns keyspace notifications on (again: a restarted server has forgotten them)
    /// and subscribes a fresh connection to the watched channels.
    async fn listen(&self, keys: &[String]) -> Result<redis::aio::PubSub, redis::RedisError> {
        // Best effort, as Dapr's: a managed Redis may refuse CONFIG, and then the
        // operator has turned notifications on (or no change is ever seen).
        let mut connection = self.connection.clone();
        if let Err(error) = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(NOTIFY_EVENTS)
            .query_async::<()>(&mut connection)
            .await
        {
            tracing::warn!(
                "configuration.redis at {}: cannot turn keyspace notifications on ({error}); \
                 changes are seen only if `notify-keyspace-events` includes `{NOTIFY_EVENTS}`",
                self.host
            );
        }
        let mut pubsub = self.client.get_async_pubsub().await?;
        if keys.is_empty() {
            pubsub.psubscribe(self.channel("*")).await?;
        } else {
            for key in keys {
                pubsub.subscribe(self.channel(key)).await?;
            }
        }
        Ok(pubsub)
    }
}

/// `value||version` → the item (no `||`: the whole text is the value).
fn parse(stored: &str) -> ConfigurationItem {
    let mut parts = stored.split("||");
    ConfigurationItem {
        value: parts.next().unwrap_or_default().to_owned(),
        version: parts.next().unwrap_or_default().to_owned(),
        metadata: Default::default(),
    }
}

fn is_wrong_type(error: &redis::RedisError) -> bool {
    error.code() == Some("WRONGTYPE")
}

#[async_trait]
impl ConfigurationStore for RedisConfiguration {
    async fn get(&self, request: &ConfigurationRequest) -> Result<Items, ConfigurationError> {
        self.read(&request.keys).await
    }

    async fn watch(
        &self,
        request: &ConfigurationRequest,
        changes: mpsc::Sender<Items>,
        stop: CancellationToken,
    ) -> Result<(), ConfigurationError> {
        let pubsub = self
            .listen(&request.keys)
            .await
            .map_err(|error| self.error(error))?;
        let this = Self {
            client: self.client.clone(),
            connection: self.connection.clone(),
            host: self.host.clone(),
            db: self.db,
        };
        let keys = request.keys.clone();
        let prefix = self.channel("");
        tokio::spawn(async move {
            let mut pubsub = Some(pubsub);
            loop {
                let mut current = match pubsub.take() {
                    Some(current) => current,
                    None => match this.listen(&keys).await {
                        Ok(current) => current,
                        Err(error) => {
                            tracing::warn!(
                                "configuration.redis at {}: watching again failed: {error}",
                                this.host
                            );
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                            }
                        }
                    },
                };
                let mut messages = current.on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = changes.closed() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let Some(key) = message.get_channel_name().strip_prefix(&prefix) else {
                        continue;
                    };
                    let key = key.to_owned();
                    let items = match this.read(std::slice::from_ref(&key)).await {
                        Ok(items) if items.is_empty() => {
                            Items::from([(key, ConfigurationItem::default())])
                        }
                        Ok(items) => items,
                        Err(error) => {
                            tracing::warn!("configuration.redis: reading {key} failed: {error}");
                            continue;
                        }
                    };
                    if changes.send(items).await.is_err() {
                        return;
                    }
                }
                drop(messages);
                tracing::warn!(
                    "configuration.redis at {}: the watch's connection closed; reconnecting",
                    this.host
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_version_after_two_bars() {
        assert_eq!(parse("blue||3").value, "blue");
        assert_eq!(parse("blue||3").version, "3");
        assert_eq!(parse("blue").version, "");
        assert_eq!(parse("").value, "");
    }
}
