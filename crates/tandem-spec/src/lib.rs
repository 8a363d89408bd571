//! Dapr resource files, read the way `daprd` reads them.
//!
//! A resources path holds `*.yaml`/`*.yml` files, each with one or more YAML documents.
//! [`load`] turns them into typed [`Component`]s (other kinds are skipped for now), and
//! [`Component::resolve`] turns a component's `spec.metadata` into plain values: secret
//! references through the component's `auth.secretStore`, `envRef`s through the
//! environment, and `{appID}`/`{uuid}`/`{namespace}` templates. Every error is a
//! [`ResourceError`] naming the file, the resource and the field.
#![forbid(unsafe_code)]

mod component;
mod duration;
mod error;
mod load;
mod metadata;

pub use component::{Component, MetadataItem, MetadataSource, SecretLookup, Templates};
pub use duration::parse_duration;
pub use error::ResourceError;
pub use load::{LoadOptions, load};
pub use metadata::ComponentMetadata;
