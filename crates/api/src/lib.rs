//! The Andromède gRPC contract (`proto/andromede/v1`), generated at build time.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("andromede.v1");
}

/// Encoded `FileDescriptorSet` of the whole contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/andromede_descriptor.bin"));

pub use v1::*;
