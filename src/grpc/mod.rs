//! The gRPC surface. The only module that knows prost types.

mod admin;
mod convert;
mod error;
mod ext_authz;
#[doc(hidden)]
pub mod fuzz;
mod verify;

pub use admin::AdminService;
pub use ext_authz::{ExtAuthzService, SCOPES_EXTENSION};
pub use verify::VerifyService;

/// Generated code for `proto/keysmith/v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("keysmith.v1");

    /// Encoded descriptors of `keysmith.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/keysmith_descriptor.bin"));
}

/// The bearer token of an admin call, if the call carries one.
fn bearer<T>(req: &tonic::Request<T>) -> Option<&str> {
    let value = req.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
