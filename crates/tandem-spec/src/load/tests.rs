use std::path::PathBuf;

use super::*;
use crate::{ComponentMetadata, SecretLookup, Templates};

const SEED_PUBSUB: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: order_pub_sub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPass
    secretKeyRef:
      name: redisPass
      key: redisPass
auth:
  secretStore: local-secret-store
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn options(app_id: &str) -> LoadOptions {
    LoadOptions {
        app_id: app_id.into(),
        namespace: None,
    }
}

struct FixedSecrets;

impl SecretLookup for FixedSecrets {
    async fn lookup(
        &self,
        store: &str,
        name: &str,
        key: &str,
    ) -> Result<String, crate::SecretLookupError> {
        match (store, name, key) {
            ("local-secret-store", "redisPass", "redisPass") => Ok("just a password".into()),
            _ => Err(format!("secret '{name}' not found").into()),
        }
    }
}

fn templates() -> Templates {
    Templates {
        app_id: "order-processor".into(),
        namespace: "default".into(),
    }
}

async fn resolve(component: &Component) -> Result<ComponentMetadata, ResourceError> {
    component.resolve(&templates(), &FixedSecrets).await
}

#[tokio::test]
async fn the_seed_pubsub_file_loads_and_its_secret_resolves() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "pubsub.yaml", SEED_PUBSUB);
    write(&dir, "secrets.json", "{ not yaml at all");
    let components = load(&[dir.path().into()], &options("order-processor"))
        .unwrap()
        .components;
    assert_eq!(components.len(), 1);
    let pubsub = &components[0];
    assert_eq!(pubsub.name, "order_pub_sub");
    assert_eq!(pubsub.kind, "pubsub.redis");
    assert_eq!(pubsub.version, "v1");
    assert_eq!(pubsub.secret_store.as_deref(), Some("local-secret-store"));
    let metadata = resolve(pubsub).await.unwrap();
    assert_eq!(metadata.get("redisHost"), Some("localhost:6379"));
    assert_eq!(metadata.get("REDISPASS"), Some("just a password"));
}

#[test]
fn unknown_metadata_names_suggest_the_closest_known_one() {
    let component = parse_file("p.yaml".as_ref(), SEED_PUBSUB)
        .unwrap()
        .components
        .remove(0);
    let metadata =
        ComponentMetadata::new(component, [("redisPass".to_owned(), "x".to_owned())].into());
    let warnings = metadata.warn_unknown(&["redisHost", "redisPassword", "redisUsername"]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("p.yaml"), "{}", warnings[0]);
    assert!(warnings[0].contains("'redisPass'"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("did you mean 'redisPassword'?"),
        "{}",
        warnings[0]
    );
}

#[test]
fn several_documents_in_one_file_and_other_kinds_are_skipped() {
    let text = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: one}
spec: {type: pubsub.in-memory, version: v1}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: sub}
spec: {topic: orders, routes: {default: /orders}, pubsubname: one}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: two}
spec:
  type: secretstores.local.env
  version: v1
---
"#;
    let components = parse_file("multi.yaml".as_ref(), text).unwrap().components;
    let names: Vec<_> = components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn a_yaml_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\nspec:\n  type: [pubsub.redis\n";
    let file = write(&dir, "broken.yaml", text);
    let error = load(&[dir.path().into()], &options("app")).unwrap_err();
    assert_eq!(error.file.as_deref(), Some(file.as_path()));
    assert!(error.line.is_some());
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:", file.display())),
        "{message}"
    );
    assert!(message.contains("YAML syntax error"), "{message}");
}

#[test]
fn spec_indented_under_metadata_is_explained() {
    // The seed's Azure example indents `spec` under `metadata`.
    let text = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: order_pub_sub
  spec:
    type: pubsub.azure.servicebus
    version: v1
"#;
    let error = parse_file("pubsub.yaml".as_ref(), text).unwrap_err();
    let message = error.to_string();
    assert_eq!(
        message,
        "pubsub.yaml: Component 'order_pub_sub': field `spec`: a component needs a `spec`: it is indented under `metadata`, but `spec` must be a top-level key beside `metadata`"
    );
}

#[test]
fn missing_type_and_missing_name_are_errors() {
    let no_type = "kind: Component\nmetadata: {name: x}\nspec: {version: v1}\n";
    let error = parse_file("a.yaml".as_ref(), no_type).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("spec.type"));
    assert!(error.to_string().contains("Component 'x'"));

    let no_name = "kind: Component\nmetadata: {}\nspec: {type: pubsub.redis}\n";
    let error = parse_file("b.yaml".as_ref(), no_name).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("metadata.name"));
}

#[test]
fn a_document_without_kind_is_an_error() {
    let error = parse_file("c.yaml".as_ref(), "services:\n  web: {}\n").unwrap_err();
    assert_eq!(error.field.as_deref(), Some("kind"));
}

#[test]
fn scopes_and_namespaces_filter_components() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        "scoped.yaml",
        "kind: Component\nmetadata: {name: scoped}\nspec: {type: pubsub.in-memory}\nscopes: [billing]\n",
    );
    write(
        &dir,
        "other-ns.yaml",
        "kind: Component\nmetadata: {name: elsewhere, namespace: prod}\nspec: {type: pubsub.in-memory}\n",
    );
    let for_orders = load(&[dir.path().into()], &options("orders"))
        .unwrap()
        .components;
    assert_eq!(
        for_orders
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["elsewhere"]
    );

    let for_billing_in_dev = load(
        &[dir.path().into()],
        &LoadOptions {
            app_id: "billing".into(),
            namespace: Some("dev".into()),
        },
    )
    .unwrap()
    .components;
    assert_eq!(
        for_billing_in_dev
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["scoped"]
    );
}

#[test]
fn two_components_with_one_name_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = "kind: Component\nmetadata: {name: same}\nspec: {type: pubsub.in-memory}\n";
    write(&dir, "a.yaml", text);
    write(&dir, "b.yml", text);
    let error = load(&[dir.path().into()], &options("app")).unwrap_err();
    assert!(error.to_string().contains("already defined in"), "{error}");
    assert!(error.file.unwrap().ends_with("b.yml"));
}

#[tokio::test]
async fn an_unresolvable_secret_names_the_field_and_store() {
    let text = r#"
kind: Component
metadata: {name: cache}
spec:
  type: pubsub.redis
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    secretKeyRef: {name: missing, key: missing}
auth: {secretStore: local-secret-store}
"#;
    let component = parse_file("p.yaml".as_ref(), text)
        .unwrap()
        .components
        .remove(0);
    let error = resolve(&component).await.unwrap_err();
    assert_eq!(
        error.field.as_deref(),
        Some("spec.metadata[1].secretKeyRef")
    );
    let message = error.to_string();
    assert!(
        message.contains("secret store 'local-secret-store'"),
        "{message}"
    );
    assert!(message.contains("secret 'missing' not found"), "{message}");
}

#[tokio::test]
async fn a_secret_reference_without_a_secret_store_is_an_error() {
    let text = "kind: Component\nmetadata: {name: c}\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisPassword\n    secretKeyRef: {name: pw}\n";
    let component = parse_file("p.yaml".as_ref(), text)
        .unwrap()
        .components
        .remove(0);
    let error = resolve(&component).await.unwrap_err();
    assert!(
        error.to_string().contains("no `auth.secretStore`"),
        "{error}"
    );
}

#[tokio::test]
async fn env_refs_templates_and_non_string_values() {
    // Setting a variable needs `unsafe` in edition 2024; PATH is always set.
    let variable = "PATH";
    let expected = std::env::var(variable).unwrap();
    let text = format!(
        "kind: Component\nmetadata: {{name: c}}\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: fromEnv\n    envRef: {variable}\n  - name: consumerID\n    value: \"{{appID}}-{{namespace}}\"\n  - name: instance\n    value: \"{{uuid}}\"\n  - name: concurrency\n    value: 10\n  - name: enableTLS\n    value: false\n"
    );
    let component = parse_file("p.yaml".as_ref(), &text)
        .unwrap()
        .components
        .remove(0);
    let metadata = resolve(&component).await.unwrap();
    assert_eq!(metadata.get("fromEnv"), Some(expected.as_str()));
    assert_eq!(metadata.get("consumerID"), Some("order-processor-default"));
    assert_eq!(metadata.get("instance").unwrap().len(), 36);
    assert_eq!(metadata.number_or("concurrency", 1u32).unwrap(), 10);
    assert!(!metadata.bool_or("enableTLS", true).unwrap());
    let error = metadata.duration_or("concurrency", std::time::Duration::ZERO);
    assert!(error.is_ok(), "a bare number is milliseconds");

    let missing = "kind: Component\nmetadata: {name: c}\nspec:\n  type: x\n  metadata:\n  - name: a\n    envRef: TANDEM_SPEC_TEST_SURELY_UNSET\n";
    let component = parse_file("p.yaml".as_ref(), missing)
        .unwrap()
        .components
        .remove(0);
    let error = resolve(&component).await.unwrap_err();
    assert!(
        error.to_string().contains("TANDEM_SPEC_TEST_SURELY_UNSET"),
        "{error}"
    );
}

#[test]
fn typed_getters_name_the_field_on_bad_values() {
    let text = "kind: Component\nmetadata: {name: c}\nspec:\n  type: x\n  metadata:\n  - name: a\n    value: 1\n  - name: processingTimeout\n    value: soon\n";
    let component = parse_file("p.yaml".as_ref(), text)
        .unwrap()
        .components
        .remove(0);
    let metadata = ComponentMetadata::new(
        component,
        [("processingTimeout".to_owned(), "soon".to_owned())].into(),
    );
    let error = metadata
        .duration_or("processingTimeout", std::time::Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        error.field.as_deref(),
        Some("spec.metadata[1] (processingTimeout)")
    );
    assert!(error.to_string().contains("'soon' is not a duration"));
}

#[test]
fn http_endpoints_are_read_with_their_headers() {
    let text = r#"
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: github
spec:
  baseUrl: https://api.github.com/
  headers:
  - name: Accept
    value: application/vnd.github+json
  - name: Authorization
    secretKeyRef: {name: github-token, key: token}
auth:
  secretStore: vault
"#;
    let endpoint = parse_file("github.yaml".as_ref(), text)
        .unwrap()
        .http_endpoints
        .remove(0);
    assert_eq!(endpoint.name, "github");
    assert_eq!(endpoint.base_url, "https://api.github.com");
    assert_eq!(endpoint.secret_store.as_deref(), Some("vault"));
    assert_eq!(endpoint.headers.len(), 2);
    assert_eq!(
        endpoint.headers[1].source,
        crate::MetadataSource::Secret {
            name: "github-token".into(),
            key: "token".into()
        }
    );

    let missing = "kind: HTTPEndpoint\nmetadata: {name: x}\nspec: {}\n";
    let error = parse_file("x.yaml".as_ref(), missing).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("spec.baseUrl"));
    assert!(error.to_string().contains("HTTPEndpoint 'x'"), "{error}");
    let bad = "kind: HTTPEndpoint\nmetadata: {name: x}\nspec: {baseUrl: ftp://host}\n";
    let error = parse_file("x.yaml".as_ref(), bad).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("must start with http:// or https://"),
        "{error}"
    );
}

/// A resource file must never panic the sidecar: durations and numbers far out of
/// range are errors naming the file, the resource and the field.
#[test]
fn out_of_range_values_in_a_file_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "timeouts:\n      general: 99999999999999999999h\n",
            "spec.policies.timeouts.general",
        ),
        (
            "retries:\n      forever:\n        maxRetries: 99999999999999999999\n",
            "spec.policies.retries.forever.maxRetries",
        ),
        (
            "retries:\n      slow:\n        duration: 99999999999999999999\n",
            "spec.policies.retries.slow.duration",
        ),
        (
            "circuitBreakers:\n      cb:\n        maxRequests: -1\n",
            "spec.policies.circuitBreakers.cb.maxRequests",
        ),
        (
            "circuitBreakers:\n      cb:\n        interval: 9999999999999999h9999999999999999m\n",
            "spec.policies.circuitBreakers.cb.interval",
        ),
        (
            "caches:\n      answers:\n        ttl: 99999999999999999999.5s\n",
            "spec.policies.caches.answers.ttl",
        ),
    ];
    for (policies, field) in cases {
        let text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: extremes\nspec:\n  policies:\n    {policies}"
        );
        let file = write(&dir, "resiliency.yaml", &text);
        let error = load(std::slice::from_ref(&file), &options("app")).unwrap_err();
        assert_eq!(error.file.as_deref(), Some(file.as_path()), "{error}");
        assert_eq!(
            error.resource.as_deref(),
            Some("Resiliency 'extremes'"),
            "{error}"
        );
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
    }
}

#[test]
fn an_out_of_range_metadata_duration_is_an_error_not_a_panic() {
    let text = "kind: Component\nmetadata: {name: c}\nspec:\n  type: x\n  metadata:\n  - name: processingTimeout\n    value: 99999999999999999999h\n";
    let component = parse_file("p.yaml".as_ref(), text)
        .unwrap()
        .components
        .remove(0);
    let metadata = ComponentMetadata::new(
        component,
        [(
            "processingTimeout".to_owned(),
            "99999999999999999999h".to_owned(),
        )]
        .into(),
    );
    let error = metadata
        .duration_or("processingTimeout", std::time::Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        error.field.as_deref(),
        Some("spec.metadata[0] (processingTimeout)")
    );
    assert!(error.to_string().contains("p.yaml"), "{error}");
    assert!(
        error.message.contains("longer than the longest duration"),
        "{error}"
    );

    let metadata = ComponentMetadata::new(
        metadata.component().clone(),
        [("maxLen".to_owned(), "99999999999999999999".to_owned())].into(),
    );
    let error = metadata.number_or("maxLen", 0u32).unwrap_err();
    assert_eq!(
        error.message,
        "'99999999999999999999' is not a valid number: number too large to fit in target type"
    );
}
