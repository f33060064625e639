//! A dead letter: an input that could not become a canonical event, kept with its original
//! bytes, where it came from and why, so it can be inspected and redriven.

use crate::time::TimestampMicros;
use serde::{Deserialize, Serialize};

/// An entry of `events.dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Unique id of this dead letter (the event id when one could be derived, else a digest).
    pub dead_letter_id: String,
    pub received_at: TimestampMicros,
    /// `http`, `kafka`, `import`, `redrive`.
    pub channel: String,
    #[serde(default)]
    pub source_topic: Option<String>,
    #[serde(default)]
    pub source_partition: Option<i32>,
    #[serde(default)]
    pub source_offset: Option<i64>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub schema_id: Option<i32>,
    /// Line number in an imported or published file.
    #[serde(default)]
    pub line: Option<i64>,
    /// A stable code such as `undecodable`, `missing_field`, `invalid_amount`.
    pub reason_code: String,
    /// What exactly is wrong, for a person.
    pub reason: String,
    /// The original bytes, untouched.
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
}

/// Serialises bytes as Avro `bytes` (serde's bytes type) while still reading a sequence of
/// numbers, which is how some formats hand bytes back.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}
