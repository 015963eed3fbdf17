//! Generated gRPC code for `switchyard.v1` (agent and coordinator services), and the encoded
//! descriptor set that server reflection serves.

pub mod convert;
pub mod idle;
pub mod reflection;
pub mod status;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("switchyard.v1");
}
pub use generated::*;

/// The encoded `FileDescriptorSet` of every `switchyard.v1` proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("switchyard_descriptor");
