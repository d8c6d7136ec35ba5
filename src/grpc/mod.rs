//! The gRPC surface. The only module that knows prost types.

mod admin;
mod connect;
mod convert;
mod error;
mod ext_authz;
#[doc(hidden)]
pub mod fuzz;
mod json_name;
mod presented;
mod redact;
mod verify;
mod watch;
pub mod wkt;

pub use admin::AdminService;
pub use connect::ConnectLayer;
/// Restrictions between their wire form and the JSON form of the import
/// file (the CLI's `key import` and `key export`).
pub use convert::{restrictions as restrictions_from_pb, to_restrictions as restrictions_to_pb};
pub use ext_authz::{ExtAuthzService, KEYSPACE_EXTENSION, SCOPES_EXTENSION};
pub use verify::VerifyService;

/// Generated code for `proto/keysmith/v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("keysmith.v1");
    // proto3's canonical JSON mapping of every message (pbjson).
    include!(concat!(env!("OUT_DIR"), "/keysmith.v1.serde.rs"));

    /// Encoded descriptors of `keysmith.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/keysmith_descriptor.bin"));
}

/// Encoded descriptors of `envoy.service.auth.v3.Authorization` and
/// everything it imports, for reflection: envoy-types compiles them in but
/// does not export them. `proto/envoy/README.md` says how to regenerate them
/// when envoy-types is upgraded; `tests/api/reflection.rs` checks they still
/// describe the Check that is served.
pub const ENVOY_AUTHORIZATION_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto/envoy/authorization.protoset"
));

/// The bearer token of an admin call, if the call carries one.
fn bearer<T>(req: &tonic::Request<T>) -> Option<&str> {
    bearer_in(req.metadata())
}

/// The bearer token in a call's metadata (the gRPC call's own headers, not
/// those of an HTTP request it carries).
fn bearer_in(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
