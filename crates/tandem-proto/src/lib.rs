//! The Dapr gRPC protocol subset tandem serves, generated at build time from the
//! `.proto` files in this crate (written for tandem; see the comment at their top).
#![forbid(unsafe_code)]

/// `dapr.proto.runtime.v1`: the `Dapr` service apps call.
pub mod runtime {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("dapr.proto.runtime.v1");
}
