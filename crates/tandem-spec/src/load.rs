//! Reading resources paths: every `*.yaml`/`*.yml` file, every document in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::component::{Component, MetadataItem, MetadataSource, RawComponent, scalar_to_string};
use crate::error::ResourceError;

/// Who is loading: components are filtered by app id (`scopes`) and namespace.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub app_id: String,
    /// The `NAMESPACE` environment variable, when set: components of another
    /// namespace are skipped, as in Dapr.
    pub namespace: Option<String>,
}

/// Loads the components in `paths` (directories or single files) that this app may use.
///
/// Files are read in name order so the result does not depend on the file system.
/// Other resource kinds are skipped; a component scoped to other apps or declared in
/// another namespace is left out. Any broken file is an error.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Result<Vec<Component>, ResourceError> {
    let mut components: Vec<Component> = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in resource_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|error| {
            ResourceError::new(format!("cannot read the file: {error}")).in_file(&file)
        })?;
        for component in parse_file(&file, &text)? {
            if !component.is_in_scope(&options.app_id) {
                tracing::info!(
                    component = %component.name,
                    file = %file.display(),
                    "component not loaded: its scopes do not include app id '{}'",
                    options.app_id
                );
                continue;
            }
            if let (Some(wanted), Some(declared)) = (&options.namespace, &component.namespace)
                && wanted != declared
            {
                tracing::info!(
                    component = %component.name,
                    file = %file.display(),
                    "component not loaded: it belongs to namespace '{declared}', this sidecar to '{wanted}'"
                );
                continue;
            }
            if let Some(first) = seen.get(&component.name) {
                return Err(component.error(
                    Some("metadata.name"),
                    format!(
                        "a component with this name is already defined in {}",
                        first.display()
                    ),
                ));
            }
            seen.insert(component.name.clone(), file.clone());
            components.push(component);
        }
    }
    Ok(components)
}

fn resource_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ResourceError> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|error| {
            ResourceError::new(format!("resources path cannot be read: {error}")).in_file(path)
        })?;
        if metadata.is_file() {
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|error| {
            ResourceError::new(format!("resources path cannot be listed: {error}")).in_file(path)
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| is_yaml(path) && path.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|ext| ext.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parses every document of one file, returning its components.
pub(crate) fn parse_file(file: &Path, text: &str) -> Result<Vec<Component>, ResourceError> {
    let mut components = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value = yaml_serde::Value::deserialize(document).map_err(|error| {
            let mut located =
                ResourceError::new(format!("YAML syntax error: {error}")).in_file(file);
            if let Some(location) = error.location() {
                located = located.at_line(location.line());
            }
            located
        })?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let kind = value.get("kind").and_then(|kind| kind.as_str());
        match kind {
            Some("Component") => components.push(parse_component(file, value)?),
            Some(other) => {
                tracing::debug!(file = %file.display(), kind = other, "resource kind not handled yet; skipped")
            }
            None => {
                return Err(ResourceError::new(
                    "this document has no `kind` (Component, Subscription, ...): is it a resource file?",
                )
                .in_file(file)
                .at_field("kind"));
            }
        }
    }
    Ok(components)
}

fn parse_component(file: &Path, value: yaml_serde::Value) -> Result<Component, ResourceError> {
    let name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(|name| name.as_str())
        .map(str::to_owned);
    let resource = match &name {
        Some(name) => format!("Component '{name}'"),
        None => "Component".to_owned(),
    };
    let error = |field: &str, message: String| {
        ResourceError::new(message)
            .in_file(file)
            .in_resource(resource.clone())
            .at_field(field)
    };
    if name.is_none() {
        return Err(error("metadata.name", "a component needs a name".into()));
    }
    match value.get("spec") {
        None => {
            let nested = value
                .get("metadata")
                .is_some_and(|metadata| metadata.get("spec").is_some());
            let hint = if nested {
                ": it is indented under `metadata`, but `spec` must be a top-level key beside `metadata`"
            } else {
                ""
            };
            return Err(error("spec", format!("a component needs a `spec`{hint}")));
        }
        Some(spec) if spec.get("type").and_then(|kind| kind.as_str()).is_none() => {
            return Err(error(
                "spec.type",
                "a component needs a `spec.type`, e.g. `pubsub.redis`".into(),
            ));
        }
        Some(_) => {}
    }
    let raw: RawComponent =
        yaml_serde::from_value(value).map_err(|e| error("spec", e.to_string()))?;

    let version = match raw.spec.version.as_ref() {
        None => "v1".to_owned(),
        Some(version) => scalar_to_string(version)
            .ok_or_else(|| error("spec.version", "must be a string such as `v1`".into()))?,
    };
    let mut metadata = Vec::new();
    for (index, item) in raw
        .spec
        .metadata
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let field = format!("spec.metadata[{index}]");
        let source = match (item.value, item.secret_key_ref, item.env_ref) {
            (Some(value), None, None) => {
                MetadataSource::Value(scalar_to_string(&value).ok_or_else(|| {
                    error(
                        &format!("{field}.value"),
                        format!(
                            "metadata '{}' must have a plain value (text, number or boolean)",
                            item.name
                        ),
                    )
                })?)
            }
            (None, Some(secret), None) => MetadataSource::Secret {
                // Dapr's rule: without `key`, the key is the secret's name.
                key: secret.key.unwrap_or_else(|| secret.name.clone()),
                name: secret.name,
            },
            (None, None, Some(variable)) => MetadataSource::Env(variable),
            (None, None, None) => MetadataSource::Value(String::new()),
            _ => {
                return Err(error(
                    &field,
                    format!(
                        "metadata '{}' has more than one of `value`, `secretKeyRef` and `envRef`",
                        item.name
                    ),
                ));
            }
        };
        metadata.push(MetadataItem {
            name: item.name,
            source,
        });
    }
    Ok(Component {
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        kind: raw.spec.kind,
        version,
        metadata,
        secret_store: raw.auth.and_then(|auth| auth.secret_store),
        scopes: raw.scopes.unwrap_or_default(),
        file: Some(file.to_owned()),
    })
}

#[cfg(test)]
mod tests;
