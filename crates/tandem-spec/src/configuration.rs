//! `kind: Configuration`: the file `--config` names.
//!
//! tandem reads `spec.nameResolution` (which resolver finds other apps; the
//! `tandem-nameresolution` crate maps it). Dapr's other sections — `tracing`,
//! `metric`, `accessControl`, `features`, ... — are accepted so that a Dapr
//! Configuration file works unchanged, never an error; those that ask for something
//! tandem does not do are listed in [`Configuration::unused`] and logged once, when
//! [`load_configuration`] reads the file, so nobody believes them in force.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::ResourceError;
use crate::resource::{self, Kind, ObjectMetaFile, Origin, Resource};
use crate::suggest::closest;
use crate::yaml::Node;
use crate::yaml::fields::Scalar;

/// A Configuration resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// `metadata.name`, when given.
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The file it came from.
    pub file: Option<PathBuf>,
    /// `spec.nameResolution`, when given.
    pub name_resolution: Option<NameResolutionSpec>,
    /// `spec.secrets.scopes`: which secrets of each store the app may read.
    pub secret_scopes: Vec<SecretScope>,
    /// The sections of `spec` that ask for something tandem does not do, in name order.
    pub unused: Vec<UnusedSection>,
}

/// `spec.nameResolution`: the resolver, by Dapr's name, and its settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameResolutionSpec {
    /// `component`, as written (`mdns`, `kubernetes`, ...); `None` when absent.
    pub component: Option<String>,
    /// `version`, as written; `None` when absent.
    pub version: Option<String>,
    /// `configuration`: the resolver's settings by name.
    pub configuration: BTreeMap<String, Setting>,
}

/// One setting of `spec.nameResolution.configuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Text, a number or a boolean, as written.
    Text(String),
    /// Empty, a list or a mapping: nothing tandem's resolvers read, kept so that its
    /// name can still be reported.
    Other,
}

impl Setting {
    /// The setting's text, when it is a plain value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Setting::Text(text) => Some(text),
            Setting::Other => None,
        }
    }
}

/// One entry of `spec.secrets.scopes`: which secrets of the store `store_name` the app
/// may read. A store without an entry lets the app read every secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretScope {
    pub store_name: String,
    /// `defaultAccess`: `allow` (Dapr's default) or `deny`.
    pub default_allow: bool,
    /// `allowedSecrets`: when not empty, the only secrets the app may read.
    pub allowed_secrets: Vec<String>,
    /// `deniedSecrets`: secrets the app may not read.
    pub denied_secrets: Vec<String>,
}

impl SecretScope {
    /// Whether the app may read secret `key`, as Dapr decides: a non-empty
    /// `allowedSecrets` list alone decides; else a key in `deniedSecrets` is refused;
    /// else `defaultAccess` decides.
    pub fn allows(&self, key: &str) -> bool {
        if !self.allowed_secrets.is_empty() {
            return self.allowed_secrets.iter().any(|allowed| allowed == key);
        }
        if self.denied_secrets.iter().any(|denied| denied == key) {
            return false;
        }
        self.default_allow
    }
}

/// A section of `spec` that tandem accepts but does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedSection {
    /// The section's name, e.g. `accessControl`.
    pub name: String,
    /// What that means for the app, e.g. `tandem exports no traces`.
    pub consequence: String,
}

impl Configuration {
    /// How errors name this resource: `Configuration 'appconfig'`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("Configuration '{name}'"),
            None => "Configuration".to_owned(),
        }
    }

    /// An error about `field` of this resource (and its file).
    pub fn error(&self, field: &str, message: impl Into<String>) -> ResourceError {
        let mut error = ResourceError::new(message)
            .in_resource(self.describe())
            .at_field(field);
        if let Some(file) = &self.file {
            error = error.in_file(file.clone());
        }
        error
    }
}

/// Reads the Configuration resource in `file` (the `--config` flag) and logs, once,
/// the sections tandem does not apply.
pub fn load_configuration(file: &Path) -> Result<Configuration, ResourceError> {
    let text = resource::read_file(file)?;
    let configuration = parse_configuration(file, &text)?;
    for section in &configuration.unused {
        tracing::warn!(
            file = %file.display(),
            "{}: `spec.{}` is not used by tandem: {}",
            configuration.describe(),
            section.name,
            section.consequence
        );
    }
    Ok(configuration)
}

/// Like [`load_configuration`], with the file's text already read and nothing
/// logged. The first `kind: Configuration` document counts, as in Dapr; documents of
/// other kinds are skipped.
pub fn parse_configuration(file: &Path, text: &str) -> Result<Configuration, ResourceError> {
    let found = resource::parse_file(file, text, &[Kind::Configuration])?;
    let mut configurations = found.into_iter().filter_map(|resource| match resource {
        Resource::Configuration(configuration) => Some(configuration),
        _ => None,
    });
    let first = configurations.next().ok_or_else(|| {
        ResourceError::new("no `kind: Configuration` resource in this file")
            .in_file(file)
            .at_field("kind")
    })?;
    if configurations.next().is_some() {
        tracing::warn!(
            file = %file.display(),
            "this file holds more than one Configuration; only the first, {}, is used",
            first.describe()
        );
    }
    Ok(first)
}

/// Dapr's sections of a Configuration's `spec` that tandem does not apply, and what
/// that means.
const NOT_APPLIED: [(&str, &str); 14] = [
    (
        "accessControl",
        "tandem does not enforce service invocation access control: every app may call every method",
    ),
    (
        "api",
        "tandem does not restrict which of its APIs an app may call",
    ),
    (
        "apiLogging",
        "API calls are logged with the --enable-api-logging flag instead",
    ),
    (
        "appHttpPipeline",
        "tandem runs no middleware on calls into the app",
    ),
    ("components", "tandem does not apply a component deny list"),
    ("features", "tandem has no preview features to switch on"),
    (
        "httpPipeline",
        "tandem runs no middleware on calls to its HTTP API",
    ),
    (
        "logging",
        "API calls are logged with the --enable-api-logging flag instead",
    ),
    ("metric", "tandem does not serve Dapr's metrics"),
    ("metrics", "tandem does not serve Dapr's metrics"),
    (
        "mtls",
        "tandem does not use Dapr's Sentry certificates between sidecars",
    ),
    ("tracing", "tandem records and exports no traces"),
    ("wasm", "tandem runs no WebAssembly modules"),
    ("workflow", "tandem has no workflows yet"),
];

/// Parses one `kind: Configuration` document.
pub(crate) fn from_node(file: &Path, node: &Node) -> Result<Configuration, ResourceError> {
    let origin = Origin::of(file, Kind::Configuration, node);
    let raw: ConfigurationFile = origin.read(node)?;
    let spec = raw.spec.unwrap_or_default();
    let name_resolution = spec
        .name_resolution
        .map(|section| section.check(&origin))
        .transpose()?;
    let secret_scopes = match spec.secrets {
        Some(secrets) => secrets.check(&origin)?,
        None => Vec::new(),
    };
    let unused = spec
        .sections
        .into_iter()
        .filter(|(_, section)| section.asks_for_something)
        .map(|(name, _)| {
            let consequence = match NOT_APPLIED.iter().find(|(known, _)| *known == name) {
                Some((_, consequence)) => (*consequence).to_owned(),
                None => {
                    let known = NOT_APPLIED
                        .iter()
                        .map(|(known, _)| *known)
                        .chain(["nameResolution", "secrets"]);
                    match closest(&name, known) {
                        Some(close) => {
                            format!("it is not a section of Dapr's Configuration; did you mean `{close}`?")
                        }
                        None => "it is not a section of Dapr's Configuration".to_owned(),
                    }
                }
            };
            UnusedSection { name, consequence }
        })
        .collect();
    Ok(Configuration {
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        file: Some(file.to_owned()),
        name_resolution,
        secret_scopes,
        unused,
    })
}

// ---- The file format, as serde reads it. ----

#[derive(Deserialize)]
struct ConfigurationFile {
    #[serde(default)]
    metadata: ObjectMetaFile,
    #[serde(default)]
    spec: Option<ConfigurationSpecFile>,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a mapping of sections, e.g. `nameResolution`"
)]
struct ConfigurationSpecFile {
    #[serde(default)]
    name_resolution: Option<NameResolutionFile>,
    #[serde(default)]
    secrets: Option<SecretsFile>,
    /// Every other section, accepted whatever it holds.
    #[serde(flatten)]
    sections: BTreeMap<String, Section>,
}

#[derive(Deserialize)]
#[serde(expecting = "a mapping with `component`, `version` and `configuration`")]
struct NameResolutionFile {
    #[serde(default)]
    component: Option<Scalar>,
    #[serde(default)]
    version: Option<Scalar>,
    #[serde(default)]
    configuration: Option<BTreeMap<String, Scalar>>,
}

impl NameResolutionFile {
    fn check(self, origin: &Origin) -> Result<NameResolutionSpec, ResourceError> {
        let component = match self.component {
            None => None,
            Some(Scalar::Text(component)) => Some(component),
            Some(Scalar::Other) => {
                return Err(origin.error(
                    "spec.nameResolution.component",
                    "must be a name such as `mdns` or `kubernetes`",
                ));
            }
        };
        let version = match self.version {
            None => None,
            Some(Scalar::Text(version)) => Some(version),
            Some(Scalar::Other) => {
                return Err(origin.error(
                    "spec.nameResolution.version",
                    "must be a version such as `v1`",
                ));
            }
        };
        let configuration = self
            .configuration
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                let setting = match value {
                    Scalar::Text(text) => Setting::Text(text),
                    Scalar::Other => Setting::Other,
                };
                (name, setting)
            })
            .collect();
        Ok(NameResolutionSpec {
            component,
            version,
            configuration,
        })
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a mapping with `scopes`: a list of secret store scopes")]
struct SecretsFile {
    #[serde(default)]
    scopes: Option<Vec<SecretScopeFile>>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    expecting = "a mapping with `storeName`, `defaultAccess`, `allowedSecrets` and `deniedSecrets`"
)]
struct SecretScopeFile {
    #[serde(default)]
    store_name: Option<String>,
    #[serde(default)]
    default_access: Option<String>,
    #[serde(default)]
    allowed_secrets: Option<Vec<String>>,
    #[serde(default)]
    denied_secrets: Option<Vec<String>>,
}

impl SecretsFile {
    fn check(self, origin: &Origin) -> Result<Vec<SecretScope>, ResourceError> {
        let mut scopes: Vec<SecretScope> = Vec::new();
        for (index, scope) in self.scopes.unwrap_or_default().into_iter().enumerate() {
            let field = |name: &str| format!("spec.secrets.scopes[{index}].{name}");
            let store_name = scope
                .store_name
                .filter(|name| !name.trim().is_empty())
                .ok_or_else(|| origin.error(&field("storeName"), "is required"))?;
            if scopes.iter().any(|seen| seen.store_name == store_name) {
                return Err(origin.error(
                    &field("storeName"),
                    format!("`{store_name}` has a scope already: give each store one"),
                ));
            }
            // As Dapr: `deny` in any case denies; tandem also refuses what is neither.
            let default_allow = match scope.default_access.as_deref().map(str::trim) {
                None | Some("") => true,
                Some(access) if access.eq_ignore_ascii_case("allow") => true,
                Some(access) if access.eq_ignore_ascii_case("deny") => false,
                Some(other) => {
                    return Err(origin.error(
                        &field("defaultAccess"),
                        format!("`{other}` is not `allow` or `deny`"),
                    ));
                }
            };
            scopes.push(SecretScope {
                store_name,
                default_allow,
                allowed_secrets: scope.allowed_secrets.unwrap_or_default(),
                denied_secrets: scope.denied_secrets.unwrap_or_default(),
            });
        }
        Ok(scopes)
    }
}

/// A section tandem does not read, reduced to one question: does it ask for
/// anything? Empty values do not, nor do sections switched off with `enabled: false`
/// or `samplingRate: "0"`.
struct Section {
    asks_for_something: bool,
    /// The value as written, when it is a plain one.
    text: Option<String>,
}

impl Section {
    fn scalar(text: String) -> Self {
        Section {
            asks_for_something: !text.trim().is_empty(),
            text: Some(text),
        }
    }

    fn asks(asks_for_something: bool) -> Self {
        Section {
            asks_for_something,
            text: None,
        }
    }
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor;

        impl<'de> Visitor<'de> for SectionVisitor {
            type Value = Section;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any value")
            }

            fn visit_unit<E>(self) -> Result<Section, E> {
                Ok(Section::asks(false))
            }

            fn visit_none<E>(self) -> Result<Section, E> {
                Ok(Section::asks(false))
            }

            fn visit_bool<E>(self, flag: bool) -> Result<Section, E> {
                Ok(Section::scalar(flag.to_string()))
            }

            fn visit_str<E>(self, text: &str) -> Result<Section, E> {
                Ok(Section::scalar(text.to_owned()))
            }

            fn visit_u64<E>(self, number: u64) -> Result<Section, E> {
                Ok(Section::scalar(number.to_string()))
            }

            fn visit_i64<E>(self, number: i64) -> Result<Section, E> {
                Ok(Section::scalar(number.to_string()))
            }

            fn visit_f64<E>(self, number: f64) -> Result<Section, E> {
                Ok(Section::scalar(number.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Section, A::Error> {
                let mut any = false;
                while items.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(Section::asks(any))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section, A::Error> {
                let (mut any, mut switched_off) = (false, false);
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Section>()?;
                    any |= value.asks_for_something;
                    let text = value.text.as_deref().map(str::trim);
                    switched_off |= match key.as_str() {
                        "enabled" => text == Some("false"),
                        "samplingRate" => matches!(text, Some("0" | "") | None),
                        _ => false,
                    };
                }
                Ok(Section::asks(any && !switched_off))
            }
        }

        deserializer.deserialize_any(SectionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Configuration, ResourceError> {
        parse_configuration(Path::new("config.yaml"), text)
    }

    const HEAD: &str =
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n";

    #[test]
    fn name_resolution_is_typed() {
        let text = format!(
            "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    version: v1\n    configuration:\n      clusterDomain: corp.example\n      port: 5\n      nested: {{a: 1}}\n"
        );
        let configuration = parse(&text).unwrap();
        assert_eq!(configuration.describe(), "Configuration 'appconfig'");
        assert_eq!(
            configuration.file.as_deref(),
            Some(Path::new("config.yaml"))
        );
        let resolution = configuration.name_resolution.unwrap();
        assert_eq!(resolution.component.as_deref(), Some("kubernetes"));
        assert_eq!(resolution.version.as_deref(), Some("v1"));
        assert_eq!(
            resolution.configuration["clusterDomain"].as_text(),
            Some("corp.example")
        );
        assert_eq!(resolution.configuration["port"].as_text(), Some("5"));
        assert_eq!(resolution.configuration["nested"], Setting::Other);
        assert!(configuration.unused.is_empty());

        assert_eq!(parse(HEAD).unwrap().name_resolution, None);
        let empty = format!("{HEAD}spec:\n  nameResolution:\n");
        assert_eq!(parse(&empty).unwrap().name_resolution, None);
    }

    /// Every section of Dapr's `ConfigurationSpec` is accepted; those that would
    /// change what the app sees are listed, the switched-off ones are not.
    #[test]
    fn daprs_other_sections_are_accepted_and_listed_when_they_ask_for_something() {
        let text = format!(
            r#"{HEAD}spec:
  tracing:
    samplingRate: "1"
    zipkin:
      endpointAddress: http://localhost:9411/api/v2/spans
  metric:
    enabled: false
  metrics:
    enabled: true
    rules: []
  mtls: {{enabled: false}}
  features:
    - name: SchedulerReminders
      enabled: true
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies: []
  api:
    allowed:
      - name: state
        version: v1.0
  logging:
    apiLogging:
      enabled: true
  apiLogging: {{}}
  appHttpPipeline:
    handlers: []
  httpPipeline:
    handlers:
      - name: oauth2
        type: middleware.http.oauth2
  secrets:
    scopes:
      - storeName: local
        defaultAccess: deny
  components:
    deny: [bindings.smtp]
  wasm: ~
  workflow:
    maxConcurrentWorkflowInvocations: 10
  nameResolutoin:
    component: kubernetes
"#
        );
        let configuration = parse(&text).unwrap();
        let unused: Vec<&str> = configuration
            .unused
            .iter()
            .map(|section| section.name.as_str())
            .collect();
        assert_eq!(
            unused,
            [
                "accessControl",
                "api",
                "components",
                "features",
                "httpPipeline",
                "logging",
                "metrics",
                "nameResolutoin",
                "tracing",
                "workflow"
            ]
        );
        let typo = &configuration.unused[7];
        assert_eq!(
            typo.consequence,
            "it is not a section of Dapr's Configuration; did you mean `nameResolution`?"
        );
        assert_eq!(configuration.name_resolution, None);
    }

    #[test]
    fn secret_scopes_decide_as_dapr() {
        let text = format!(
            "{HEAD}spec:\n  secrets:\n    scopes:\n      - storeName: vault\n        defaultAccess: deny\n        allowedSecrets: [db-password]\n      - storeName: local\n        deniedSecrets: [root-key]\n      - storeName: env\n        defaultAccess: DENY\n        deniedSecrets: [x]\n      - storeName: both\n        defaultAccess: allow\n        allowedSecrets: [a]\n        deniedSecrets: [a]\n"
        );
        let configuration = parse(&text).unwrap();
        assert!(configuration.unused.is_empty());
        let scope = |name: &str| {
            configuration
                .secret_scopes
                .iter()
                .find(|scope| scope.store_name == name)
                .unwrap()
        };
        assert!(scope("vault").allows("db-password"));
        assert!(!scope("vault").allows("other"));
        assert!(scope("local").allows("other"));
        assert!(!scope("local").allows("root-key"));
        assert!(!scope("env").allows("anything"), "deny in any case");
        // A non-empty allow list alone decides, as in Dapr.
        assert!(scope("both").allows("a"));
        assert!(!scope("both").allows("b"));
    }

    #[test]
    fn secret_scope_mistakes_name_the_field() {
        for (scopes, expected) in [
            (
                "      - defaultAccess: deny\n",
                "field `spec.secrets.scopes[0].storeName`: is required",
            ),
            (
                "      - storeName: a\n      - storeName: a\n",
                "field `spec.secrets.scopes[1].storeName`: `a` has a scope already",
            ),
            (
                "      - storeName: a\n        defaultAccess: maybe\n",
                "field `spec.secrets.scopes[0].defaultAccess`: `maybe` is not `allow` or `deny`",
            ),
            (
                "      - storeName: a\n        allowedSecret: [x]\n",
                "allowedSecret",
            ),
        ] {
            let text = format!("{HEAD}spec:\n  secrets:\n    scopes:\n{scopes}");
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn errors_name_the_file_resource_and_field() {
        let cases = [
            (
                format!("{HEAD}spec:\n  nameResolution: kubernetes\n"),
                "config.yaml: Configuration 'appconfig': field `spec.nameResolution`: must be a mapping with `component`, `version` and `configuration`, not the text `kubernetes`",
            ),
            (
                format!("{HEAD}spec:\n  nameResolution:\n    component: [kubernetes]\n"),
                "config.yaml: Configuration 'appconfig': field `spec.nameResolution.component`: must be a name such as `mdns` or `kubernetes`",
            ),
            (
                format!("{HEAD}spec:\n  nameResolution:\n    configuration: [a]\n"),
                "config.yaml: Configuration 'appconfig': field `spec.nameResolution.configuration`: must be a mapping, not a list",
            ),
            (
                format!("{HEAD}spec: [a]\n"),
                "config.yaml: Configuration 'appconfig': field `spec`: must be a mapping of sections, e.g. `nameResolution`, not a list",
            ),
            (
                "kind: Component\nmetadata:\n  name: x\n".to_owned(),
                "config.yaml: field `kind`: no `kind: Configuration` resource in this file",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&text).unwrap_err().to_string(), expected);
        }
    }

    #[test]
    fn the_first_configuration_counts_and_the_file_must_exist() {
        let text = format!("{HEAD}---\nkind: Configuration\nmetadata: {{name: second}}\n");
        assert_eq!(parse(&text).unwrap().name.as_deref(), Some("appconfig"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            format!("{HEAD}spec: {{tracing: {{samplingRate: \"1\"}}}}\n"),
        )
        .unwrap();
        let configuration = load_configuration(&file).unwrap();
        assert_eq!(configuration.unused[0].name, "tracing");
        let missing = load_configuration(&dir.path().join("none.yaml")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("none.yaml: cannot read the file"),
            "{missing}"
        );
    }
}
