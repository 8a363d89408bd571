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
