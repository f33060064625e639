//! `kinfold.v1.IdentityService`, on the embedded log and on Kafka alike, called by a client the project did not write: Python's grpcio,
//! which learns the API from the server's reflection service and knows nothing of Kinfold's
//! `.proto` files (`tests/python/grpc_reflect_client.py`).
//!
//! The story (`kinfold_tests::shoppers`) makes one person out of member card M1, WeChat shopper
//! o-1 and phone 13912345678, and a second shopper o-2; a Tmall buyer comes later. The expected identifier sets are written
//! out by hand from the events posted; merges, splits, review decisions and erasure are checked
//! against what they must do to those sets, before and after a restart.

use kinfold_tests::shoppers::story;
use kinfold_tests::{Server, TestLog, wait_stages_caught_up};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kinfold");
const SERVICE: &str = "kinfold.v1.IdentityService";

/// Runs `calls` (see the script) in one client process; one result per call.
fn run(server: &Server, calls: Value) -> Vec<Value> {
    kinfold_tests::grpc_calls(server, &calls)
}

fn call(server: &Server, method: &str, request: Value) -> Value {
    run(
        server,
        json!([{"call": format!("{SERVICE}/{method}"), "request": request}]),
    )
    .remove(0)
}

/// The response of a call that must succeed.
fn ok(server: &Server, method: &str, request: Value) -> Value {
    let result = call(server, method, request.clone());
    assert_eq!(result["code"], "OK", "{method} {request}: {result}");
    result["response"].clone()
}

fn post(server: &Server, event: &Value) {
    kinfold_tests::post_event(server, event);
}

fn caught_up(server: &Server) {
    wait_stages_caught_up(
        server,
        &["ingest", "identity-forward", "identity"],
        Duration::from_secs(60),
    );
}

type Id = (String, String, String);

fn id(kind: &str, issuer: &str, value: &str) -> Id {
    (kind.to_owned(), issuer.to_owned(), value.to_owned())
}

fn ids(identifiers: &Value) -> BTreeSet<Id> {
    identifiers
        .as_array()
        .expect("identifiers")
        .iter()
        .map(|identifier| {
            id(
                identifier["kind"].as_str().expect("kind"),
                identifier["issuer"].as_str().expect("issuer"),
                identifier["value"].as_str().expect("value"),
            )
        })
        .collect()
}

fn by_identifier(kind: &str, issuer: &str, value: &str) -> Value {
    json!({"identifier": {"kind": kind, "issuer": issuer, "value": value}})
}

fn openid(value: &str) -> Value {
    by_identifier("wechat_openid", "wxmp0001", value)
}

/// Every change of `customer`, read `page_size` at a time.
fn all_changes(server: &Server, customer: &str, page_size: u32) -> Vec<Value> {
    let mut changes = Vec::new();
    let mut token = String::new();
    loop {
        let page = ok(
            server,
            "ListChanges",
            json!({"customer_id": customer, "page_size": page_size, "page_token": token}),
        );
        let items = page["changes"].as_array().expect("changes").clone();
        assert!(items.len() <= page_size as usize, "{page}");
        changes.extend(items);
        token = page["next_page_token"].as_str().expect("token").to_owned();
        if token.is_empty() {
            return changes;
        }
    }
}

fn kinds_of(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|change| {
            [
                "created", "linked", "merged", "erased", "decided", "split", "moved", "refused",
            ]
            .into_iter()
            .find(|kind| !change[kind].is_null())
            .unwrap_or("none")
            .to_owned()
        })
        .collect()
}

fn violations(result: &Value) -> BTreeSet<String> {
    result["field_violations"]
        .as_array()
        .map(|violations| {
            violations
                .iter()
                .map(|violation| violation["field"].as_str().expect("field").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A Tmall order by `buyer`, with no other identifier.
fn tmall_order(buyer: &str) -> Value {
    kinfold_tests::shoppers::tmall_order(buyer, "CREATED", 1_767_236_000_000_000)
}

#[test]
fn a_reflection_client_resolves_merges_splits_reviews_and_erases() {
    resolve_merge_split_review_erase(&TestLog::Embedded);
}

#[cfg(feature = "kafka")]
#[test]
fn a_reflection_client_resolves_merges_splits_reviews_and_erases_on_kafka() {
    resolve_merge_split_review_erase(&TestLog::kafka());
}

fn resolve_merge_split_review_erase(log: &TestLog) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = log.serve(BINARY.as_ref(), &data);

    // The API as a generic client finds it: reflection v1 and v1alpha, health.
    let found = run(
        &server,
        json!([
            {"list_services": "v1"},
            {"list_services": "v1alpha"},
            {"file_containing_symbol": SERVICE, "version": "v1"},
            {"health": SERVICE},
            {"health": ""},
        ]),
    );
    for listed in &found[..2] {
        assert_eq!(listed["code"], "OK", "{listed}");
        let services = listed["services"].as_array().expect("services");
        assert!(services.contains(&json!(SERVICE)), "{listed}");
        assert!(
            services.contains(&json!("grpc.health.v1.Health")),
            "{listed}"
        );
    }
    let methods: BTreeSet<&str> = found[2]["files"][0]["services"]["IdentityService"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|method| method.as_str().expect("name"))
        .collect();
    assert_eq!(
        methods,
        BTreeSet::from([
            "Resolve",
            "Merge",
            "Split",
            "Erase",
            "ListChanges",
            "ListReview",
            "DecideReview",
            "ReResolve"
        ])
    );
    assert_eq!(found[3]["status"], "SERVING", "{}", found[3]);
    assert_eq!(found[4]["status"], "SERVING", "{}", found[4]);

    for event in story() {
        post(&server, &event);
    }
    caught_up(&server);

    let phone = id("phone", "86", "+8613912345678");
    let person_ids = BTreeSet::from([
        id("member_card", "kinfold-demo", "M1"),
        phone.clone(),
        id("wechat_openid", "wxmp0001", "o-1"),
        id("wechat_unionid", "open_platform", "u-o-1"),
    ]);
    let shopper_ids = BTreeSet::from([
        id("wechat_openid", "wxmp0001", "o-2"),
        id("wechat_unionid", "open_platform", "u-o-2"),
    ]);

    // Resolve: any of the person's identifiers, raw as a till would send the phone, gives the
    // one customer with all four.
    let resolved = ok(
        &server,
        "Resolve",
        by_identifier("phone", "86", " 139 1234 5678 "),
    );
    assert_eq!(
        ids(&json!([resolved["identifier"]])),
        BTreeSet::from([phone.clone()]),
        "normalised: {resolved}"
    );
    let person = resolved["customer"]["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();
    assert_eq!(ids(&resolved["customer"]["identifiers"]), person_ids);
    let by_card = ok(
        &server,
        "Resolve",
        by_identifier("member_card", "kinfold-demo", "M1"),
    );
    assert_eq!(by_card["customer"]["customer_id"], person.as_str());
    let found = ok(&server, "Resolve", openid("o-2"));
    let shopper = found["customer"]["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();
    assert_ne!(shopper, person);
    assert_eq!(ids(&found["customer"]["identifiers"]), shopper_ids);

    // Merge by hand: the limits still hold (one unionid per open-platform account), so the
    // second shopper cannot join the person.
    let refused = call(
        &server,
        "Merge",
        json!({"survivor_customer_id": person, "absorbed_customer_id": shopper, "reason": "r"}),
    );
    assert_eq!(refused["code"], "FAILED_PRECONDITION", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .expect("message")
            .contains("wechat_unionid"),
        "{refused}"
    );
    // A Tmall buyer, found by the store to be the person: the survivor holds both sets, and the
    // absorbed id resolves to the survivor.
    post(&server, &tmall_order("tm-buyer-1"));
    caught_up(&server);
    let second_ids = BTreeSet::from([id("tmall_omid", "tmall-outlet", "tm-buyer-1")]);
    let second_resolved = ok(
        &server,
        "Resolve",
        by_identifier("tmall_omid", "tmall-outlet", "tm-buyer-1"),
    );
    let second = second_resolved["customer"]["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();
    assert_ne!(second, person);
    assert_eq!(ids(&second_resolved["customer"]["identifiers"]), second_ids);
    let buyer = by_identifier("tmall_omid", "tmall-outlet", "tm-buyer-1");
    let merged = ok(
        &server,
        "Merge",
        json!({"survivor_customer_id": person, "absorbed_customer_id": second,
               "reason": "same person, checked at the store desk"}),
    );
    assert_eq!(
        kinds_of(merged["changes"].as_array().expect("changes")),
        ["merged"]
    );
    let merge = &merged["changes"][0];
    assert_eq!(merge["merged"]["survivor_customer_id"], person.as_str());
    assert_eq!(merge["merged"]["absorbed_customer_id"], second.as_str());
    assert_eq!(ids(&merge["merged"]["identifiers"]), second_ids);
    assert_eq!(
        merge["cause"]["manual_reason"],
        "same person, checked at the store desk"
    );
    let union: BTreeSet<Id> = person_ids.union(&second_ids).cloned().collect();
    assert_eq!(ids(&merged["survivor"]["identifiers"]), union);
    // The story may have merged the member and the WeChat shopper already; the buyer now too.
    let absorbed = merged["survivor"]["absorbed_customer_ids"]
        .as_array()
        .expect("absorbed");
    assert!(absorbed.contains(&json!(second)), "{merged}");
    let after = run(
        &server,
        json!([
            {"call": format!("{SERVICE}/Resolve"), "request": buyer},
            {"call": format!("{SERVICE}/Resolve"), "request": {"customer_id": second}},
        ]),
    );
    for answer in &after {
        assert_eq!(
            answer["response"]["customer"]["customer_id"],
            person.as_str(),
            "{answer}"
        );
    }

    // Split: both come back as they were; the buyer's order moves back to them.
    let split = ok(
        &server,
        "Split",
        json!({"customer_id": person, "restored_customer_id": second, "reason": "wrong merge"}),
    );
    let split_changes = split["changes"].as_array().expect("changes");
    assert_eq!(kinds_of(split_changes), ["split", "moved"], "{split}");
    assert_eq!(ids(&split_changes[0]["split"]["identifiers"]), second_ids);
    assert_eq!(
        split_changes[1]["moved"]["from_customer_id"],
        person.as_str()
    );
    assert_eq!(split_changes[1]["moved"]["to_customer_id"], second.as_str());
    assert_eq!(ids(&split["customer"]["identifiers"]), person_ids);
    assert_eq!(ids(&split["restored"]["identifiers"]), second_ids);
    assert_eq!(
        ok(&server, "Resolve", buyer.clone())["customer"]["customer_id"],
        second.as_str()
    );

    // A second member card for the person: the link is refused and waits for review.
    post(
        &server,
        &json!({
            "type": "membership.event", "event_type": "PROFILE_UPDATED", "brand": "kinfold-demo",
            "member_card": "M2", "event_ref": "CRM-3", "occurred_at": 1_767_235_000_000_000_i64,
            "phone": "13912345678"
        }),
    );
    caught_up(&server);
    let review = ok(&server, "ListReview", json!({}));
    let items = review["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{review}");
    assert_eq!(items[0]["customer_id"], person.as_str());
    assert_eq!(
        ids(&json!([items[0]["identifier"]])),
        BTreeSet::from([id("member_card", "kinfold-demo", "M2")])
    );
    assert!(
        items[0]["rule"]
            .as_str()
            .expect("rule")
            .contains("member_card"),
        "{review}"
    );
    let review_id = items[0]["review_id"].clone();
    let decided = ok(
        &server,
        "DecideReview",
        json!({"review_id": review_id, "approve": false, "reason": "card reported stolen"}),
    );
    assert_eq!(
        kinds_of(decided["changes"].as_array().expect("changes")),
        ["decided"]
    );
    assert_eq!(decided["changes"][0]["decided"]["approved"], false);
    assert_eq!(ok(&server, "ListReview", json!({}))["items"], json!([]));
    assert_eq!(
        ids(&ok(&server, "Resolve", openid("o-1"))["customer"]["identifiers"]),
        person_ids,
        "the refused card was not linked"
    );

    // Each customer's history, the same whichever page size reads it.
    let history = all_changes(&server, &person, 1_000);
    assert_eq!(all_changes(&server, &person, 2), history);
    let kinds = kinds_of(&history);
    for kind in [
        "created", "linked", "merged", "split", "moved", "refused", "decided",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    // Replaying the history by hand gives what the person holds: what was linked to them or
    // merged into them, less what a split took away.
    let mut held: BTreeSet<Id> = BTreeSet::new();
    for change in &history {
        if change["linked"]["customer_id"] == person.as_str() {
            held.extend(ids(&json!([change["linked"]["identifier"]])));
        }
        if change["merged"]["survivor_customer_id"] == person.as_str() {
            held.extend(ids(&change["merged"]["identifiers"]));
        }
        if change["split"]["customer_id"] == person.as_str() {
            for identifier in ids(&change["split"]["identifiers"]) {
                held.remove(&identifier);
            }
        }
    }
    assert_eq!(held, person_ids, "{history:?}");
    let offsets: Vec<u64> = history
        .iter()
        .map(|change| {
            change["input_offset"].as_str().map_or_else(
                || change["input_offset"].as_u64().expect("offset"),
                |text| text.parse().expect("offset"),
            )
        })
        .collect();
    assert!(
        offsets.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first: {offsets:?}"
    );

    // Erase: the buyer's identifiers are let go.
    let erased = ok(
        &server,
        "Erase",
        json!({"customer_id": second, "reason": "asked to be forgotten"}),
    );
    assert_eq!(
        kinds_of(erased["changes"].as_array().expect("changes")),
        ["erased"]
    );

    // Wrong questions get the right codes, with the offending fields named.
    let random = "5f0c7f1e-0000-4000-8000-000000000001";
    let wrong = run(
        &server,
        json!([
            {"call": format!("{SERVICE}/Resolve"), "request": buyer},
            {"call": format!("{SERVICE}/Resolve"), "request": {}},
            {"call": format!("{SERVICE}/Resolve"), "request": by_identifier("fax", "", "1")},
            {"call": format!("{SERVICE}/Resolve"), "request": by_identifier("phone", "86", "null")},
            {"call": format!("{SERVICE}/Resolve"), "request": {"customer_id": random}},
            {"call": format!("{SERVICE}/Merge"), "request": {"survivor_customer_id": "x", "absorbed_customer_id": ""}},
            {"call": format!("{SERVICE}/Merge"), "request": {"survivor_customer_id": person, "absorbed_customer_id": person, "reason": "r"}},
            {"call": format!("{SERVICE}/Split"), "request": {"customer_id": person, "restored_customer_id": second, "reason": "again"}},
            {"call": format!("{SERVICE}/ListChanges"), "request": {"customer_id": person, "page_size": 5000, "page_token": "zz"}},
            {"call": format!("{SERVICE}/ListChanges"), "request": {"customer_id": person, "page_token": "zz"}},
            {"call": format!("{SERVICE}/DecideReview"), "request": {"review_id": 999, "reason": "r"}},
        ]),
    );
    let expect = [
        ("NOT_FOUND", vec![]),
        ("INVALID_ARGUMENT", vec!["key"]),
        ("INVALID_ARGUMENT", vec!["identifier.kind"]),
        ("INVALID_ARGUMENT", vec!["identifier.value"]),
        ("NOT_FOUND", vec![]),
        (
            "INVALID_ARGUMENT",
            vec!["survivor_customer_id", "absorbed_customer_id", "reason"],
        ),
        ("INVALID_ARGUMENT", vec!["absorbed_customer_id"]),
        ("FAILED_PRECONDITION", vec![]),
        ("INVALID_ARGUMENT", vec!["page_size"]),
        ("INVALID_ARGUMENT", vec!["page_token"]),
        ("NOT_FOUND", vec![]),
    ];
    for (answer, (code, fields)) in wrong.iter().zip(expect) {
        assert_eq!(answer["code"], code, "{answer}");
        let fields: BTreeSet<String> = fields.into_iter().map(str::to_owned).collect();
        assert_eq!(violations(answer), fields, "{answer}");
    }

    // After a restart the graph comes back from its state: the same answers.
    server.stop().expect("graceful stop");
    let server = log.serve(BINARY.as_ref(), &data);
    let again = ok(
        &server,
        "Resolve",
        by_identifier("phone", "86", "13912345678"),
    );
    assert_eq!(again["customer"]["customer_id"], person.as_str());
    assert_eq!(ids(&again["customer"]["identifiers"]), person_ids);
    assert_eq!(all_changes(&server, &person, 3), history);
    assert_eq!(call(&server, "Resolve", buyer)["code"], "NOT_FOUND");

    // A rule change, applied with `kinfold identity reresolve`: phones no longer merge. By
    // hand: the member keeps card M1 and the shopper openid and unionid, apart; the phone stays
    // with the one the graph saw it with first; card M2, met only with that phone, makes a
    // customer of its own instead of waiting for review.
    let defaults = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../identity/rules.default.toml"),
    )
    .expect("the default rules");
    let merge_on = defaults.find("merge_on = [").expect("merge_on");
    let phone_line = merge_on
        + defaults[merge_on..]
            .find("  \"phone\",\n")
            .expect("phone merges");
    let no_phone = format!(
        "{}{}",
        &defaults[..phone_line],
        &defaults[phone_line + "  \"phone\",\n".len()..]
    );
    let rule_file = dir.path().join("no-phone-merges.toml");
    std::fs::write(&rule_file, no_phone).expect("rule file");
    let output = std::process::Command::new(BINARY)
        .args([
            "identity",
            "reresolve",
            "--json",
            "--reason",
            "phones are shared in families",
        ])
        .arg("--rules")
        .arg(&rule_file)
        .args(["--grpc", &server.grpc])
        .output()
        .expect("reresolve runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let applied: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(
        applied["moved"].as_array().expect("moved").len() >= 3,
        "the shopper's two events and the M2 update move: {applied}"
    );
    let check_re_resolved = |server: &Server| {
        let member = ok(
            server,
            "Resolve",
            by_identifier("member_card", "kinfold-demo", "M1"),
        );
        let wechat = ok(server, "Resolve", openid("o-1"));
        let mut member_ids = BTreeSet::from([id("member_card", "kinfold-demo", "M1")]);
        let mut wechat_ids = BTreeSet::from([
            id("wechat_openid", "wxmp0001", "o-1"),
            id("wechat_unionid", "open_platform", "u-o-1"),
        ]);
        // The phone stays with whoever the graph saw it with first: the shopper binding it, or
        // the member's update (on a log of several partitions either can reach it first).
        let holder = ok(
            server,
            "Resolve",
            by_identifier("phone", "86", "13912345678"),
        );
        if holder["customer"]["customer_id"] == member["customer"]["customer_id"] {
            member_ids.insert(phone.clone());
        } else {
            wechat_ids.insert(phone.clone());
        }
        assert_ne!(
            member["customer"]["customer_id"],
            wechat["customer"]["customer_id"]
        );
        assert_eq!(ids(&member["customer"]["identifiers"]), member_ids);
        assert_eq!(ids(&wechat["customer"]["identifiers"]), wechat_ids);
        let card = ok(
            server,
            "Resolve",
            by_identifier("member_card", "kinfold-demo", "M2"),
        );
        assert_eq!(
            ids(&card["customer"]["identifiers"]),
            BTreeSet::from([id("member_card", "kinfold-demo", "M2")])
        );
        assert_eq!(ok(server, "ListReview", json!({}))["items"], json!([]));
    };
    check_re_resolved(&server);
    assert_eq!(
        applied["customers_after"].as_u64(),
        applied["customers_before"]
            .as_u64()
            .map(|before| before + 2),
        "{applied}"
    );
    // The change is an input of the graph: a restart's replay makes it again.
    server.stop().expect("graceful stop");
    let server = log.serve(BINARY.as_ref(), &data);
    check_re_resolved(&server);
    server.stop().expect("graceful stop");
}
