//! What a sidecar is told at start: the flags of `dapr run`/`daprd` that matter to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::invoke::PeerKey;

/// Dapr's default for `--max-body-size`: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 << 20;

/// `--enable-app-health-check` and its settings, with Dapr's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealthSettings {
    /// `--app-health-check-path`: the path probed with `GET` (HTTP apps).
    pub path: String,
    /// `--app-health-probe-interval`: how often the app is probed.
    pub interval: Duration,
    /// `--app-health-probe-timeout`: how long one probe may take.
    pub timeout: Duration,
    /// `--app-health-threshold`: failed probes in a row before the app is unhealthy.
    pub threshold: u32,
}

impl Default for AppHealthSettings {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(500),
            threshold: 3,
        }
    }
}

/// The sidecar's settings.
#[derive(Clone)]
pub struct SidecarConfig {
    /// `--app-id`.
    pub app_id: String,
    /// `--app-port`: where the app listens; `None` for an app that only calls out.
    pub app_port: Option<u16>,
    /// `--app-protocol`: `http` (and `grpc`, accepted for apps that only call out).
    pub app_protocol: String,
    /// The app's host, `127.0.0.1` next to it.
    pub app_host: String,
    /// `--resources-path`s; empty means the embedded defaults.
    pub resources_paths: Vec<PathBuf>,
    /// Where the embedded defaults keep their database (`~/.tandem`).
    pub data_dir: PathBuf,
    /// `NAMESPACE`, when set.
    pub namespace: Option<String>,
    /// `DAPR_API_TOKEN`: required from callers of the API when set.
    pub api_token: Option<String>,
    /// `APP_API_TOKEN`: sent to the app when set.
    pub app_api_token: Option<String>,
    /// `--max-body-size`: the largest request body any API accepts, and the largest
    /// answer read from the app, another sidecar or an outside service.
    pub max_body_size: usize,
    /// The secret sidecars prove themselves with on each other's internal port.
    pub peer_key: Arc<PeerKey>,
    /// `--app-max-concurrency`: at most this many deliveries and invocations in flight
    /// to the app; `None` for no limit.
    pub app_max_concurrency: Option<usize>,
    /// `--enable-app-health-check`: probe the app, and pause what goes to it while it is
    /// unhealthy; `None` when off.
    pub app_health: Option<AppHealthSettings>,
}

impl SidecarConfig {
    /// A configuration for `app_id` with everything else at its default, and a fresh
    /// random peer key (only sidecars sharing it can call each other).
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_port: None,
            app_protocol: "http".into(),
            app_host: "127.0.0.1".into(),
            resources_paths: Vec::new(),
            data_dir: PathBuf::from(".tandem"),
            namespace: None,
            api_token: None,
            app_api_token: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            peer_key: Arc::new(PeerKey::generate()),
            app_max_concurrency: None,
            app_health: None,
        }
    }
}

impl std::fmt::Debug for SidecarConfig {
    /// Tokens and the peer key are secrets: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarConfig")
            .field("app_id", &self.app_id)
            .field("app_port", &self.app_port)
            .field("app_protocol", &self.app_protocol)
            .field("app_host", &self.app_host)
            .field("resources_paths", &self.resources_paths)
            .field("data_dir", &self.data_dir)
            .field("namespace", &self.namespace)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field(
                "app_api_token",
                &self.app_api_token.as_ref().map(|_| "<set>"),
            )
            .field("max_body_size", &self.max_body_size)
            .field("app_max_concurrency", &self.app_max_concurrency)
            .field("app_health", &self.app_health)
            .finish_non_exhaustive()
    }
}
