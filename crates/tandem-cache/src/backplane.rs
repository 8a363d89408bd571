//! The backplane: how sidecars sharing a store tell each other a key changed.
//!
//! A Redis pub/sub channel carries small [`Notice`]s (key, ETag, origin — never the
//! value). Each sidecar publishes one after every write or delete through it, and
//! listens for the others'. While the listening connection is down the cache is
//! emptied and bypassed; when it is back, the cache is used again.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{Cache, Notice};

/// Publishes and receives notices on one channel.
#[derive(Clone)]
pub struct Backplane {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
}

/// Why the backplane could not be reached. Messages name the server by `host:port`
/// only: a connection's password never appears in them.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    #[error("'{0}' is not a Redis address (host:port or redis://host:port/db)")]
    Address(String),
    #[error("cannot connect to the backplane at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: redis::RedisError,
    },
}

/// A backplane address as a user writes it in `cacheBackplane`: `host:port` or a
/// `redis://` URL. The error shows the address without its user and password.
pub fn parse_address(address: &str) -> Result<redis::ConnectionInfo, BackplaneError> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("redis://{address}")
    };
    redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|_| {
        let shown = match address.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => address.to_owned(),
        };
        BackplaneError::Address(shown)
    })
}

impl Backplane {
    /// Connects to the Redis `server`.
    pub async fn connect(
        server: redis::ConnectionInfo,
        channel: String,
    ) -> Result<Self, BackplaneError> {
        let address = server.addr().to_string();
        let client = redis::Client::open(server).map_err(|source| BackplaneError::Connect {
            address: address.clone(),
            source,
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let publisher = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|source| BackplaneError::Connect { address, source })?;
        Ok(Self {
            client,
            publisher,
            channel,
        })
    }

    /// Tells the other sidecars that `key` changed. A lost notice is covered by the
    /// listeners: they bypass their caches while they are disconnected.
    pub async fn announce(&self, notice: &Notice) {
        let Ok(message) = serde_json::to_string(notice) else {
            return;
        };
        let mut connection = self.publisher.clone();
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(message)
            .query_async(&mut connection)
            .await;
        if let Err(error) = sent {
            tracing::warn!(channel = %self.channel, "cache invalidation notice not sent: {error}");
        }
    }

    /// Applies other sidecars' notices to `cache` until `stop` fires; the cache is
    /// bypassed whenever the subscription is not connected.
    pub async fn listen(self, cache: Cache, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let session = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                // Only now can no notice be missed: start using the cache again.
                cache.set_active(true);
                failures = 0;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Ok(notice) = serde_json::from_str::<Notice>(&payload) {
                        cache.apply(&notice).await;
                    }
                }
                Ok::<(), redis::RedisError>(())
            };
            let ended = tokio::select! {
                _ = stop.cancelled() => return,
                ended = session => ended,
            };
            cache.set_active(false);
            failures += 1;
            match ended {
                Ok(()) => {
                    tracing::warn!(channel = %self.channel, "cache backplane disconnected; first-level cache bypassed until it is back");
                }
                Err(error) => {
                    tracing::warn!(channel = %self.channel, "cache backplane unavailable ({error}); first-level cache bypassed until it is back");
                }
            }
            let wait = tandem_resiliency::exponential_wait(
                failures,
                Duration::from_millis(200),
                Duration::from_millis(6400),
            );
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
