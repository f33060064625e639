//! The identity stage's records, as they go to and come from the log (see `docs/identity.md`).
//!
//! - `identity.inputs` (one partition: the graph's input, in one total order): an event to
//!   resolve, as its canonical frame unchanged (tag `E`), or a decision by hand as JSON (tag
//!   `D`). The first byte says which.
//! - `events.resolved`: the canonical frame unchanged, keyed by the customer id, so that every
//!   event of a customer lands in one partition and the profile stage reads its customer from
//!   the key. Among them, keyed by the customer they are about, [`ResolvedMarker`]s as JSON (a
//!   frame starts with the Confluent magic byte 0, a marker with `{`): the customer was
//!   absorbed by a merge, an event left it (a split, a rule change), it was erased, a split
//!   restored it. They take their place in that customer's order, so a reader of one
//!   partition sees each customer's history whole. (No record headers: tansu, the test
//!   broker, serves records with headers to librdkafka consumers very slowly.)
//! - `identity.changes`: each [`Change`] as JSON, keyed by the customer it is about.
//!
//! Pure: no I/O. Decoding never panics on any bytes.

use crate::model::{Change, CustomerId, Input};
use bytes::Bytes;
use kinfold_core::EventId;
use kinfold_core::ports::OutgoingRecord;
use serde::{Deserialize, Serialize};

const EVENT_TAG: u8 = b'E';
const DECISION_TAG: u8 = b'D';

/// One record of `identity.inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRecord {
    /// A canonical event's frame, as `events.canonical` holds it.
    Event(Bytes),
    /// A decision by hand (any input but an event), so that it takes its place in the graph's
    /// input order.
    Decision(Input),
}

/// Why an `identity.inputs` record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    #[error("decision: {0}")]
    Decision(#[from] serde_json::Error),
    #[error("an event goes to identity.inputs as its canonical frame, not as a decision")]
    EventAsDecision,
}

impl InputRecord {
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Event(frame) => {
                let mut bytes = Vec::with_capacity(frame.len() + 1);
                bytes.push(EVENT_TAG);
                bytes.extend_from_slice(frame);
                Bytes::from(bytes)
            }
            Self::Decision(decision) => {
                let mut bytes = vec![DECISION_TAG];
                serde_json::to_writer(&mut bytes, decision).expect("a decision always serialises");
                Bytes::from(bytes)
            }
        }
    }

    pub fn decode(bytes: &Bytes) -> Result<Self, RecordError> {
        match bytes.first() {
            None => Err(RecordError::Empty),
            Some(&EVENT_TAG) => Ok(Self::Event(bytes.slice(1..))),
            Some(&DECISION_TAG) => match serde_json::from_slice(&bytes[1..])? {
                Input::Observe { .. } => Err(RecordError::EventAsDecision),
                decision => Ok(Self::Decision(decision)),
            },
            Some(&other) => Err(RecordError::UnknownTag(other)),
        }
    }

    /// The record for `identity.inputs` (its one partition).
    pub fn outgoing(&self, timestamp_millis: i64) -> OutgoingRecord {
        OutgoingRecord {
            key: None,
            value: self.encode(),
            headers: Vec::new(),
            timestamp_millis,
            partition: Some(0),
        }
    }
}

/// What happened to a customer, in `events.resolved`, keyed by that customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "marker", rename_all = "snake_case")]
pub enum ResolvedMarker {
    /// A merge: the customer is now part of `into`, and so are its events.
    Absorbed { into: CustomerId },
    /// Event `event_id` no longer belongs to the customer; it belongs to `to` (`None`: to
    /// nobody).
    MovedAway {
        event_id: EventId,
        to: Option<CustomerId>,
    },
    /// The customer was erased.
    Erased,
    /// A split made the customer one of its own again (it had been absorbed).
    Restored,
}

impl ResolvedMarker {
    /// The markers a change makes, with the customer each is about.
    pub fn of_change(change: &Change) -> Option<(CustomerId, Self)> {
        match change {
            Change::Merged {
                survivor, absorbed, ..
            } => Some((*absorbed, Self::Absorbed { into: *survivor })),
            Change::Moved {
                event_id,
                from: Some(from),
                to,
            } => Some((
                *from,
                Self::MovedAway {
                    event_id: *event_id,
                    to: *to,
                },
            )),
            Change::Erased { customer, .. } => Some((*customer, Self::Erased)),
            Change::Split { restored, .. } => Some((*restored, Self::Restored)),
            _ => None,
        }
    }

    /// The marker an `events.resolved` record's value is, if it is one (`Err`: it looks like
    /// one, JSON, but is not).
    pub fn of_record(value: &[u8]) -> Option<Result<Self, serde_json::Error>> {
        (value.first() == Some(&b'{')).then(|| serde_json::from_slice(value))
    }

    /// The `events.resolved` record of this marker about `customer`.
    pub fn outgoing(&self, customer: CustomerId, timestamp_millis: i64) -> OutgoingRecord {
        OutgoingRecord {
            key: Some(Bytes::from(customer.to_string())),
            value: Bytes::from(serde_json::to_vec(self).expect("a marker always serialises")),
            headers: Vec::new(),
            timestamp_millis,
            partition: None,
        }
    }
}

/// The `events.resolved` record of an event (its canonical frame) that belongs to `customer`.
pub fn resolved_record(
    frame: &Bytes,
    customer: CustomerId,
    timestamp_millis: i64,
) -> OutgoingRecord {
    OutgoingRecord {
        key: Some(Bytes::from(customer.to_string())),
        value: frame.clone(),
        headers: Vec::new(),
        timestamp_millis,
        partition: None,
    }
}

/// The customer a change is about, which keys it in `identity.changes`: the first of
/// [`change_customers`] (a merge's survivor, a moved event's new customer).
pub fn change_customer(change: &Change) -> Option<CustomerId> {
    change_customers(change).first().copied()
}

/// Every customer a change is about, for each customer's list of changes: both sides of a
/// merge, a split or a refused merge, where a moved event went to and came from; the one it is
/// mainly about first.
pub fn change_customers(change: &Change) -> Vec<CustomerId> {
    let mut customers = match change {
        Change::Created { customer, .. }
        | Change::Linked { customer, .. }
        | Change::Erased { customer, .. }
        | Change::Decided { customer, .. } => vec![*customer],
        Change::Merged {
            survivor, absorbed, ..
        } => vec![*survivor, *absorbed],
        Change::Split {
            customer, restored, ..
        } => vec![*customer, *restored],
        Change::Refused {
            customer, other, ..
        } => std::iter::once(*customer).chain(*other).collect(),
        Change::Moved { from, to, .. } => to.iter().chain(from).copied().collect(),
        Change::RulesChanged { .. } => Vec::new(),
    };
    customers.dedup();
    customers
}

/// The `identity.changes` record of `change`.
pub fn change_record(change: &Change, timestamp_millis: i64) -> OutgoingRecord {
    OutgoingRecord {
        key: change_customer(change).map(|customer| Bytes::from(customer.to_string())),
        value: Bytes::from(serde_json::to_vec(change).expect("a change always serialises")),
        headers: Vec::new(),
        timestamp_millis,
        partition: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cause;
    use kinfold_core::{EventId, Identifier, IdentifierKind};

    fn customer(n: u128) -> CustomerId {
        CustomerId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn merges_moves_and_erasures_mark_the_customer_they_are_about() {
        let cause = Cause::Manual {
            reason: "test".into(),
        };
        let event_id = EventId(uuid::Uuid::from_u128(9));
        let cases = [
            (
                Change::Merged {
                    survivor: customer(1),
                    absorbed: customer(2),
                    identifiers: Vec::new(),
                    cause: cause.clone(),
                },
                Some((customer(2), ResolvedMarker::Absorbed { into: customer(1) })),
            ),
            (
                Change::Moved {
                    event_id,
                    from: Some(customer(1)),
                    to: Some(customer(3)),
                },
                Some((
                    customer(1),
                    ResolvedMarker::MovedAway {
                        event_id,
                        to: Some(customer(3)),
                    },
                )),
            ),
            // An event that belonged to nobody has nobody to leave.
            (
                Change::Moved {
                    event_id,
                    from: None,
                    to: Some(customer(3)),
                },
                None,
            ),
            (
                Change::Erased {
                    customer: customer(4),
                    cause: cause.clone(),
                },
                Some((customer(4), ResolvedMarker::Erased)),
            ),
            (
                Change::Split {
                    customer: customer(1),
                    restored: customer(2),
                    identifiers: Vec::new(),
                    cause: cause.clone(),
                },
                Some((customer(2), ResolvedMarker::Restored)),
            ),
            (
                Change::Created {
                    customer: customer(5),
                    cause,
                },
                None,
            ),
        ];
        for (change, expected) in cases {
            let marker = ResolvedMarker::of_change(&change);
            assert_eq!(marker, expected, "{change:?}");
            if let Some((customer, marker)) = marker {
                let record = marker.outgoing(customer, 0);
                assert_eq!(record.key, Some(Bytes::from(customer.to_string())));
                let back = ResolvedMarker::of_record(&record.value)
                    .expect("marked")
                    .expect("a marker");
                assert_eq!(back, marker);
            }
        }
        // A canonical frame carries no marker header.
        assert!(ResolvedMarker::of_record(b"\0\0\0\0\x01avro").is_none());
    }

    #[test]
    fn inputs_round_trip() {
        let records = [
            InputRecord::Event(Bytes::from_static(b"\0\0\0\0\x07avro")),
            InputRecord::Event(Bytes::new()),
            InputRecord::Decision(Input::Merge {
                survivor: customer(1),
                absorbed: customer(2),
                reason: "same person, checked in store".into(),
            }),
            InputRecord::Decision(Input::Split {
                customer: customer(1),
                restored: customer(2),
                reason: "wrong merge".into(),
            }),
            InputRecord::Decision(Input::Erase {
                customer: customer(3),
                reason: "asked to be forgotten".into(),
            }),
            InputRecord::Decision(Input::Decide {
                customer: customer(4),
                other: None,
                identifier: Some(std::sync::Arc::new(Identifier {
                    kind: IdentifierKind::Phone,
                    issuer: "86".into(),
                    value: "+8613912345678".into(),
                })),
                approve: false,
                reason: "recycled number".into(),
            }),
        ];
        for record in records {
            let decoded = InputRecord::decode(&record.encode()).expect("decodes");
            assert_eq!(decoded, record);
            assert_eq!(record.outgoing(0).partition, Some(0));
        }
    }

    #[test]
    fn bad_input_records_are_errors_not_panics() {
        assert!(matches!(
            InputRecord::decode(&Bytes::new()),
            Err(RecordError::Empty)
        ));
        assert!(matches!(
            InputRecord::decode(&Bytes::from_static(b"Xabc")),
            Err(RecordError::UnknownTag(b'X'))
        ));
        for junk in [
            &b"D"[..],
            b"D{",
            b"D{\"input\":\"merge\"}",
            b"D{\"input\":\"fly\"}",
            // An event must come as its frame.
            br#"D{"input":"observe","event_id":"00000000-0000-0000-0000-000000000001","identifiers":[]}"#,
        ] {
            assert!(
                InputRecord::decode(&Bytes::copy_from_slice(junk)).is_err(),
                "{junk:?}"
            );
        }
        let observe = Input::Observe {
            event_id: EventId(uuid::Uuid::from_u128(1)),
            identifiers: Default::default(),
        };
        let mut as_decision = b"D".to_vec();
        as_decision.extend(serde_json::to_vec(&observe).expect("json"));
        assert!(matches!(
            InputRecord::decode(&Bytes::from(as_decision)),
            Err(RecordError::EventAsDecision)
        ));
        // Any bytes at all: an answer, never a panic.
        let mut state = 7u64;
        for length in 0..200 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = InputRecord::decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn outputs_are_keyed_by_customer() {
        let frame = Bytes::from_static(b"\0\0\0\0\x07avro");
        let resolved = resolved_record(&frame, customer(9), 5);
        assert_eq!(resolved.value, frame);
        assert_eq!(resolved.key, Some(Bytes::from(customer(9).to_string())));
        let merged = Change::Merged {
            survivor: customer(1),
            absorbed: customer(2),
            identifiers: Vec::new(),
            cause: Cause::Event {
                event_id: EventId(uuid::Uuid::from_u128(3)),
            },
        };
        let record = change_record(&merged, 5);
        assert_eq!(record.key, Some(Bytes::from(customer(1).to_string())));
        let back: Change = serde_json::from_slice(&record.value).expect("json");
        assert_eq!(back, merged);
    }
}
