//! `kind: Component`: one configured instance of a building block.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ResourceError;
use crate::metadata::ComponentMetadata;
use crate::resource::{Kind, ObjectMetaFile, Origin};
use crate::yaml::Node;
use crate::yaml::fields::Scalar;

/// A component as written in its resource file, before its metadata is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// `metadata.name`: what apps call it (`pubsubname`, `storeName`).
    pub name: String,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// `spec.type`, e.g. `pubsub.redis`: picks the implementation.
    pub kind: String,
    /// `spec.version`, e.g. `v1`.
    pub version: String,
    /// `spec.metadata`, in file order.
    pub metadata: Vec<MetadataItem>,
    /// `auth.secretStore`: where `secretKeyRef`s are looked up.
    pub secret_store: Option<String>,
    /// `scopes`: the app ids allowed to load it; empty means every app.
    pub scopes: Vec<String>,
    /// The file it came from (absent for built-in components).
    pub file: Option<PathBuf>,
    /// `spec.ignoreErrors`: a component that cannot initialise is left out with a
    /// warning instead of stopping the sidecar.
    pub ignore_errors: bool,
    /// `spec.initTimeout`: how long initialising it may take; `None` for the
    /// component's own bounds.
    pub init_timeout: Option<std::time::Duration>,
}

/// One `spec.metadata` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataItem {
    pub name: String,
    pub source: MetadataSource,
}

/// Where a metadata entry's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataSource {
    /// `value:` — written in the file.
    Value(String),
    /// `secretKeyRef: {name, key}` — read from the component's secret store.
    Secret { name: String, key: String },
    /// `envRef:` — read from the sidecar's environment.
    Env(String),
}

/// What the `{appID}`, `{namespace}` and `{uuid}` templates stand for.
#[derive(Debug, Clone)]
pub struct Templates {
    pub app_id: String,
    pub namespace: String,
}

impl Templates {
    fn apply(&self, value: &str) -> String {
        if !value.contains('{') {
            return value.to_owned();
        }
        let mut value = value
            .replace("{appID}", &self.app_id)
            .replace("{namespace}", &self.namespace);
        // Each `{uuid}` gets a fresh one, as in Dapr.
        while value.contains("{uuid}") {
            value = value.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
        }
        value
    }
}

/// Reads secrets for `secretKeyRef`s: implemented by the runtime over its secret stores.
/// Why a `secretKeyRef` could not be resolved; its message is shown to the user, so it
/// never holds a secret's value.
pub type SecretLookupError = Box<dyn std::error::Error + Send + Sync>;

pub trait SecretLookup {
    /// The value of `key` inside secret `name` of store `store`, or why it has none.
    fn lookup(
        &self,
        store: &str,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<String, SecretLookupError>> + Send;
}

impl Component {
    /// A component of type `kind` (version `v1`) declared in code rather than in a
    /// file, with no metadata yet: the embedded defaults, and tests.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: None,
            kind: kind.into(),
            version: "v1".into(),
            metadata: Vec::new(),
            secret_store: None,
            scopes: Vec::new(),
            file: None,
            ignore_errors: false,
            init_timeout: None,
        }
    }

    /// How errors name this resource: `Component 'order_pub_sub'`.
    pub fn describe(&self) -> String {
        format!("Component '{}'", self.name)
    }

    /// An error located at this component (and its file).
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> ResourceError {
        let mut error = ResourceError::new(message).in_resource(self.describe());
        if let Some(file) = &self.file {
            error = error.in_file(file.clone());
        }
        if let Some(field) = field {
            error = error.at_field(field);
        }
        error
    }

    /// Whether app `app_id` may load this component (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }

    /// Turns `spec.metadata` into plain values.
    pub async fn resolve(
        &self,
        templates: &Templates,
        secrets: &impl SecretLookup,
    ) -> Result<ComponentMetadata, ResourceError> {
        let mut values = BTreeMap::new();
        for (index, item) in self.metadata.iter().enumerate() {
            let value = match &item.source {
                MetadataSource::Value(value) => value.clone(),
                MetadataSource::Env(variable) => std::env::var(variable).map_err(|_| {
                    self.error(
                        Some(&format!("spec.metadata[{index}].envRef")),
                        format!(
                            "metadata '{}' reads environment variable '{variable}', which is not set",
                            item.name
                        ),
                    )
                })?,
                MetadataSource::Secret { name, key } => {
                    let field = format!("spec.metadata[{index}].secretKeyRef");
                    let Some(store) = &self.secret_store else {
                        return Err(self.error(
                            Some(&field),
                            format!(
                                "metadata '{}' references secret '{name}' but the component has no `auth.secretStore` to read it from",
                                item.name
                            ),
                        ));
                    };
                    secrets.lookup(store, name, key).await.map_err(|why| {
                        self.error(
                            Some(&field),
                            format!(
                                "cannot resolve secret '{name}' (key '{key}') for metadata '{}' from secret store '{store}': {why}",
                                item.name
                            ),
                        )
                    })?
                }
            };
            values.insert(item.name.clone(), templates.apply(&value));
        }
        Ok(ComponentMetadata::new(self.clone(), values))
    }
}

// ---- The file format, as serde reads it. ----

/// Parses one `kind: Component` document.
pub(crate) fn from_node(file: &Path, node: &Node) -> Result<Component, ResourceError> {
    let origin = Origin::of(file, Kind::Component, node);
    let raw: ComponentFile = origin.read(node)?;
    let name = raw.metadata.required_name(&origin, "a component")?;
    let spec = raw
        .metadata
        .required_spec(raw.spec, &origin, "a component needs a `spec`")?;
    let Some(kind) = spec.kind.filter(|kind| !kind.trim().is_empty()) else {
        return Err(origin.error(
            "spec.type",
            "a component needs a `spec.type`, e.g. `pubsub.redis`",
        ));
    };
    let version = match spec.version {
        None => "v1".to_owned(),
        Some(version) => version
            .into_text()
            .ok_or_else(|| origin.error("spec.version", "must be a string such as `v1`"))?,
    };
    let ignore_errors = match spec.ignore_errors.map(Scalar::into_text) {
        None => false,
        Some(Some(text)) if text.eq_ignore_ascii_case("true") => true,
        Some(Some(text)) if text.eq_ignore_ascii_case("false") || text.is_empty() => false,
        Some(_) => {
            return Err(origin.error("spec.ignoreErrors", "must be true or false"));
        }
    };
    let init_timeout = match spec.init_timeout.map(Scalar::into_text) {
        None => None,
        Some(Some(text)) if text.trim().is_empty() => None,
        Some(Some(text)) => {
            let timeout = crate::parse_duration(text.trim()).map_err(|why| {
                origin.error(
                    "spec.initTimeout",
                    format!("`{text}` is not a duration such as `5s`: {why}"),
                )
            })?;
            (!timeout.is_zero()).then_some(timeout)
        }
        Some(None) => {
            return Err(origin.error("spec.initTimeout", "must be a duration such as `5s`"));
        }
    };
    Ok(Component {
        name,
        namespace: raw.metadata.namespace,
        kind,
        version,
        metadata: metadata_items(spec.metadata, "spec.metadata", "metadata", &origin)?,
        secret_store: raw.auth.and_then(|auth| auth.secret_store),
        scopes: raw.scopes,
        file: Some(file.to_owned()),
        ignore_errors,
        init_timeout,
    })
}

/// `spec.metadata` (or an HTTP endpoint's `spec.headers`): each entry a `value`, a
/// `secretKeyRef` or an `envRef`. `noun` names them in messages (`metadata
/// 'redisHost'`, `header 'Accept'`).
pub(crate) fn metadata_items(
    items: Vec<MetadataItemFile>,
    at: &str,
    noun: &str,
    origin: &Origin,
) -> Result<Vec<MetadataItem>, ResourceError> {
    let mut parsed = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = format!("{at}[{index}]");
        let source = match (item.value, item.secret_key_ref, item.env_ref) {
            (Some(value), None, None) => {
                MetadataSource::Value(value.into_text().ok_or_else(|| {
                    origin.error(
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
                return Err(origin.error(
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

/// A Component document. Fields tandem does not use are accepted, so Dapr's files load
/// unchanged.
#[derive(Deserialize)]
struct ComponentFile {
    #[serde(default)]
    metadata: ObjectMetaFile,
    #[serde(default)]
    spec: Option<ComponentSpecFile>,
    #[serde(default)]
    auth: Option<AuthFile>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a mapping with `type`, `version` and `metadata`")]
struct ComponentSpecFile {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Text as written; a list or mapping is refused with a message.
    #[serde(default)]
    version: Option<Scalar>,
    #[serde(default)]
    metadata: Vec<MetadataItemFile>,
    #[serde(default, rename = "ignoreErrors")]
    ignore_errors: Option<Scalar>,
    #[serde(default, rename = "initTimeout")]
    init_timeout: Option<Scalar>,
}

/// One `spec.metadata` entry (or `spec.headers` entry of an HTTP endpoint).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetadataItemFile {
    pub name: String,
    #[serde(default)]
    pub value: Option<Scalar>,
    #[serde(default)]
    pub secret_key_ref: Option<SecretKeyRefFile>,
    #[serde(default)]
    pub env_ref: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SecretKeyRefFile {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
}

/// `auth:` of a component or HTTP endpoint.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthFile {
    #[serde(default)]
    pub secret_store: Option<String>,
}
