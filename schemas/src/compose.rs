//! The canonical envelope's schema, composed from the current family schemas so the two can
//! never drift apart.

use kinfold_core::IdentifierKind;
use serde_json::{Value, json};
use std::collections::HashSet;

/// The canonical event schema whose body is a union of `families` (schema JSON values).
pub fn canonical_schema(families: &[Value]) -> Value {
    let mut defined = HashSet::new();
    let body: Vec<Value> = families
        .iter()
        .map(|family| dedupe_named_types(family.clone(), None, &mut defined))
        .collect();
    let kinds: Vec<&str> = IdentifierKind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    json!({
        "type": "record",
        "name": "CanonicalEvent",
        "namespace": "kinfold.canonical",
        "doc": "an event of any source, normalised, with a deterministic id",
        "fields": [
            {"name": "event_id", "type": "string", "doc": "uuid v5 of the source's natural key"},
            {"name": "event_type", "type": "string"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "receive_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "origin", "type": "string"},
            {"name": "identifiers", "type": {"type": "array", "items": {
                "type": "record", "name": "Identifier", "fields": [
                    {"name": "kind", "type": {"type": "enum", "name": "IdentifierKind", "symbols": kinds}},
                    {"name": "issuer", "type": "string"},
                    {"name": "value", "type": "string"}
                ]
            }}},
            {"name": "body", "type": body}
        ]
    })
}

/// Replaces the second and later definitions of a named type by a reference to its full name,
/// as Avro requires within one schema document.
fn dedupe_named_types(
    schema: Value,
    enclosing_namespace: Option<&str>,
    defined: &mut HashSet<String>,
) -> Value {
    match schema {
        Value::Object(mut object) => {
            let kind = object
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let is_named = matches!(kind.as_str(), "record" | "enum" | "fixed");
            let namespace = object
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| enclosing_namespace.map(str::to_owned));
            if is_named && let Some(name) = object.get("name").and_then(Value::as_str) {
                let full_name = match (&namespace, name.contains('.')) {
                    (Some(namespace), false) => format!("{namespace}.{name}"),
                    _ => name.to_owned(),
                };
                if !defined.insert(full_name.clone()) {
                    return Value::String(full_name);
                }
            }
            if let Some(Value::Array(fields)) = object.remove("fields") {
                let fields = fields
                    .into_iter()
                    .map(|mut field| {
                        if let Some(field_type) = field.get_mut("type") {
                            let taken = field_type.take();
                            *field_type = dedupe_named_types(taken, namespace.as_deref(), defined);
                        }
                        field
                    })
                    .collect();
                object.insert("fields".to_owned(), Value::Array(fields));
            }
            for key in ["items", "values"] {
                if let Some(inner) = object.remove(key) {
                    let inner = dedupe_named_types(inner, namespace.as_deref(), defined);
                    object.insert(key.to_owned(), inner);
                }
            }
            if let Some(inner) = object.remove("type")
                && !inner.is_string()
            {
                let inner = dedupe_named_types(inner, namespace.as_deref(), defined);
                object.insert("type".to_owned(), inner);
            } else if !kind.is_empty() {
                object.insert("type".to_owned(), Value::String(kind));
            }
            Value::Object(object)
        }
        Value::Array(branches) => Value::Array(
            branches
                .into_iter()
                .map(|branch| dedupe_named_types(branch, enclosing_namespace, defined))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_named_types_become_references() {
        let a = json!({"type":"record","name":"A","namespace":"n","fields":[
            {"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}}]});
        let b = json!({"type":"record","name":"B","namespace":"n","fields":[
            {"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}}]});
        let composed = canonical_schema(&[a, b]);
        let body = &composed["fields"][6]["type"];
        assert_eq!(body[1]["fields"][0]["type"], json!("n.E"));
        assert_eq!(body[0]["fields"][0]["type"]["name"], json!("E"));
        let text = composed.to_string();
        assert!(apache_avro::Schema::parse_str(&text).is_ok(), "{text}");
    }
}
