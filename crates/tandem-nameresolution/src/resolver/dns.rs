//! The DNS resolver: the app id goes into a name template, the name is looked up, and
//! every address it has is an instance.
//!
//! On Kubernetes, each app gets a headless Service `{app-id}-tandem` whose DNS name has
//! one address per ready pod, so the default name is
//! `{app-id}-tandem.{namespace}.svc.{clusterDomain}:{port}` — Dapr's `{app-id}-dapr`
//! scheme with tandem's suffix. `clusterDomain` (default `cluster.local`) and
//! `template` are the knobs of Dapr's `kubernetes` resolver; the `format` of Dapr's
//! `nameformat` resolver is the same idea with a `{appid}` placeholder. The port, when
//! the name does not carry one, is this sidecar's own internal port: every sidecar of a
//! cluster listens on the same one, as with Dapr.

use std::net::SocketAddr;

use super::ResolveError;

/// The cluster domain when the Configuration names none.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// One part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    AppId,
    Namespace,
    Port,
}

/// A DNS name (optionally with `:port`) with the app id, namespace and port left open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Dapr's `kubernetes` `template`, a Go template: `{{.ID}}`, `{{.Namespace}}` and
    /// `{{.Port}}` are filled in, e.g. `{{.ID}}-tandem.{{.Namespace}}.svc.example:{{.Port}}`.
    /// `{{.Data.*}}` is refused: Dapr fills it from per-call metadata tandem does not
    /// have.
    pub fn parse_go(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            push_text(&mut pieces, &rest[..open]);
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is never closed with `}}}}`",
                    text.len() - rest.len() + open
                )
            })?;
            let action = after[..close]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            pieces.push(match action {
                ".ID" => Piece::AppId,
                ".Namespace" => Piece::Namespace,
                ".Port" => Piece::Port,
                data if data.starts_with(".Data") => {
                    return Err(format!(
                        "`{{{{{data}}}}}` is not supported: tandem has no per-call data to fill it in; use {{{{.ID}}}}, {{{{.Namespace}}}} and {{{{.Port}}}}"
                    ));
                }
                other => {
                    return Err(format!(
                        "`{{{{{other}}}}}` is not a field tandem fills in; use {{{{.ID}}}}, {{{{.Namespace}}}} and {{{{.Port}}}}"
                    ));
                }
            });
            rest = &after[close + 2..];
        }
        push_text(&mut pieces, rest);
        Self::checked(text, pieces)
    }

    /// Dapr's `nameformat` `format`: `{appid}` is replaced by the app id (and, a tandem
    /// addition, `{namespace}` by the namespace), e.g.
    /// `service-{appid}.default.svc.cluster.local`.
    pub fn parse_name_format(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            push_text(&mut pieces, &rest[..open]);
            let after = &rest[open..];
            if let Some(tail) = after.strip_prefix("{appid}") {
                pieces.push(Piece::AppId);
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("{namespace}") {
                pieces.push(Piece::Namespace);
                rest = tail;
            } else {
                push_text(&mut pieces, "{");
                rest = &after[1..];
            }
        }
        push_text(&mut pieces, rest);
        if !pieces.contains(&Piece::AppId) {
            return Err("the format must contain the `{appid}` placeholder".into());
        }
        Self::checked(text, pieces)
    }

    /// The Kubernetes default: `{app-id}-tandem.{namespace}.svc.{cluster_domain}:{port}`.
    pub fn kubernetes(cluster_domain: &str) -> Self {
        let cluster_domain = cluster_domain.trim_matches('.');
        let pieces = vec![
            Piece::AppId,
            Piece::Text("-tandem.".into()),
            Piece::Namespace,
            Piece::Text(format!(".svc.{cluster_domain}:")),
            Piece::Port,
        ];
        Self {
            source: format!(
                "{{{{.ID}}}}-tandem.{{{{.Namespace}}}}.svc.{cluster_domain}:{{{{.Port}}}}"
            ),
            pieces,
        }
    }

    fn checked(text: &str, pieces: Vec<Piece>) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the template is empty".into());
        }
        if !pieces.contains(&Piece::AppId) {
            return Err(
                "the template never uses the app id ({{.ID}}): every app would resolve to the same name"
                    .into(),
            );
        }
        Ok(Self {
            source: text.to_owned(),
            pieces,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The name for `app_id` in `namespace` with `port`.
    pub fn render(&self, app_id: &str, namespace: &str, port: u16) -> String {
        let mut name = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => name.push_str(text),
                Piece::AppId => name.push_str(app_id),
                Piece::Namespace => name.push_str(namespace),
                Piece::Port => name.push_str(&port.to_string()),
            }
        }
        name
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Piece::Text(last)) = pieces.last_mut() {
        last.push_str(text);
    } else {
        pieces.push(Piece::Text(text.to_owned()));
    }
}

/// Resolves app ids through DNS names made from a [`Template`].
#[derive(Debug, Clone)]
pub struct Dns {
    name: &'static str,
    template: Template,
    port: u16,
}

impl Dns {
    /// Dapr's `kubernetes` resolver: `template` if given, else the default name in
    /// `cluster_domain`. `port`: the port when the name carries none (this sidecar's
    /// internal port).
    pub fn kubernetes(cluster_domain: &str, template: Option<Template>, port: u16) -> Self {
        Self {
            name: "kubernetes",
            template: template.unwrap_or_else(|| Template::kubernetes(cluster_domain)),
            port,
        }
    }

    /// Dapr's `nameformat` resolver.
    pub fn name_format(format: Template, port: u16) -> Self {
        Self {
            name: "nameformat",
            template: format,
            port,
        }
    }

    /// The resolver's Dapr name (`kubernetes` or `nameformat`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The name looked up for `app_id` (`namespace` defaults to `default`).
    pub fn address_of(&self, app_id: &str, namespace: Option<&str>) -> String {
        let namespace = namespace.unwrap_or(crate::registry::DEFAULT_NAMESPACE);
        self.template.render(app_id, namespace, self.port)
    }

    pub(crate) async fn resolve(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        check_label(app_id, "app id").map_err(|reason| ResolveError::InvalidAppId {
            app_id: app_id.to_owned(),
            reason,
        })?;
        if let Some(namespace) = namespace {
            check_label(namespace, "namespace").map_err(|reason| ResolveError::InvalidAppId {
                app_id: format!("{app_id}.{namespace}"),
                reason,
            })?;
        }
        let name = self.address_of(app_id, namespace);
        let (host, port) = split_host_port(&name, self.port);
        let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|source| ResolveError::Lookup {
                app_id: app_id.to_owned(),
                name: name.clone(),
                source,
            })?
            .collect();
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            return Err(ResolveError::NoAddresses {
                app_id: app_id.to_owned(),
                name,
            });
        }
        Ok(found)
    }
}

/// An app id or namespace goes into a DNS name: it must not add dots, ports or paths.
fn check_label(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "the {what} contains '{bad}'; only letters, digits, `-` and `_` can be part of a DNS name"
        ));
    }
    Ok(())
}

/// `host:port`, `[v6]:port`, or a bare host (then `default_port`).
fn split_host_port(address: &str, default_port: u16) -> (String, u16) {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return (socket.ip().to_string(), socket.port());
    }
    if let Some(rest) = address.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        let port = tail
            .strip_prefix(':')
            .and_then(|port| port.parse().ok())
            .unwrap_or(default_port);
        return (host.to_owned(), port);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), port),
            Err(_) => (address.to_owned(), default_port),
        },
        _ => (address.to_owned(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resolver;

    #[test]
    fn the_kubernetes_default_name() {
        let dns = Dns::kubernetes(DEFAULT_CLUSTER_DOMAIN, None, 50002);
        assert_eq!(
            dns.address_of("orders", Some("shop")),
            "orders-tandem.shop.svc.cluster.local:50002"
        );
        assert_eq!(
            dns.address_of("orders", None),
            "orders-tandem.default.svc.cluster.local:50002"
        );
        let other = Dns::kubernetes("corp.internal.", None, 7);
        assert_eq!(
            other.address_of("a", Some("b")),
            "a-tandem.b.svc.corp.internal:7"
        );
    }

    #[test]
    fn go_templates() {
        let template =
            Template::parse_go("{{.ID}}-svc.{{ .Namespace }}.internal:{{- .Port -}}").unwrap();
        assert_eq!(
            template.render("cart", "prod", 9000),
            "cart-svc.prod.internal:9000"
        );
        assert_eq!(
            template.as_str(),
            "{{.ID}}-svc.{{ .Namespace }}.internal:{{- .Port -}}"
        );
        let data = Template::parse_go("{{.ID}}-{{.Data.region}}.internal").unwrap_err();
        assert!(data.contains("{{.Data.region}}"), "{data}");
        let unknown = Template::parse_go("{{.Name}}.svc").unwrap_err();
        assert!(unknown.contains("{{.Name}}"), "{unknown}");
        let open = Template::parse_go("{{.ID").unwrap_err();
        assert!(open.contains("never closed"), "{open}");
        let constant = Template::parse_go("always.example:80").unwrap_err();
        assert!(constant.contains("app id"), "{constant}");
    }

    #[test]
    fn name_formats() {
        let format =
            Template::parse_name_format("service-{appid}.{namespace}.svc.cluster.local").unwrap();
        assert_eq!(
            format.render("orders", "default", 1),
            "service-orders.default.svc.cluster.local"
        );
        assert!(Template::parse_name_format("service.example").is_err());
        let braces = Template::parse_name_format("{x}{appid}").unwrap();
        assert_eq!(braces.render("a", "n", 1), "{x}a");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a.b:80", 1), ("a.b".into(), 80));
        assert_eq!(split_host_port("a.b", 1), ("a.b".into(), 1));
        assert_eq!(split_host_port("127.0.0.1:9", 1), ("127.0.0.1".into(), 9));
        assert_eq!(split_host_port("[::1]:9", 1), ("::1".into(), 9));
        assert_eq!(split_host_port("[::1]", 1), ("::1".into(), 1));
    }

    #[tokio::test]
    async fn resolves_through_the_system_resolver() {
        // `localhost` resolves without a network: app id `host` makes it.
        let dns = Dns::kubernetes(
            DEFAULT_CLUSTER_DOMAIN,
            Some(Template::parse_go("local{{.ID}}:{{.Port}}").unwrap()),
            40099,
        );
        let resolver = Resolver::Dns(dns);
        let found = resolver.resolve("host", None).await.unwrap();
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|address| address.ip().is_loopback() && address.port() == 40099)
        );

        let bad = resolver.resolve("host.evil", None).await.unwrap_err();
        assert!(bad.to_string().contains("not a valid app id"), "{bad}");
        let empty = resolver.resolve("", None).await.unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_exist_is_reported() {
        let dns = Dns::name_format(
            Template::parse_name_format("{appid}.invalid").unwrap(),
            50002,
        );
        let error = Resolver::Dns(dns)
            .resolve("nowhere", None)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("app id 'nowhere'") && message.contains("nowhere.invalid"),
            "{message}"
        );
    }
}
