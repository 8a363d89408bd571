//! Starting the sidecar in Dapr's order: components → gRPC and HTTP APIs →
//! `/v1.0/healthz/outbound` ready → wait for the app port → subscriptions →
//! `/v1.0/healthz` ready.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use tandem_api::auth::ApiToken;
use tandem_nameresolution::{self, Entry, NameResolution, Registration, ResolverConfig};
use tandem_runtime::{Locate, LocateError, PeerKey, Runtime, SidecarConfig};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::SidecarArgs;

/// A running sidecar.
pub struct Sidecar {
    pub runtime: Arc<Runtime>,
    pub http_port: u16,
    pub grpc_port: u16,
    /// `--metrics-port`, or a free port as `dapr run` picks one: told to the app as
    /// `DAPR_METRICS_PORT` (tandem serves no metrics there yet).
    pub metrics_port: u16,
    /// The Unix sockets of `--unix-domain-socket`, removed on stop as `dapr run` does.
    pub sockets: Vec<PathBuf>,
    /// This sidecar's entry in the machine's registry (`tandem list`), removed on stop
    /// (when the last handle goes; other tasks hold only weak ones).
    pub registration: Option<Arc<Registration>>,
    servers: JoinSet<()>,
}

/// Name resolution as the runtime asks for it.
struct Located(NameResolution);

#[async_trait::async_trait]
impl Locate for Located {
    async fn locate(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, LocateError> {
        Ok(self.0.locate(app_id, namespace).await?)
    }

    fn unreachable(&self, app_id: &str, address: SocketAddr) {
        self.0.unreachable(app_id, address);
    }
}

/// Sets up logging to stderr at `level` (`RUST_LOG` overrides it), as JSON lines with
/// `--log-as-json`.
pub fn init_logging_with(level: &str, json: bool) {
    let level = match level {
        "debug" | "info" | "warn" | "error" | "trace" => level,
        "warning" => "warn",
        "fatal" => "error",
        _ => "info",
    };
    // `RUST_LOG` takes `target=level` directives; the default keeps the HTTP/2 and
    // HTTP stacks quiet, and the brokers' client libraries silent unless debugging: the
    // components report their errors in tandem's own words. A `Targets` filter rather
    // than an `EnvFilter`: the latter
    // compiles a regular expression at every start (and its regex engine is ~0.3 MiB
    // of the idle sidecar's memory) for features tandem's users do not need here.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            let clients = if matches!(level, "debug" | "trace") {
                "warn"
            } else {
                "off"
            };
            let mut directives = format!("{level},h2=warn,hyper=warn,tower=warn");
            for target in tandem_runtime::client_log_targets() {
                directives.push_str(&format!(",{target}={clients}"));
            }
            directives.parse().unwrap_or_default()
        });
    let logs = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.with_ansi(false)
            .event_format(crate::log_json::JsonLines)
            .finish()
            .with(filter)
            .try_init()
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .finish()
            .with(filter)
            .try_init()
    };
}

/// `~/.tandem`, or `TANDEM_HOME`.
pub fn tandem_home() -> PathBuf {
    std::env::var_os("TANDEM_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".tandem")))
        .unwrap_or_else(|| PathBuf::from(".tandem"))
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The key this sidecar proves itself with to other sidecars, and checks theirs with:
/// `TANDEM_INTERNAL_KEY` (the same on every machine of a deployment), else the
/// machine's own `~/.tandem/internal.key`, created on first use.
fn peer_key(home: &std::path::Path) -> anyhow::Result<PeerKey> {
    Ok(match env_text("TANDEM_INTERNAL_KEY") {
        Some(secret) => PeerKey::from_secret(&secret).context("TANDEM_INTERNAL_KEY")?,
        None => PeerKey::load_or_create(&home.join("internal.key"))?,
    })
}

/// The runtime's settings from the flags and the environment.
pub fn config(args: &SidecarArgs) -> anyhow::Result<SidecarConfig> {
    let home = tandem_home();
    let app_id = match &args.app_id {
        Some(app_id) => app_id.clone(),
        None => {
            let taken: Vec<String> = tandem_nameresolution::list(&home)
                .into_iter()
                .map(|entry| entry.app_id)
                .collect();
            crate::app_id::generate(&taken)
        }
    };
    let mut resources_paths = args.resources_paths.clone();
    if resources_paths.is_empty() && home.join("components").is_dir() {
        resources_paths.push(home.join("components"));
    }
    let mut config = SidecarConfig::new(app_id);
    config.app_port = args.app_port;
    config.app_protocol = app_protocol(&args.app_protocol, args.app_ssl).to_owned();
    config.app_host = args.app_channel_address.clone();
    config.resources_paths = resources_paths;
    config.data_dir = home;
    config.namespace = env_text("NAMESPACE");
    config.api_token = env_text("DAPR_API_TOKEN");
    config.app_api_token = env_text("APP_API_TOKEN");
    config.max_body_size = args.max_body_size;
    config.peer_key = std::sync::Arc::new(peer_key(&config.data_dir)?);
    config.app_max_concurrency =
        tandem_runtime::max_concurrency_from_flag(args.app_max_concurrency);
    config.app_health = tandem_runtime::AppHealthSettings::from_flags(
        args.enable_app_health_check,
        &args.app_health_check_path,
        args.app_health_probe_interval,
        args.app_health_probe_timeout,
        args.app_health_threshold,
    )?;
    Ok(config)
}

/// The app's protocol as Dapr maps the deprecated `--app-ssl` onto it: http becomes
/// https, grpc becomes grpcs.
pub fn app_protocol(protocol: &str, app_ssl: bool) -> &str {
    match (protocol, app_ssl) {
        ("http", true) => "https",
        ("grpc", true) => "grpcs",
        (protocol, _) => protocol,
    }
}

/// Says once, at start, what tandem does with the flags it accepts for `dapr run`'s
/// sake but has no use for.
fn note_accepted_flags(args: &SidecarArgs) {
    let services: Vec<&str> = [
        ("placement", &args.placement_host_address),
        ("scheduler", &args.scheduler_host_address),
    ]
    .into_iter()
    // An empty address is Dapr's way to turn the service off: nothing to say then.
    .filter(|(_, address)| {
        address
            .as_deref()
            .is_some_and(|address| !address.is_empty())
    })
    .map(|(service, _)| service)
    .collect();
    if !services.is_empty() {
        tracing::info!(
            "--{}-host-address accepted: tandem needs no {} service",
            services.join("-host-address and --"),
            services.join(" or ")
        );
    }
    if args.enable_profiling || args.profile_port.is_some() {
        tracing::info!("--enable-profiling accepted: tandem has no profiling endpoint");
    }
}

/// Where the Unix sockets of `--unix-domain-socket` are, named as daprd names them.
pub fn socket_path(dir: &std::path::Path, app_id: &str, api: &str) -> PathBuf {
    dir.join(format!("dapr-{app_id}-{api}.socket"))
}

/// Binds a Unix socket; a socket file left by a sidecar that is gone is replaced, one
/// that still answers is refused.
async fn bind_unix(path: &std::path::Path, what: &str) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "cannot listen for the {what} API on {}: another process listens there",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the stale socket {}", path.display()))?;
    }
    UnixListener::bind(path)
        .with_context(|| format!("cannot listen for the {what} API on {}", path.display()))
}

fn listen_addresses(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    text.split(',')
        .map(|address| address.trim().trim_start_matches('[').trim_end_matches(']'))
        .filter(|address| !address.is_empty())
        .map(|address| {
            let address = if address == "localhost" {
                "127.0.0.1"
            } else {
                address
            };
            address
                .parse()
                .map_err(|_| anyhow!("--dapr-listen-addresses: '{address}' is not an IP address"))
        })
        .collect()
}

/// Binds `port` (a free one when `None`) on every address; all get the same port.
async fn bind(
    addresses: &[IpAddr],
    port: Option<u16>,
    what: &str,
) -> anyhow::Result<(u16, Vec<TcpListener>)> {
    let mut listeners = Vec::new();
    let mut port = port.unwrap_or(0);
    for address in addresses {
        let listener = TcpListener::bind(SocketAddr::new(*address, port))
            .await
            .with_context(|| format!("cannot listen for the {what} API on {address}:{port}"))?;
        port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    Ok((port, listeners))
}

/// Starts a sidecar; it runs until `stop` fires.
pub async fn start(args: &SidecarArgs, stop: CancellationToken) -> anyhow::Result<Sidecar> {
    let started = Instant::now();
    let mut config = config(args)?;
    note_accepted_flags(args);
    if config.resources_paths.is_empty() {
        tracing::info!(
            "no resources path given and no {}/components: using the embedded defaults (pub/sub 'pubsub' in {})",
            config.data_dir.display(),
            config.data_dir.join("tandem.db").display()
        );
    }
    let addresses = listen_addresses(&args.listen_addresses)?;
    if addresses.is_empty() {
        bail!("--dapr-listen-addresses names no address");
    }
    let token = ApiToken::new(config.api_token.as_deref());
    let resolver_config = match &args.config {
        Some(file) => {
            let configuration = tandem_spec::load_configuration(file)?;
            config.secret_scopes = configuration.secret_scopes.clone();
            ResolverConfig::from_configuration(&configuration)?
        }
        None => ResolverConfig::default(),
    };
    // Other sidecars call the internal port. On one machine they are local, so it
    // listens on loopback whatever the public APIs listen on; with DNS name resolution
    // they are on other machines.
    let internal_addresses = match &args.internal_listen_addresses {
        Some(text) => listen_addresses(text)?,
        None if resolver_config == ResolverConfig::Local => vec![IpAddr::from([127, 0, 0, 1])],
        None => {
            if env_text("TANDEM_INTERNAL_KEY").is_none() {
                tracing::warn!(
                    "name resolution by DNS: sidecars on other machines can call this one only if they share its key; \
                     set TANDEM_INTERNAL_KEY to the same secret on every sidecar"
                );
            }
            vec![IpAddr::from([0, 0, 0, 0])]
        }
    };
    if internal_addresses.is_empty() {
        bail!("--internal-listen-addresses names no address");
    }
    // Bound before the components load so the internal port is known to name
    // resolution; nothing is served until they are loaded.
    let (grpc_port, grpc_listeners) = bind(&addresses, args.grpc_port, "gRPC").await?;
    let (http_port, http_listeners) = bind(&addresses, args.http_port, "HTTP").await?;
    let (internal_port, internal_listeners) =
        bind(&internal_addresses, args.internal_port, "internal").await?;
    config.host_address = Some(SocketAddr::new(host_ip(&internal_addresses), internal_port));
    let home = config.data_dir.clone();
    let (app_id, namespace, app_port) = (
        config.app_id.clone(),
        config.namespace.clone(),
        config.app_port,
    );
    let locator = Located(NameResolution::new(
        resolver_config.build(&home, internal_port),
    ));
    // The sockets are bound before the components load, like the ports: a folder that
    // cannot hold them fails the start before anything else happens.
    let mut sockets = Vec::new();
    let mut unix_listeners = None;
    if let Some(dir) = &args.unix_domain_socket {
        let (http, grpc) = (
            socket_path(dir, &app_id, "http"),
            socket_path(dir, &app_id, "grpc"),
        );
        let http_listener = bind_unix(&http, "HTTP").await?;
        sockets.push(http.clone());
        let grpc_listener = bind_unix(&grpc, "gRPC").await;
        sockets.push(grpc.clone());
        let grpc_listener = match grpc_listener {
            Ok(listener) => listener,
            Err(error) => {
                remove_sockets(&sockets);
                return Err(error);
            }
        };
        unix_listeners = Some((http_listener, grpc_listener));
    }
    let runtime = match Runtime::load(config, stop.clone(), Some(Arc::new(locator))).await {
        Ok(runtime) => runtime,
        Err(error) => {
            remove_sockets(&sockets);
            return Err(error.into());
        }
    };

    let mut servers = JoinSet::new();
    for listener in grpc_listeners {
        let (runtime, token, stop) = (runtime.clone(), token.clone(), stop.clone());
        let log_calls = args.enable_api_logging;
        servers.spawn(async move {
            if let Err(error) =
                tandem_api::grpc::serve(listener, runtime, token, log_calls, stop.clone()).await
            {
                tracing::error!("the gRPC API stopped: {error}");
                stop.cancel();
            }
        });
    }
    let router = tandem_api::http::router(runtime.clone(), token.clone(), args.enable_api_logging);
    if let Some((http_listener, grpc_listener)) = unix_listeners {
        let (grpc_runtime, grpc_token, grpc_stop) = (runtime.clone(), token.clone(), stop.clone());
        let log_calls = args.enable_api_logging;
        servers.spawn(async move {
            let served = tandem_api::grpc::serve_unix(
                grpc_listener,
                grpc_runtime,
                grpc_token,
                log_calls,
                grpc_stop.clone(),
            );
            if let Err(error) = served.await {
                tracing::error!("the gRPC API on its Unix socket stopped: {error}");
                grpc_stop.cancel();
            }
        });
        let (router, stop) = (router.clone(), stop.clone());
        servers.spawn(async move {
            if let Err(error) =
                tandem_api::http::serve_unix(http_listener, router, stop.clone()).await
            {
                tracing::error!("the HTTP API on its Unix socket stopped: {error}");
                stop.cancel();
            }
        });
        for socket in &sockets {
            tracing::info!("API listening on Unix socket {}", socket.display());
        }
    }
    for listener in http_listeners {
        let (router, stop) = (router.clone(), stop.clone());
        servers.spawn(async move {
            if let Err(error) = tandem_api::http::serve(listener, router, stop.clone()).await {
                tracing::error!("the HTTP API stopped: {error}");
                stop.cancel();
            }
        });
    }
    for listener in internal_listeners {
        let (runtime, stop) = (runtime.clone(), stop.clone());
        servers.spawn(async move {
            if let Err(error) =
                tandem_api::internal::serve_on(listener, runtime, stop.clone()).await
            {
                tracing::error!("the internal API stopped: {error}");
                stop.cancel();
            }
        });
    }
    let mut entry = Entry::new(app_id, http_port, grpc_port, internal_port);
    entry.namespace = namespace;
    entry.app_port = app_port;
    entry.max_body_size = u64::try_from(args.max_body_size).ok();
    let registration = match Registration::register(&home, entry) {
        Ok(registration) => Some(Arc::new(registration)),
        Err(error) => {
            tracing::warn!(
                "could not register in {}: other apps on this machine will not find this one ({error})",
                home.join("apps").display()
            );
            None
        }
    };
    runtime.mark_outbound_ready();
    tracing::info!(
        app_id = %runtime.app_id(),
        "HTTP API on port {http_port}, gRPC API on port {grpc_port}, internal port {internal_port} (outbound ready in {:.1} ms)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    if let (Some(registration), Some(health)) = (&registration, runtime.app_health()) {
        record_app_health(Arc::downgrade(registration), health, stop.clone());
    }
    let connecting = runtime.clone();
    servers.spawn(async move { connecting.connect_app().await });
    Ok(Sidecar {
        runtime,
        http_port,
        grpc_port,
        metrics_port: metrics_port(args.metrics_port),
        sockets,
        registration,
        servers,
    })
}

/// Keeps the app's health in its registry entry, where the other sidecars' name
/// resolution passes an unhealthy instance over.
fn record_app_health(
    registration: std::sync::Weak<Registration>,
    mut health: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) {
    // The app starts out unhealthy: record that first.
    health.mark_changed();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = health.changed() => if changed.is_err() { return },
            }
            let unhealthy = !*health.borrow_and_update();
            let Some(registration) = registration.upgrade() else {
                return;
            };
            if let Err(error) = registration.update(|entry| entry.app_unhealthy = unhealthy) {
                tracing::debug!("could not record the app's health in the registry: {error}");
            }
        }
    });
}

impl Sidecar {
    /// After `stop` fired: lets deliveries in flight finish and the servers close.
    pub async fn stopped(mut self) {
        // Other sidecars stop finding this one before it stops answering.
        drop(self.registration.take());
        self.runtime.drain().await;
        while self.servers.join_next().await.is_some() {}
        remove_sockets(&self.sockets);
        tracing::info!("sidecar stopped");
    }
}

fn remove_sockets(sockets: &[PathBuf]) {
    for socket in sockets {
        let _ = std::fs::remove_file(socket);
    }
}

/// The metrics port: the one given, else a free one (what `dapr run` does).
fn metrics_port(given: Option<u16>) -> u16 {
    given.unwrap_or_else(|| {
        std::net::TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0))
            .and_then(|listener| listener.local_addr())
            .map_or(0, |address| address.port())
    })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// `tandem sidecar`: the sidecar alone, until a signal or `POST /v1.0/shutdown`.
pub async fn run_alone(args: SidecarArgs) -> u8 {
    init_logging_with(&args.log_level, args.log_as_json);
    let stop = CancellationToken::new();
    let sidecar = match start(&args, stop.clone()).await {
        Ok(sidecar) => sidecar,
        Err(error) => {
            tracing::error!("{error:#}");
            return 1;
        }
    };
    tokio::select! {
        _ = stop_signal() => tracing::info!("stopping"),
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    sidecar.stopped().await;
    0
}

/// The address other sidecars reach this one's internal port at, announced to actor
/// placement: `DAPR_HOST_IP` when set (as in daprd), else the one address the internal
/// port listens on, else (listening on every address) the address of the interface
/// that routes outwards, found without sending anything.
fn host_ip(internal_addresses: &[IpAddr]) -> IpAddr {
    if let Some(ip) = env_text("DAPR_HOST_IP").and_then(|text| text.trim().parse().ok()) {
        return ip;
    }
    match internal_addresses.iter().find(|ip| !ip.is_unspecified()) {
        Some(ip) => *ip,
        None => std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|socket| {
                socket.connect("192.0.2.1:9")?;
                socket.local_addr()
            })
            .map_or(IpAddr::from([127, 0, 0, 1]), |local| local.ip()),
    }
}
