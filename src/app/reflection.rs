//! Server reflection, v1 and v1alpha (many grpcurl builds speak only v1alpha).

use tonic_reflection::server::{Builder, v1, v1alpha};

use super::AppError;
use crate::grpc::{ENVOY_AUTHORIZATION_DESCRIPTOR_SET, pb};

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Reflection that advertises `services` (and health and reflection) only,
/// so each listener lists what it really serves. Envoy's `Authorization` is
/// described too (its descriptors are vendored, see `grpc/mod.rs`), so
/// grpcurl can call Check without proto files; a later registration of a
/// file already known (`google/protobuf/…`) is ignored.
fn builder(services: &[&str]) -> Builder<'static> {
    let mut b = Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(ENVOY_AUTHORIZATION_DESCRIPTOR_SET)
        .with_service_name(HEALTH)
        .with_service_name(REFLECTION_V1)
        .with_service_name(REFLECTION_V1ALPHA);
    for s in services {
        b = b.with_service_name(*s);
    }
    b
}

pub fn v1(
    services: &[&str],
) -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, AppError> {
    Ok(builder(services).build_v1()?)
}

pub fn v1alpha(
    services: &[&str],
) -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, AppError> {
    Ok(builder(services).build_v1alpha()?)
}
