//! `kind: Subscription`: a declarative pub/sub subscription — which topic of which
//! pub/sub the app gets, at which route (or by which routing rules), with which
//! subscription metadata, dead-letter topic and bulk settings.
//!
//! Both of Dapr's versions are read into one [`Subscription`]: `dapr.io/v1alpha1`
//! (`spec.route`) as `dapr.io/v2alpha1` with that route as `spec.routes.default`,
//! which is how daprd converts it. Within `spec` every field must be known, so a
//! `route` written in a v2alpha1 file (or `routes` in a v1alpha1 one) is an error
//! naming the field rather than a subscription that quietly receives nothing.
//!
//! The routing rules' `match` expressions are kept as text: they are CEL, compiled by
//! the runtime, which reports a broken one with this resource's file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ResourceError;
use crate::resource::{Kind, ObjectMetaFile, Origin};
use crate::yaml::Node;
use crate::yaml::fields::Scalar;

/// `apiVersion` of the first form, with a single `spec.route`.
pub const SUBSCRIPTION_V1ALPHA1: &str = "dapr.io/v1alpha1";
/// `apiVersion` of the form with routing rules, `spec.routes`.
pub const SUBSCRIPTION_V2ALPHA1: &str = "dapr.io/v2alpha1";

/// A Subscription resource, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// `apiVersion`, as written: [`SUBSCRIPTION_V1ALPHA1`] or [`SUBSCRIPTION_V2ALPHA1`].
    pub api_version: String,
    /// `spec.pubsubname`: the pub/sub component.
    pub pubsub: String,
    /// `spec.topic`.
    pub topic: String,
    /// `spec.metadata`: subscription metadata (`rawPayload`, a broker's settings).
    pub metadata: BTreeMap<String, String>,
    /// `spec.routes.rules`, in order (empty in v1alpha1).
    pub rules: Vec<RoutingRule>,
    /// `spec.routes.default` (v2alpha1) or `spec.route` (v1alpha1).
    pub default_route: Option<String>,
    /// `spec.deadLetterTopic`.
    pub dead_letter_topic: Option<String>,
    /// `spec.bulkSubscribe`.
    pub bulk_subscribe: BulkSubscribe,
    /// `scopes`: the app ids that get this subscription; empty means every app.
    pub scopes: Vec<String>,
    /// The file it came from.
    pub file: Option<PathBuf>,
}

/// One routing rule: events for which the CEL expression `condition` is true go to
/// `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingRule {
    /// `match`: a CEL expression over `event` (empty: matches every event).
    pub condition: String,
    /// `path`: the app's route.
    pub path: String,
}

/// `spec.bulkSubscribe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkSubscribe {
    pub enabled: bool,
    /// `maxMessagesCount`: the most events in one batch, when given.
    pub max_messages_count: Option<u32>,
    /// `maxAwaitDurationMs`: how long a batch may wait to fill, when given.
    pub max_await_duration_ms: Option<u32>,
}

impl Subscription {
    /// How errors name this resource: `Subscription 'orders'`.
    pub fn describe(&self) -> String {
        format!("Subscription '{}'", self.name)
    }

    /// An error located at this subscription (its file) and `field`.
    pub fn error(&self, field: &str, message: impl Into<String>) -> ResourceError {
        let mut error = ResourceError::new(message).in_resource(self.describe());
        if let Some(file) = &self.file {
            error = error.in_file(file.clone());
        }
        if field.is_empty() {
            error
        } else {
            error.at_field(field)
        }
    }

    /// Where rule `index`'s `match` is written, for errors:
    /// `spec.routes.rules[1].match`.
    pub fn rule_field(index: usize) -> String {
        format!("spec.routes.rules[{index}].match")
    }

    /// Whether app `app_id` gets this subscription (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }
}

// ---- The file format, as serde reads it. ----

/// Parses one `kind: Subscription` document.
pub(crate) fn from_node(file: &Path, node: &Node) -> Result<Subscription, ResourceError> {
    let origin = Origin::of(file, Kind::Subscription, node);
    let raw: SubscriptionFile = origin.read(node)?;
    let name = raw.metadata.required_name(&origin, "a subscription")?;
    for (index, scope) in raw.scopes.iter().enumerate() {
        if scope.trim().is_empty() {
            return Err(origin.error(&format!("scopes[{index}]"), "must be an app id"));
        }
    }
    let api_version = match raw.api_version.as_deref().map(str::trim) {
        Some(version @ (SUBSCRIPTION_V1ALPHA1 | SUBSCRIPTION_V2ALPHA1)) => version.to_owned(),
        Some(other) => {
            return Err(origin.error(
                "apiVersion",
                format!(
                    "a Subscription is `apiVersion: {SUBSCRIPTION_V2ALPHA1}` (with `spec.routes`) or `{SUBSCRIPTION_V1ALPHA1}` (with `spec.route`), not `{other}`"
                ),
            ));
        }
        None => {
            return Err(origin.error(
                "apiVersion",
                format!(
                    "a Subscription needs an `apiVersion`: `{SUBSCRIPTION_V2ALPHA1}` (with `spec.routes`) or `{SUBSCRIPTION_V1ALPHA1}` (with `spec.route`)"
                ),
            ));
        }
    };
    raw.metadata.required_spec(
        raw.spec,
        &origin,
        "a subscription needs a `spec` with `pubsubname`, `topic` and its routes",
    )?;
    // Each version has its own fields: read the spec again as the version's.
    let spec_node = node.get("spec").unwrap_or(&Node::Null);
    let (common, routes) = if api_version == SUBSCRIPTION_V1ALPHA1 {
        let SpecV1File {
            pubsubname,
            topic,
            metadata,
            dead_letter_topic,
            bulk_subscribe,
            route,
        } = read_spec(&origin, spec_node)?;
        let common = CommonSpec {
            pubsubname,
            topic,
            metadata,
            dead_letter_topic,
            bulk_subscribe,
        };
        (common, Routes::V1(route))
    } else {
        let SpecV2File {
            pubsubname,
            topic,
            metadata,
            dead_letter_topic,
            bulk_subscribe,
            routes,
        } = read_spec(&origin, spec_node)?;
        let common = CommonSpec {
            pubsubname,
            topic,
            metadata,
            dead_letter_topic,
            bulk_subscribe,
        };
        (common, Routes::V2(routes.unwrap_or_default()))
    };
    let Some(pubsub) = non_empty(common.pubsubname) else {
        return Err(origin.error(
            "spec.pubsubname",
            "a subscription needs a `pubsubname`, the pub/sub component's name",
        ));
    };
    let Some(topic) = non_empty(common.topic) else {
        return Err(origin.error("spec.topic", "a subscription needs a `topic`"));
    };
    let (rules, default_route) = match routes {
        Routes::V1(route) => {
            let Some(route) = non_empty(route) else {
                return Err(origin.error(
                    "spec.route",
                    "a dapr.io/v1alpha1 subscription needs a `route`, the app's path its events are posted to (routing rules need `apiVersion: dapr.io/v2alpha1` and `spec.routes`)",
                ));
            };
            (Vec::new(), Some(route))
        }
        Routes::V2(routes) => {
            let mut rules = Vec::with_capacity(routes.rules.len());
            for (index, rule) in routes.rules.into_iter().enumerate() {
                let Some(path) = non_empty(rule.path) else {
                    return Err(origin.error(
                        &format!("spec.routes.rules[{index}].path"),
                        "a routing rule needs a `path`, the app's route its events are posted to",
                    ));
                };
                rules.push(RoutingRule {
                    condition: rule.condition.unwrap_or_default().trim().to_owned(),
                    path,
                });
            }
            let default_route = non_empty(routes.default);
            if rules.is_empty() && default_route.is_none() {
                return Err(origin.error(
                    "spec.routes",
                    "a dapr.io/v2alpha1 subscription needs `routes` with `rules` or a `default` path: without one no event would ever reach the app",
                ));
            }
            (rules, default_route)
        }
    };
    let mut metadata = BTreeMap::new();
    for (key, value) in common.metadata {
        let Some(value) = value.into_text() else {
            return Err(origin.error(
                &format!("spec.metadata.{key}"),
                "must be a plain value (text, number or boolean)",
            ));
        };
        metadata.insert(key, value);
    }
    let bulk = common.bulk_subscribe.unwrap_or_default();
    Ok(Subscription {
        name,
        namespace: raw.metadata.namespace,
        api_version,
        pubsub,
        topic,
        metadata,
        rules,
        default_route,
        dead_letter_topic: non_empty(common.dead_letter_topic),
        bulk_subscribe: BulkSubscribe {
            enabled: bulk.enabled,
            max_messages_count: bulk.max_messages_count,
            max_await_duration_ms: bulk.max_await_duration_ms,
        },
        scopes: raw.scopes,
        file: Some(file.to_owned()),
    })
}

/// Reads `spec` as one version's struct, naming fields from the document's top.
fn read_spec<T: serde::de::DeserializeOwned>(
    origin: &Origin,
    spec: &Node,
) -> Result<T, ResourceError> {
    crate::yaml::read(spec).map_err(|problem| {
        let field = if problem.path.is_empty() {
            "spec".to_owned()
        } else {
            format!("spec.{}", problem.path)
        };
        origin.error(&field, problem.problem.to_string())
    })
}

/// Text that says something, trimmed.
fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// A Subscription document. Above `spec`, fields tandem does not use are accepted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionFile {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    metadata: ObjectMetaFile,
    #[serde(default)]
    scopes: Vec<String>,
    /// Only whether it is there, here: it is read as its version's below.
    #[serde(default)]
    spec: Option<serde::de::IgnoredAny>,
}

/// What both versions' `spec` have, once read.
struct CommonSpec {
    pubsubname: Option<String>,
    topic: Option<String>,
    metadata: BTreeMap<String, Scalar>,
    dead_letter_topic: Option<String>,
    bulk_subscribe: Option<BulkSubscribeFile>,
}

/// The routes as each version writes them.
enum Routes {
    /// `spec.route`.
    V1(Option<String>),
    /// `spec.routes`.
    V2(RoutesFile),
}

/// `spec` of `dapr.io/v1alpha1`. The two versions' specs share all but their routes;
/// they are written out twice because `deny_unknown_fields` (which catches a v1 `routes`
/// or a v2 `route`) does not work through `#[serde(flatten)]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a mapping with `pubsubname`, `topic` and `route`"
)]
struct SpecV1File {
    #[serde(default, alias = "pubsubName")]
    pubsubname: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Scalar>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeFile>,
    #[serde(default)]
    route: Option<String>,
}

/// `spec` of `dapr.io/v2alpha1`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a mapping with `pubsubname`, `topic` and `routes`"
)]
struct SpecV2File {
    #[serde(default, alias = "pubsubName")]
    pubsubname: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Scalar>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeFile>,
    #[serde(default)]
    routes: Option<RoutesFile>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `rules` and `default`"
)]
struct RoutesFile {
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `match` and `path`")]
struct RuleFile {
    #[serde(default, rename = "match")]
    condition: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a mapping with `enabled`, `maxMessagesCount` and `maxAwaitDurationMs`"
)]
struct BulkSubscribeFile {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_messages_count: Option<u32>,
    #[serde(default)]
    max_await_duration_ms: Option<u32>,
}

#[cfg(test)]
mod tests;
