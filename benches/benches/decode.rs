//! Avro decode throughput: Kinfold's `decode_framed` against serde_avro_fast and apache-avro,
//! on the same records in the same run.
//!
//! Two sections:
//! - `pos_transaction`: POS transactions only (the most common family);
//! - `mix`: the generator's natural mix of all families; the baselines decode each record with
//!   its own family schema (they are handed the family with the datum, Kinfold finds it through
//!   the registry).
//!
//! Every record is encoded once with the current family schema (`Codecs::encode_family`) and
//! framed with its registry id. Kinfold decodes the framed bytes (framing, registry lookup,
//! serde_avro_fast into the family struct, wrapped in `EventBody`); the baselines decode the
//! already-split datum:
//! - `serde_avro_fast`: `from_datum_slice` into the same Rust struct;
//! - `apache-avro Value`: `from_avro_datum` into the generic `Value`;
//! - `apache-avro struct`: `from_avro_datum` then `from_value` into the same Rust struct.
//!
//! Runs are interleaved (every decoder once per round, the starting decoder rotating), repeated
//! and reported as the median. MB/s counts the Avro datum bytes (without the 5-byte frame
//! header) for every decoder, so MB/s ratios equal records/s ratios.
//!
//! `KINFOLD_BENCH_QUICK=1` shrinks the record counts tenfold and the repetitions, for CI.

use kinfold_benches::{Generator, GeneratorConfig, quick};
use kinfold_core::EventFamily;
use kinfold_core::event::{
    EcomOrder, EcomRefund, EventBody, MembershipEvent, PosTransaction, WechatEvent,
};
use kinfold_schemas::codec::{Codecs, family_subject};
use kinfold_schemas::{Catalog, SchemaRegistry, frame};
use kinfold_storage::EmbeddedDatabase;
use serde::de::DeserializeOwned;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// POS records in a full run.
const POS_RECORDS: usize = 100_000;
/// Records of the mix section in a full run: half, to keep the run under a minute (apache-avro
/// is slow).
const MIX_RECORDS: usize = 50_000;
/// apache-avro's round trip is checked on every this many records (it is slow); Kinfold's and
/// serde_avro_fast's on every record.
const APACHE_CHECK_EVERY: usize = 10;

/// The writer schema of one family, parsed independently for each library.
struct FamilySchema {
    id: u32,
    apache: apache_avro::Schema,
    fast: serde_avro_fast::Schema,
    field_count: usize,
}

/// One section's records in every form the decoders take.
struct Section {
    name: &'static str,
    bodies: Vec<EventBody>,
    /// Framed: magic byte, schema id, datum. Kinfold's input.
    framed: Vec<Vec<u8>>,
    /// The bare Avro datums. The baselines' input.
    datums: Vec<Vec<u8>>,
    families: Vec<EventFamily>,
    datum_bytes: usize,
}

struct Fixture {
    registry: SchemaRegistry,
    /// Indexed by `family as usize` (the order of `EventFamily::ALL`), so the baselines pay
    /// an array index, not a hash, to find a record's schema.
    schemas: Vec<FamilySchema>,
    _db: EmbeddedDatabase,
    _dir: tempfile::TempDir,
}

fn open_registry() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = EmbeddedDatabase::open(dir.path()).expect("the embedded database opens");
    let registry = runtime.block_on(async {
        let registry = SchemaRegistry::open(Arc::new(db.kv()))
            .await
            .expect("the registry opens");
        registry
            .register_catalog(&Catalog::embedded())
            .await
            .expect("the embedded catalog registers");
        registry
    });
    let schemas = EventFamily::ALL
        .into_iter()
        .enumerate()
        .map(|(index, family)| {
            assert_eq!(
                family as usize, index,
                "EventFamily::ALL is in declaration order"
            );
            let id = registry
                .latest_id(family_subject(family))
                .expect("every family subject is registered");
            let text = &registry
                .schema_by_id(id)
                .expect("the latest id resolves")
                .text;
            let apache = apache_avro::Schema::parse_str(text).expect("apache-avro parses it");
            let fast = text
                .parse::<serde_avro_fast::Schema>()
                .expect("serde_avro_fast parses it");
            let field_count = match &apache {
                apache_avro::Schema::Record(record) => record.fields.len(),
                other => panic!("family schema is not a record: {other:?}"),
            };
            FamilySchema {
                id,
                apache,
                fast,
                field_count,
            }
        })
        .collect();
    Fixture {
        registry,
        schemas,
        _db: db,
        _dir: dir,
    }
}

fn section(name: &'static str, bodies: Vec<EventBody>, fixture: &Fixture) -> Section {
    let codecs = Codecs::new();
    let mut framed = Vec::with_capacity(bodies.len());
    let mut datums = Vec::with_capacity(bodies.len());
    let mut families = Vec::with_capacity(bodies.len());
    for body in &bodies {
        let family = body.family();
        let datum = codecs
            .encode_family(body)
            .expect("a generated body encodes");
        framed.push(frame(fixture.schemas[family as usize].id, &datum));
        datums.push(datum);
        families.push(family);
    }
    let datum_bytes = datums.iter().map(Vec::len).sum();
    Section {
        name,
        bodies,
        framed,
        datums,
        families,
        datum_bytes,
    }
}

fn generator() -> Generator {
    Generator::new(GeneratorConfig {
        customers: 5_000,
        ..GeneratorConfig::default()
    })
}

// ---- the decoders under test; each returns how many records decoded ------------------------

fn kinfold(section: &Section, registry: &SchemaRegistry) -> usize {
    let mut decoded = 0;
    for framed in &section.framed {
        if let Ok(result) = kinfold_ingest::model::decode_framed(black_box(framed), registry) {
            black_box(&result);
            decoded += 1;
        }
    }
    decoded
}

fn fast_one<T: DeserializeOwned>(datum: &[u8], schema: &serde_avro_fast::Schema) -> bool {
    match serde_avro_fast::from_datum_slice::<T>(black_box(datum), schema) {
        Ok(value) => {
            black_box(&value);
            true
        }
        Err(_) => false,
    }
}

fn serde_avro_fast(section: &Section, schemas: &[FamilySchema]) -> usize {
    let mut decoded = 0;
    for (datum, family) in section.datums.iter().zip(&section.families) {
        let schema = &schemas[*family as usize].fast;
        let ok = match family {
            EventFamily::PosTransaction => fast_one::<PosTransaction>(datum, schema),
            EventFamily::EcomOrder => fast_one::<EcomOrder>(datum, schema),
            EventFamily::EcomRefund => fast_one::<EcomRefund>(datum, schema),
            EventFamily::Wechat => fast_one::<WechatEvent>(datum, schema),
            EventFamily::Membership => fast_one::<MembershipEvent>(datum, schema),
        };
        decoded += usize::from(ok);
    }
    decoded
}

fn apache_value(section: &Section, schemas: &[FamilySchema]) -> usize {
    let mut decoded = 0;
    for (datum, family) in section.datums.iter().zip(&section.families) {
        let schema = &schemas[*family as usize].apache;
        if let Ok(value) = apache_avro::from_avro_datum(schema, &mut black_box(&datum[..]), None) {
            black_box(&value);
            decoded += 1;
        }
    }
    decoded
}

fn apache_one<T: DeserializeOwned>(datum: &[u8], schema: &apache_avro::Schema) -> bool {
    let Ok(value) = apache_avro::from_avro_datum(schema, &mut black_box(datum), None) else {
        return false;
    };
    match apache_avro::from_value::<T>(&value) {
        Ok(record) => {
            black_box(&record);
            true
        }
        Err(_) => false,
    }
}

fn apache_struct(section: &Section, schemas: &[FamilySchema]) -> usize {
    let mut decoded = 0;
    for (datum, family) in section.datums.iter().zip(&section.families) {
        let schema = &schemas[*family as usize].apache;
        let ok = match family {
            EventFamily::PosTransaction => apache_one::<PosTransaction>(datum, schema),
            EventFamily::EcomOrder => apache_one::<EcomOrder>(datum, schema),
            EventFamily::EcomRefund => apache_one::<EcomRefund>(datum, schema),
            EventFamily::Wechat => apache_one::<WechatEvent>(datum, schema),
            EventFamily::Membership => apache_one::<MembershipEvent>(datum, schema),
        };
        decoded += usize::from(ok);
    }
    decoded
}

// ---- correctness, untimed ------------------------------------------------------------------

/// Whether serde_avro_fast gives back `original`, and (when `apache` is set) whether
/// apache-avro does through `from_value`.
fn struct_round_trips<T: DeserializeOwned + PartialEq>(
    original: &T,
    datum: &[u8],
    schema: &FamilySchema,
    apache: bool,
) -> (bool, bool) {
    let fast = serde_avro_fast::from_datum_slice::<T>(datum, &schema.fast).ok();
    let apache_ok = !apache
        || apache_avro::from_avro_datum(&schema.apache, &mut &datum[..], None)
            .ok()
            .and_then(|value| apache_avro::from_value::<T>(&value).ok())
            .is_some_and(|decoded| decoded == *original);
    (fast.as_ref() == Some(original), apache_ok)
}

/// Checks that every decoder gives back exactly what was encoded: Kinfold and serde_avro_fast
/// for every record, apache-avro for a sample.
fn verify(section: &Section, fixture: &Fixture) {
    for (index, body) in section.bodies.iter().enumerate() {
        let apache = index % APACHE_CHECK_EVERY == 0;
        let family = section.families[index];
        let schema = &fixture.schemas[family as usize];
        let datum = &section.datums[index][..];

        let (decoded, id) =
            kinfold_ingest::model::decode_framed(&section.framed[index], &fixture.registry)
                .unwrap_or_else(|(rejection, _)| {
                    panic!(
                        "{}: kinfold rejects record {index}: {rejection:?}",
                        section.name
                    )
                });
        assert_eq!(id, schema.id, "kinfold: schema id of record {index}");
        assert_eq!(&decoded, body, "kinfold: record {index} round-trips");

        let (fast_ok, apache_ok) = match body {
            EventBody::PosTransaction(original) => {
                struct_round_trips(original, datum, schema, apache)
            }
            EventBody::EcomOrder(original) => struct_round_trips(original, datum, schema, apache),
            EventBody::EcomRefund(original) => struct_round_trips(original, datum, schema, apache),
            EventBody::Wechat(original) => struct_round_trips(original, datum, schema, apache),
            EventBody::Membership(original) => struct_round_trips(original, datum, schema, apache),
        };
        assert!(fast_ok, "serde_avro_fast: record {index} round-trips");
        if !apache {
            continue;
        }
        assert!(
            apache_ok,
            "apache-avro from_value: record {index} round-trips"
        );

        let mut rest = datum;
        let value = apache_avro::from_avro_datum(&schema.apache, &mut rest, None)
            .unwrap_or_else(|error| panic!("apache-avro: record {index}: {error}"));
        assert!(
            rest.is_empty(),
            "apache-avro: record {index} left bytes over"
        );
        match value {
            apache_avro::types::Value::Record(fields) => {
                assert_eq!(
                    fields.len(),
                    schema.field_count,
                    "apache-avro: fields of {index}"
                );
            }
            other => panic!("apache-avro: record {index} is not a record: {other:?}"),
        }
    }
}

// ---- the harness ---------------------------------------------------------------------------

type Runner<'a> = (&'static str, Box<dyn Fn() -> usize + 'a>);

/// Runs every runner `warmup` times, then `reps` rounds of each once (rotating which goes
/// first); returns the median duration of each. Every run must decode `expected` records.
fn measure(runners: &[Runner<'_>], expected: usize, warmup: usize, reps: usize) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(reps); runners.len()];
    for round in 0..warmup + reps {
        for step in 0..runners.len() {
            let index = (round + step) % runners.len();
            let (name, run) = &runners[index];
            let start = Instant::now();
            let decoded = run();
            let elapsed = start.elapsed();
            assert_eq!(decoded, expected, "{name} decoded {decoded} of {expected}");
            if round >= warmup {
                times[index].push(elapsed);
            }
        }
    }
    times
        .into_iter()
        .map(|mut runs| {
            runs.sort();
            runs[runs.len() / 2]
        })
        .collect()
}

fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn bench_section(section: &Section, fixture: &Fixture, warmup: usize, reps: usize) {
    let count = section.framed.len();
    let runners: Vec<Runner<'_>> = vec![
        ("kinfold", Box::new(|| kinfold(section, &fixture.registry))),
        (
            "serde_avro_fast",
            Box::new(|| serde_avro_fast(section, &fixture.schemas)),
        ),
        (
            "apache-avro Value",
            Box::new(|| apache_value(section, &fixture.schemas)),
        ),
        (
            "apache-avro struct",
            Box::new(|| apache_struct(section, &fixture.schemas)),
        ),
    ];
    let medians = measure(&runners, count, warmup, reps);
    let rates: Vec<f64> = medians
        .iter()
        .map(|median| count as f64 / median.as_secs_f64())
        .collect();
    let kinfold_rate = rates[0];
    println!();
    println!(
        "## decode {}: {} records, {} datum bytes (avg {:.0} B), median of {reps} runs",
        section.name,
        grouped(count as f64),
        grouped(section.datum_bytes as f64),
        section.datum_bytes as f64 / count as f64,
    );
    println!();
    println!("| section | decoder | records/s | MB/s | median ms | kinfold / this |");
    println!("|---|---|---:|---:|---:|---:|");
    for (((name, _), median), rate) in runners.iter().zip(&medians).zip(&rates) {
        println!(
            "| {} | {name} | {} | {:.1} | {:.1} | {:.2} |",
            section.name,
            grouped(*rate),
            section.datum_bytes as f64 / median.as_secs_f64() / 1e6,
            median.as_secs_f64() * 1e3,
            kinfold_rate / rate,
        );
    }
    println!();
    for ((name, _), rate) in runners.iter().zip(&rates).skip(1) {
        println!(
            "decode {}  kinfold {} rec/s  {name} {} rec/s  ratio {:.2}",
            section.name,
            grouped(kinfold_rate),
            grouped(*rate),
            kinfold_rate / rate,
        );
    }
}

fn main() {
    let quick = quick();
    let shrink = if quick { 10 } else { 1 };
    let (pos_records, mix_records) = (POS_RECORDS / shrink, MIX_RECORDS / shrink);
    let (warmup, reps) = if quick { (1, 3) } else { (1, 7) };
    let started = Instant::now();

    let fixture = open_registry();
    let mut pos = Vec::with_capacity(pos_records);
    let mut source = generator();
    while pos.len() < pos_records {
        let body = source.next_event();
        if body.family() == EventFamily::PosTransaction {
            pos.push(body);
        }
    }
    let mix = generator().take_events(mix_records);
    let sections = [
        section("pos_transaction", pos, &fixture),
        section("mix", mix, &fixture),
    ];
    let mut shares: Vec<(EventFamily, usize)> = EventFamily::ALL
        .into_iter()
        .map(|family| {
            let count = sections[1]
                .families
                .iter()
                .filter(|candidate| **candidate == family)
                .count();
            (family, count)
        })
        .collect();
    shares.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for section in &sections {
        verify(section, &fixture);
    }
    println!(
        "decode bench{}: setup (generate, encode, verify every record round-trips in all four \
         decoders) {:.1} s",
        if quick { " (quick)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    println!(
        "sizes: PosTransaction {} B, EventBody {} B, decode_framed's result {} B",
        std::mem::size_of::<PosTransaction>(),
        std::mem::size_of::<EventBody>(),
        std::mem::size_of::<Result<(EventBody, u32), (kinfold_ingest::Rejection, Option<u32>)>>(),
    );
    println!(
        "mix: {}",
        shares
            .iter()
            .map(|(family, count)| format!(
                "{family} {:.1}%",
                100.0 * *count as f64 / mix_records as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    for section in &sections {
        bench_section(section, &fixture, warmup, reps);
    }
    println!();
    println!(
        "decode bench total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
