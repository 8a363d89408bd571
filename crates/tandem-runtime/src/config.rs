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

impl AppHealthSettings {
    /// The settings from `daprd`'s flags, read as `daprd` reads them: an interval or
    /// timeout of 0 or less is the default, a threshold below 1 too; a timeout longer
    /// than the interval is refused (checked whether or not the check is enabled, as
    /// `daprd` does). `None` when `enabled` is false.
    pub fn from_flags(
        enabled: bool,
        path: &str,
        interval_seconds: i64,
        timeout_ms: i64,
        threshold: i64,
    ) -> Result<Option<Self>, ConfigError> {
        let defaults = Self::default();
        let interval = u64::try_from(interval_seconds)
            .ok()
            .filter(|seconds| *seconds > 0)
            .map_or(defaults.interval, Duration::from_secs);
        let timeout = u64::try_from(timeout_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map_or(defaults.timeout, Duration::from_millis);
        if timeout > interval {
            return Err(ConfigError::ProbeTimeoutTooLong { timeout, interval });
        }
        let threshold = u32::try_from(threshold)
            .ok()
            .filter(|threshold| (1..=i32::MAX as u32).contains(threshold))
            .unwrap_or(defaults.threshold);
        Ok(enabled.then(|| Self {
            path: path.to_owned(),
            interval,
            timeout,
            threshold,
        }))
    }
}

/// `--app-max-concurrency` as `daprd` reads it: a limit only when above 0 (-1, the
/// default, and 0 mean none).
pub fn max_concurrency_from_flag(flag: i64) -> Option<usize> {
    usize::try_from(flag).ok().filter(|limit| *limit > 0)
}

/// Flags that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--app-health-probe-timeout ({timeout:?}) must not be longer than --app-health-probe-interval ({interval:?})"
    )]
    ProbeTimeoutTooLong {
        timeout: Duration,
        interval: Duration,
    },
}

/// A duration as Go's `time.Duration.String()` writes it (`5s`, `500ms`, `1m30s`,
/// `1.5s`): the metadata API shows the probe settings so.
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    // A whole part and a fraction of `digits` digits, trailing zeros dropped.
    let fixed = |whole: u128, fraction: u128, digits: usize, unit: &str| {
        let mut text = whole.to_string();
        let fraction = format!("{fraction:0digits$}");
        let fraction = fraction.trim_end_matches('0');
        if !fraction.is_empty() {
            text.push('.');
            text.push_str(fraction);
        }
        text.push_str(unit);
        text
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fixed(nanos / 1_000, nanos % 1_000, 3, "µs");
    }
    if nanos < 1_000_000_000 {
        return fixed(nanos / 1_000_000, nanos % 1_000_000, 6, "ms");
    }
    let seconds = nanos / 1_000_000_000;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&fixed(seconds, nanos % 1_000_000_000, 9, "s"));
    text
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
    /// Where other sidecars reach this one's internal port: the address an actor
    /// host announces in the placement table. `None` until the port is bound.
    pub host_address: Option<std::net::SocketAddr>,
    /// The Configuration's `spec.secrets.scopes`: which secrets the app may read.
    pub secret_scopes: Vec<tandem_spec::SecretScope>,
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
            host_address: None,
            secret_scopes: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn health_flags_are_read_as_daprd_reads_them() {
        assert_eq!(
            AppHealthSettings::from_flags(false, "/healthz", 5, 500, 3).unwrap(),
            None
        );
        let defaults = AppHealthSettings::from_flags(true, "/healthz", 0, -1, 0)
            .unwrap()
            .unwrap();
        assert_eq!(defaults, AppHealthSettings::default());
        let custom = AppHealthSettings::from_flags(true, "/ready", 2, 2000, 1)
            .unwrap()
            .unwrap();
        assert_eq!(custom.interval, Duration::from_secs(2));
        assert_eq!(custom.timeout, Duration::from_secs(2));
        assert_eq!(custom.threshold, 1);
        assert!(AppHealthSettings::from_flags(false, "/healthz", 1, 1001, 3).is_err());
        assert_eq!(max_concurrency_from_flag(-1), None);
        assert_eq!(max_concurrency_from_flag(0), None);
        assert_eq!(max_concurrency_from_flag(2), Some(2));
    }
}
