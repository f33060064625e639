//! `distance(...)`: from where the customer last reported being (a WeChat location, WGS-84 or
//! GCJ-02) to a point or to the nearest of a list of stores. The expected distances come from a
//! haversine written here, and the GCJ-02 point's WGS-84 position from another
//! implementation's published test vector.

mod common;

use common::{START, event, with_subject_and_stores};
use kinfold_core::CanonicalEvent;
use kinfold_segments::eval::{Stores, evaluate};
use kinfold_segments::rule::parse;
use serde_json::json;

/// A WeChat location report.
fn located(id: u128, time: i64, latitude: f64, longitude: f64, datum: &str) -> CanonicalEvent {
    event(
        id,
        time,
        json!({"kinfold.wechat.WechatEvent": {
            "event_type": "LOCATION", "app_id": "wx1", "occurred_at": time,
            "latitude": latitude, "longitude": longitude, "coordinate_system": datum,
        }}),
    )
}

/// The great-circle distance in metres (mean Earth radius), written out for the test.
fn haversine((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let (dphi, dlambda) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

/// GCJ-02 (39.915, 116.404) in WGS-84, as coordtransform-rs's tests give it.
const GCJ_POINT: (f64, f64) = (39.915, 116.404);
const GCJ_POINT_IN_WGS: (f64, f64) = (39.913_595_718_498_36, 116.397_755_500_830_61);

fn stores() -> Stores {
    Stores::from_toml(
        r#"
        [[store]]
        id = "tiananmen"
        latitude = 39.9087
        longitude = 116.3975
        [[store]]
        id = "sanlitun"
        latitude = 39.9375
        longitude = 116.4551
        datum = "gcj02"
        "#,
    )
    .expect("a store list")
}

fn value(events: &[CanonicalEvent], at: i64, rule: &str) -> Option<bool> {
    let rule = parse(rule).expect("parses");
    with_subject_and_stores(events, at, Some(&stores()), |subject| {
        evaluate(&rule, subject).holds
    })
}

#[test]
fn distance_to_a_store_and_to_a_point_from_the_last_location() {
    let now = START + 10 * 86_400_000_000;
    let events = vec![
        // An old report far away, then the latest one in GCJ-02 near Tiananmen.
        located(1, START, 31.2304, 121.4737, "WGS84"),
        located(2, START + 86_400_000_000, GCJ_POINT.0, GCJ_POINT.1, "GCJ02"),
        // After now: not happened yet.
        located(3, now + 1, 31.2304, 121.4737, "WGS84"),
    ];
    let to_tiananmen = haversine(GCJ_POINT_IN_WGS, (39.9087, 116.3975));
    assert!((500.0..1_000.0).contains(&to_tiananmen), "{to_tiananmen}");
    // Within a metre of the oracle: the comparison flips between the two sides of it.
    let metres = to_tiananmen.round() as i64;
    assert_eq!(
        value(
            &events,
            now,
            &format!(r#"distance(store = "tiananmen") <= {}m"#, metres + 1)
        ),
        Some(true)
    );
    assert_eq!(
        value(
            &events,
            now,
            &format!(r#"distance(store = "tiananmen") <= {}m"#, metres - 1)
        ),
        Some(false)
    );
    // The nearest of a list; a store not on the list is ignored, none known is unknown.
    assert_eq!(
        value(
            &events,
            now,
            r#"distance(store = ["sanlitun", "tiananmen", "nowhere"]) < 1km"#
        ),
        Some(true)
    );
    assert_eq!(
        value(&events, now, r#"distance(store = "nowhere") < 1km"#),
        None
    );
    // A point given in GCJ-02: the same place as the report, so no distance at all.
    assert_eq!(
        value(
            &events,
            now,
            &format!(
                r#"distance(lat = {}, lon = {}, datum = "gcj02") < 1m"#,
                GCJ_POINT.0, GCJ_POINT.1
            )
        ),
        Some(true)
    );
    // The same numbers read as WGS-84 are the GCJ-02 offset away (hundreds of metres here).
    let offset = haversine(GCJ_POINT, GCJ_POINT_IN_WGS);
    assert!((400.0..800.0).contains(&offset), "{offset}");
    assert_eq!(
        value(
            &events,
            now,
            &format!(
                r#"distance(lat = {}, lon = {}) > {}m"#,
                GCJ_POINT.0,
                GCJ_POINT.1,
                offset.floor() as i64 - 1
            )
        ),
        Some(true)
    );
    // Before any report: unknown.
    assert_eq!(
        value(&events, START - 1, r#"distance(store = "tiananmen") < 1km"#),
        None
    );
    // In Shanghai a day before the latest report: far from Beijing's stores.
    assert_eq!(
        value(
            &events,
            START + 1,
            r#"distance(store = "tiananmen") > 1000km"#
        ),
        Some(true)
    );
}

#[test]
fn a_store_list_says_what_is_wrong() {
    for (wrong, says) in [
        (
            "[[store]]\nid = \"a\"\nlatitude = 91.0\nlongitude = 0.0\n",
            "latitude",
        ),
        (
            "[[store]]\nid = \"a\"\nlatitude = 1.0\nlongitude = 0.0\ndatum = \"bd09\"\n",
            "datum",
        ),
        (
            "[[store]]\nid = \"a\"\nlatitude = 1.0\nlongitude = 0.0\n[[store]]\nid = \"a\"\nlatitude = 2.0\nlongitude = 0.0\n",
            "twice",
        ),
    ] {
        let error = Stores::from_toml(wrong).expect_err(wrong);
        assert!(error.contains(says), "{wrong}: {error}");
    }
}

#[test]
fn the_example_store_list_reads() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stores.example.toml"))
        .expect("the example file");
    let stores = Stores::from_toml(&text).expect("reads");
    assert_eq!(stores.len(), 2);
    assert_eq!(stores.get("SH-001"), Some((31.2304, 121.4737)));
    // The GCJ-02 store is moved by the datum's offset: hundreds of metres in Beijing.
    let moved = stores.get("BJ-001").expect("listed");
    let offset = haversine((39.9375, 116.4551), moved);
    assert!((300.0..900.0).contains(&offset), "{offset}");
}
