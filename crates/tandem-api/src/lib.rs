//! tandem's front doors: Dapr's HTTP API ([`http`]) and gRPC API ([`grpc`]).
//!
//! Both are thin: each handler parses its request, calls one [`tandem_runtime::Runtime`]
//! method, and renders the result. Errors become Dapr's codes and statuses in one place,
//! [`error`]; the API token check is in [`auth`]. [`internal`] is the port other
//! sidecars deliver invocations to.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod grpc;
pub mod http;
pub mod internal;

pub use error::ApiError;

use axum::serve::ListenerExt;

/// Accepted connections with `TCP_NODELAY`, so small answers are sent at once instead
/// of waiting for the peer's delayed ACK.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    })
}
