//! Declarative subscriptions: `Subscription` resources made into subscriptions, and
//! how they combine with the app's own (programmatic) ones.

use std::collections::HashMap;

use tandem_spec::ResourceError;

use super::routing::Routing;
use super::{Source, Subscription};

/// Compiles the loaded `Subscription` resources (already filtered by scope and
/// namespace), in file order. A routing rule that does not compile stops the sidecar
/// with the file, the subscription and the rule's field.
pub(crate) fn from_resources(
    resources: &[tandem_spec::Subscription],
) -> Result<Vec<Subscription>, ResourceError> {
    let mut subscriptions = Vec::with_capacity(resources.len());
    for resource in resources {
        let rules = resource
            .rules
            .iter()
            .map(|rule| (rule.condition.as_str(), rule.path.as_str()));
        let routing = Routing::new(rules, resource.default_route.as_deref()).map_err(|error| {
            resource.error(
                &tandem_spec::Subscription::rule_field(error.index),
                format!(
                    "`{}` is not a valid CEL expression: {}",
                    error.expression, error.reason
                ),
            )
        })?;
        subscriptions.push(Subscription {
            pubsub: resource.pubsub.clone(),
            topic: resource.topic.clone(),
            routing,
            metadata: resource.metadata.clone(),
            dead_letter_topic: resource.dead_letter_topic.clone(),
            bulk: resource.bulk_subscribe.clone(),
            source: Source::Declarative(resource.name.clone()),
        });
    }
    Ok(subscriptions)
}

/// The subscriptions to make, as daprd combines them: one per pub/sub and topic. Of
/// several declarative ones for a topic the first written wins; a programmatic one
/// takes the place of a declarative one for the same topic (and a later programmatic
/// one the place of an earlier). Declarative ones come first, in file order.
pub(crate) fn merge(
    declared: &[Subscription],
    programmatic: Vec<Subscription>,
) -> Vec<Subscription> {
    let mut merged: Vec<Subscription> = Vec::with_capacity(declared.len() + programmatic.len());
    let mut taken: HashMap<(String, String), usize> = HashMap::new();
    for subscription in declared {
        let key = (subscription.pubsub.clone(), subscription.topic.clone());
        if let Some(&first) = taken.get(&key) {
            tracing::warn!(
                pubsub = %subscription.pubsub, topic = %subscription.topic,
                "{} is not used: {} subscribes to the same topic and comes first",
                subscription.describe(),
                merged[first].describe()
            );
            continue;
        }
        taken.insert(key, merged.len());
        merged.push(subscription.clone());
    }
    for subscription in programmatic {
        let key = (subscription.pubsub.clone(), subscription.topic.clone());
        match taken.get(&key) {
            Some(&index) => {
                tracing::info!(
                    pubsub = %subscription.pubsub, topic = %subscription.topic,
                    "{} takes the place of {} for the same topic",
                    subscription.describe(),
                    merged[index].describe()
                );
                merged[index] = subscription;
            }
            None => {
                taken.insert(key, merged.len());
                merged.push(subscription);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn resource(
        name: &str,
        topic: &str,
        rules: &[(&str, &str)],
        default: Option<&str>,
    ) -> tandem_spec::Subscription {
        tandem_spec::Subscription {
            name: name.into(),
            namespace: None,
            api_version: tandem_spec::SUBSCRIPTION_V2ALPHA1.into(),
            pubsub: "pubsub".into(),
            topic: topic.into(),
            metadata: [("rawPayload".to_owned(), "true".to_owned())].into(),
            rules: rules
                .iter()
                .map(|(condition, path)| tandem_spec::RoutingRule {
                    condition: (*condition).into(),
                    path: (*path).into(),
                })
                .collect(),
            default_route: default.map(str::to_owned),
            dead_letter_topic: Some("poison".into()),
            bulk_subscribe: tandem_spec::BulkSubscribe::default(),
            scopes: Vec::new(),
            file: Some("subs.yaml".into()),
        }
    }

    fn programmatic(topic: &str, path: &str) -> Subscription {
        Subscription {
            pubsub: "pubsub".into(),
            topic: topic.into(),
            routing: Routing::catch_all(path),
            metadata: Default::default(),
            dead_letter_topic: None,
            bulk: Default::default(),
            source: Source::Programmatic,
        }
    }

    #[test]
    fn resources_become_subscriptions_with_their_rules() {
        let made = from_resources(&[resource(
            "orders",
            "orders",
            &[("event.type == 'a'", "/a")],
            Some("/d"),
        )])
        .unwrap();
        let info = made[0].info();
        assert_eq!(info.origin, "DECLARATIVE");
        assert_eq!(info.rules.len(), 2);
        assert_eq!(info.rules[0].condition, "event.type == 'a'");
        assert_eq!(info.rules[1].path, "/d");
        assert_eq!(info.dead_letter_topic, "poison");
        assert_eq!(info.metadata["rawPayload"], "true");
    }

    #[test]
    fn a_broken_rule_names_the_file_subscription_and_rule() {
        let error = from_resources(&[resource(
            "orders",
            "orders",
            &[("event.type == 'a'", "/a"), ("event.type === 'b'", "/b")],
            None,
        )])
        .unwrap_err();
        assert_eq!(error.file.as_deref(), Some(Path::new("subs.yaml")));
        assert_eq!(error.resource.as_deref(), Some("Subscription 'orders'"));
        assert_eq!(error.field.as_deref(), Some("spec.routes.rules[1].match"));
        assert!(
            error
                .message
                .contains("`event.type === 'b'` is not a valid CEL expression"),
            "{error}"
        );
    }

    #[test]
    fn the_first_declarative_wins_and_programmatic_replaces_it_in_place() {
        let declared = from_resources(&[
            resource("first", "orders", &[], Some("/first")),
            resource("second", "orders", &[], Some("/second")),
            resource("other", "other", &[], Some("/other")),
        ])
        .unwrap();
        let merged = merge(&declared, Vec::new());
        let routes: Vec<_> = merged.iter().map(|s| s.routing.paths()).collect();
        assert_eq!(routes, ["/first", "/other"]);

        let merged = merge(
            &declared,
            vec![
                programmatic("new", "/new"),
                programmatic("orders", "/app-orders"),
                programmatic("new", "/newer"),
            ],
        );
        let seen: Vec<_> = merged
            .iter()
            .map(|s| (s.topic.as_str(), s.routing.paths(), s.info().origin))
            .collect();
        assert_eq!(
            seen,
            [
                ("orders", "/app-orders".to_owned(), "PROGRAMMATIC"),
                ("other", "/other".to_owned(), "DECLARATIVE"),
                ("new", "/newer".to_owned(), "PROGRAMMATIC"),
            ]
        );
    }
}
