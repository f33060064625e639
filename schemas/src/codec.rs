//! Codecs between Avro datums and the core types.
//!
//! Decoding goes through serde_avro_fast with the *writer's* schema (resolved from the
//! registry by id), so records written with any older compatible version decode into the
//! current types: fields the writer lacks take their defaults, fields the reader lacks are
//! skipped.

use crate::catalog::{CANONICAL_SUBJECT, Catalog, DLQ_SUBJECT, FAMILY_SUBJECTS};
use kinfold_core::event::{EcomOrder, EcomRefund, MembershipEvent, PosTransaction, WechatEvent};
use kinfold_core::{CanonicalEvent, DeadLetter, EventFamily, event::EventBody};
use serde_avro_fast::Schema as FastSchema;

/// A record as a source sends it: one of the family records.
pub type SourceRecord = EventBody;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Frame(#[from] crate::wire::FrameError),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("schema id {schema_id} is `{record}`, which is not an event family Kinfold accepts")]
    UnsupportedRecord { schema_id: u32, record: String },
    #[error("avro datum does not match its writer schema: {0}")]
    Avro(String),
    #[error("bytes left over after the avro datum: more than one record, or a wrong writer schema")]
    TrailingBytes,
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode as avro: {0}")]
pub struct EncodeError(pub String);

/// The Avro full name of a family's record.
pub fn family_record_name(family: EventFamily) -> &'static str {
    match family {
        EventFamily::PosTransaction => "kinfold.pos.PosTransaction",
        EventFamily::EcomOrder => "kinfold.ecom.EcomOrder",
        EventFamily::EcomRefund => "kinfold.ecom.EcomRefund",
        EventFamily::Wechat => "kinfold.wechat.WechatEvent",
        EventFamily::Membership => "kinfold.membership.MembershipEvent",
    }
}

/// The family whose record has the Avro full name `name`.
pub fn family_of_record(name: &str) -> Option<EventFamily> {
    EventFamily::ALL
        .into_iter()
        .find(|family| family_record_name(*family) == name)
}

/// The registry subject of a family's source topic.
pub fn family_subject(family: EventFamily) -> &'static str {
    match family {
        EventFamily::PosTransaction => FAMILY_SUBJECTS[0],
        EventFamily::EcomOrder => FAMILY_SUBJECTS[1],
        EventFamily::EcomRefund => FAMILY_SUBJECTS[2],
        EventFamily::Wechat => FAMILY_SUBJECTS[3],
        EventFamily::Membership => FAMILY_SUBJECTS[4],
    }
}

/// Decodes a family record of `family` written with `writer`.
#[inline]
pub fn decode_family(
    family: EventFamily,
    datum: &[u8],
    writer: &FastSchema,
) -> Result<EventBody, DecodeError> {
    #[inline]
    fn read<'a, T: serde::Deserialize<'a>>(
        datum: &'a [u8],
        writer: &FastSchema,
    ) -> Result<T, DecodeError> {
        decode_exact(datum, writer)
    }
    Ok(match family {
        EventFamily::PosTransaction => {
            EventBody::PosTransaction(read::<PosTransaction>(datum, writer)?)
        }
        EventFamily::EcomOrder => EventBody::EcomOrder(read::<EcomOrder>(datum, writer)?),
        EventFamily::EcomRefund => EventBody::EcomRefund(read::<EcomRefund>(datum, writer)?),
        EventFamily::Wechat => EventBody::Wechat(read::<WechatEvent>(datum, writer)?),
        EventFamily::Membership => EventBody::Membership(read::<MembershipEvent>(datum, writer)?),
    })
}

/// Decodes exactly one datum: bytes left over are an error, never silently dropped.
#[inline]
pub fn decode_exact<'a, T: serde::Deserialize<'a>>(
    datum: &'a [u8],
    writer: &FastSchema,
) -> Result<T, DecodeError> {
    use serde_avro_fast::de::read::Read as _;
    let mut state = serde_avro_fast::de::DeserializerState::from_slice(datum, writer);
    let value = T::deserialize(state.deserializer())
        .map_err(|error| DecodeError::Avro(error.to_string()))?;
    // Skipping one more byte succeeds only if the datum did not end where the record did.
    if state.into_reader().skip_bytes(1).is_ok() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(value)
}

fn encode<T: serde::Serialize>(value: &T, schema: &FastSchema) -> Result<Vec<u8>, EncodeError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
    serde_avro_fast::to_datum_vec(value, &mut config)
        .map_err(|error| EncodeError(error.to_string()))
}

fn parse(subject: &str, text: &str) -> FastSchema {
    text.parse()
        .unwrap_or_else(|error| panic!("embedded schema {subject} does not parse: {error}"))
}

/// Encoders and decoders for the current versions of Kinfold's own schemas.
#[derive(Debug)]
pub struct Codecs {
    canonical: FastSchema,
    dead_letter: FastSchema,
    families: Vec<(EventFamily, FastSchema)>,
}

impl Default for Codecs {
    fn default() -> Self {
        Self::new()
    }
}

impl Codecs {
    /// Codecs for the embedded catalog. The catalog is checked by tests, so a parse failure
    /// here is a build defect, not an input error.
    pub fn new() -> Self {
        let catalog = Catalog::embedded();
        let current = |subject: &str| {
            let entry = catalog
                .subject(subject)
                .unwrap_or_else(|| panic!("embedded catalog lacks {subject}"));
            parse(subject, entry.current())
        };
        Self {
            canonical: current(CANONICAL_SUBJECT),
            dead_letter: current(DLQ_SUBJECT),
            families: EventFamily::ALL
                .into_iter()
                .map(|family| (family, current(family_subject(family))))
                .collect(),
        }
    }

    /// The current schema of a family.
    pub fn family_schema(&self, family: EventFamily) -> &FastSchema {
        self.families
            .iter()
            .find(|(candidate, _)| *candidate == family)
            .map(|(_, schema)| schema)
            .unwrap_or_else(|| unreachable!("every family has a schema"))
    }

    /// Encodes a family record with its current schema.
    pub fn encode_family(&self, body: &EventBody) -> Result<Vec<u8>, EncodeError> {
        let schema = self.family_schema(body.family());
        match body {
            EventBody::PosTransaction(record) => encode(record, schema),
            EventBody::EcomOrder(record) => encode(record, schema),
            EventBody::EcomRefund(record) => encode(record, schema),
            EventBody::Wechat(record) => encode(record, schema),
            EventBody::Membership(record) => encode(record, schema),
        }
    }

    /// Decodes a family record written with its current schema.
    pub fn decode_family(
        &self,
        family: EventFamily,
        datum: &[u8],
    ) -> Result<EventBody, DecodeError> {
        decode_family(family, datum, self.family_schema(family))
    }

    /// Encodes a canonical event.
    pub fn encode_canonical(&self, event: &CanonicalEvent) -> Result<Vec<u8>, EncodeError> {
        encode(event, &self.canonical)
    }

    /// Decodes a canonical event.
    pub fn decode_canonical(&self, datum: &[u8]) -> Result<CanonicalEvent, DecodeError> {
        decode_exact(datum, &self.canonical)
    }

    /// Encodes a dead letter.
    pub fn encode_dead_letter(&self, letter: &DeadLetter) -> Result<Vec<u8>, EncodeError> {
        encode(letter, &self.dead_letter)
    }

    /// Decodes a dead letter.
    pub fn decode_dead_letter(&self, datum: &[u8]) -> Result<DeadLetter, DecodeError> {
        decode_exact(datum, &self.dead_letter)
    }
}

fn decode_framed_with<T: for<'a> serde::Deserialize<'a>>(
    bytes: &[u8],
    registry: &crate::SchemaRegistry,
) -> Result<T, DecodeError> {
    let (schema_id, datum) = crate::wire::parse_frame(bytes)?;
    let writer = registry
        .schema_by_id(schema_id)
        .ok_or(DecodeError::UnknownSchemaId(schema_id))?;
    decode_exact(datum, &writer.fast)
}

/// Decodes a framed canonical event, whatever version of the canonical schema wrote it.
pub fn decode_framed_canonical(
    bytes: &[u8],
    registry: &crate::SchemaRegistry,
) -> Result<CanonicalEvent, DecodeError> {
    decode_framed_with(bytes, registry)
}

/// Decodes a framed dead letter, whatever version of the dead-letter schema wrote it.
pub fn decode_framed_dead_letter(
    bytes: &[u8],
    registry: &crate::SchemaRegistry,
) -> Result<DeadLetter, DecodeError> {
    decode_framed_with(bytes, registry)
}
