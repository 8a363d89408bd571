//! What `GET /v1.0/metadata` and gRPC `GetMetadata` report about a sidecar.

use std::collections::BTreeMap;

use serde::Serialize;
use tandem_spec::Component;

/// One loaded component.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// A state store's first-level cache: hits and misses by level, entries, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<tandem_cache::Stats>,
}

impl ComponentInfo {
    pub(crate) fn of(component: &Component) -> Self {
        Self {
            name: component.name.clone(),
            kind: component.kind.clone(),
            version: component.version.clone(),
            capabilities: Vec::new(),
            cache: None,
        }
    }
}

/// One active subscription, as the metadata API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubscriptionInfo {
    #[serde(rename = "pubsubname")]
    pub pubsub: String,
    pub topic: String,
    /// The routing rules in the order they are tried; the default route (or a v1
    /// subscription's `route`) is the last, with no `match`.
    pub rules: Vec<RuleInfo>,
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "deadLetterTopic", skip_serializing_if = "String::is_empty")]
    pub dead_letter_topic: String,
    /// `PROGRAMMATIC` (from `/dapr/subscribe`) or `DECLARATIVE` (a `Subscription`
    /// resource).
    #[serde(rename = "type")]
    pub origin: &'static str,
}

/// One routing rule of a subscription.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleInfo {
    /// The CEL expression; empty for the default route.
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    pub condition: String,
    pub path: String,
}

/// Everything the metadata API tells.
#[derive(Debug, Clone)]
pub struct MetadataSnapshot {
    pub app_id: String,
    pub runtime_version: String,
    pub components: Vec<ComponentInfo>,
    pub subscriptions: Vec<SubscriptionInfo>,
    /// The names of the loaded `HTTPEndpoint` resources.
    pub http_endpoints: Vec<String>,
    pub extended: BTreeMap<String, String>,
    pub app_port: Option<u16>,
    pub app_protocol: String,
    pub app_host: String,
    /// `--app-max-concurrency`, when it limits.
    pub app_max_concurrency: Option<usize>,
    /// The health-check settings, when checks are on.
    pub app_health: Option<crate::config::AppHealthSettings>,
    /// The actor runtime: status, active actors per hosted type.
    pub actors: crate::actors::ActorsInfo,
}
