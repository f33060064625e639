//! The profile stage: folds each customer's resolved events, in event time, into the 360°
//! projection. Not built yet: it arrives with its own issue. The crate exists so the workspace
//! has its final shape.
