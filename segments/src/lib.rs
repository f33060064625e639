//! The segments stage: live rule-based membership, timers and triggers, and the gRPC query
//! service. Not built yet: it arrives with its own issue. The crate exists so the workspace has
//! its final shape.
