//! What the app says about the actors it hosts: its answer to `GET /dapr/config` (or
//! the first message of the gRPC actor stream), with daprd's defaults for what it
//! leaves out and per-type overrides from `entitiesConfig`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// daprd's defaults.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_STACK_DEPTH: u32 = 32;

/// Reentrancy settings of an actor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reentrancy {
    pub enabled: bool,
    /// How deep a chain of reentrant calls may go.
    pub max_stack_depth: u32,
}

impl Default for Reentrancy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_stack_depth: DEFAULT_MAX_STACK_DEPTH,
        }
    }
}

/// The settings of one actor type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeSettings {
    pub idle_timeout: Duration,
    pub reentrancy: Reentrancy,
}

/// The actor types the app hosts and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostConfig {
    pub types: Vec<String>,
    pub scan_interval: Duration,
    pub drain_timeout: Duration,
    pub drain_rebalanced: bool,
    defaults: TypeSettings,
    per_type: HashMap<String, TypeSettings>,
}

/// Why the app's actor configuration was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostConfigError {
    #[error("the app's actor configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the app's actor configuration has an invalid {field} '{value}': {reason}")]
    Duration {
        field: String,
        value: String,
        reason: String,
    },
}

/// `GET /dapr/config`, as the SDKs write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    entities: Vec<String>,
    actor_idle_timeout: Option<String>,
    actor_scan_interval: Option<String>,
    drain_ongoing_call_timeout: Option<String>,
    drain_rebalanced_actors: Option<bool>,
    reentrancy: Option<ReentrancyFile>,
    #[serde(default)]
    entities_config: Vec<EntityConfigFile>,
    /// Accepted and not needed: tandem keeps each reminder in its own record.
    #[serde(default)]
    #[allow(dead_code)]
    reminders_storage_partitions: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReentrancyFile {
    #[serde(default)]
    enabled: bool,
    max_stack_depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityConfigFile {
    #[serde(default)]
    entities: Vec<String>,
    actor_idle_timeout: Option<String>,
    reentrancy: Option<ReentrancyFile>,
}

fn duration(
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, HostConfigError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(default),
        Some(text) => {
            tandem_spec::parse_duration(text).map_err(|error| HostConfigError::Duration {
                field: field.to_owned(),
                value: text.to_owned(),
                reason: error.to_string(),
            })
        }
    }
}

fn reentrancy(file: Option<&ReentrancyFile>, base: Reentrancy) -> Reentrancy {
    match file {
        None => base,
        Some(file) => Reentrancy {
            enabled: file.enabled,
            max_stack_depth: file
                .max_stack_depth
                .filter(|depth| *depth > 0)
                .unwrap_or(DEFAULT_MAX_STACK_DEPTH),
        },
    }
}

impl HostConfig {
    /// Reads the app's answer; an empty body hosts nothing.
    pub fn parse(body: &[u8]) -> Result<Self, HostConfigError> {
        let file: ConfigFile = if body.iter().all(u8::is_ascii_whitespace) {
            ConfigFile::default()
        } else {
            serde_json::from_slice(body)?
        };
        let defaults = TypeSettings {
            idle_timeout: duration(
                "actorIdleTimeout",
                file.actor_idle_timeout.as_deref(),
                DEFAULT_IDLE_TIMEOUT,
            )?,
            reentrancy: reentrancy(file.reentrancy.as_ref(), Reentrancy::default()),
        };
        let mut per_type = HashMap::new();
        for entity in &file.entities_config {
            let settings = TypeSettings {
                idle_timeout: duration(
                    "entitiesConfig.actorIdleTimeout",
                    entity.actor_idle_timeout.as_deref(),
                    defaults.idle_timeout,
                )?,
                reentrancy: reentrancy(entity.reentrancy.as_ref(), defaults.reentrancy),
            };
            for name in &entity.entities {
                per_type.insert(name.clone(), settings.clone());
            }
        }
        let mut types = file.entities.clone();
        types.sort();
        types.dedup();
        Ok(Self {
            types,
            scan_interval: duration(
                "actorScanInterval",
                file.actor_scan_interval.as_deref(),
                DEFAULT_SCAN_INTERVAL,
            )?,
            drain_timeout: duration(
                "drainOngoingCallTimeout",
                file.drain_ongoing_call_timeout.as_deref(),
                DEFAULT_DRAIN_TIMEOUT,
            )?,
            drain_rebalanced: file.drain_rebalanced_actors.unwrap_or(true),
            defaults,
            per_type,
        })
    }

    /// The settings an app sends as the first message of its gRPC actor stream.
    pub fn from_stream(
        initial: &tandem_proto::runtime::SubscribeActorEventsRequestInitialAlpha1,
    ) -> Self {
        let duration = |value: Option<&prost_types::Duration>, default: Duration| {
            value
                .and_then(|value| {
                    let seconds = u64::try_from(value.seconds).ok()?;
                    let nanos = u32::try_from(value.nanos).ok()?;
                    Some(Duration::new(seconds, nanos))
                })
                .unwrap_or(default)
        };
        let reentrancy = |config: Option<&tandem_proto::runtime::ActorReentrancyConfig>,
                          base: Reentrancy| match config {
            None => base,
            Some(config) => Reentrancy {
                enabled: config.enabled,
                max_stack_depth: config
                    .max_stack_depth
                    .and_then(|depth| u32::try_from(depth).ok())
                    .filter(|depth| *depth > 0)
                    .unwrap_or(DEFAULT_MAX_STACK_DEPTH),
            },
        };
        let defaults = TypeSettings {
            idle_timeout: duration(initial.actor_idle_timeout.as_ref(), DEFAULT_IDLE_TIMEOUT),
            reentrancy: reentrancy(initial.reentrancy.as_ref(), Reentrancy::default()),
        };
        let mut per_type = HashMap::new();
        for entity in &initial.entities_config {
            let settings = TypeSettings {
                idle_timeout: duration(entity.actor_idle_timeout.as_ref(), defaults.idle_timeout),
                reentrancy: reentrancy(entity.reentrancy.as_ref(), defaults.reentrancy),
            };
            for name in &entity.entities {
                per_type.insert(name.clone(), settings.clone());
            }
        }
        let mut types = initial.entities.clone();
        types.sort();
        types.dedup();
        Self {
            types,
            scan_interval: DEFAULT_SCAN_INTERVAL,
            drain_timeout: duration(
                initial.drain_ongoing_call_timeout.as_ref(),
                DEFAULT_DRAIN_TIMEOUT,
            ),
            drain_rebalanced: initial.drain_rebalanced_actors.unwrap_or(true),
            defaults,
            per_type,
        }
    }

    /// An app that hosts no actors.
    pub fn none() -> Self {
        Self::parse(b"").unwrap_or_else(|_| unreachable!("an empty configuration is valid"))
    }

    /// The settings of `actor_type`.
    pub fn settings(&self, actor_type: &str) -> &TypeSettings {
        self.per_type.get(actor_type).unwrap_or(&self.defaults)
    }

    pub fn hosts(&self, actor_type: &str) -> bool {
        self.types
            .binary_search_by(|name| name.as_str().cmp(actor_type))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_configuration_is_read_with_daprs_defaults() {
        let config = HostConfig::parse(
            br#"{"entities":["Counter","Pipeline"],"actorIdleTimeout":"1h30m","actorScanInterval":"30s",
                "drainOngoingCallTimeout":"1m","drainRebalancedActors":true,
                "reentrancy":{"enabled":true,"maxStackDepth":8},
                "entitiesConfig":[{"entities":["Pipeline"],"actorIdleTimeout":"5s","reentrancy":{"enabled":false}}],
                "remindersStoragePartitions":7}"#,
        )
        .unwrap();
        assert_eq!(config.types, ["Counter", "Pipeline"]);
        assert!(config.hosts("Counter") && !config.hosts("Other"));
        let counter = config.settings("Counter");
        assert_eq!(counter.idle_timeout, Duration::from_secs(5400));
        assert_eq!(
            counter.reentrancy,
            Reentrancy {
                enabled: true,
                max_stack_depth: 8
            }
        );
        let pipeline = config.settings("Pipeline");
        assert_eq!(pipeline.idle_timeout, Duration::from_secs(5));
        assert!(!pipeline.reentrancy.enabled);
        assert_eq!(config.scan_interval, Duration::from_secs(30));

        let empty = HostConfig::parse(b"{}").unwrap();
        assert!(empty.types.is_empty());
        assert_eq!(empty.settings("x").idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(HostConfig::none().types.len(), 0);
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let error = HostConfig::parse(br#"{"entities":["A"],"actorIdleTimeout":"soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("actorIdleTimeout 'soon'"), "{error}");
        assert!(HostConfig::parse(b"[").is_err());
    }
}
