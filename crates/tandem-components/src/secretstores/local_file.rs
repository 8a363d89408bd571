//! `secretstores.local.file`: secrets from a JSON file, for development.
//!
//! Nested objects are flattened with `nestedSeparator` (`{"a": {"b": "x"}}` becomes
//! the secret `a:b`), unless `multiValued` is on: then each top-level key is one
//! secret and its (flattened) children are that secret's values.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tandem_spec::{ComponentMetadata, ResourceError};

use super::{Secret, SecretError, SecretStore};

pub const METADATA: &[&str] = &["secretsFile", "nestedSeparator", "multiValued"];

pub struct LocalFile {
    secrets: BTreeMap<String, Secret>,
}

impl LocalFile {
    pub async fn build(
        metadata: &ComponentMetadata,
    ) -> Result<Arc<dyn SecretStore>, ResourceError> {
        // Relative paths are relative to the sidecar's working directory, as in Dapr.
        let file = PathBuf::from(metadata.required("secretsFile")?);
        let separator = metadata.string_or("nestedSeparator", ":");
        let multi_valued = metadata.bool_or("multiValued", false)?;
        let text = tokio::fs::read_to_string(&file).await.map_err(|error| {
            let cwd = std::env::current_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default();
            metadata.field_error(
                "secretsFile",
                format!(
                    "cannot read '{}' (relative to {cwd}): {error}",
                    file.display()
                ),
            )
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|error| {
            metadata.field_error(
                "secretsFile",
                format!("'{}' is not valid JSON: {error}", file.display()),
            )
        })?;
        let Value::Object(top) = json else {
            return Err(metadata.field_error(
                "secretsFile",
                format!("'{}' must hold a JSON object", file.display()),
            ));
        };
        let mut secrets = BTreeMap::new();
        for (name, value) in top {
            if multi_valued && let Value::Object(children) = &value {
                let mut values = BTreeMap::new();
                for (child, value) in children {
                    flatten(child, value, &separator, &mut values);
                }
                secrets.insert(name, values);
            } else {
                let mut flat = BTreeMap::new();
                flatten(&name, &value, &separator, &mut flat);
                for (name, value) in flat {
                    secrets.insert(name.clone(), BTreeMap::from([(name, value)]));
                }
            }
        }
        Ok(Arc::new(Self { secrets }))
    }
}

fn flatten(prefix: &str, value: &Value, separator: &str, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(children) => {
            for (child, value) in children {
                flatten(
                    &format!("{prefix}{separator}{child}"),
                    value,
                    separator,
                    out,
                );
            }
        }
        Value::String(text) => {
            out.insert(prefix.to_owned(), text.clone());
        }
        Value::Null => {
            out.insert(prefix.to_owned(), String::new());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

#[async_trait]
impl SecretStore for LocalFile {
    async fn get(&self, name: &str, _: &HashMap<String, String>) -> Result<Secret, SecretError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))
    }

    async fn bulk(
        &self,
        _: &HashMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(self.secrets.clone())
    }
}
