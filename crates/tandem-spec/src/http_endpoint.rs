//! `kind: HTTPEndpoint`: an outside HTTP service apps call through their sidecar by
//! name (`/v1.0/invoke/<name>/method/...`), with headers added to every call.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::component::{AuthFile, MetadataItem, MetadataItemFile, metadata_items};
use crate::error::ResourceError;
use crate::resource::{Kind, ObjectMetaFile, Origin};
use crate::yaml::Node;

/// An HTTP endpoint as written in its resource file, before its headers are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpEndpoint {
    /// `metadata.name`: what apps invoke.
    pub name: String,
    pub namespace: Option<String>,
    /// `spec.baseUrl`, e.g. `https://api.github.com`.
    pub base_url: String,
    /// `spec.headers`: `value`, `secretKeyRef` or `envRef`, like component metadata.
    pub headers: Vec<MetadataItem>,
    /// `auth.secretStore`, for the headers' `secretKeyRef`s.
    pub secret_store: Option<String>,
    pub scopes: Vec<String>,
    pub file: Option<PathBuf>,
}

impl HttpEndpoint {
    /// How errors name this resource: `HTTPEndpoint 'github'`.
    pub fn describe(&self) -> String {
        format!("HTTPEndpoint '{}'", self.name)
    }

    /// Whether app `app_id` may use this endpoint (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }

    /// The same endpoint seen as a component, so its headers resolve (secrets,
    /// environment, templates) exactly the way component metadata does.
    pub fn as_component(&self) -> crate::Component {
        crate::Component {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            kind: "HTTPEndpoint".into(),
            version: "v1alpha1".into(),
            metadata: self.headers.clone(),
            secret_store: self.secret_store.clone(),
            scopes: self.scopes.clone(),
            ignore_errors: false,
            init_timeout: None,
            file: self.file.clone(),
        }
    }
}

// ---- The file format, as serde reads it. ----

/// Parses one `kind: HTTPEndpoint` document.
pub(crate) fn from_node(file: &Path, node: &Node) -> Result<HttpEndpoint, ResourceError> {
    let origin = Origin::of(file, Kind::HttpEndpoint, node);
    let raw: HttpEndpointFile = origin.read(node)?;
    let name = raw.metadata.required_name(&origin, "an HTTP endpoint")?;
    let spec = raw.metadata.required_spec(
        raw.spec,
        &origin,
        "an HTTP endpoint needs a `spec` with a `baseUrl`",
    )?;
    let Some(base_url) = spec.base_url.filter(|url| !url.trim().is_empty()) else {
        return Err(origin.error(
            "spec.baseUrl",
            "an HTTP endpoint needs a `spec.baseUrl`, e.g. `https://api.example.com`",
        ));
    };
    let base_url = base_url.trim().trim_end_matches('/').to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(origin.error(
            "spec.baseUrl",
            format!("'{base_url}' must start with http:// or https://"),
        ));
    }
    Ok(HttpEndpoint {
        name,
        namespace: raw.metadata.namespace,
        base_url,
        headers: metadata_items(spec.headers, "spec.headers", "header", &origin)?,
        secret_store: raw.auth.and_then(|auth| auth.secret_store),
        scopes: raw.scopes,
        file: Some(file.to_owned()),
    })
}

/// An HTTPEndpoint document. Fields tandem does not use (`spec.clientTLS`, ...) are
/// accepted.
#[derive(Deserialize)]
struct HttpEndpointFile {
    #[serde(default)]
    metadata: ObjectMetaFile,
    #[serde(default)]
    spec: Option<HttpEndpointSpecFile>,
    #[serde(default)]
    auth: Option<AuthFile>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a mapping with `baseUrl` and `headers`"
)]
struct HttpEndpointSpecFile {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    headers: Vec<MetadataItemFile>,
}
