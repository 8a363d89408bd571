//! Secret stores: nested JSON flattening, multi-valued secrets, missing files and keys.

use std::collections::{BTreeMap, HashMap};

use tandem_components::secretstores::{self, SecretError};
use tandem_spec::{Component, ComponentMetadata};

async fn local_file(
    values: &[(&str, &str)],
) -> Result<std::sync::Arc<dyn secretstores::SecretStore>, String> {
    let component = Component {
        file: Some("components/secrets.yaml".into()),
        ..Component::new("local-secret-store", "secretstores.local.file")
    };
    let values = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    secretstores::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

const SECRETS: &str = r#"{
    "redisPass": "just a password",
    "connectionStrings": {"azure": "Endpoint=sb://x", "aws": {"key": "k"}},
    "port": 6379
}"#;

#[tokio::test]
async fn nested_secrets_are_flattened_with_the_separator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, SECRETS).unwrap();
    let store = local_file(&[("secretsFile", file.to_str().unwrap())])
        .await
        .unwrap();
    let none = HashMap::new();
    assert_eq!(
        store.get("redisPass", &none).await.unwrap(),
        BTreeMap::from([("redisPass".to_owned(), "just a password".to_owned())])
    );
    assert_eq!(
        store.get("connectionStrings:azure", &none).await.unwrap()["connectionStrings:azure"],
        "Endpoint=sb://x"
    );
    assert_eq!(
        store.get("connectionStrings:aws:key", &none).await.unwrap()["connectionStrings:aws:key"],
        "k"
    );
    assert_eq!(store.get("port", &none).await.unwrap()["port"], "6379");
    assert!(matches!(
        store.get("nope", &none).await,
        Err(SecretError::NotFound(_))
    ));
    assert_eq!(store.bulk(&none).await.unwrap().len(), 4);

    let dotted = local_file(&[
        ("secretsFile", file.to_str().unwrap()),
        ("nestedSeparator", "."),
    ])
    .await
    .unwrap();
    assert!(dotted.get("connectionStrings.azure", &none).await.is_ok());
}

#[tokio::test]
async fn multi_valued_secrets_keep_their_children_together() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, SECRETS).unwrap();
    let store = local_file(&[
        ("secretsFile", file.to_str().unwrap()),
        ("multiValued", "true"),
    ])
    .await
    .unwrap();
    let secret = store
        .get("connectionStrings", &HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        secret,
        BTreeMap::from([
            ("aws:key".to_owned(), "k".to_owned()),
            ("azure".to_owned(), "Endpoint=sb://x".to_owned())
        ])
    );
}

#[tokio::test]
async fn a_missing_or_broken_file_names_the_field() {
    let error = local_file(&[("secretsFile", "/nonexistent/secrets.json")])
        .await
        .err()
        .unwrap();
    assert!(error.starts_with("components/secrets.yaml: Component 'local-secret-store': field `spec.metadata (secretsFile)`"), "{error}");
    assert!(
        error.contains("cannot read '/nonexistent/secrets.json'"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, "{ nope").unwrap();
    let error = local_file(&[("secretsFile", file.to_str().unwrap())])
        .await
        .err()
        .unwrap();
    assert!(error.contains("is not valid JSON"), "{error}");

    let error = local_file(&[]).await.err().unwrap();
    assert!(error.contains("is required but not set"), "{error}");
}
