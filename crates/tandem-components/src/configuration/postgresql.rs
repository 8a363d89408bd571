//! `configuration.postgresql` (also `configuration.postgres`): settings in a table the
//! operator creates, as for Dapr's component — columns `key`, `value`, `version` (text)
//! and `metadata` (JSON) — read by key; when a key has several rows, the one with the
//! highest numeric version wins. Changes are watched with `LISTEN` on `notifyChannel`,
//! fed by a trigger the operator adds to the table that sends
//! `pg_notify(channel, json_build_object('data', row_to_json(NEW))::text)` (Dapr's
//! documented trigger sends the same, with more fields around `data`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use serde_json::Value;
use tandem_spec::{ComponentMetadata, ResourceError};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use tokio_util::sync::CancellationToken;

use super::{
    ConfigurationError, ConfigurationItem, ConfigurationRequest, ConfigurationStore, Items,
};
use crate::state::postgresql::{
    connection_config, describe, describe_pool, first_connection, pool, seconds_or_duration,
};

pub const METADATA: &[&str] = &[
    "connectionString",
    "table",
    "notifyChannel",
    "pgNotifyChannel",
    "timeout",
    "timeoutInSeconds",
    "maxConns",
    "connectionMaxIdleTime",
    "connMaxIdleTime",
    "queryExecMode",
];

/// PostgreSQL's longest identifier, as Dapr checks it.
const MAX_IDENTIFIER: usize = 64;

/// The pause before a watch whose connection dropped connects again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

pub struct PostgresConfiguration {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// For the watches' own connections (a `LISTEN` needs a connection of its own).
    config: Config,
    target: String,
    table: String,
    select_all: String,
    select_keys: String,
    /// `notifyChannel`, when the component sets it.
    channel: Option<String>,
    timeout: Duration,
}

/// Dapr's rule for table and channel names: lower-case letters, digits, `.`, `/`, `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '/' | '_'))
}

impl PostgresConfiguration {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn ConfigurationStore>, ResourceError> {
        let config = connection_config(metadata)?;
        let table = metadata.required("table")?.to_owned();
        if !valid_name(&table) || table.contains('/') {
            return Err(metadata.field_error(
                "table",
                format!(
                    "'{table}' is not a table name tandem can use: lower-case letters, digits, \
                     `_` and `.` only, at most {MAX_IDENTIFIER} characters"
                ),
            ));
        }
        let channel = metadata
            .get("notifyChannel")
            .or_else(|| metadata.get("pgNotifyChannel"))
            .filter(|channel| !channel.is_empty())
            .map(str::to_owned);
        if let Some(channel) = &channel
            && !valid_name(channel)
        {
            return Err(metadata.field_error(
                "notifyChannel",
                format!(
                    "'{channel}' is not a channel name tandem can use: lower-case letters, \
                     digits, `_`, `.` and `/` only, at most {MAX_IDENTIFIER} characters"
                ),
            ));
        }
        let timeout = seconds_or_duration(
            metadata,
            "timeout",
            "timeoutInSeconds",
            Duration::from_secs(20),
        )?;
        if timeout < Duration::from_secs(1) {
            return Err(metadata.field_error("timeout", "must be at least 1s"));
        }
        let size = match metadata.number_or("maxConns", 0usize)? {
            0 => 4,
            n => n,
        };
        let (pool, target) = pool(metadata, config.clone(), timeout, size)?;
        let connection = first_connection(metadata, &pool, &target, timeout).await?;
        // The table is the operator's (with its trigger), as for Dapr: it must exist.
        let exists: bool = connection
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .map_err(|error| metadata.field_error("table", describe(&error)))?
            .get(0);
        if !exists {
            return Err(metadata.field_error(
                "table",
                format!(
                    "table '{table}' does not exist in {target}: create it with columns key, \
                     value, version (text) and metadata (json), as docs/components.md shows"
                ),
            ));
        }
        drop(connection);
        let columns = "key::text, value::text, version::text, COALESCE(metadata::text, '')";
        Ok(Arc::new(Self {
            inner: Arc::new(Inner {
                select_all: format!("SELECT {columns} FROM {table}"),
                select_keys: format!("SELECT {columns} FROM {table} WHERE key = ANY($1)"),
                pool,
                config,
                target,
                table,
                channel,
                timeout,
            }),
        }))
    }
}

impl Inner {
    fn error(&self, message: String) -> ConfigurationError {
        ConfigurationError::Postgres {
            target: self.target.clone(),
            message,
        }
    }

    async fn read(&self, keys: &[String]) -> Result<Items, ConfigurationError> {
        // Dapr's rule for keys, so a key that works here works with daprd too.
        if let Some(key) = keys.iter().find(|key| {
            !key.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_'))
        }) {
            return Err(ConfigurationError::Invalid(format!(
                "invalid key : '{key}'"
            )));
        }
        let query = async {
            let connection = self
                .pool
                .get()
                .await
                .map_err(|error| self.error(describe_pool(&error)))?;
            let rows = if keys.is_empty() {
                connection.query(&self.select_all, &[]).await
            } else {
                connection.query(&self.select_keys, &[&keys]).await
            };
            rows.map_err(|error| self.error(describe(&error)))
        };
        let rows = tokio::time::timeout(self.timeout, query)
            .await
            .map_err(|_| {
                self.error(format!(
                    "no answer from table {} within {:?}",
                    self.table, self.timeout
                ))
            })??;
        let mut items = Items::new();
        let mut versions: BTreeMap<String, i64> = BTreeMap::new();
        for row in rows {
            let key: Option<String> = row.get(0);
            let Some(key) = key else { continue };
            let item = ConfigurationItem {
                value: row.get::<_, Option<String>>(1).unwrap_or_default(),
                version: row.get::<_, Option<String>>(2).unwrap_or_default(),
                metadata: metadata_of(&row.get::<_, String>(3)),
            };
            let version = item.version.parse::<i64>().unwrap_or(-1);
            if versions.get(&key).is_none_or(|seen| version > *seen) {
                versions.insert(key.clone(), version);
                items.insert(key, item);
            }
        }
        Ok(items)
    }

    /// One watch: a connection of its own that `LISTEN`s, reconnecting when it drops,
    /// until `stop`.
    async fn watch(
        self: Arc<Self>,
        channel: String,
        keys: Vec<String>,
        changes: mpsc::Sender<Items>,
        stop: CancellationToken,
        mut listening: Option<tokio::sync::oneshot::Sender<Result<(), ConfigurationError>>>,
    ) {
        loop {
            let (notifications, connection) = match self.listen(&channel).await {
                Ok(listening) => listening,
                Err(error) => {
                    if let Some(ready) = listening.take() {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    tracing::warn!("configuration.postgresql: watching again failed: {error}");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                    }
                }
            };
            if let Some(ready) = listening.take() {
                let _ = ready.send(Ok(()));
            }
            let mut notifications = notifications;
            loop {
                let payload = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = changes.closed() => return,
                    payload = notifications.recv() => payload,
                };
                let Some(payload) = payload else { break };
                let Some((key, item)) = change_of(&payload) else {
                    tracing::debug!(
                        "configuration.postgresql: a notification on {channel} is not a row \
                         change: {payload}"
                    );
                    continue;
                };
                if !keys.is_empty() && !keys.contains(&key) {
                    continue;
                }
                if changes.send(Items::from([(key, item)])).await.is_err() {
                    return;
                }
            }
            drop(connection);
            tracing::warn!(
                "configuration.postgresql at {}: the watch's connection closed; reconnecting",
                self.target
            );
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
            }
        }
    }

    /// A fresh connection listening on `channel`: its notifications' payloads, and the
    /// client that keeps it open.
    async fn listen(
        &self,
        channel: &str,
    ) -> Result<(mpsc::Receiver<String>, tokio_postgres::Client), ConfigurationError> {
        let connect = self.config.connect(NoTls);
        let (client, mut connection) = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| self.error(format!("no connection within {:?}", self.timeout)))?
            .map_err(|error| self.error(describe(&error)))?;
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            // Drives the connection: answers to the client's statements, and the
            // notifications, which only arrive this way.
            let mut messages =
                futures_util::stream::poll_fn(move |context| connection.poll_message(context));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        if sender
                            .send(notification.payload().to_owned())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!("configuration.postgresql: connection ended: {error}");
                        return;
                    }
                }
            }
        });
        // The channel was checked to be a plain identifier when it was read.
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .map_err(|error| self.error(describe(&error)))?;
        Ok((receiver, client))
    }
}

/// A metadata column's JSON object as text pairs (anything else: none).
fn metadata_of(text: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The key and item of a trigger's notification `{"data": {"key": .., "value": ..,
/// "version": .., "metadata": {..}}, ...}` (field names in any case, as Dapr reads them).
fn change_of(payload: &str) -> Option<(String, ConfigurationItem)> {
    let Value::Object(notification) = serde_json::from_str::<Value>(payload).ok()? else {
        return None;
    };
    let Value::Object(row) = notification.get("data")? else {
        return None;
    };
    let mut key = None;
    let mut item = ConfigurationItem::default();
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    for (name, value) in row {
        match name.to_lowercase().as_str() {
            "key" => key = Some(text(value)),
            "value" => item.value = text(value),
            "version" => item.version = text(value),
            "metadata" => item.metadata = metadata_of(&value.to_string()),
            _ => {}
        }
    }
    Some((key?, item))
}

#[async_trait]
impl ConfigurationStore for PostgresConfiguration {
    async fn get(&self, request: &ConfigurationRequest) -> Result<Items, ConfigurationError> {
        self.inner.read(&request.keys).await
    }

    async fn watch(
        &self,
        request: &ConfigurationRequest,
        changes: mpsc::Sender<Items>,
        stop: CancellationToken,
    ) -> Result<(), ConfigurationError> {
        // The component's channel decides; the request's `pgNotifyChannel` is Dapr's
        // older way to name it.
        let channel = self
            .inner
            .channel
            .clone()
            .or_else(|| {
                request
                    .metadata
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("pgNotifyChannel"))
                    .map(|(_, channel)| channel.clone())
            })
            .filter(|channel| !channel.is_empty())
            .ok_or_else(|| {
                ConfigurationError::Invalid(format!(
                    "unable to subscribe to \"{}\": notifyChannel must be set in the \
                     component's metadata or the request's",
                    self.inner.table
                ))
            })?;
        if !valid_name(&channel) {
            return Err(ConfigurationError::Invalid(format!(
                "invalid notifyChannel name \"{channel}\": non-alphanumerics or upper-cased \
                 names are not supported"
            )));
        }
        let (ready, listening) = tokio::sync::oneshot::channel();
        tokio::spawn(self.inner.clone().watch(
            channel,
            request.keys.clone(),
            changes,
            stop,
            Some(ready),
        ));
        listening
            .await
            .unwrap_or_else(|_| Err(ConfigurationError::Invalid("the watch ended".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_read_as_daprs_trigger_sends_them() {
        let payload = r#"{"table":"config","action":"UPDATE","data":{"KEY":"color","value":"blue","version":"2","metadata":{"team":"web","n":1}}}"#;
        let (key, item) = change_of(payload).unwrap();
        assert_eq!(key, "color");
        assert_eq!(item.value, "blue");
        assert_eq!(item.version, "2");
        assert_eq!(item.metadata["team"], "web");
        assert_eq!(item.metadata["n"], "1");
        assert!(change_of("not json").is_none());
        assert!(change_of(r#"{"data": 3}"#).is_none());
    }

    #[test]
    fn names_follow_daprs_rule() {
        assert!(valid_name("config_table"));
        assert!(!valid_name("Config"));
        assert!(!valid_name("a;drop"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
