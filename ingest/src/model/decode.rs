//! Decoders: JSON (one event or an array) and Avro in the Confluent wire format.

use crate::error::{RejectCode, Rejection};
use kinfold_core::event::{
    EcomOrder, EcomRefund, EventBody, MembershipEvent, PosTransaction, WechatEvent,
};
use kinfold_schemas::codec::decode_family;
use kinfold_schemas::{DecodeError, SchemaRegistry, parse_frame};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The JSON form of a source event: the family record's fields plus a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum JsonEvent {
    #[serde(rename = "pos.transaction")]
    PosTransaction(PosTransaction),
    #[serde(rename = "ecom.order")]
    EcomOrder(EcomOrder),
    #[serde(rename = "ecom.refund")]
    EcomRefund(EcomRefund),
    #[serde(rename = "wechat.event")]
    Wechat(WechatEvent),
    #[serde(rename = "membership.event")]
    Membership(MembershipEvent),
}

impl From<JsonEvent> for EventBody {
    fn from(event: JsonEvent) -> Self {
        match event {
            JsonEvent::PosTransaction(record) => Self::PosTransaction(record),
            JsonEvent::EcomOrder(record) => Self::EcomOrder(record),
            JsonEvent::EcomRefund(record) => Self::EcomRefund(record),
            JsonEvent::Wechat(record) => Self::Wechat(record),
            JsonEvent::Membership(record) => Self::Membership(record),
        }
    }
}

impl From<EventBody> for JsonEvent {
    fn from(body: EventBody) -> Self {
        match body {
            EventBody::PosTransaction(record) => Self::PosTransaction(record),
            EventBody::EcomOrder(record) => Self::EcomOrder(record),
            EventBody::EcomRefund(record) => Self::EcomRefund(record),
            EventBody::Wechat(record) => Self::Wechat(record),
            EventBody::Membership(record) => Self::Membership(record),
        }
    }
}

/// Splits a JSON request body into its items, each kept as its original text. A body that is
/// not JSON at all is one rejection; an array longer than `max_items` is refused whole.
pub fn decode_json_request(body: &[u8], max_items: usize) -> Result<Vec<Box<RawValue>>, Rejection> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items = if first == Some(&b'[') {
        serde_json::from_slice::<Vec<Box<RawValue>>>(body)
    } else {
        serde_json::from_slice::<Box<RawValue>>(body).map(|item| vec![item])
    }
    .map_err(|error| {
        Rejection::new(
            RejectCode::Undecodable,
            format!("body is not json: {error}"),
        )
    })?;
    if items.len() > max_items {
        return Err(Rejection::new(
            RejectCode::BatchTooLarge,
            format!(
                "{} events in one request, more than {max_items}",
                items.len()
            ),
        ));
    }
    Ok(items)
}

fn json_rejection(error: &serde_json::Error) -> Rejection {
    let message = error.to_string();
    let code = if message.starts_with("missing field") {
        RejectCode::MissingField
    } else {
        RejectCode::Undecodable
    };
    Rejection::new(code, format!("json event: {message}"))
}

fn record<T: serde::de::DeserializeOwned>(
    fields: serde_json::Value,
    unknown: &mut Vec<String>,
) -> Result<T, Rejection> {
    serde_ignored::deserialize(fields, |path| unknown.push(path.to_string()))
        .map_err(|error| json_rejection(&error))
}

/// Decodes one JSON event. A field the record does not have is an error, not silently
/// ignored: a misspelt `memberCard` would otherwise lose an identifier without a word.
pub fn decode_json_event(text: &str) -> Result<EventBody, Rejection> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|error| json_rejection(&error))?;
    let tag = match fields.remove("type") {
        Some(serde_json::Value::String(tag)) => tag,
        Some(_) => {
            return Err(Rejection::new(
                RejectCode::Undecodable,
                "json event: `type` is not a string",
            ));
        }
        None => {
            return Err(Rejection::new(
                RejectCode::MissingField,
                "json event: missing field `type`",
            ));
        }
    };
    let fields = serde_json::Value::Object(fields);
    let mut unknown = Vec::new();
    let body = match tag.as_str() {
        "pos.transaction" => EventBody::PosTransaction(record(fields, &mut unknown)?),
        "ecom.order" => EventBody::EcomOrder(record(fields, &mut unknown)?),
        "ecom.refund" => EventBody::EcomRefund(record(fields, &mut unknown)?),
        "wechat.event" => EventBody::Wechat(record(fields, &mut unknown)?),
        "membership.event" => EventBody::Membership(record(fields, &mut unknown)?),
        other => {
            return Err(Rejection::new(
                RejectCode::Undecodable,
                format!(
                    "json event: unknown type `{other}`, expected pos.transaction, ecom.order, \
                     ecom.refund, wechat.event or membership.event"
                ),
            ));
        }
    };
    if !unknown.is_empty() {
        return Err(Rejection::new(
            RejectCode::UnknownField,
            format!("json event: unknown field(s) {}", unknown.join(", ")),
        ));
    }
    Ok(body)
}

/// Decodes an Avro record in the Confluent wire format, resolving its writer schema through
/// `registry`. Returns the record and its schema id; on failure, the schema id when it was
/// readable.
pub fn decode_framed(
    bytes: &[u8],
    registry: &SchemaRegistry,
) -> Result<(EventBody, u32), (Rejection, Option<u32>)> {
    let (schema_id, datum) = parse_frame(bytes).map_err(|error| {
        (
            Rejection::new(RejectCode::BadFraming, error.to_string()),
            None,
        )
    })?;
    let rejection =
        |code, error: DecodeError| (Rejection::new(code, error.to_string()), Some(schema_id));
    let writer = registry.schema_by_id(schema_id).ok_or_else(|| {
        rejection(
            RejectCode::UnknownSchemaId,
            DecodeError::UnknownSchemaId(schema_id),
        )
    })?;
    let family = writer.family.ok_or_else(|| {
        rejection(
            RejectCode::UnsupportedRecord,
            DecodeError::UnsupportedRecord {
                schema_id,
                record: writer
                    .full_name
                    .clone()
                    .unwrap_or_else(|| "(unnamed)".to_owned()),
            },
        )
    })?;
    let body = decode_family(family, datum, &writer.fast)
        .map_err(|error| rejection(RejectCode::Undecodable, error))?;
    Ok((body, schema_id))
}
