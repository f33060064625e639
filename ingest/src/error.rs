//! Why an input was rejected: a stable code for metrics and machines, a reason for people.

use serde::Serialize;
use std::fmt;

/// Stable rejection codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The bytes are not JSON, not framed Avro, or do not match their schema.
    Undecodable,
    /// The Confluent framing is wrong: bad magic byte, truncated header.
    BadFraming,
    /// The schema id is not registered.
    UnknownSchemaId,
    /// The schema is not one of the event families.
    UnsupportedRecord,
    /// A required field is missing or empty.
    MissingField,
    /// A JSON event has a field its record does not know (often a misspelling).
    UnknownField,
    /// A field has a value outside its domain (a date that is not a date, an unknown currency).
    InvalidField,
    /// An amount or quantity is negative or absurdly large.
    InvalidAmount,
    /// The event time is far in the future or before any plausible date.
    InvalidTimestamp,
    /// A field is longer than allowed.
    FieldTooLong,
    /// More items in one request than allowed.
    BatchTooLarge,
}

impl RejectCode {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::BadFraming => "bad_framing",
            Self::UnknownSchemaId => "unknown_schema_id",
            Self::UnsupportedRecord => "unsupported_record",
            Self::MissingField => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidAmount => "invalid_amount",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::FieldTooLong => "field_too_long",
            Self::BatchTooLarge => "batch_too_large",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input: the code and what exactly is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}
