//! Reading resources paths: every `*.yaml`/`*.yml` file, every document in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::component::{
    Component, MetadataItem, MetadataSource, RawAuth, RawComponent, RawMetadataItem, RawObjectMeta,
    scalar_to_string,
};
use crate::error::ResourceError;
use crate::http_endpoint::HttpEndpoint;
use crate::resiliency::{Resiliency, parse_resiliency};

/// Everything a resources path declares that this app may use.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub components: Vec<Component>,
    pub http_endpoints: Vec<HttpEndpoint>,
    pub resiliencies: Vec<Resiliency>,
}

/// Who is loading: components are filtered by app id (`scopes`) and namespace.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub app_id: String,
    /// The `NAMESPACE` environment variable, when set: components of another
    /// namespace are skipped, as in Dapr.
    pub namespace: Option<String>,
}

/// Loads the resources in `paths` (directories or single files) that this app may use.
///
/// Files are read in name order so the result does not depend on the file system.
/// Kinds tandem does not use yet are skipped; a resource scoped to other apps or
/// declared in another namespace is left out. Any broken file is an error.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Result<Resources, ResourceError> {
    let mut loaded = Resources::default();
    let mut seen: HashMap<(&'static str, String), PathBuf> = HashMap::new();
    for file in resource_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|error| {
            ResourceError::new(format!("cannot read the file: {error}")).in_file(&file)
        })?;
        let found = parse_file(&file, &text)?;
        for component in found.components {
            let name = component.describe();
            if options.admits(
                &name,
                &file,
                &component.scopes,
                component.namespace.as_deref(),
            ) {
                unique(&mut seen, "component", &component.name, &file, &name)?;
                loaded.components.push(component);
            }
        }
        for endpoint in found.http_endpoints {
            let name = endpoint.describe();
            if options.admits(
                &name,
                &file,
                &endpoint.scopes,
                endpoint.namespace.as_deref(),
            ) {
                unique(&mut seen, "HTTP endpoint", &endpoint.name, &file, &name)?;
                loaded.http_endpoints.push(endpoint);
            }
        }
        for resiliency in found.resiliencies {
            let name = format!("Resiliency '{}'", resiliency.name);
            if options.admits(
                &name,
                &file,
                &resiliency.scopes,
                resiliency.namespace.as_deref(),
            ) {
                loaded.resiliencies.push(resiliency);
            }
        }
    }
    Ok(loaded)
}

impl LoadOptions {
    /// Whether a resource with these `scopes` and `namespace` is for this app.
    fn admits(
        &self,
        resource: &str,
        file: &Path,
        scopes: &[String],
        namespace: Option<&str>,
    ) -> bool {
        if !scopes.is_empty() && !scopes.contains(&self.app_id) {
            tracing::info!(
                file = %file.display(),
                "{resource} not loaded: its scopes do not include app id '{}'",
                self.app_id
            );
            return false;
        }
        if let (Some(wanted), Some(declared)) = (&self.namespace, namespace)
            && wanted != declared
        {
            tracing::info!(
                file = %file.display(),
                "{resource} not loaded: it belongs to namespace '{declared}', this sidecar to '{wanted}'"
            );
            return false;
        }
        true
    }
}

/// Two resources of one kind may not share a name.
fn unique(
    seen: &mut HashMap<(&'static str, String), PathBuf>,
    kind: &'static str,
    name: &str,
    file: &Path,
    resource: &str,
) -> Result<(), ResourceError> {
    if let Some(first) = seen.get(&(kind, name.to_owned())) {
        return Err(ResourceError::new(format!(
            "a {kind} with this name is already defined in {}",
            first.display()
        ))
        .in_file(file)
        .in_resource(resource)
        .at_field("metadata.name"));
    }
    seen.insert((kind, name.to_owned()), file.to_owned());
    Ok(())
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

/// Parses every document of one file.
pub(crate) fn parse_file(file: &Path, text: &str) -> Result<Resources, ResourceError> {
    let mut found = Resources::default();
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
            Some("Component") => found.components.push(parse_component(file, value)?),
            Some("HTTPEndpoint") => found.http_endpoints.push(parse_http_endpoint(file, value)?),
            Some("Resiliency") => found.resiliencies.push(parse_resiliency(file, value)?),
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
    Ok(found)
}

/// How errors about one document name it: its kind and (when it has one) its name;
/// fails with a message when `metadata.name` is missing.
fn located<'a>(
    file: &'a Path,
    value: &yaml_serde::Value,
    kind: &str,
    noun: &str,
) -> Result<impl Fn(&str, String) -> ResourceError + 'a, ResourceError> {
    let name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(|name| name.as_str());
    let resource = match name {
        Some(name) => format!("{kind} '{name}'"),
        None => kind.to_owned(),
    };
    let error = move |field: &str, message: String| {
        ResourceError::new(message)
            .in_file(file)
            .in_resource(resource.clone())
            .at_field(field)
    };
    if name.is_none() {
        return Err(error("metadata.name", format!("{noun} needs a name")));
    }
    Ok(error)
}

fn parse_component(file: &Path, value: yaml_serde::Value) -> Result<Component, ResourceError> {
    let error = located(file, &value, "Component", "a component")?;
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
    let metadata = parse_items(
        raw.spec.metadata.unwrap_or_default(),
        "spec.metadata",
        "metadata",
        &error,
    )?;
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

/// `spec.metadata` (or `spec.headers`) entries: each a `value`, a `secretKeyRef` or an
/// `envRef`. `noun` names them in messages (`metadata 'redisHost'`, `header 'Accept'`).
fn parse_items(
    items: Vec<RawMetadataItem>,
    at: &str,
    noun: &str,
    error: &dyn Fn(&str, String) -> ResourceError,
) -> Result<Vec<MetadataItem>, ResourceError> {
    let mut parsed = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let field = format!("{at}[{index}]");
        let source = match (item.value, item.secret_key_ref, item.env_ref) {
            (Some(value), None, None) => {
                MetadataSource::Value(scalar_to_string(&value).ok_or_else(|| {
                    error(
                        &format!("{field}.value"),
                        format!(
                            "{noun} '{}' must have a plain value (text, number or boolean)",
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
                        "{noun} '{}' has more than one of `value`, `secretKeyRef` and `envRef`",
                        item.name
                    ),
                ));
            }
        };
        parsed.push(MetadataItem {
            name: item.name,
            source,
        });
    }
    Ok(parsed)
}

#[derive(Deserialize)]
struct RawHttpEndpoint {
    metadata: RawObjectMeta,
    spec: RawHttpEndpointSpec,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHttpEndpointSpec {
    base_url: String,
    #[serde(default)]
    headers: Option<Vec<RawMetadataItem>>,
}

fn parse_http_endpoint(
    file: &Path,
    value: yaml_serde::Value,
) -> Result<HttpEndpoint, ResourceError> {
    let error = located(file, &value, "HTTPEndpoint", "an HTTP endpoint")?;
    let base_url = value
        .get("spec")
        .and_then(|spec| spec.get("baseUrl"))
        .and_then(|url| url.as_str());
    if base_url.is_none() {
        return Err(error(
            "spec.baseUrl",
            "an HTTP endpoint needs a `spec.baseUrl`, e.g. `https://api.example.com`".into(),
        ));
    }
    let raw: RawHttpEndpoint =
        yaml_serde::from_value(value).map_err(|e| error("spec", e.to_string()))?;
    let base_url = raw.spec.base_url.trim_end_matches('/').to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(error(
            "spec.baseUrl",
            format!("'{base_url}' must start with http:// or https://"),
        ));
    }
    let headers = parse_items(
        raw.spec.headers.unwrap_or_default(),
        "spec.headers",
        "header",
        &error,
    )?;
    Ok(HttpEndpoint {
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        base_url,
        headers,
        secret_store: raw.auth.and_then(|auth| auth.secret_store),
        scopes: raw.scopes.unwrap_or_default(),
        file: Some(file.to_owned()),
    })
}

#[cfg(test)]
mod tests;
