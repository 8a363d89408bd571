//! One registry per building block: `spec.type` + `spec.version` → constructor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tandem_spec::{Component, ComponentMetadata, ResourceError};

/// Builds one component from its resolved metadata.
pub type Build<T> =
    for<'a> fn(
        &'a ComponentMetadata,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<T>, ResourceError>> + Send + 'a>>;

/// One implementation a registry offers.
pub struct Entry<T: ?Sized> {
    /// `spec.type`, e.g. `pubsub.redis`.
    pub kind: &'static str,
    /// The `spec.version`s it answers to.
    pub versions: &'static [&'static str],
    /// Every metadata name it reads; others get a "did you mean" warning.
    pub metadata: &'static [&'static str],
    pub build: Build<T>,
}

/// The implementations of one building block.
pub struct Registry<T: ?Sized> {
    block: &'static str,
    entries: Vec<Entry<T>>,
    /// Metadata names the runtime reads for every component of the block.
    shared_metadata: &'static [&'static str],
}

impl<T: ?Sized> Registry<T> {
    pub fn new(block: &'static str, entries: Vec<Entry<T>>) -> Self {
        Self {
            block,
            entries,
            shared_metadata: &[],
        }
    }

    /// Adds metadata names every component of this block accepts.
    pub fn with_shared_metadata(mut self, names: &'static [&'static str]) -> Self {
        self.shared_metadata = names;
        self
    }

    /// Whether `kind` belongs to this building block (`pubsub.` for pub/sub, ...).
    pub fn claims(&self, kind: &str) -> bool {
        kind.strip_prefix(self.block)
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// The `spec.type`s this registry knows.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|entry| entry.kind)
    }

    /// Builds `component`: finds its implementation, warns about metadata names the
    /// implementation does not read, and runs its constructor.
    pub async fn build(&self, metadata: &ComponentMetadata) -> Result<Arc<T>, ResourceError> {
        let entry = self.find(metadata.component())?;
        let known: Vec<&str> = entry
            .metadata
            .iter()
            .chain(self.shared_metadata)
            .copied()
            .collect();
        metadata.warn_unknown(&known);
        (entry.build)(metadata).await
    }

    /// The implementation for `component`'s `spec.type` and `spec.version`.
    pub fn find(&self, component: &Component) -> Result<&Entry<T>, ResourceError> {
        let Some(entry) = self
            .entries
            .iter()
            .find(|entry| entry.kind == component.kind)
        else {
            let known: Vec<_> = self.kinds().collect();
            let closest = tandem_spec::closest(&component.kind, known.iter().copied())
                .map(|kind| format!(" Did you mean '{kind}'?"))
                .unwrap_or_default();
            return Err(component.error(
                Some("spec.type"),
                format!(
                    "unknown {} component type '{}'.{closest} tandem supports: {}",
                    self.block,
                    component.kind,
                    known.join(", ")
                ),
            ));
        };
        if !entry.versions.contains(&component.version.as_str()) {
            return Err(component.error(
                Some("spec.version"),
                format!(
                    "{} has no version '{}'; supported: {}",
                    entry.kind,
                    component.version,
                    entry.versions.join(", ")
                ),
            ));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use tandem_spec::Component;

    fn component(kind: &str, version: &str) -> Component {
        Component {
            version: version.into(),
            file: Some("components/pubsub.yaml".into()),
            ..Component::new("orders", kind)
        }
    }

    #[test]
    fn unknown_types_and_versions_are_errors_that_say_what_exists() {
        let registry = crate::pubsub::registry();
        assert!(registry.claims("pubsub.kafka"));
        assert!(!registry.claims("pubsubx.kafka"));
        assert!(!registry.claims("secretstores.local.file"));

        let error = registry
            .find(&component("pubsub.rediss", "v1"))
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.starts_with("components/pubsub.yaml: Component 'orders': field `spec.type`"),
            "{message}"
        );
        assert!(
            message.contains("Did you mean 'pubsub.redis'?"),
            "{message}"
        );

        let error = registry
            .find(&component("pubsub.azure.servicebus", "v1"))
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.contains("unknown pubsub component type 'pubsub.azure.servicebus'"),
            "{message}"
        );
        assert!(
            message.contains("pubsub.redis, pubsub.rabbitmq, pubsub.in-memory, pubsub.sqlite"),
            "{message}"
        );

        let error = registry
            .find(&component("pubsub.redis", "v2"))
            .err()
            .unwrap();
        assert_eq!(error.field.as_deref(), Some("spec.version"));
        assert!(
            error
                .to_string()
                .contains("pubsub.redis has no version 'v2'; supported: v1")
        );
    }
}
