//! The gRPC API (tonic, prost). Empty until the first gRPC service (profiles and segments)
//! lands; kept as a leaf crate so the generated code never depends on the rest.
