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
