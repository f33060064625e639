//! Model-based test of the identity graph: long random sequences of events (random identifier
//! sets from a small pool, junk and blocked values among them), merges by hand, erasures and
//! review decisions (approve or reject a refused merge or link), run against
//! the graph and against a deliberately simple oracle written here from the rules as stated in
//! the graph's documentation (lists and linear scans, no indexes). After every operation both
//! must hold the same customers (compared as sets of identifier sets, so the oracle owes
//! nothing to how ids are made), resolve the event to the same customer, agree on a manual
//! merge's outcome, and have refused the same number of merges and links.

use kinfold_core::{EventId, Identifier, IdentifierKind};
use kinfold_identity::model::{Change, IdentityGraph, Rules};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;

const RULES: &str = r#"
priority = ["member_card", "phone", "wechat_unionid", "wechat_openid", "email", "device_id"]
merge_on = ["member_card", "phone", "wechat_unionid", "wechat_openid"]

[[limits]]
kind = "member_card"
max = 1

[[limits]]
kind = "phone"
max = 2

[[limits]]
kind = "wechat_unionid"
max = 1
per_issuer = true

[[limits]]
kind = "wechat_openid"
max = 1
per_issuer = true

[[blocked]]
kind = "device_id"
value = "ipad-shared"

[[blocked]]
pattern = "test.*"
"#;

/// The oracle's reading of the rules above.
const PRIORITY: [IdentifierKind; 6] = [
    IdentifierKind::MemberCard,
    IdentifierKind::Phone,
    IdentifierKind::WechatUnionid,
    IdentifierKind::WechatOpenid,
    IdentifierKind::Email,
    IdentifierKind::DeviceId,
];

fn merges_on(kind: IdentifierKind) -> bool {
    matches!(
        kind,
        IdentifierKind::MemberCard
            | IdentifierKind::Phone
            | IdentifierKind::WechatUnionid
            | IdentifierKind::WechatOpenid
    )
}

fn blocked(identifier: &Identifier) -> bool {
    (identifier.kind == IdentifierKind::DeviceId && identifier.value == "ipad-shared")
        || identifier.value.starts_with("test")
}

/// Whether a customer holding `identifiers` keeps to the limits above.
fn within_limits(identifiers: &[Identifier]) -> bool {
    let count = |kind: IdentifierKind| identifiers.iter().filter(|i| i.kind == kind).count();
    let most_per_issuer = |kind: IdentifierKind| {
        identifiers
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| {
                identifiers
                    .iter()
                    .filter(|j| j.kind == kind && j.issuer == i.issuer)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    count(IdentifierKind::MemberCard) <= 1
        && count(IdentifierKind::Phone) <= 2
        && most_per_issuer(IdentifierKind::WechatUnionid) <= 1
        && most_per_issuer(IdentifierKind::WechatOpenid) <= 1
}

#[derive(Debug, Clone)]
struct OracleCustomer {
    created: u64,
    identifiers: Vec<Identifier>,
}

/// A refused merge (of `other` into `customer`) or link (of `identifier`), customers named by
/// when they were created.
#[derive(Debug, Clone)]
struct OracleReview {
    customer: u64,
    other: Option<u64>,
    identifier: Option<Identifier>,
}

#[derive(Debug, Default)]
struct Oracle {
    customers: Vec<OracleCustomer>,
    created: u64,
    review: Vec<OracleReview>,
}

impl Oracle {
    fn holder(&self, identifier: &Identifier) -> Option<usize> {
        self.customers
            .iter()
            .position(|customer| customer.identifiers.contains(identifier))
    }

    fn rank(identifier: &Identifier) -> usize {
        PRIORITY
            .iter()
            .position(|kind| *kind == identifier.kind)
            .expect("ranked")
    }

    /// Returns the identifiers of the customer the event resolved to.
    fn observe(&mut self, identifiers: &[Identifier]) -> Option<BTreeSet<Identifier>> {
        let mut usable: Vec<Identifier> = Vec::new();
        for identifier in identifiers {
            if !blocked(identifier) && !usable.contains(identifier) {
                usable.push(identifier.clone());
            }
        }
        usable.sort_by(|a, b| (Self::rank(a), a).cmp(&(Self::rank(b), b)));
        if usable.is_empty() {
            return None;
        }
        // Candidates by creation order.
        let mut candidates: Vec<u64> = Vec::new();
        for identifier in usable.iter().filter(|i| merges_on(i.kind)) {
            if let Some(index) = self.holder(identifier) {
                let created = self.customers[index].created;
                if !candidates.contains(&created) {
                    candidates.push(created);
                }
            }
        }
        candidates.sort_unstable();
        let by_created = |oracle: &Oracle, created: u64| {
            oracle
                .customers
                .iter()
                .position(|customer| customer.created == created)
                .expect("alive")
        };
        let target_created = if let Some(&survivor) = candidates.first() {
            for &other in &candidates[1..] {
                let (s, o) = (by_created(self, survivor), by_created(self, other));
                let mut union = self.customers[s].identifiers.clone();
                union.extend(self.customers[o].identifiers.iter().cloned());
                if within_limits(&union) {
                    self.customers[s].identifiers = union;
                    self.customers.remove(o);
                } else {
                    self.review.push(OracleReview {
                        customer: survivor,
                        other: Some(other),
                        identifier: None,
                    });
                }
            }
            survivor
        } else {
            let weak = if usable.iter().any(|i| merges_on(i.kind)) {
                None
            } else {
                usable
                    .iter()
                    .find_map(|i| self.holder(i).map(|index| self.customers[index].created))
            };
            match weak {
                Some(created) => created,
                None => {
                    self.customers.push(OracleCustomer {
                        created: self.created,
                        identifiers: Vec::new(),
                    });
                    self.created += 1;
                    self.created - 1
                }
            }
        };
        for identifier in usable {
            if self.holder(&identifier).is_some() {
                continue;
            }
            let target = by_created(self, target_created);
            let mut with = self.customers[target].identifiers.clone();
            with.push(identifier.clone());
            if within_limits(&with) {
                self.customers[target].identifiers = with;
            } else {
                self.review.push(OracleReview {
                    customer: target_created,
                    other: None,
                    identifier: Some(identifier),
                });
            }
        }
        let target = by_created(self, target_created);
        Some(self.customers[target].identifiers.iter().cloned().collect())
    }

    /// Merges the holder of `absorbed` into the holder of `survivor`; false when refused.
    fn merge(&mut self, survivor: &Identifier, absorbed: &Identifier) -> Option<bool> {
        let (s, a) = (self.holder(survivor)?, self.holder(absorbed)?);
        if s == a {
            return Some(false);
        }
        let mut union = self.customers[s].identifiers.clone();
        union.extend(self.customers[a].identifiers.iter().cloned());
        if !within_limits(&union) {
            return Some(false);
        }
        self.customers[s].identifiers = union;
        self.customers.remove(a);
        Some(true)
    }

    /// Erases the holder of `identifier`; false when nobody holds it.
    fn erase(&mut self, identifier: &Identifier) -> bool {
        let Some(index) = self.holder(identifier) else {
            return false;
        };
        let gone = self.customers.remove(index).created;
        self.review
            .retain(|item| item.customer != gone && item.other != Some(gone));
        true
    }

    /// Decides the `index`-th pending review item.
    fn decide(&mut self, index: usize, approve: bool) {
        let item = self.review.remove(index);
        let alive = |oracle: &Oracle, created: u64| {
            oracle
                .customers
                .iter()
                .position(|customer| customer.created == created)
        };
        if !approve {
            return;
        }
        let Some(target) = alive(self, item.customer) else {
            return;
        };
        if let Some(other) = item.other
            && other != item.customer
            && let Some(absorbed) = alive(self, other)
        {
            let moved = self.customers[absorbed].identifiers.clone();
            self.customers[target].identifiers.extend(moved);
            self.customers.remove(absorbed);
        }
        if let Some(identifier) = item.identifier
            && self.holder(&identifier).is_none()
        {
            let target = alive(self, item.customer).expect("still there");
            self.customers[target].identifiers.push(identifier);
        }
    }

    fn snapshot(&self) -> BTreeSet<BTreeSet<Identifier>> {
        self.customers
            .iter()
            .map(|customer| customer.identifiers.iter().cloned().collect())
            .collect()
    }
}

fn identifier(kind: IdentifierKind, issuer: &str, value: String) -> Identifier {
    Identifier {
        kind,
        issuer: issuer.to_owned(),
        value,
    }
}

/// A random identifier from a pool small enough that events keep meeting each other.
fn random_identifier(rng: &mut StdRng) -> Identifier {
    match rng.random_range(0..12) {
        0 | 1 => identifier(
            IdentifierKind::Phone,
            "86",
            format!("+86139{:08}", rng.random_range(0..10)),
        ),
        2 => identifier(
            IdentifierKind::MemberCard,
            "brand",
            format!("M{}", rng.random_range(0..8)),
        ),
        3 | 4 => identifier(
            IdentifierKind::WechatUnionid,
            "open-platform",
            format!("u{}", rng.random_range(0..10)),
        ),
        5 | 6 => identifier(
            IdentifierKind::WechatOpenid,
            if rng.random_bool(0.5) { "app1" } else { "app2" },
            format!("o{}", rng.random_range(0..8)),
        ),
        7 => identifier(
            IdentifierKind::Email,
            "",
            if rng.random_bool(0.2) {
                "test@shop.cn".to_owned()
            } else {
                format!("e{}@shop.cn", rng.random_range(0..6))
            },
        ),
        _ => identifier(
            IdentifierKind::DeviceId,
            "app",
            if rng.random_bool(0.3) {
                "ipad-shared".to_owned()
            } else {
                format!("d{}", rng.random_range(0..5))
            },
        ),
    }
}

#[test]
fn the_graph_agrees_with_a_simple_oracle_over_100k_random_operations() {
    let rules = Rules::from_toml(RULES).expect("rules");
    let mut operations = 0;
    let mut merges_done = 0;
    let mut resolved = 0;
    let mut automatic_merges = 0;
    let mut refusals = 0;
    let mut erased = 0;
    let mut decided = 0;
    for seed in 0..250u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut graph = IdentityGraph::new(rules.clone());
        let mut oracle = Oracle::default();
        for step in 0..400u64 {
            operations += 1;
            let dice = rng.random_range(0..100);
            if dice < 3 {
                let held = random_identifier(&mut rng);
                let expected = oracle.erase(&held);
                let got = match graph.holder(&held) {
                    Some(customer) => graph.erase(customer, "asked to").is_ok(),
                    None => false,
                };
                assert_eq!(got, expected, "seed {seed} step {step}: erase {held}");
                erased += usize::from(got);
            } else if dice < 8 {
                if !oracle.review.is_empty() {
                    let index = rng.random_range(0..oracle.review.len());
                    let approve = rng.random_bool(0.5);
                    oracle.decide(index, approve);
                    let review = graph.review().nth(index).expect("the same queue").id;
                    graph.decide(review, approve, "checked").expect("decided");
                    decided += 1;
                }
            } else if dice < 90 {
                let count = rng.random_range(1..=4);
                let identifiers: Vec<Identifier> =
                    (0..count).map(|_| random_identifier(&mut rng)).collect();
                let event = EventId(uuid::Uuid::from_u128(
                    u128::from(seed) << 32 | u128::from(step),
                ));
                let resolution = graph.observe(event, &identifiers);
                let expected = oracle.observe(&identifiers);
                let got = resolution.customer.map(|customer| {
                    graph
                        .customer(&customer)
                        .expect("resolved to a customer that exists")
                        .identifiers
                        .clone()
                });
                assert_eq!(got, expected, "seed {seed} step {step}: {identifiers:?}");
                resolved += usize::from(got.is_some());
                for change in &resolution.changes {
                    match change {
                        Change::Merged { .. } => automatic_merges += 1,
                        Change::Refused { .. } => refusals += 1,
                        _ => {}
                    }
                }
            } else {
                let (a, b) = (random_identifier(&mut rng), random_identifier(&mut rng));
                let expected = oracle.merge(&a, &b);
                let got = match (graph.holder(&a), graph.holder(&b)) {
                    (Some(survivor), Some(absorbed)) => {
                        Some(graph.merge(survivor, absorbed, "test").is_ok())
                    }
                    _ => None,
                };
                assert_eq!(got, expected, "seed {seed} step {step}: merge {a} <- {b}");
                merges_done += usize::from(got == Some(true));
            }
            let customers: BTreeSet<BTreeSet<Identifier>> = graph
                .customers()
                .map(|customer| customer.identifiers.clone())
                .collect();
            assert_eq!(customers, oracle.snapshot(), "seed {seed} step {step}");
            assert_eq!(
                graph.review().count(),
                oracle.review.len(),
                "seed {seed} step {step}"
            );
            for customer in graph.customers() {
                for held in &customer.identifiers {
                    assert_eq!(graph.holder(held), Some(customer.id));
                }
            }
        }
    }
    assert!(operations >= 100_000);
    // The pool is small enough that merges, refusals and weak-only events all happen.
    assert!(merges_done > 300, "{merges_done} manual merges");
    assert!(
        automatic_merges > 1_000,
        "{automatic_merges} merges by events"
    );
    assert!(refusals > 1_000, "{refusals} refusals");
    assert!(resolved > 50_000, "{resolved} events resolved");
    assert!(erased > 500, "{erased} customers erased");
    assert!(decided > 1_000, "{decided} review decisions");
}
