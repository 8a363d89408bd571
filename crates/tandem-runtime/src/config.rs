//! What a sidecar is told at start: the flags of `dapr run`/`daprd` that matter to it.

use std::path::PathBuf;

/// The sidecar's settings.
#[derive(Debug, Clone)]
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
}

impl SidecarConfig {
    /// A configuration for `app_id` with everything else at its default.
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
        }
    }
}
