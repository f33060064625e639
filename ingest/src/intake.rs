//! Turning raw inputs into submissions for the writer: decode, canonicalise, or build the dead
//! letter that says why not.

use crate::config::IngestLimits;
use crate::error::Rejection;
use crate::metrics;
use crate::model::{canonicalise, decode_framed, decode_json_event};
use crate::writer::Submission;
use kinfold_core::event::EventBody;
use kinfold_core::time::Clock;
use kinfold_core::{DeadLetter, EventFamily};
use kinfold_schemas::{RegistryError, SchemaRegistry, parse_frame};
use std::sync::Arc;

const DEAD_LETTER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b69_6e66_6f6c_6400_8000_0000_0000_0002);

/// Where an input came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `http`, `publish`, `import`, `redrive`, `kafka`.
    pub channel: String,
    /// Recorded in canonical events: `http`, `import:online-retail`, ...
    pub label: String,
    pub content_type: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub line: Option<i64>,
}

impl Origin {
    /// An origin on `channel`, labelled the same.
    pub fn channel(channel: &str) -> Self {
        Self {
            channel: channel.to_owned(),
            label: channel.to_owned(),
            ..Self::default()
        }
    }
}

/// Decodes and checks inputs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Intake {
    registry: Arc<SchemaRegistry>,
    limits: IngestLimits,
    clock: Arc<dyn Clock>,
}

impl Intake {
    pub fn new(registry: Arc<SchemaRegistry>, limits: IngestLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            registry,
            limits,
            clock,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// The registry used to resolve writer schemas.
    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    /// A JSON event.
    pub fn json(&self, text: &str, origin: &Origin) -> Submission {
        match decode_json_event(text) {
            Ok(body) => self.record(body, text.as_bytes(), origin, None),
            Err(rejection) => {
                let source = json_source_label(text);
                self.reject(text.as_bytes(), rejection, origin, None, source)
            }
        }
    }

    /// Makes sure the writer schemas of these framed records are at hand, fetching them from
    /// the remote registry when schemas live in one (nothing to do otherwise). Call it before
    /// [`Self::avro`]; an error means the registry could not be asked, so the records should
    /// wait rather than be dead-lettered.
    pub async fn resolve_schemas<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), RegistryError> {
        let ids: Vec<u32> = frames
            .into_iter()
            .filter_map(|frame| parse_frame(frame).ok().map(|(id, _)| id))
            .collect();
        self.registry.resolve_ids(ids).await
    }

    /// An Avro record in the Confluent wire format.
    pub fn avro(&self, bytes: &[u8], origin: &Origin) -> Submission {
        match decode_framed(bytes, &self.registry) {
            Ok((body, schema_id)) => self.record(body, bytes, origin, Some(schema_id)),
            Err((rejection, schema_id)) => {
                self.reject(bytes, rejection, origin, schema_id, "unknown")
            }
        }
    }

    /// A record already decoded (by an importer); `payload` is what to keep if it is rejected.
    pub fn record(
        &self,
        body: EventBody,
        payload: &[u8],
        origin: &Origin,
        schema_id: Option<u32>,
    ) -> Submission {
        let source = body.family().as_str();
        match canonicalise(body, &origin.label, self.clock.now_micros(), &self.limits) {
            Ok(canonicalised) => {
                for dropped in &canonicalised.dropped {
                    metrics::identifier_dropped(dropped.kind.as_str(), dropped.why.label());
                    tracing::debug!(
                        event_id = %canonicalised.event.event_id,
                        kind = %dropped.kind,
                        why = %dropped.why,
                        "dropped a junk identifier, kept the event"
                    );
                }
                Submission {
                    item: Ok(canonicalised.event),
                    source,
                }
            }
            Err(rejection) => self.reject(payload, rejection, origin, schema_id, source),
        }
    }

    /// A dead letter for `payload`.
    pub fn reject(
        &self,
        payload: &[u8],
        rejection: Rejection,
        origin: &Origin,
        schema_id: Option<u32>,
        source: &'static str,
    ) -> Submission {
        let mut name = Vec::with_capacity(payload.len() + 64);
        name.extend_from_slice(origin.channel.as_bytes());
        name.push(0);
        name.extend_from_slice(rejection.code.as_str().as_bytes());
        name.push(0);
        // Where it came from, when that is a place (a line, a log offset): two identical
        // records at two offsets are two dead letters, one record read twice is one.
        if let Some(line) = origin.line {
            name.extend_from_slice(&line.to_be_bytes());
        }
        if let (Some(topic), Some(partition), Some(offset)) = (
            &origin.source_topic,
            origin.source_partition,
            origin.source_offset,
        ) {
            name.extend_from_slice(topic.as_bytes());
            name.extend_from_slice(&partition.to_be_bytes());
            name.extend_from_slice(&offset.to_be_bytes());
        }
        name.push(0);
        name.extend_from_slice(payload);
        let letter = DeadLetter {
            dead_letter_id: uuid::Uuid::new_v5(&DEAD_LETTER_NAMESPACE, &name)
                .hyphenated()
                .to_string(),
            received_at: self.clock.now_micros(),
            channel: origin.channel.clone(),
            source_topic: origin.source_topic.clone(),
            source_partition: origin.source_partition,
            source_offset: origin.source_offset,
            content_type: origin.content_type.clone(),
            schema_id: schema_id.and_then(|id| i32::try_from(id).ok()),
            line: origin.line,
            reason_code: rejection.code.as_str().to_owned(),
            reason: rejection.reason,
            payload: payload.to_vec(),
        };
        Submission {
            item: Err(letter),
            source,
        }
    }
}

/// The family label of a JSON event that did not decode, from its `type` tag when readable.
fn json_source_label(text: &str) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        tag: std::borrow::Cow<'a, str>,
    }
    let family = match serde_json::from_str::<Tag<'_>>(text).map(|tag| tag.tag) {
        Ok(tag) if tag == "pos.transaction" => EventFamily::PosTransaction,
        Ok(tag) if tag == "ecom.order" => EventFamily::EcomOrder,
        Ok(tag) if tag == "ecom.refund" => EventFamily::EcomRefund,
        Ok(tag) if tag == "wechat.event" => EventFamily::Wechat,
        Ok(tag) if tag == "membership.event" => EventFamily::Membership,
        _ => return "unknown",
    };
    family.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_json_is_labelled_by_its_type_tag() {
        assert_eq!(
            json_source_label(r#"{"type": "ecom.order", "order_id": 5}"#),
            "ecom_order"
        );
        assert_eq!(json_source_label(r#"{"type": "pos.unknown"}"#), "unknown");
        assert_eq!(json_source_label("not json"), "unknown");
    }
}
