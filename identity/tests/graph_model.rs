//! Model-based test of the identity graph: long random sequences of events (random identifier
//! sets from a small pool, junk and blocked values among them), merges by hand, erasures,
//! review decisions (approve or reject a refused merge or link) and splits, run against the
//! graph and against a deliberately simple oracle written here from the rules as stated in the
//! graph's documentation (lists and linear scans, no indexes; a split replays the oracle's own
//! history). After every operation both must hold the same customers with the same
//! identifiers, resolve the event to the same customer, agree on a manual operation's outcome,
//! and hold the same number of review items. At the end of each sequence, replaying the graph's
//! recorded inputs from scratch must give the same graph.

use kinfold_core::{EventId, Identifier, IdentifierKind};
use kinfold_identity::model::{Change, CustomerId, IdentityGraph, Rules};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

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
    id: CustomerId,
    created: u64,
    identifiers: Vec<Identifier>,
    /// Every customer merged into this one, directly or not.
    absorbed: Vec<CustomerId>,
}

/// A refused merge (of `other` into `customer`) or link (of `identifier`).
#[derive(Debug, Clone, PartialEq)]
struct OracleReview {
    customer: CustomerId,
    other: Option<CustomerId>,
    identifier: Option<Identifier>,
}

/// What the oracle's state is a fold of.
#[derive(Debug, Clone)]
enum Op {
    Observe(EventId, Vec<Identifier>),
    Merge(CustomerId, CustomerId),
    Erase(CustomerId),
    Decide(OracleReview, bool),
    Split(CustomerId, CustomerId),
}

/// Two lineages a split keeps apart, from the beginning, until a later merge by hand.
#[derive(Debug, Clone)]
struct KeptApart {
    a: CustomerId,
    b: CustomerId,
    at: usize,
    lifted: bool,
}

#[derive(Debug, Default)]
struct Oracle {
    customers: Vec<OracleCustomer>,
    created: u64,
    review: Vec<OracleReview>,
    history: Vec<Op>,
    apart: Vec<KeptApart>,
    /// Every event resolved, and to whom then.
    events: Vec<(EventId, Option<CustomerId>)>,
}

impl Oracle {
    fn holder(&self, identifier: &Identifier) -> Option<usize> {
        self.customers
            .iter()
            .position(|customer| customer.identifiers.contains(identifier))
    }

    fn position(&self, id: CustomerId) -> Option<usize> {
        self.customers.iter().position(|customer| customer.id == id)
    }

    fn rank(identifier: &Identifier) -> usize {
        PRIORITY
            .iter()
            .position(|kind| *kind == identifier.kind)
            .expect("ranked")
    }

    fn kept_apart(&self, x: usize, y: usize) -> Option<usize> {
        let has = |index: usize, id: CustomerId| {
            self.customers[index].id == id || self.customers[index].absorbed.contains(&id)
        };
        self.apart.iter().position(|apart| {
            !apart.lifted
                && ((has(x, apart.a) && has(y, apart.b)) || (has(x, apart.b) && has(y, apart.a)))
        })
    }

    fn absorb(&mut self, survivor: usize, absorbed: usize) {
        let gone = self.customers[absorbed].clone();
        let kept = &mut self.customers[survivor];
        kept.identifiers.extend(gone.identifiers);
        kept.absorbed.push(gone.id);
        kept.absorbed.extend(gone.absorbed);
        self.customers.remove(absorbed);
    }

    /// The live customer that is `id` or absorbed it.
    fn current(&self, id: CustomerId) -> Option<CustomerId> {
        self.customers
            .iter()
            .find(|customer| customer.id == id || customer.absorbed.contains(&id))
            .map(|customer| customer.id)
    }

    /// Returns the customer the event resolved to; an event seen before changes nothing.
    fn observe(&mut self, event: EventId, identifiers: &[Identifier]) -> Option<CustomerId> {
        if let Some((_, resolved)) = self.events.iter().find(|(seen, _)| *seen == event) {
            return resolved.and_then(|id| self.current(id));
        }
        self.history.push(Op::Observe(event, identifiers.to_vec()));
        let resolved = self.resolve(event, identifiers);
        self.events.push((event, resolved));
        resolved
    }

    fn resolve(&mut self, event: EventId, identifiers: &[Identifier]) -> Option<CustomerId> {
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
        let mut candidates: Vec<(u64, CustomerId)> = Vec::new();
        for identifier in usable.iter().filter(|i| merges_on(i.kind)) {
            if let Some(index) = self.holder(identifier) {
                let customer = &self.customers[index];
                if !candidates.contains(&(customer.created, customer.id)) {
                    candidates.push((customer.created, customer.id));
                }
            }
        }
        candidates.sort_unstable();
        let target = if let Some(&(_, survivor)) = candidates.first() {
            for &(_, other) in &candidates[1..] {
                let s = self.position(survivor).expect("alive");
                let o = self.position(other).expect("alive");
                if self.kept_apart(s, o).is_some() {
                    continue;
                }
                let mut union = self.customers[s].identifiers.clone();
                union.extend(self.customers[o].identifiers.iter().cloned());
                if within_limits(&union) {
                    self.absorb(s, o);
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
                    .find_map(|i| self.holder(i).map(|index| self.customers[index].id))
            };
            match weak {
                Some(id) => id,
                None => {
                    let id = CustomerId::first_seen_in(&event);
                    self.customers.push(OracleCustomer {
                        id,
                        created: self.created,
                        identifiers: Vec::new(),
                        absorbed: Vec::new(),
                    });
                    self.created += 1;
                    id
                }
            }
        };
        for identifier in usable {
            if self.holder(&identifier).is_some() {
                continue;
            }
            let index = self.position(target).expect("alive");
            let mut with = self.customers[index].identifiers.clone();
            with.push(identifier.clone());
            if within_limits(&with) {
                self.customers[index].identifiers = with;
            } else {
                self.review.push(OracleReview {
                    customer: target,
                    other: None,
                    identifier: Some(identifier),
                });
            }
        }
        Some(target)
    }

    /// Merges `absorbed` into `survivor` by hand as input number `at`; false when refused.
    fn merge_at(&mut self, at: usize, survivor: CustomerId, absorbed: CustomerId) -> bool {
        let (Some(s), Some(a)) = (self.position(survivor), self.position(absorbed)) else {
            return false;
        };
        if s == a {
            return false;
        }
        let apart = self.kept_apart(s, a);
        if apart.is_some_and(|apart| self.apart[apart].at > at) {
            return false;
        }
        let mut union = self.customers[s].identifiers.clone();
        union.extend(self.customers[a].identifiers.iter().cloned());
        if !within_limits(&union) {
            return false;
        }
        if let Some(apart) = apart {
            self.apart[apart].lifted = true;
        }
        self.absorb(s, a);
        true
    }

    fn merge(&mut self, survivor: CustomerId, absorbed: CustomerId) -> bool {
        let merged = self.merge_at(self.history.len(), survivor, absorbed);
        if merged {
            self.history.push(Op::Merge(survivor, absorbed));
        }
        merged
    }

    fn erase_now(&mut self, id: CustomerId) -> bool {
        let Some(index) = self.position(id) else {
            return false;
        };
        self.customers.remove(index);
        self.review
            .retain(|item| item.customer != id && item.other != Some(id));
        true
    }

    fn erase(&mut self, id: CustomerId) -> bool {
        let erased = self.erase_now(id);
        if erased {
            self.history.push(Op::Erase(id));
        }
        erased
    }

    fn carry_out(&mut self, item: OracleReview, approve: bool) {
        if !approve || self.position(item.customer).is_none() {
            return;
        }
        if let Some(other) = item.other
            && other != item.customer
            && let Some(absorbed) = self.position(other)
        {
            let target = self.position(item.customer).expect("alive");
            self.absorb(target, absorbed);
        }
        if let Some(identifier) = item.identifier
            && self.holder(&identifier).is_none()
        {
            let target = self.position(item.customer).expect("alive");
            self.customers[target].identifiers.push(identifier);
        }
    }

    /// Decides the `index`-th pending review item.
    fn decide(&mut self, index: usize, approve: bool) {
        let item = self.review.remove(index);
        self.history.push(Op::Decide(item.clone(), approve));
        self.carry_out(item, approve);
    }

    /// Splits `restored` out of `customer`: the history is replayed with the two kept apart.
    fn split(&mut self, customer: CustomerId, restored: CustomerId) {
        let mut history = std::mem::take(&mut self.history);
        history.push(Op::Split(customer, restored));
        let mut fresh = Oracle::default();
        for (at, op) in history.iter().enumerate() {
            if let Op::Split(a, b) = op {
                fresh.apart.push(KeptApart {
                    a: *a,
                    b: *b,
                    at,
                    lifted: false,
                });
            }
        }
        for (at, op) in history.iter().enumerate() {
            match op {
                Op::Observe(event, identifiers) => {
                    let resolved = fresh.resolve(*event, identifiers);
                    fresh.events.push((*event, resolved));
                }
                Op::Merge(survivor, absorbed) => {
                    fresh.merge_at(at, *survivor, *absorbed);
                }
                Op::Erase(id) => {
                    fresh.erase_now(*id);
                }
                Op::Decide(item, approve) => {
                    if let Some(index) = fresh.review.iter().position(|pending| pending == item) {
                        let item = fresh.review.remove(index);
                        fresh.carry_out(item, *approve);
                    }
                }
                Op::Split(..) => {}
            }
        }
        fresh.history = history;
        *self = fresh;
    }

    fn snapshot(&self) -> BTreeMap<CustomerId, BTreeSet<Identifier>> {
        self.customers
            .iter()
            .map(|customer| (customer.id, customer.identifiers.iter().cloned().collect()))
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
    let mut splits = 0;
    let mut redelivered = 0;
    let snapshot = |graph: &IdentityGraph| -> BTreeMap<CustomerId, BTreeSet<Identifier>> {
        graph
            .customers()
            .map(|customer| {
                let identifiers = customer
                    .identifiers
                    .iter()
                    .map(|identifier| (**identifier).clone())
                    .collect();
                (customer.id, identifiers)
            })
            .collect()
    };
    for seed in 0..250u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut graph = IdentityGraph::new(rules.clone());
        let mut oracle = Oracle::default();
        let mut delivered: Vec<(EventId, Vec<Identifier>)> = Vec::new();
        for step in 0..400u64 {
            operations += 1;
            let dice = rng.random_range(0..100);
            if dice < 3 {
                let held = random_identifier(&mut rng);
                let got = match graph.holder(&held) {
                    Some(customer) => {
                        let done = graph.erase(customer, "asked to").is_ok();
                        assert_eq!(done, oracle.erase(customer), "seed {seed} step {step}");
                        done
                    }
                    None => false,
                };
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
            } else if dice < 12 {
                let held = random_identifier(&mut rng);
                if let Some(customer) = graph.holder(&held) {
                    let absorbed: Vec<CustomerId> = graph.absorbed(&customer).copied().collect();
                    let index = oracle.position(customer).expect("the same customers");
                    let mut expected = oracle.customers[index].absorbed.clone();
                    expected.sort_unstable();
                    assert_eq!(absorbed, expected, "seed {seed} step {step}: lineage");
                    if !absorbed.is_empty() {
                        let restored = absorbed[rng.random_range(0..absorbed.len())];
                        let changes = graph.split(customer, restored, "wrong").expect("split");
                        assert!(matches!(changes[0], Change::Split { .. }));
                        oracle.split(customer, restored);
                        splits += 1;
                    }
                }
            } else if dice < 92 {
                // Now and then an earlier event is delivered again, with its identifiers.
                let again = dice >= 86 && !delivered.is_empty();
                let (event, identifiers) = if again {
                    delivered[rng.random_range(0..delivered.len())].clone()
                } else {
                    let count = rng.random_range(1..=4);
                    let identifiers: Vec<Identifier> =
                        (0..count).map(|_| random_identifier(&mut rng)).collect();
                    let event = EventId(uuid::Uuid::from_u128(
                        u128::from(seed) << 32 | u128::from(step),
                    ));
                    delivered.push((event, identifiers.clone()));
                    (event, identifiers)
                };
                let before = snapshot(&graph);
                let review_before = graph.review().count();
                let resolution = graph.observe(event, &identifiers);
                let expected = oracle.observe(event, &identifiers);
                assert_eq!(
                    resolution.customer, expected,
                    "seed {seed} step {step}: {identifiers:?}"
                );
                resolved += usize::from(expected.is_some());
                if again {
                    assert!(resolution.changes.is_empty(), "seed {seed} step {step}");
                    assert_eq!(snapshot(&graph), before, "seed {seed} step {step}");
                    assert_eq!(graph.review().count(), review_before);
                    redelivered += 1;
                }
                for change in &resolution.changes {
                    match change {
                        Change::Merged { .. } => automatic_merges += 1,
                        Change::Refused { .. } => refusals += 1,
                        _ => {}
                    }
                }
            } else {
                let (a, b) = (random_identifier(&mut rng), random_identifier(&mut rng));
                if let (Some(survivor), Some(absorbed)) = (graph.holder(&a), graph.holder(&b)) {
                    let got = graph.merge(survivor, absorbed, "test").is_ok();
                    let expected = oracle.merge(survivor, absorbed);
                    assert_eq!(got, expected, "seed {seed} step {step}: merge {a} <- {b}");
                    merges_done += usize::from(got);
                }
            }
            assert_eq!(
                snapshot(&graph),
                oracle.snapshot(),
                "seed {seed} step {step}"
            );
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
        // The graph is a fold of its inputs: replaying them gives it again.
        let replayed = IdentityGraph::replay(rules.clone(), &graph.inputs());
        assert_eq!(snapshot(&replayed), snapshot(&graph), "seed {seed}: replay");
        assert_eq!(replayed.review().count(), graph.review().count());
        assert_eq!(replayed.event_customers(), graph.event_customers());
    }
    assert!(operations >= 100_000);
    // The pool is small enough that every kind of operation happens often.
    assert!(merges_done > 300, "{merges_done} manual merges");
    assert!(
        automatic_merges > 1_000,
        "{automatic_merges} merges by events"
    );
    assert!(refusals > 1_000, "{refusals} refusals");
    assert!(resolved > 50_000, "{resolved} events resolved");
    assert!(erased > 500, "{erased} customers erased");
    assert!(decided > 1_000, "{decided} review decisions");
    assert!(splits > 300, "{splits} splits");
    assert!(redelivered > 3_000, "{redelivered} events delivered again");
}
