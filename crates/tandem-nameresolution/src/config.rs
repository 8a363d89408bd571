//! Choosing the resolver from a Dapr `Configuration` resource's `spec.nameResolution`.
//!
//! ```yaml
//! apiVersion: dapr.io/v1alpha1
//! kind: Configuration
//! metadata:
//!   name: appconfig
//! spec:
//!   nameResolution:
//!     component: kubernetes        # mdns (default), sqlite, kubernetes, nameformat
//!     version: v1
//!     configuration:
//!       clusterDomain: cluster.local
//! ```
//!
//! Dapr's names map to tandem's resolvers: `mdns` (Dapr's self-hosted default) and
//! `sqlite` both mean "the sidecars on this machine", which tandem's registry already
//! knows without multicast or a database, so both are the local resolver. `kubernetes`
//! and `nameformat` are DNS names. Consul and AWS Cloud Map are refused with a message
//! rather than silently replaced. Settings that only make sense for Dapr's own
//! implementation are accepted and logged as ignored, so a Dapr Configuration file
//! works unchanged.

use std::path::Path;

use tandem_spec::{Configuration, ResourceError, Setting};

use crate::resolver::{DEFAULT_CLUSTER_DOMAIN, Dns, Local, Resolver, Template};

/// Which resolver a sidecar uses, with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResolverConfig {
    /// The machine's registry (Dapr's `mdns` and `sqlite`).
    #[default]
    Local,
    /// Kubernetes DNS (Dapr's `kubernetes`).
    Kubernetes(KubernetesConfig),
    /// A DNS name format (Dapr's `nameformat`).
    NameFormat(Template),
}

/// The settings of Dapr's `kubernetes` resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// `clusterDomain`: default `cluster.local`.
    pub cluster_domain: String,
    /// `template`: the whole address, instead of the default name in the cluster domain.
    pub template: Option<Template>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            template: None,
        }
    }
}

const NAME_RESOLUTION: &str = "spec.nameResolution";

impl ResolverConfig {
    /// The resolver a Configuration resource (the `--config` file, read by
    /// [`tandem_spec::load_configuration`]) asks for. Without `spec.nameResolution`
    /// it is the local resolver.
    pub fn from_configuration(configuration: &Configuration) -> Result<Self, ResourceError> {
        match &configuration.name_resolution {
            None => Ok(ResolverConfig::Local),
            Some(section) => choose(configuration, section),
        }
    }

    /// The resolver. `home`: the tandem home, where the local registry lives.
    /// `internal_port`: this sidecar's internal port, the port DNS names without one
    /// resolve to (every sidecar of a cluster listens on the same one).
    pub fn build(&self, home: &Path, internal_port: u16) -> Resolver {
        match self {
            ResolverConfig::Local => Resolver::Local(Local::new(home)),
            ResolverConfig::Kubernetes(config) => Resolver::Dns(Dns::kubernetes(
                &config.cluster_domain,
                config.template.clone(),
                internal_port,
            )),
            ResolverConfig::NameFormat(format) => {
                Resolver::Dns(Dns::name_format(format.clone(), internal_port))
            }
        }
    }
}

fn choose(
    configuration: &Configuration,
    section: &tandem_spec::NameResolutionSpec,
) -> Result<ResolverConfig, ResourceError> {
    let error = |field: &str, message: String| configuration.error(field, message);
    let component = section
        .component
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let shown = if component.is_empty() {
        "mdns"
    } else {
        component.as_str()
    };
    match section.version.as_deref().map(str::trim) {
        None | Some("v1" | "") => {}
        Some(version) => {
            return Err(error(
                &format!("{NAME_RESOLUTION}.version"),
                format!("name resolver '{shown}' has no version '{version}'; the only one is `v1`"),
            ));
        }
    }
    let configuration_field = format!("{NAME_RESOLUTION}.configuration");
    let settings = &section.configuration;
    let ignore = |names: &[&str], why: &str| {
        for name in settings.keys() {
            if !names.contains(&name.as_str()) {
                tracing::warn!(
                    file = %configuration.file.as_deref().unwrap_or(Path::new("")).display(),
                    "{}: field `{configuration_field}.{name}` is ignored: {why}",
                    configuration.describe()
                );
            }
        }
    };
    let lookup = |name: &str| settings.get(name).and_then(Setting::as_text);
    match component.as_str() {
        "" | "mdns" => {
            ignore(
                &[],
                "tandem finds the sidecars on this machine through its registry (~/.tandem/apps), without mDNS",
            );
            Ok(ResolverConfig::Local)
        }
        "sqlite" => {
            ignore(
                &[],
                "tandem's registry of the sidecars on this machine (~/.tandem/apps) plays the role of the SQLite database",
            );
            Ok(ResolverConfig::Local)
        }
        "kubernetes" => {
            ignore(
                &["clusterDomain", "template"],
                "the kubernetes resolver reads `clusterDomain` and `template`",
            );
            let mut config = KubernetesConfig::default();
            let domain = lookup("clusterDomain");
            let template = lookup("template");
            if domain.is_some() && template.is_some() {
                return Err(error(
                    &format!("{configuration_field}.template"),
                    "`template` and `clusterDomain` exclude each other (as in Dapr): the template spells out the whole address".into(),
                ));
            }
            if let Some(domain) = domain {
                let domain = domain.trim().trim_matches('.');
                if domain.is_empty() || domain.contains([':', '/', ' ']) {
                    return Err(error(
                        &format!("{configuration_field}.clusterDomain"),
                        format!("'{domain}' is not a domain name such as `cluster.local`"),
                    ));
                }
                config.cluster_domain = domain.to_owned();
            }
            if let Some(template) = template {
                config.template = Some(Template::parse_go(template).map_err(|message| {
                    error(&format!("{configuration_field}.template"), message)
                })?);
            }
            Ok(ResolverConfig::Kubernetes(config))
        }
        "nameformat" => {
            ignore(&["format"], "the nameformat resolver reads `format`");
            let format = lookup("format").ok_or_else(|| {
                error(
                    &format!("{configuration_field}.format"),
                    "the nameformat resolver needs a `format` such as `service-{appid}.default.svc.cluster.local`".into(),
                )
            })?;
            let format = Template::parse_name_format(format)
                .map_err(|message| error(&format!("{configuration_field}.format"), message))?;
            Ok(ResolverConfig::NameFormat(format))
        }
        "consul" | "aws.cloudmap" => Err(error(
            &format!("{NAME_RESOLUTION}.component"),
            format!(
                "the '{component}' name resolver is not supported by tandem; use mdns (the default: the sidecars on this machine), kubernetes or nameformat"
            ),
        )),
        other => Err(error(
            &format!("{NAME_RESOLUTION}.component"),
            format!(
                "unknown name resolver '{other}'; tandem knows mdns (the default), sqlite, kubernetes and nameformat"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ResolverConfig, ResourceError> {
        let configuration = tandem_spec::parse_configuration(Path::new("config.yaml"), text)?;
        ResolverConfig::from_configuration(&configuration)
    }

    const HEAD: &str =
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n";

    #[test]
    fn local_by_default() {
        assert_eq!(parse(HEAD).unwrap(), ResolverConfig::Local);
        let tracing = format!("{HEAD}spec:\n  tracing:\n    samplingRate: \"1\"\n");
        assert_eq!(parse(&tracing).unwrap(), ResolverConfig::Local);
        for component in ["mdns", "MDNS", "sqlite", ""] {
            let text = format!(
                "{HEAD}spec:\n  nameResolution:\n    component: \"{component}\"\n    configuration:\n      connectionString: /tmp/nr.db\n"
            );
            assert_eq!(parse(&text).unwrap(), ResolverConfig::Local, "{component}");
        }
    }

    #[test]
    fn kubernetes() {
        let plain =
            format!("{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    version: v1\n");
        assert_eq!(
            parse(&plain).unwrap(),
            ResolverConfig::Kubernetes(KubernetesConfig::default())
        );
        let domain = format!(
            "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      clusterDomain: corp.example\n"
        );
        let ResolverConfig::Kubernetes(config) = parse(&domain).unwrap() else {
            panic!("kubernetes expected")
        };
        assert_eq!(config.cluster_domain, "corp.example");
        let resolver = ResolverConfig::Kubernetes(config).build(Path::new("/nowhere"), 50002);
        let Resolver::Dns(dns) = resolver else {
            panic!("a DNS resolver expected")
        };
        assert_eq!(
            dns.address_of("orders", Some("shop")),
            "orders-tandem.shop.svc.corp.example:50002"
        );

        let template = format!(
            "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      template: \"{{{{.ID}}}}.{{{{.Namespace}}}}.internal:{{{{.Port}}}}\"\n"
        );
        let resolver = parse(&template).unwrap().build(Path::new("/nowhere"), 7);
        let Resolver::Dns(dns) = resolver else {
            panic!("a DNS resolver expected")
        };
        assert_eq!(dns.address_of("a", None), "a.default.internal:7");
    }

    #[test]
    fn name_format() {
        let text = format!(
            "{HEAD}spec:\n  nameResolution:\n    component: nameformat\n    configuration:\n      format: \"service-{{appid}}.default.svc.cluster.local\"\n"
        );
        let Resolver::Dns(dns) = parse(&text).unwrap().build(Path::new("/x"), 50002) else {
            panic!("a DNS resolver expected")
        };
        assert_eq!(dns.name(), "nameformat");
        assert_eq!(
            dns.address_of("orders", None),
            "service-orders.default.svc.cluster.local"
        );
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let cases = [
            (
                format!("{HEAD}spec:\n  nameResolution:\n    component: consul\n"),
                "config.yaml: Configuration 'appconfig': field `spec.nameResolution.component`: the 'consul' name resolver is not supported",
            ),
            (
                format!("{HEAD}spec:\n  nameResolution:\n    component: dns\n"),
                "field `spec.nameResolution.component`: unknown name resolver 'dns'",
            ),
            (
                format!(
                    "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    version: v2\n"
                ),
                "field `spec.nameResolution.version`: name resolver 'kubernetes' has no version 'v2'",
            ),
            (
                format!(
                    "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      clusterDomain: a.b\n      template: \"{{{{.ID}}}}\"\n"
                ),
                "field `spec.nameResolution.configuration.template`: `template` and `clusterDomain` exclude each other",
            ),
            (
                format!(
                    "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      template: \"{{{{.ID}}}}-{{{{.Data.region}}}}.internal\"\n"
                ),
                "field `spec.nameResolution.configuration.template`: `{{.Data.region}}` is not supported",
            ),
            (
                format!("{HEAD}spec:\n  nameResolution:\n    component: nameformat\n"),
                "field `spec.nameResolution.configuration.format`: the nameformat resolver needs a `format`",
            ),
            (
                format!(
                    "{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n    configuration: [a]\n"
                ),
                "field `spec.nameResolution.configuration`: must be a mapping",
            ),
            (
                format!("{HEAD}spec:\n  nameResolution: kubernetes\n"),
                "field `spec.nameResolution`: must be a mapping",
            ),
            (
                "kind: Component\nmetadata:\n  name: x\n".to_owned(),
                "config.yaml: field `kind`: no `kind: Configuration` resource in this file",
            ),
            (
                "spec: {}\n".to_owned(),
                "config.yaml: field `kind`: this document has no `kind`",
            ),
            (
                "kind: Configuration\nspec:\n  nameResolution: {component: [\n".to_owned(),
                "config.yaml:",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "expected `{expected}` in `{error}`"
            );
        }
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let error =
            parse("kind: Configuration\nspec:\n  nameResolution: {component: [\n").unwrap_err();
        assert!(error.line.is_some(), "{error}");
    }

    #[test]
    fn reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            format!("---\n{HEAD}spec:\n  nameResolution:\n    component: kubernetes\n"),
        )
        .unwrap();
        let configuration = tandem_spec::load_configuration(&file).unwrap();
        assert!(matches!(
            ResolverConfig::from_configuration(&configuration).unwrap(),
            ResolverConfig::Kubernetes(_)
        ));
    }

    #[test]
    fn local_builds_the_registry_resolver() {
        let resolver = ResolverConfig::Local.build(Path::new("/tmp/home"), 1);
        assert_eq!(resolver.name(), "mdns");
        assert!(matches!(resolver, Resolver::Local(_)));
    }
}
