//! Five segments of the Online Retail II members, each rule evaluated for every customer, sized
//! as DuckDB sizes them over the same CSV (`tests/python/online_retail_segments.py`).

use kinfold_ingest::online_retail;
use kinfold_profile::{Journal, Profile, ProfileRules, fold};
use kinfold_segments::eval::{Facts, Population, Subject, evaluate};
use kinfold_segments::rule::parse;

/// The most sold stock code of the year (the white hanging heart T-light holder).
const STOCK_CODE: &str = "85123A";

/// Every customer, as the rules see them at `now`.
fn subjects<'a>(
    journals: &'a [Journal],
    profiles: &'a [Profile],
    now: i64,
    population: Option<&'a Population>,
) -> impl Iterator<Item = Subject<'a>> {
    journals
        .iter()
        .zip(profiles)
        .map(move |(journal, profile)| Subject {
            profile,
            journal,
            now,
            time_zone: chrono_tz::Europe::London,
            population,
            stores: None,
        })
}

#[test]
fn segment_sizes_over_the_online_retail_members_are_duckdbs() {
    let path = kinfold_tests::shared_data("online_retail_II_2009-2010.csv.gz");
    let file = online_retail::read_path(&path).expect("reads the data set");
    let journals: Vec<Journal> = online_retail::member_events(file)
        .into_iter()
        .map(|(_, events)| Journal::of(events))
        .collect();
    // As of the last member invoice.
    let now = journals
        .iter()
        .filter_map(|journal| journal.last_key())
        .map(|(time, _)| time)
        .max()
        .expect("invoices");
    let rules = ProfileRules::default_rules();
    let profiles: Vec<Profile> = journals
        .iter()
        .map(|journal| fold(journal.events()).profile(&rules, now))
        .collect();
    let expected = kinfold_tests::run_python_json(
        "online_retail_segments.py",
        &[path.to_str().expect("a UTF-8 path"), STOCK_CODE],
    )
    .expect("the DuckDB oracle runs");
    assert_eq!(expected["customers"].as_u64(), Some(journals.len() as u64));
    assert_eq!(
        expected["now_us"].as_i64(),
        Some(now),
        "both are as of the same instant"
    );

    let segments = [
        ("dormant_90d", "last_purchase_at < now - 90d".to_owned()),
        ("bought", format!(r#"bought(sku = "{STOCK_CODE}")"#)),
        ("five_orders", "orders >= 5".to_owned()),
        ("net_1000", "net_spend >= 1000".to_owned()),
        ("top_5_percent", "percentile(net_spend) >= 95".to_owned()),
    ];
    // The facts table previews read, filled from the same profiles.
    let mut facts = Facts::new();
    for (slot, subject) in subjects(&journals, &profiles, now, None).enumerate() {
        facts.set(slot as u32, &subject);
    }
    assert_eq!(facts.customers(), journals.len() as u64);
    for (name, text) in segments {
        let rule = parse(&text).expect("parses");
        let decided = facts.decide(&rule, None, now);
        if decided.open.count_ones(..) == 0 {
            let by_column = decided.members.count_ones(..) as u64;
            eprintln!("{name} `{text}`: {by_column} members by column");
            assert_eq!(Some(by_column), expected[name].as_u64(), "{name} by column");
        } else {
            // Journal functions are decided one customer at a time.
            assert_eq!(name, "bought");
        }
        let population = Population::gather(&rule, subjects(&journals, &profiles, now, None));
        let members = subjects(&journals, &profiles, now, Some(&population))
            .filter(|subject| evaluate(&rule, subject).holds == Some(true))
            .count();
        let duckdb = expected[name].as_u64().expect("a size");
        eprintln!("{name} `{text}`: {members} members, DuckDB {duckdb}");
        assert!(duckdb > 0, "{name}: the segment is not empty");
        assert_eq!(members as u64, duckdb, "{name} `{text}`");
    }
}
