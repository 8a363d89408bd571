//! App health checks (`--enable-app-health-check`), as `daprd` does them: the app is
//! probed every interval, each probe limited by the timeout — `GET` on the health path
//! for HTTP apps (any 2xx is healthy), `dapr.proto.runtime.v1.AppCallbackHealthCheck/
//! HealthCheck` for gRPC apps. The app starts out unhealthy, becomes healthy on the
//! first successful probe, and unhealthy again after `threshold` failed probes in a row.
//!
//! The status is a [`watch`] channel: the runtime pauses and resumes the app's
//! subscriptions on its changes, the invoker refuses calls for the app while it is
//! unhealthy, and the sidecar records it where name resolution sees it. Each change is
//! logged once, in `daprd`'s words.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AppHealthSettings;

/// The gRPC method probed on gRPC apps.
pub const GRPC_HEALTH_METHOD: &str = "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck";

/// What `daprd` answers for a call to an unhealthy app (`messages.ErrAppUnhealthy`,
/// carried as a gRPC `Internal` status).
pub const APP_UNHEALTHY: &str = "rpc error: code = Internal desc = app is not in a healthy state";

/// How one probe reaches the app.
enum Probe {
    /// `GET http://{host}:{port}{path}`.
    Http {
        client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
        url: String,
    },
    /// The health-check unary call over HTTP/2 (cleartext).
    Grpc {
        client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        url: String,
    },
}

impl Probe {
    fn new(protocol: &str, host: &str, port: u16, path: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        // `https` and `grpcs` apps are probed over TLS, their certificate unverified.
        let scheme = if crate::app_channel::tls::is_tls(protocol) {
            "https"
        } else {
            "http"
        };
        if matches!(protocol, "grpc" | "grpcs") {
            Probe::Grpc {
                client: builder
                    .http2_only(true)
                    .build(crate::app_channel::tls::connector(connector, true)),
                url: format!("{scheme}://{host}:{port}{GRPC_HEALTH_METHOD}"),
            }
        } else {
            // As `daprd`: the path always starts with one slash.
            let path = format!("/{}", path.trim_start_matches('/'));
            Probe::Http {
                client: builder
                    .http2_only(protocol == "h2c")
                    .build(crate::app_channel::tls::connector(connector, false)),
                url: format!("{scheme}://{host}:{port}{path}"),
            }
        }
    }

    /// One probe: `Ok` when the app is healthy, else why not.
    async fn run(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        match self {
            Probe::Http { client, url } => {
                let request = Request::get(url)
                    .body(Empty::new())
                    .map_err(|error| format!("Failed to create request: {error}"))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|error| format!("Network error: {error}"))?;
                let status = response.status();
                // Read to the end so the connection can be used again.
                let _ = response.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "Health check failed with status code: {}",
                        status.as_u16()
                    ))
                }
            }
            Probe::Grpc { client, url } => {
                // An empty `google.protobuf.Empty`: no compression, length 0.
                let mut request = Request::builder()
                    .method(Method::POST)
                    .uri(url)
                    .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                    .map_err(|error| format!("Health check failed: {error}"))?;
                let headers = request.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                headers.insert("te", HeaderValue::from_static("trailers"));
                let response = client
                    .request(request)
                    .await
                    .map_err(|error| format!("Health check failed: {error}"))?;
                if response.status() != StatusCode::OK {
                    return Err(format!(
                        "Health check failed: HTTP status {}",
                        response.status().as_u16()
                    ));
                }
                // A trailers-only answer carries the status in the headers.
                let mut status = grpc_status(response.headers());
                let collected = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|error| format!("Health check failed: {error}"))?;
                if let Some(trailers) = collected.trailers() {
                    status = grpc_status(trailers).or(status);
                }
                match status {
                    Some(0) => Ok(()),
                    Some(code) => Err(format!("Health check failed: gRPC status {code}")),
                    None => Err("Health check failed: the answer has no gRPC status".into()),
                }
            }
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Counts failed probes and says when the status changes.
#[derive(Debug)]
struct Tracker {
    threshold: u32,
    failures: u32,
}

impl Tracker {
    /// Unhealthy until the first successful probe, as `daprd` starts.
    fn new(threshold: u32) -> Self {
        let threshold = threshold.max(1);
        Self {
            threshold,
            failures: threshold,
        }
    }

    fn is_healthy(&self) -> bool {
        self.failures < self.threshold
    }

    /// Records a probe; returns the new status when it changed.
    fn record(&mut self, healthy: bool) -> Option<bool> {
        let was = self.is_healthy();
        if healthy {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        (self.is_healthy() != was).then_some(self.is_healthy())
    }
}

/// The app's health: probing, and its status for whoever watches it.
pub(crate) struct AppHealth {
    status: watch::Sender<bool>,
}

impl AppHealth {
    /// Unhealthy until probed.
    pub(crate) fn new() -> Self {
        Self {
            status: watch::Sender::new(false),
        }
    }

    /// The status to watch: `true` while the app is healthy.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.status.subscribe()
    }

    /// Probes the app at `host:port` until `stop` fires: at once, then every interval.
    pub(crate) async fn probe(
        &self,
        settings: &AppHealthSettings,
        protocol: &str,
        host: &str,
        port: u16,
        stop: CancellationToken,
    ) {
        let probe = Probe::new(protocol, host, port, &settings.path);
        let mut tracker = Tracker::new(settings.threshold);
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!("App health probes starting");
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                result = probe.run(settings.timeout) => result,
            };
            if let Err(reason) = &result {
                tracing::debug!("app health probe failed: {reason}");
            }
            match tracker.record(result.is_ok()) {
                Some(true) => {
                    tracing::info!("App entered healthy status");
                    self.status.send_replace(true);
                }
                Some(false) => {
                    tracing::warn!(
                        "App entered un-healthy status: App health check failed {} times (last: {})",
                        tracker.failures,
                        result.err().unwrap_or_default()
                    );
                    self.status.send_replace(false);
                }
                None => {}
            }
        }
        tracing::info!("App health probes stopping");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_until_the_first_success_then_after_threshold_failures_in_a_row() {
        let mut tracker = Tracker::new(3);
        assert!(!tracker.is_healthy());
        assert_eq!(tracker.record(false), None, "still unhealthy: no change");
        assert_eq!(tracker.record(true), Some(true));
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(true), None, "a success resets the count");
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), Some(false));
        assert_eq!(tracker.record(false), None, "the change is told once");
        assert_eq!(tracker.record(true), Some(true));
        let mut strict = Tracker::new(0);
        assert_eq!(strict.record(true), Some(true));
        assert_eq!(
            strict.record(false),
            Some(false),
            "a threshold of 0 acts as 1"
        );
    }
}
