//! The identity stage: resolves every event's identifiers to one unified customer id, with
//! merges that can be undone. Not built yet: it arrives with its own issue, on top of the stage
//! loop that the Kafka issue introduces. The crate exists so the workspace has its final shape.
