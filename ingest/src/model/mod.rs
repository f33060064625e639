//! Pure ingest rules: decoding, validation, identifier clean-up and canonicalisation.

pub mod decode;
mod identifiers;
mod local_time;
mod validate;

pub use decode::{JsonEvent, decode_framed, decode_json_event, decode_json_request};
pub use identifiers::DroppedIdentifier;

use crate::config::IngestLimits;
use crate::error::Rejection;
use kinfold_core::CanonicalEvent;
use kinfold_core::event::EventBody;
use kinfold_core::time::TimestampMicros;

/// A source record turned canonical, with the identifiers that were dropped as junk.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonicalised {
    pub event: CanonicalEvent,
    pub dropped: Vec<DroppedIdentifier>,
}

/// Validates `body`, cleans its identifiers and wraps it in the canonical envelope.
pub fn canonicalise(
    mut body: EventBody,
    origin: &str,
    receive_time: TimestampMicros,
    limits: &IngestLimits,
) -> Result<Canonicalised, Rejection> {
    validate::check_fields(&body, limits)?;
    let event_time = local_time::event_time(&body)?;
    validate::check_event_time(event_time, receive_time, limits)?;
    let (identifiers, dropped) = identifiers::extract(&mut body)?;
    let event = CanonicalEvent {
        event_id: body.event_id(),
        event_type: body.event_type(),
        event_time,
        receive_time,
        origin: origin.to_owned(),
        identifiers,
        body,
    };
    Ok(Canonicalised { event, dropped })
}
