//! Server reflection that advertises only what a server answers: its own service, health and
//! reflection (an agent does not list `switchyard.v1.Coordinator`, nor the coordinator `Agent`).

use tonic_reflection::server::Builder;

/// A reflection builder over every descriptor (so that clients can resolve any message type)
/// that lists `own` (like `"switchyard.v1.Agent"`), health and reflection as services.
pub fn builder(own: &str) -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(own)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
}
