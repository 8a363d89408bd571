//! `kind: HTTPEndpoint`: an outside HTTP service apps call through their sidecar by
//! name (`/v1.0/invoke/<name>/method/...`), with headers added to every call.

use std::path::PathBuf;

use crate::component::MetadataItem;

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
            file: self.file.clone(),
        }
    }
}
