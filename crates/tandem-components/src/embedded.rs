//! The embedded defaults: what a sidecar uses when it is given no resources path and
//! `~/.tandem/components` does not exist, so that a first `tandem run` needs nothing
//! installed. They are components like any other, declared here in code.

use std::path::Path;

use tandem_spec::{Component, MetadataItem, MetadataSource};

/// The components used when no resources path is given and `~/.tandem/components`
/// does not exist: a durable pub/sub named `pubsub`, a state store named `statestore`
/// (the actor state store) and a lock store named `lockstore`, all in
/// `{data_dir}/tandem.db`, shared by every sidecar on the machine.
pub fn embedded_defaults(data_dir: &Path) -> Vec<Component> {
    let database = data_dir.join("tandem.db").display().to_string();
    let component = |name: &str, kind: &str, metadata: Vec<(&str, &str)>| Component {
        metadata: metadata
            .into_iter()
            .map(|(name, value)| MetadataItem {
                name: name.into(),
                source: MetadataSource::Value(value.into()),
            })
            .collect(),
        ..Component::new(name, kind)
    };
    vec![
        component(
            "pubsub",
            "pubsub.sqlite",
            vec![("connectionString", &database)],
        ),
        component(
            "statestore",
            "state.sqlite",
            vec![("connectionString", &database), ("actorStateStore", "true")],
        ),
        component(
            "lockstore",
            "lock.sqlite",
            vec![("connectionString", &database)],
        ),
    ]
}
