//! gRPC proxying, as Dapr's "gRPC proxying" how-to describes it: an app calls any gRPC
//! method on its own sidecar with `dapr-app-id: <target>` metadata, and the call goes
//! through both sidecars to the target app's gRPC server.
//!
//! The sidecars do not know the protos: a call is an HTTP/2 request whose body is the
//! gRPC frames, passed on as it streams (unary and streaming calls alike), and whose
//! answer — headers, frames and trailers (status, message, details) — comes back the
//! same way. Between sidecars it travels to the internal port like an invocation,
//! signed with the deployment's key; the signature names the call as a proxied one
//! (its method is [`CLAIM_METHOD`], never an HTTP verb), so it cannot be replayed as an
//! HTTP invocation of the same path or the other way round. Cancelling the call
//! anywhere resets the HTTP/2 streams after it: the app's call is cancelled too.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use tokio::sync::OwnedSemaphorePermit;

use super::peer_auth::{Claim, PEER_AUTH_HEADER, PEER_REFUSED_HEADER};
use super::peers::PeerError;
use super::{CALLEE_HEADER, CALLER_HEADER, Invoker, is_app_id, split_namespace};
use crate::error::Error;

/// A proxied call's body, either way: gRPC frames, then (in answers) trailers.
pub type ProxyBody = tonic::body::Body;

/// Marks a proxied gRPC call on the internal port (covered by the signature through
/// [`CLAIM_METHOD`]).
pub const PROXY_HEADER: &str = "tandem-grpc-proxy";

/// What a proxied call's signature names as its method.
const CLAIM_METHOD: &str = "GRPC";

/// A proxied call as the gRPC door received it.
pub struct ProxyRequest {
    /// The target app: `dapr-app-id` (`orders` or `orders.namespace`).
    pub target: String,
    /// `/package.Service/Method`.
    pub path: String,
    /// The caller's metadata.
    pub headers: HeaderMap,
    pub body: ProxyBody,
}

/// Why a proxied call did not reach the target app. The texts and codes (see
/// `tandem-api`'s error table) are daprd's where it has them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// No sidecar of that app id is running (daprd's name resolution's words).
    #[error("couldn't find service: {0}")]
    UnknownApp(String),
    #[error("invalid app id {0}")]
    InvalidAppId(String),
    /// The target's sidecar or app could not be reached.
    #[error("failed to proxy request to app {app_id}: {reason}")]
    Unreachable { app_id: String, reason: String },
    /// The target app is not a gRPC app (`--app-protocol grpc`).
    #[error("failed to proxy request to app {0}: it is not a gRPC app (--app-protocol grpc)")]
    NotGrpc(String),
}

/// Whether a header belongs to one hop of a proxied call (or to the sidecars) rather
/// than to the call's metadata: what no invocation forwards, plus the proxy's own marker.
fn is_hop_header(name: &HeaderName) -> bool {
    super::is_hop_by_hop(name) || matches!(name.as_str(), "proxy-connection" | PROXY_HEADER)
}

/// The call's metadata, without the hop's headers.
fn call_metadata(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !is_hop_header(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// An answer's headers without those HTTP/2 cannot carry on.
fn answer_headers(headers: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "content-length",
        PEER_REFUSED_HEADER,
    ] {
        headers.remove(name);
    }
}

impl Invoker {
    /// Proxies a gRPC call to the app `request.target`: this sidecar's own app
    /// directly, another app through its sidecar. The answer streams back as the app
    /// gives it; an error is a failure to reach the app (the app's own error statuses
    /// are answers).
    pub async fn proxy(&self, request: ProxyRequest) -> Result<Response<ProxyBody>, Error> {
        let ProxyRequest {
            target,
            path,
            headers,
            body,
        } = request;
        if !is_app_id(&target) {
            return Err(ProxyError::InvalidAppId(target).into());
        }
        let mut headers = call_metadata(&headers);
        let (app_id, namespace) = split_namespace(&target);
        let namespace = namespace.or(self.namespace.as_deref());
        let unreachable = |reason: String| ProxyError::Unreachable {
            app_id: app_id.to_owned(),
            reason,
        };
        // Set here, whatever the caller sent: the app may trust them.
        for (name, value) in [(CALLER_HEADER, &self.app_id[..]), (CALLEE_HEADER, app_id)] {
            let value = HeaderValue::from_str(value)
                .map_err(|_| unreachable(format!("'{value}' cannot be sent as a header")))?;
            headers.insert(name, value);
        }
        if app_id == self.app_id && namespace == self.namespace.as_deref() {
            return self.proxy_to_own_app(&path, headers, body).await;
        }
        let locate = self.locator.as_ref().ok_or_else(|| {
            unreachable("service invocation is not set up in this sidecar".into())
        })?;
        headers.insert(
            PEER_AUTH_HEADER,
            self.peer_key.sign(&Claim {
                caller: &self.app_id,
                callee: app_id,
                method: CLAIM_METHOD,
                path_and_query: path.trim_start_matches('/'),
            }),
        );
        headers.insert(PROXY_HEADER, HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        let addresses = locate
            .locate(app_id, namespace)
            .await
            .map_err(|_| ProxyError::UnknownApp(app_id.to_owned()))?;
        let Some(&address) = addresses.first() else {
            return Err(ProxyError::UnknownApp(app_id.to_owned()).into());
        };
        // The caller's messages stream as they come and cannot be sent twice: one
        // instance is tried, and one found gone is skipped by the next call.
        let response = match self.peers.open_stream(address, &path, headers, body).await {
            Ok(response) => response,
            Err(PeerError::Unreachable(error)) => {
                locate.unreachable(app_id, address);
                return Err(unreachable(format!(
                    "the sidecar at {address} is unreachable: {error}"
                ))
                .into());
            }
            Err(error) => {
                return Err(
                    unreachable(format!("calling the sidecar at {address}: {error}")).into(),
                );
            }
        };
        let (mut parts, body) = response.into_parts();
        if parts.status == StatusCode::UNAUTHORIZED
            && parts.headers.contains_key(PEER_REFUSED_HEADER)
        {
            return Err(unreachable(format!(
                "the sidecar at {address} refused this sidecar's credentials"
            ))
            .into());
        }
        answer_headers(&mut parts.headers);
        Ok(Response::from_parts(parts, ProxyBody::new(body)))
    }

    /// The receiving side: a proxied call from another sidecar for this app, which must
    /// prove it holds the deployment's key before anything reaches the app.
    pub async fn serve_proxied(
        &self,
        path: &str,
        headers: HeaderMap,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, Error> {
        let callee = self.verify_peer(&headers, CLAIM_METHOD, path.trim_start_matches('/'))?;
        if callee != self.app_id {
            return Err(ProxyError::Unreachable {
                app_id: callee.to_owned(),
                reason: format!("this sidecar serves app '{}'", self.app_id),
            }
            .into());
        }
        // The caller and callee stay: they were proven by the signature.
        self.proxy_to_own_app(path, call_metadata(&headers), body)
            .await
    }

    /// Passes a proxied call to this sidecar's app, under its health and its
    /// `--app-max-concurrency` (a place is held until the call's answer has ended).
    async fn proxy_to_own_app(
        &self,
        path: &str,
        headers: HeaderMap,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, Error> {
        let app = self.own_app()?;
        let grpc = app
            .grpc()
            .ok_or_else(|| ProxyError::NotGrpc(self.app_id.clone()))?;
        let permit = app.permit().await;
        let response =
            grpc.proxy(path, headers, body)
                .await
                .map_err(|error| ProxyError::Unreachable {
                    app_id: self.app_id.clone(),
                    reason: error.to_string(),
                })?;
        let (mut parts, body) = response.into_parts();
        answer_headers(&mut parts.headers);
        let body = match permit {
            Some(permit) => ProxyBody::new(Holding {
                body,
                _permit: permit,
            }),
            None => body,
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// An answer's body that holds the app's `--app-max-concurrency` place until it ends
/// (or is dropped: the caller went away).
struct Holding {
    body: ProxyBody,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxied_calls_signature_is_no_http_invocations() {
        let key = super::super::PeerKey::from_secret("0123456789abcdef-shared").unwrap();
        let claim = |method| Claim {
            caller: "caller",
            callee: "target",
            method,
            path_and_query: "pkg.Service/Method",
        };
        let signed = key.sign(&claim(CLAIM_METHOD));
        assert!(key.verify(Some(&signed), &claim(CLAIM_METHOD)).is_ok());
        assert!(key.verify(Some(&signed), &claim("POST")).is_err());
        let http = key.sign(&claim("POST"));
        assert!(key.verify(Some(&http), &claim(CLAIM_METHOD)).is_err());
    }

    #[test]
    fn a_calls_metadata_loses_the_hops_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("dapr-app-id", "orders"),
            ("dapr-api-token", "secret"),
            ("te", "trailers"),
            ("grpc-timeout", "1S"),
            ("x-tenant", "a"),
            ("content-type", "application/grpc"),
            (PEER_AUTH_HEADER, "v1 1 00"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let kept = call_metadata(&headers);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "grpc-timeout", "x-tenant"]);
    }
}
