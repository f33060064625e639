//! The gRPC API (tonic, prost), generated from `kinfold/v1/*.proto` at build time. A leaf crate:
//! the generated code depends on nothing of Kinfold's, and the roles map it to their model.

/// `kinfold.v1`: the identity service (profiles and segments arrive with their stages).
#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("kinfold.v1");
}

/// The encoded `FileDescriptorSet` of every Kinfold service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kinfold_descriptor.bin"));
