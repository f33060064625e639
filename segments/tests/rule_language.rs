//! The segment rule language: the domain's example segments parse to the trees meant, bad
//! rules say what is wrong and point at it, and text, tree and JSON forms round-trip.

use kinfold_segments::rule::ast::TimeUnit;
use kinfold_segments::rule::{Arg, Op, Rule, Value, from_json, parse};
use proptest::prelude::*;

fn field(path: &str) -> Value {
    Value::Field(path.split('.').map(str::to_owned).collect())
}

fn named(name: &str, value: Value) -> Arg {
    Arg {
        name: Some(name.to_owned()),
        value,
    }
}

fn days(amount: f64) -> Value {
    Value::Duration {
        amount,
        unit: TimeUnit::Days,
    }
}

/// The examples of DOMAIN.md's "Segments and triggers", written in the language.
const EXAMPLES: &[&str] = &[
    // dormant: no purchase and no interaction in 90 days
    "last_purchase_at < now - 90d and last_event_at < now - 90d",
    // bought anything of series X, or viewed it at least 3 times in the last 14 days
    r#"bought(category = "series X") or count(type = "view", category = "series X", within = 14d) >= 3"#,
    // lives or shops within 3 km of store S
    r#"distance(store = "SH-021") <= 3km or store."SH-021" >= 1"#,
    // top 5% by spend in the last 3 months; more than half of orders used a coupon
    "percentile(spend(within = 13w)) >= 95",
    "coupon_use_rate > 0.5",
    // birthday within the next 7 days; gold tier
    r#"birthday_within(7d) and trait.tier = "gold""#,
    // consent and identifiers
    r#"consent.marketing_sms and has("phone") and not tag.blocked"#,
    r#"trait.home_store in ["SH-021", "SH-022"] and channel.tmall.orders >= 2"#,
    "# a comment\norders >= 5 and net_spend >= 1000",
];

#[test]
fn the_domain_examples_parse() {
    for example in EXAMPLES {
        if let Err(error) = parse(example) {
            panic!("{example}:\n{}", error.render(example));
        }
    }
}

#[test]
fn a_rule_parses_to_the_tree_meant() {
    let rule = parse(
        r#"not (orders >= 5 or net_spend > 1000.50) and count(type = "view", sku = ["A", "B"], within = 14d) >= 3"#,
    )
    .expect("parses");
    let expected = Rule::And(vec![
        Rule::Not(Box::new(Rule::Or(vec![
            Rule::Compare {
                left: field("orders"),
                op: Op::Ge,
                right: Value::Number(5.0),
            },
            Rule::Compare {
                left: field("net_spend"),
                op: Op::Gt,
                right: Value::Number(1000.5),
            },
        ]))),
        Rule::Compare {
            left: Value::Call {
                name: "count".to_owned(),
                args: vec![
                    named("type", Value::String("view".to_owned())),
                    named(
                        "sku",
                        Value::List(vec![
                            Value::String("A".to_owned()),
                            Value::String("B".to_owned()),
                        ]),
                    ),
                    named("within", days(14.0)),
                ],
            },
            op: Op::Ge,
            right: Value::Number(3.0),
        },
    ]);
    assert_eq!(rule, expected);
    // `and` binds tighter than `or`; `now - 90d` is one value.
    assert_eq!(
        parse("orders > 1 or orders < 1 and last_purchase_at < now - 90d").expect("parses"),
        Rule::Or(vec![
            Rule::Compare {
                left: field("orders"),
                op: Op::Gt,
                right: Value::Number(1.0),
            },
            Rule::And(vec![
                Rule::Compare {
                    left: field("orders"),
                    op: Op::Lt,
                    right: Value::Number(1.0),
                },
                Rule::Compare {
                    left: field("last_purchase_at"),
                    op: Op::Lt,
                    right: Value::Offset {
                        base: Box::new(Value::Now),
                        sign: kinfold_segments::rule::Sign::Minus,
                        by: Box::new(days(90.0)),
                    },
                },
            ]),
        ])
    );
}

/// Each bad rule, the text its error must point at, and words its message must hold.
const BAD: &[(&str, &str, &str)] = &[
    ("ordrs > 5", "ordrs", "no profile fact `ordrs`"),
    ("orders >= ", "", "expected a value, found the end"),
    ("orders > 5 and", "", "expected a value"),
    (
        r#"orders > "five""#,
        r#"orders > "five""#,
        "cannot compare a number with a text",
    ),
    (
        "last_purchase_at < now - 90",
        "now - 90",
        "an instant plus or minus a duration",
    ),
    (r#"trait.gender > "F""#, ">", "only compares with = or !="),
    ("(orders > 5", "", "expected `)`"),
    (r#"count(typ = "view") > 1"#, "typ", "takes no `typ`"),
    (
        r#"count(within = "14d") > 1"#,
        r#""14d""#,
        "within is a duration, not a text",
    ),
    ("orders", "orders", "not a condition"),
    ("orders > 5 $ 3", "$", "not a token"),
    ("birthday_within() ", "birthday_within()", "needs days"),
    (
        r#"has("shoe_size")"#,
        r#""shoe_size""#,
        "not an identifier kind",
    ),
    (
        "frobnicate(1) > 2",
        "frobnicate",
        "no function `frobnicate`",
    ),
    (
        "orders > 5 orders",
        "orders",
        "expected `and`, `or` or the end",
    ),
    (
        "channel.tmall > 1",
        "channel.tmall",
        "needs a channel and a fact",
    ),
    (
        "purchased_at > 2026-02-30",
        "purchased_at",
        "no profile fact",
    ),
    (
        "first_purchase_at > 2026-02-30",
        "2026-02-30",
        "is not a date",
    ),
];

#[test]
fn bad_rules_say_what_is_wrong_and_point_at_it() {
    for (source, at, words) in BAD {
        let error = parse(source).expect_err(source);
        let pointed = &source[error.span.clone()];
        assert_eq!(pointed, at.trim(), "{source}: {error}");
        assert!(
            error.message.contains(words),
            "{source}: `{}` should say `{words}`",
            error.message
        );
    }
    // What a person editing the rule sees: the line, and a marker under the offending text.
    let source = "orders >= 5\n  and ordrs > 3";
    let error = parse(source).expect_err("bad");
    let rendered = error.render(source);
    let lines: Vec<&str> = rendered.lines().collect();
    assert!(
        lines[0].starts_with("line 2, column 7: no profile fact `ordrs`"),
        "{rendered}"
    );
    assert_eq!(
        lines[1..],
        ["    and ordrs > 3", "        ^^^^^"],
        "{rendered}"
    );
}

#[test]
fn the_json_form_says_the_same_and_is_checked_the_same() {
    for example in EXAMPLES {
        let rule = parse(example).expect("parses");
        let json = serde_json::to_string(&rule).expect("serialises");
        assert_eq!(from_json(&json).expect("reads back"), rule, "{json}");
    }
    // A tree that serde reads but the language refuses is refused in JSON too.
    let error = from_json(r#"{"holds":{"field":["orders"]}}"#).expect_err("orders alone");
    assert!(
        error.message.contains("not a condition"),
        "{}",
        error.message
    );
    assert!(from_json(r#"{"nonsense":1}"#).is_err());
}

/// Conditions that hold each on their own, to combine.
const ATOMS: &[&str] = &[
    "orders >= 5",
    "net_spend < 1000.25",
    "last_purchase_at < now - 90d",
    "first_purchase_at >= now - 2w + 12h",
    r#"trait.gender = "F""#,
    "consent.marketing_sms",
    r#"bought(sku = ["85123A", "22423"], within = 30d)"#,
    r#"count(type = "view", category = "coffee", within = 14d) >= 3"#,
    "percentile(net_spend) > 95",
    r#"distance(lat = 31.23, lon = 121.47, datum = "gcj02") <= 500m"#,
    r#"has("wechat_unionid")"#,
    r#"trait.home_store in ["SH-021"]"#,
    "birthday_within(7d)",
    "rfm.r = -1",
    r#"store."SH-021" > 0"#,
];

/// Rules as the parser builds them: `and` never directly in `and`, `or` never in `or`.
fn rules() -> impl Strategy<Value = Rule> {
    let atoms: Vec<Rule> = ATOMS
        .iter()
        .map(|atom| parse(atom).expect("an atom"))
        .collect();
    let leaf = proptest::sample::select(atoms);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|rule| Rule::Not(Box::new(rule))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(|rules| {
                Rule::And(
                    rules
                        .into_iter()
                        .flat_map(|rule| match rule {
                            Rule::And(inner) => inner,
                            other => vec![other],
                        })
                        .collect(),
                )
            }),
            proptest::collection::vec(inner, 2..4).prop_map(|rules| {
                Rule::Or(
                    rules
                        .into_iter()
                        .flat_map(|rule| match rule {
                            Rule::Or(inner) => inner,
                            other => vec![other],
                        })
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn text_tree_and_json_round_trip(rule in rules()) {
        let text = rule.to_string();
        let parsed = parse(&text).map_err(|error| TestCaseError::fail(error.render(&text)))?;
        prop_assert_eq!(&parsed, &rule, "{}", text);
        let json = serde_json::to_string(&rule).expect("serialises");
        prop_assert_eq!(from_json(&json).expect("reads back"), rule);
    }
}
