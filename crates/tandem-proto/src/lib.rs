//! The Dapr gRPC protocol subset tandem serves, generated at build time from the
//! `.proto` files in this crate (written for tandem; see the comment at their top).
//!
//! The modules mirror the protobuf packages (`dapr.proto.runtime.v1`, ...) because the
//! generated code refers across packages by relative paths; [`runtime`] and [`common`]
//! are the short names to use.
#![forbid(unsafe_code)]

pub mod dapr {
    pub mod proto {
        pub mod common {
            /// `dapr.proto.common.v1`: messages shared by several APIs (state items, ETags).
            pub mod v1 {
                #![allow(clippy::all, missing_docs)]
                tonic::include_proto!("dapr.proto.common.v1");
            }
        }
        pub mod runtime {
            /// `dapr.proto.runtime.v1`: the `Dapr` service apps call, and the app
            /// callbacks the sidecar calls (`AppCallbackHealthCheck`).
            pub mod v1 {
                #![allow(clippy::all, missing_docs)]
                tonic::include_proto!("dapr.proto.runtime.v1");
            }
        }
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::runtime::v1 as runtime;

/// `google.rpc`: the rich error model daprd attaches to a failed call's status
/// (`grpc-status-details-bin`), so SDKs read the reason (`DAPR_STATE_ILLEGAL_KEY`, ...)
/// rather than only the code. Only the few messages daprd sends, written from their
/// published field numbers.
pub mod rpc {
    use std::collections::HashMap;

    /// The prefix of every detail's `Any` type URL.
    pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/google.rpc.";

    /// `google.rpc.Status`: the whole status, carried encoded in the trailer.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<prost_types::Any>,
    }

    /// `google.rpc.ErrorInfo`: why, as a stable reason in a domain (`dapr.io`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ErrorInfo {
        #[prost(string, tag = "1")]
        pub reason: String,
        #[prost(string, tag = "2")]
        pub domain: String,
        #[prost(map = "string, string", tag = "3")]
        pub metadata: HashMap<String, String>,
    }

    /// `google.rpc.ResourceInfo`: which resource (a state store, a pub/sub) failed.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceInfo {
        #[prost(string, tag = "1")]
        pub resource_type: String,
        #[prost(string, tag = "2")]
        pub resource_name: String,
        #[prost(string, tag = "3")]
        pub owner: String,
        #[prost(string, tag = "4")]
        pub description: String,
    }

    /// `google.rpc.BadRequest`: which request fields were wrong.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BadRequest {
        #[prost(message, repeated, tag = "1")]
        pub field_violations: Vec<FieldViolation>,
    }

    /// `google.rpc.BadRequest.FieldViolation`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldViolation {
        #[prost(string, tag = "1")]
        pub field: String,
        #[prost(string, tag = "2")]
        pub description: String,
    }
}
