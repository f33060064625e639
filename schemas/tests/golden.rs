//! Golden samples of every version of every subject: BACKWARD_TRANSITIVE compatibility proven
//! with bytes rather than with a schema comparison.
//!
//! Layout, per subject of `Catalog::embedded()` and version N, under `schemas/golden/<subject>/`:
//! - `vN.json`, hand-written: a realistic record in Avro JSON form for schema vN (optional
//!   fields may be plain `null` or a value; a union with several non-null branches takes the
//!   branch's full name as a one-key object, e.g. `{"kinfold.ecom.EcomOrder": {...}}`; bytes are
//!   a string of code points 0–255, as in the Avro JSON encoding);
//! - `vN.bin`: that record's Avro datum, encoded by apache-avro with schema vN;
//! - `vN.expected.json`: what the *current* Rust type must read from `vN.bin`, as apache-avro
//!   resolves it (writer vN, reader the current version) and `apache_avro::from_value` converts
//!   it, serialised with serde_json.
//!
//! `.bin` and `.expected.json` are generated with `KINFOLD_BLESS=1` and committed, so that they
//! are independent of the decoder under test. The test then checks that serde_avro_fast (what
//! Kinfold decodes with) reads every `vN.bin`, with vN as writer schema, into exactly the
//! expected value; and that both generated files are still what the sample and the current
//! schemas give, so a changed sample or a new version cannot go unnoticed.
//!
//! Adding a schema version requires adding its `vN.json` sample, then blessing:
//! `KINFOLD_BLESS=1 cargo test -p kinfold-schemas --test golden`, and reviewing the diff.

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value as AvroValue;
use kinfold_core::event::{
    EcomOrder, EcomRefund, EventBody, MembershipEvent, PosTransaction, WechatEvent,
};
use kinfold_core::{CanonicalEvent, DeadLetter, EventFamily};
use kinfold_schemas::catalog::{CANONICAL_SUBJECT, DLQ_SUBJECT};
use kinfold_schemas::codec::{decode_family, family_subject};
use kinfold_schemas::{Catalog, SubjectSchemas};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn blessing() -> bool {
    std::env::var("KINFOLD_BLESS").as_deref() == Ok("1")
}

const BLESS_HINT: &str =
    "run `KINFOLD_BLESS=1 cargo test -p kinfold-schemas --test golden` and review the diff";

// ---------------------------------------------------------------------------------------------
// What a subject decodes into
// ---------------------------------------------------------------------------------------------

/// The Rust type a subject's records decode into.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Family(EventFamily),
    Canonical,
    DeadLetter,
}

impl Kind {
    fn of(subject: &str) -> Option<Self> {
        if subject == CANONICAL_SUBJECT {
            return Some(Self::Canonical);
        }
        if subject == DLQ_SUBJECT {
            return Some(Self::DeadLetter);
        }
        EventFamily::ALL
            .into_iter()
            .find(|family| family_subject(*family) == subject)
            .map(Self::Family)
    }
}

/// A record of the current Rust types.
#[derive(Debug, Clone, PartialEq)]
enum Record {
    Family(EventBody),
    Canonical(CanonicalEvent),
    DeadLetter(DeadLetter),
}

impl Record {
    /// Parses the expected JSON: for a family, the family record itself.
    fn from_json(kind: Kind, text: &str) -> Result<Self, String> {
        fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
            serde_json::from_str(text).map_err(|error| error.to_string())
        }
        Ok(match kind {
            Kind::Family(family) => Self::Family(match family {
                EventFamily::PosTransaction => EventBody::PosTransaction(parse(text)?),
                EventFamily::EcomOrder => EventBody::EcomOrder(parse(text)?),
                EventFamily::EcomRefund => EventBody::EcomRefund(parse(text)?),
                EventFamily::Wechat => EventBody::Wechat(parse(text)?),
                EventFamily::Membership => EventBody::Membership(parse(text)?),
            }),
            Kind::Canonical => Self::Canonical(parse(text)?),
            Kind::DeadLetter => Self::DeadLetter(parse(text)?),
        })
    }

    /// Converts a value apache-avro decoded, with `apache_avro::from_value`.
    fn from_avro_value(kind: Kind, value: &AvroValue) -> Result<Self, String> {
        fn convert<'a, T: serde::Deserialize<'a>>(value: &'a AvroValue) -> Result<T, String> {
            apache_avro::from_value(value).map_err(|error| error.to_string())
        }
        Ok(match kind {
            Kind::Family(family) => Self::Family(match family {
                EventFamily::PosTransaction => {
                    EventBody::PosTransaction(convert::<PosTransaction>(value)?)
                }
                EventFamily::EcomOrder => EventBody::EcomOrder(convert::<EcomOrder>(value)?),
                EventFamily::EcomRefund => EventBody::EcomRefund(convert::<EcomRefund>(value)?),
                EventFamily::Wechat => EventBody::Wechat(convert::<WechatEvent>(value)?),
                EventFamily::Membership => {
                    EventBody::Membership(convert::<MembershipEvent>(value)?)
                }
            }),
            Kind::Canonical => Self::Canonical(convert(value)?),
            Kind::DeadLetter => Self::DeadLetter(convert(value)?),
        })
    }

    /// Decodes `datum` with serde_avro_fast, as Kinfold does, with `writer` as writer schema.
    fn from_datum(
        kind: Kind,
        datum: &[u8],
        writer: &serde_avro_fast::Schema,
    ) -> Result<Self, String> {
        Ok(match kind {
            Kind::Family(family) => Self::Family(
                decode_family(family, datum, writer).map_err(|error| error.to_string())?,
            ),
            Kind::Canonical => Self::Canonical(
                serde_avro_fast::from_datum_slice(datum, writer)
                    .map_err(|error| error.to_string())?,
            ),
            Kind::DeadLetter => Self::DeadLetter(
                serde_avro_fast::from_datum_slice(datum, writer)
                    .map_err(|error| error.to_string())?,
            ),
        })
    }

    /// The record as serde_json writes it, pretty, with a final newline.
    fn to_json(&self) -> String {
        let text = match self {
            Self::Family(EventBody::PosTransaction(record)) => serde_json::to_string_pretty(record),
            Self::Family(EventBody::EcomOrder(record)) => serde_json::to_string_pretty(record),
            Self::Family(EventBody::EcomRefund(record)) => serde_json::to_string_pretty(record),
            Self::Family(EventBody::Wechat(record)) => serde_json::to_string_pretty(record),
            Self::Family(EventBody::Membership(record)) => serde_json::to_string_pretty(record),
            Self::Canonical(event) => serde_json::to_string_pretty(event),
            Self::DeadLetter(letter) => serde_json::to_string_pretty(letter),
        };
        text.expect("the core types serialise to json") + "\n"
    }
}

// ---------------------------------------------------------------------------------------------
// Sample JSON to an apache-avro value, following the writer schema
// ---------------------------------------------------------------------------------------------

/// The name a union branch is selected by in the sample: a named type's full name, else the
/// primitive's name.
fn branch_name(schema: &AvroSchema) -> Option<String> {
    match schema {
        AvroSchema::Record(record) => Some(record.name.fullname(None)),
        AvroSchema::Enum(enumeration) => Some(enumeration.name.fullname(None)),
        AvroSchema::Fixed(fixed) => Some(fixed.name.fullname(None)),
        AvroSchema::Ref { name } => Some(name.fullname(None)),
        AvroSchema::Null => Some("null".to_owned()),
        AvroSchema::Boolean => Some("boolean".to_owned()),
        AvroSchema::Int => Some("int".to_owned()),
        AvroSchema::Long | AvroSchema::TimestampMicros => Some("long".to_owned()),
        AvroSchema::Float => Some("float".to_owned()),
        AvroSchema::Double => Some("double".to_owned()),
        AvroSchema::Bytes => Some("bytes".to_owned()),
        AvroSchema::String => Some("string".to_owned()),
        _ => None,
    }
}

/// Builds the apache-avro value of `json` for `schema`, strictly: unknown fields, missing
/// fields without a default, unknown symbols and out-of-range numbers are errors.
fn to_avro(
    json: &Json,
    schema: &AvroSchema,
    names: &HashMap<Name, &AvroSchema>,
    path: &str,
) -> Result<AvroValue, String> {
    let mismatch = |expected: &str| format!("{path}: expected {expected}, found {json}");
    Ok(match schema {
        AvroSchema::Null => match json {
            Json::Null => AvroValue::Null,
            _ => return Err(mismatch("null")),
        },
        AvroSchema::Boolean => {
            AvroValue::Boolean(json.as_bool().ok_or_else(|| mismatch("a boolean"))?)
        }
        AvroSchema::Int => {
            let wide = json.as_i64().ok_or_else(|| mismatch("an int"))?;
            AvroValue::Int(i32::try_from(wide).map_err(|_| mismatch("an int within 32 bits"))?)
        }
        AvroSchema::Long => AvroValue::Long(json.as_i64().ok_or_else(|| mismatch("a long"))?),
        AvroSchema::TimestampMicros => {
            AvroValue::TimestampMicros(json.as_i64().ok_or_else(|| mismatch("microseconds"))?)
        }
        AvroSchema::Double => AvroValue::Double(json.as_f64().ok_or_else(|| mismatch("a double"))?),
        AvroSchema::String => AvroValue::String(
            json.as_str()
                .ok_or_else(|| mismatch("a string"))?
                .to_owned(),
        ),
        AvroSchema::Bytes => match json {
            Json::String(text) => AvroValue::Bytes(
                text.chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<_, _>>()
                    .map_err(|_| mismatch("bytes as code points 0-255"))?,
            ),
            _ => return Err(mismatch("bytes as a string")),
        },
        AvroSchema::Enum(enumeration) => {
            let symbol = json.as_str().ok_or_else(|| mismatch("an enum symbol"))?;
            let index = enumeration
                .symbols
                .iter()
                .position(|candidate| candidate == symbol)
                .ok_or_else(|| mismatch(&format!("one of {:?}", enumeration.symbols)))?;
            AvroValue::Enum(index as u32, symbol.to_owned())
        }
        AvroSchema::Array(array) => {
            let items = json.as_array().ok_or_else(|| mismatch("an array"))?;
            AvroValue::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        to_avro(item, &array.items, names, &format!("{path}[{index}]"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        AvroSchema::Record(record) => {
            let object = json.as_object().ok_or_else(|| mismatch("an object"))?;
            if let Some(unknown) = object
                .keys()
                .find(|key| !record.fields.iter().any(|field| &field.name == *key))
            {
                return Err(format!(
                    "{path}: field `{unknown}` is not in {}",
                    record.name.fullname(None)
                ));
            }
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let field_path = format!("{path}.{}", field.name);
                let value = match (object.get(&field.name), &field.default) {
                    (Some(value), _) | (None, Some(value)) => {
                        to_avro(value, &field.schema, names, &field_path)?
                    }
                    (None, None) => {
                        return Err(format!("{field_path}: missing, and it has no default"));
                    }
                };
                fields.push((field.name.clone(), value));
            }
            AvroValue::Record(fields)
        }
        AvroSchema::Union(union) => {
            let variants = union.variants();
            let chosen = match json {
                Json::Null => variants
                    .iter()
                    .position(|variant| matches!(variant, AvroSchema::Null))
                    .map(|index| (index, json)),
                Json::Object(object) if object.len() == 1 => {
                    object.iter().next().and_then(|(key, inner)| {
                        variants
                            .iter()
                            .position(|variant| branch_name(variant).as_deref() == Some(key))
                            .map(|index| (index, inner))
                    })
                }
                _ => None,
            };
            let (index, inner) = match chosen {
                Some(found) => found,
                None => {
                    let mut non_null = variants
                        .iter()
                        .enumerate()
                        .filter(|(_, variant)| !matches!(variant, AvroSchema::Null));
                    match (non_null.next(), non_null.next()) {
                        (Some((index, _)), None) => (index, json),
                        _ => {
                            return Err(format!(
                                "{path}: a union of several types; write the value as {{\"<type name>\": value}}"
                            ));
                        }
                    }
                }
            };
            AvroValue::Union(
                index as u32,
                Box::new(to_avro(inner, &variants[index], names, path)?),
            )
        }
        AvroSchema::Ref { name } => {
            let named = names
                .get(name)
                .ok_or_else(|| format!("{path}: unknown named type {}", name.fullname(None)))?;
            to_avro(json, named, names, path)?
        }
        other => {
            return Err(format!(
                "{path}: the golden test does not handle schema {other:?} yet"
            ));
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// What apache-avro makes of a sample: its datum under vN and the current type's value read
/// from that datum with the current schema as reader.
struct Derived {
    datum: Vec<u8>,
    expected: Record,
}

fn parse_avro(subject: &str, version: usize, text: &str) -> Result<AvroSchema, String> {
    AvroSchema::parse_str(text)
        .map_err(|error| format!("{subject} v{version}: schema does not parse: {error}"))
}

/// Encodes the sample with apache-avro and reads it back into the current type, apache-avro
/// all the way: none of the code under test takes part.
fn derive(
    kind: Kind,
    sample: &Json,
    writer: &AvroSchema,
    reader: &AvroSchema,
) -> Result<Derived, String> {
    let resolved =
        ResolvedSchema::try_from(writer).map_err(|error| format!("writer schema: {error}"))?;
    let value = to_avro(sample, writer, resolved.get_names(), "$")?;
    let datum = apache_avro::to_avro_datum(writer, value)
        .map_err(|error| format!("apache-avro encode: {error}"))?;
    let mut rest = &datum[..];
    let read = apache_avro::from_avro_datum(writer, &mut rest, Some(reader)).map_err(|error| {
        format!("apache-avro decode with the current schema as reader: {error}")
    })?;
    if !rest.is_empty() {
        return Err(format!("apache-avro left {} bytes unread", rest.len()));
    }
    let expected = Record::from_avro_value(kind, &read)
        .map_err(|error| format!("apache_avro::from_value: {error}"))?;
    Ok(Derived { datum, expected })
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| {
        format!(
            "{}: {error} (every schema version needs its golden sample; {BLESS_HINT})",
            path.display()
        )
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|error| format!("{}: {error}", path.display()))
}

/// Checks one version of one subject; blesses it first when asked.
fn check_version(entry: &SubjectSchemas, kind: Kind, number: usize) -> Result<(), String> {
    let subject = &entry.subject;
    let dir = golden_dir().join(subject);
    let sample_path = dir.join(format!("v{number}.json"));
    let bin_path = dir.join(format!("v{number}.bin"));
    let expected_path = dir.join(format!("v{number}.expected.json"));

    let writer_text = &entry.versions[number - 1];
    let writer = parse_avro(subject, number, writer_text)?;
    let reader = parse_avro(subject, entry.versions.len(), entry.current())?;
    let writer_fast: serde_avro_fast::Schema = writer_text.parse().map_err(|error| {
        format!("{subject} v{number}: serde_avro_fast cannot parse the schema: {error}")
    })?;

    // The hand-written sample is required, blessing or not.
    let sample_text = read_file(&sample_path)?;
    let sample: Json = serde_json::from_slice(&sample_text)
        .map_err(|error| format!("{}: not json: {error}", sample_path.display()))?;
    let derived = derive(kind, &sample, &writer, &reader)
        .map_err(|error| format!("{}: {error}", sample_path.display()))?;

    if blessing() {
        write_file(&bin_path, &derived.datum)?;
        write_file(&expected_path, derived.expected.to_json().as_bytes())?;
    }

    let datum = read_file(&bin_path)?;
    let expected_text = read_file(&expected_path)?;
    let expected_text = String::from_utf8(expected_text)
        .map_err(|_| format!("{}: not utf-8", expected_path.display()))?;
    let expected = Record::from_json(kind, &expected_text)
        .map_err(|error| format!("{}: not a current record: {error}", expected_path.display()))?;

    let mut problems = Vec::new();

    // The point of it all: Kinfold's decoder reads the old bytes into the expected value.
    match Record::from_datum(kind, &datum, &writer_fast) {
        Ok(decoded) if decoded == expected => {}
        Ok(decoded) => problems.push(format!(
            "{}: serde_avro_fast with writer v{number} decodes\n{}but {} says\n{}",
            bin_path.display(),
            decoded.to_json(),
            expected_path.display(),
            expected.to_json()
        )),
        Err(error) => problems.push(format!(
            "{}: serde_avro_fast cannot decode it with writer v{number}: {error}",
            bin_path.display()
        )),
    }

    // The committed files are still what the sample and the current schemas give.
    if datum != derived.datum {
        problems.push(format!(
            "{}: is not the apache-avro encoding of {} under v{number}; {BLESS_HINT}",
            bin_path.display(),
            sample_path.display()
        ));
    }
    if expected != derived.expected {
        problems.push(format!(
            "{}: apache-avro now reads v{number}.bin with the current schema (v{}) as\n{}; {BLESS_HINT}",
            expected_path.display(),
            entry.versions.len(),
            derived.expected.to_json()
        ));
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_schema_version_has_a_golden_sample_the_current_types_read() {
    let catalog = Catalog::embedded();
    let mut checked = 0;
    let mut problems = Vec::new();
    for entry in &catalog.subjects {
        let Some(kind) = Kind::of(&entry.subject) else {
            problems.push(format!(
                "subject {} decodes into no known type; teach the golden test about it",
                entry.subject
            ));
            continue;
        };
        for number in 1..=entry.versions.len() {
            checked += 1;
            if let Err(problem) = check_version(entry, kind, number) {
                problems.push(format!("{} v{number}:\n{problem}", entry.subject));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(checked >= 8, "only {checked} versions checked");
}

/// Golden files for a subject or a version the catalog does not have are left-overs of a
/// renamed subject or a typo; either way they prove nothing and must go.
#[test]
fn no_golden_file_is_orphaned() {
    let catalog = Catalog::embedded();
    let mut orphans = Vec::new();
    let entries = std::fs::read_dir(golden_dir()).expect("schemas/golden is readable");
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(subject) = catalog.subject(&name) else {
            orphans.push(format!("{name}: no such subject"));
            continue;
        };
        for file in std::fs::read_dir(entry.path()).expect("a golden subject directory is readable")
        {
            let file_name = file
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let version = file_name
                .strip_prefix('v')
                .and_then(|rest| rest.split('.').next())
                .and_then(|digits| digits.parse::<usize>().ok());
            let known_suffix = [".json", ".bin", ".expected.json"]
                .iter()
                .any(|suffix| file_name.ends_with(suffix));
            match version {
                Some(number) if (1..=subject.versions.len()).contains(&number) && known_suffix => {}
                _ => orphans.push(format!(
                    "{name}/{file_name}: no such version or not a golden file"
                )),
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "orphaned golden files:\n{}",
        orphans.join("\n")
    );
}
