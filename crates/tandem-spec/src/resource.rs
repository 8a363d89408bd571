//! One resource file: its documents dispatched on `kind`, and what every kind shares —
//! how errors name a resource, `metadata`, and the checks on `metadata.name` and `spec`.

use std::path::Path;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::component::{self, Component};
use crate::configuration::{self, Configuration};
use crate::error::ResourceError;
use crate::http_endpoint::{self, HttpEndpoint};
use crate::resiliency::{self, Resiliency};
use crate::subscription::{self, Subscription};
use crate::yaml::{self, Node};

/// The kinds of resource tandem reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Component,
    HttpEndpoint,
    Resiliency,
    Configuration,
    Subscription,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Component,
        Kind::HttpEndpoint,
        Kind::Resiliency,
        Kind::Configuration,
        Kind::Subscription,
    ];

    /// The `kind:` as Dapr spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Component => "Component",
            Kind::HttpEndpoint => "HTTPEndpoint",
            Kind::Resiliency => "Resiliency",
            Kind::Configuration => "Configuration",
            Kind::Subscription => "Subscription",
        }
    }
}

/// One parsed resource.
#[derive(Debug, Clone)]
pub(crate) enum Resource {
    Component(Component),
    HttpEndpoint(HttpEndpoint),
    Resiliency(Resiliency),
    Configuration(Configuration),
    Subscription(Subscription),
}

/// Reads a resource file's text.
pub(crate) fn read_file(file: &Path) -> Result<String, ResourceError> {
    std::fs::read_to_string(file)
        .map_err(|error| ResourceError::new(format!("cannot read the file: {error}")).in_file(file))
}

/// Parses every document of one file whose kind is in `wanted`, in file order.
///
/// Other kinds are skipped: those tandem does not handle yet (`MCPServer`, ...),
/// and those read from elsewhere (a `Configuration` comes from `--config`, not from a
/// resources path). A document without a `kind` is an error: it is no resource.
pub(crate) fn parse_file(
    file: &Path,
    text: &str,
    wanted: &[Kind],
) -> Result<Vec<Resource>, ResourceError> {
    let mut found = Vec::new();
    for node in yaml::documents(file, text)? {
        let Some(kind) = node.get("kind").and_then(Node::scalar_text) else {
            return Err(ResourceError::new(
                "this document has no `kind` (Component, Configuration, Resiliency, ...): is it a resource file?",
            )
            .in_file(file)
            .at_field("kind"));
        };
        let Some(kind) = Kind::ALL.into_iter().find(|known| known.name() == kind) else {
            // Said out loud, once per document: a skipped `Subscription` or a typo in
            // `kind` would otherwise leave someone believing it is in force.
            tracing::warn!("{}; skipped", unserved_kind(file, &kind));
            continue;
        };
        if !wanted.contains(&kind) {
            // A Configuration among the components is common and harmless: it is read
            // from `--config`, as daprd reads it.
            tracing::info!(
                "{}: a `kind: {}` resource is not read from a resources path (pass it with --config); skipped",
                file.display(),
                kind.name()
            );
            continue;
        }
        found.push(match kind {
            Kind::Component => Resource::Component(component::from_node(file, &node)?),
            Kind::HttpEndpoint => Resource::HttpEndpoint(http_endpoint::from_node(file, &node)?),
            Kind::Resiliency => Resource::Resiliency(resiliency::from_node(file, &node)?),
            Kind::Configuration => Resource::Configuration(configuration::from_node(file, &node)?),
            Kind::Subscription => Resource::Subscription(subscription::from_node(file, &node)?),
        });
    }
    Ok(found)
}

/// Dapr's resource kinds that tandem does not serve yet.
const NOT_SERVED_YET: [&str; 1] = ["MCPServer"];

/// What to say about a document whose `kind` tandem does not read.
fn unserved_kind(file: &Path, kind: &str) -> String {
    let file = file.display();
    if NOT_SERVED_YET.contains(&kind) {
        return format!("{file}: tandem does not serve `kind: {kind}` resources yet");
    }
    let known = Kind::ALL
        .iter()
        .map(|kind| kind.name())
        .chain(NOT_SERVED_YET);
    match crate::closest(kind, known) {
        Some(close) => {
            format!("{file}: `kind: {kind}` is not a Dapr resource kind; did you mean `{close}`?")
        }
        None => format!("{file}: `kind: {kind}` is not a Dapr resource kind"),
    }
}

/// Where errors about one resource point: its file, and its kind and name
/// (`Resiliency 'myresiliency'`, or just `Resiliency` while the name is unknown).
#[derive(Debug, Clone)]
pub(crate) struct Origin<'a> {
    pub file: &'a Path,
    pub resource: String,
}

impl<'a> Origin<'a> {
    /// The origin of the document `node` of kind `kind`, named by its `metadata.name`.
    pub(crate) fn of(file: &'a Path, kind: Kind, node: &Node) -> Self {
        let name = node
            .get("metadata")
            .and_then(|metadata| metadata.get("name"))
            .and_then(Node::scalar_text);
        let resource = match name {
            Some(name) => format!("{} '{name}'", kind.name()),
            None => kind.name().to_owned(),
        };
        Self { file, resource }
    }

    /// An error about `field` (empty: the resource as a whole).
    pub(crate) fn error(&self, field: &str, message: impl Into<String>) -> ResourceError {
        let error = ResourceError::new(message)
            .in_file(self.file)
            .in_resource(self.resource.clone());
        if field.is_empty() {
            error
        } else {
            error.at_field(field)
        }
    }

    /// Reads the document into its file format struct.
    pub(crate) fn read<T: DeserializeOwned>(&self, node: &Node) -> Result<T, ResourceError> {
        yaml::read(node).map_err(|problem| self.error(&problem.path, problem.problem.to_string()))
    }
}

/// `metadata`, as every kind writes it. Other fields (`labels`, `annotations`, ...)
/// are accepted and not used.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ObjectMetaFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Not Dapr's: present only to explain a `spec` indented under `metadata`.
    #[serde(default)]
    pub spec: Option<IgnoredAny>,
}

impl ObjectMetaFile {
    /// `metadata.name`, which `noun` (`a component`) must have.
    pub(crate) fn required_name(
        &self,
        origin: &Origin,
        noun: &str,
    ) -> Result<String, ResourceError> {
        match &self.name {
            Some(name) if !name.trim().is_empty() => Ok(name.clone()),
            _ => Err(origin.error("metadata.name", format!("{noun} needs a name"))),
        }
    }

    /// The resource's `spec`, which `needs` says is required: a missing one is
    /// explained when it was indented under `metadata` by mistake.
    pub(crate) fn required_spec<T>(
        &self,
        spec: Option<T>,
        origin: &Origin,
        needs: &str,
    ) -> Result<T, ResourceError> {
        spec.ok_or_else(|| {
            let hint = if self.spec.is_some() {
                ": it is indented under `metadata`, but `spec` must be a top-level key beside `metadata`"
            } else {
                ""
            };
            origin.error("spec", format!("{needs}{hint}"))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_not_served_are_named_with_a_suggestion() {
        let file = std::path::Path::new("c.yaml");
        assert_eq!(
            super::unserved_kind(file, "MCPServer"),
            "c.yaml: tandem does not serve `kind: MCPServer` resources yet"
        );
        assert_eq!(
            super::unserved_kind(file, "Subscriptoin"),
            "c.yaml: `kind: Subscriptoin` is not a Dapr resource kind; did you mean `Subscription`?"
        );
        assert_eq!(
            super::unserved_kind(file, "Componnent"),
            "c.yaml: `kind: Componnent` is not a Dapr resource kind; did you mean `Component`?"
        );
        assert_eq!(
            super::unserved_kind(file, "Pod"),
            "c.yaml: `kind: Pod` is not a Dapr resource kind"
        );
    }
}
