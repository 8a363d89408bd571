//! Reading resources paths: every `*.yaml`/`*.yml` file, every document in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::component::Component;
use crate::error::ResourceError;
use crate::http_endpoint::HttpEndpoint;
use crate::resiliency::Resiliency;
use crate::resource::{self, Kind, Resource};
use crate::subscription::Subscription;

/// Everything a resources path declares that this app may use.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub components: Vec<Component>,
    pub http_endpoints: Vec<HttpEndpoint>,
    pub resiliencies: Vec<Resiliency>,
    /// Declarative subscriptions, in the order they are written (files by name, then
    /// documents in file order): for one topic, the first one wins.
    pub subscriptions: Vec<Subscription>,
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
        let text = resource::read_file(&file)?;
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
        for subscription in found.subscriptions {
            let name = subscription.describe();
            if options.admits(
                &name,
                &file,
                &subscription.scopes,
                subscription.namespace.as_deref(),
            ) {
                unique(&mut seen, "subscription", &subscription.name, &file, &name)?;
                loaded.subscriptions.push(subscription);
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

/// Parses every document of one file that a resources path may hold.
pub(crate) fn parse_file(file: &Path, text: &str) -> Result<Resources, ResourceError> {
    let mut found = Resources::default();
    let kinds = [
        Kind::Component,
        Kind::HttpEndpoint,
        Kind::Resiliency,
        Kind::Subscription,
    ];
    for resource in resource::parse_file(file, text, &kinds)? {
        match resource {
            Resource::Component(component) => found.components.push(component),
            Resource::HttpEndpoint(endpoint) => found.http_endpoints.push(endpoint),
            Resource::Resiliency(resiliency) => found.resiliencies.push(resiliency),
            Resource::Subscription(subscription) => found.subscriptions.push(subscription),
            // Read from `--config`, as in Dapr; not asked for above.
            Resource::Configuration(_) => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
