//! Folding a customer's events in any arrival order, with duplicates and late arrivals, gives
//! exactly what a straightforward fold of the events sorted once gives.
//!
//! Each case makes a random set of one customer's events (till sales and returns, online
//! orders in several versions and their refunds, coupons, consent, trait updates, follows),
//! delivers them shuffled with about 10% delivered twice, adds each to a journal and folds it
//! as the stage does (on top when in order, again when late), and compares the profile with
//! the oracle below, which sorts the distinct events once and works every figure out on its
//! own, without the crate's code.

use kinfold_core::CanonicalEvent;
use kinfold_core::event::{
    EcomOrder, EventBody, MembershipEventType, OrderStatus, Platform, PosTransactionKind,
    TenderKind, WechatEventType,
};
use kinfold_profile::fold::DAY_MICROS;
use kinfold_profile::{Journal, ProfileRules, ProfileState, add_and_fold, fold};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};

mod common;

use common::{START, events};

const CASES: u64 = 10_000;

/// What the oracle checks, worked out from the events sorted once.
#[derive(Debug, PartialEq)]
struct Expected {
    events: u64,
    orders: u64,
    returns: u64,
    coupon_orders: u64,
    first_purchase: Option<i64>,
    last_purchase: Option<i64>,
    net_by_currency: BTreeMap<String, i64>,
    orders_by_channel: BTreeMap<String, u64>,
    traits: BTreeMap<String, String>,
    consent: BTreeMap<String, bool>,
    following: BTreeMap<String, (bool, Option<String>)>,
    stores: BTreeMap<String, u64>,
    /// (corp, guide) holding the customer as a contact, since when.
    guides: BTreeMap<(String, String), i64>,
    top_skus: Vec<(String, i64)>,
    recency_days: Option<i64>,
}

fn oracle(mut events: Vec<CanonicalEvent>, at: i64) -> Expected {
    events.sort_by_key(|event| (event.event_time, event.event_id));
    let mut seen = HashSet::new();
    events.retain(|event| seen.insert(event.event_id));

    let mut purchases: Vec<(i64, String, String, i64, bool)> = Vec::new(); // time, channel, currency, amount, coupon
    let mut returns: Vec<(String, i64)> = Vec::new(); // currency, amount
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    let mut stores: BTreeMap<String, u64> = BTreeMap::new();
    let mut traits = BTreeMap::new();
    let mut consent = BTreeMap::new();
    let mut following = BTreeMap::new();
    let mut guides = BTreeMap::new();
    for event in &events {
        match &event.body {
            EventBody::PosTransaction(t) => {
                let sold = t.kind == PosTransactionKind::Sale;
                if sold {
                    let coupon = t.tenders.iter().any(|x| x.kind == TenderKind::Coupon);
                    purchases.push((
                        event.event_time,
                        "pos".into(),
                        t.currency.clone(),
                        t.total_minor,
                        coupon,
                    ));
                    *stores.entry(t.store_id.clone()).or_default() += 1;
                } else {
                    returns.push((t.currency.clone(), t.total_minor));
                }
                for line in &t.lines {
                    *units.entry(line.sku.clone()).or_default() +=
                        if sold { line.quantity } else { -line.quantity };
                }
                if let Some(guide) = &t.guide_id {
                    traits.insert("guide".to_owned(), guide.clone());
                }
            }
            EventBody::EcomRefund(r) => {
                returns.push((r.currency.clone(), r.amount_minor));
                for item in &r.items {
                    *units.entry(item.sku.clone()).or_default() -= item.quantity;
                }
            }
            EventBody::Membership(m) => match m.event_type {
                MembershipEventType::ProfileUpdated => {
                    for (name, value) in [("name", &m.name), ("home_store", &m.home_store)] {
                        if let Some(value) = value
                            && !value.trim().is_empty()
                        {
                            traits.insert(name.to_owned(), value.clone());
                        }
                    }
                }
                MembershipEventType::ConsentGranted => {
                    consent.insert(m.consent_purpose.clone().unwrap(), true);
                }
                MembershipEventType::ConsentWithdrawn => {
                    consent.insert(m.consent_purpose.clone().unwrap(), false);
                }
                _ => {}
            },
            EventBody::Wechat(w)
                if matches!(
                    w.event_type,
                    WechatEventType::WecomContactAdded | WechatEventType::WecomContactRemoved
                ) =>
            {
                let key = (w.corp_id.clone().unwrap(), w.guide_id.clone().unwrap());
                if w.event_type == WechatEventType::WecomContactAdded {
                    guides.entry(key).or_insert(event.event_time);
                    traits.insert("guide".to_owned(), w.guide_id.clone().unwrap());
                } else {
                    guides.remove(&key);
                }
            }
            EventBody::Wechat(w) => {
                let previous_scene = following
                    .get(&w.app_id)
                    .and_then(|(_, scene): &(bool, Option<String>)| scene.clone());
                if w.event_type == WechatEventType::Follow {
                    following.insert(w.app_id.clone(), (true, w.scene.clone()));
                } else {
                    following.insert(w.app_id.clone(), (false, previous_scene));
                }
            }
            EventBody::EcomOrder(_) => {}
        }
    }
    // Online orders: the highest version wins, the later one on a tie; a purchase while that
    // version is paid or later, at the first time any version was.
    let mut by_order: BTreeMap<String, Vec<(&CanonicalEvent, &EcomOrder)>> = BTreeMap::new();
    for event in &events {
        if let EventBody::EcomOrder(o) = &event.body {
            by_order
                .entry(format!("{:?}/{}", o.platform, o.order_id))
                .or_default()
                .push((event, o));
        }
    }
    let paid = |s: OrderStatus| {
        matches!(
            s,
            OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Completed
        )
    };
    for versions in by_order.values() {
        let mut winner = versions[0].1;
        for (_, o) in versions {
            if o.source_version >= winner.source_version {
                winner = o;
            }
        }
        if !paid(winner.status) {
            continue;
        }
        let paid_at = versions
            .iter()
            .filter(|(_, o)| paid(o.status))
            .map(|(e, _)| e.event_time)
            .min()
            .unwrap();
        let amount = if winner.paid_minor > 0 {
            winner.paid_minor
        } else {
            winner.total_minor
        };
        let channel = match winner.platform {
            Platform::Tmall => "tmall",
            _ => "mini_program",
        };
        purchases.push((
            paid_at,
            channel.into(),
            winner.currency.clone(),
            amount,
            !winner.coupons.is_empty(),
        ));
        for item in &winner.items {
            *units.entry(item.sku.clone()).or_default() += item.quantity;
        }
    }
    let mut net_by_currency: BTreeMap<String, i64> = BTreeMap::new();
    for (_, _, currency, amount, _) in &purchases {
        *net_by_currency.entry(currency.clone()).or_default() += amount;
    }
    for (currency, amount) in &returns {
        *net_by_currency.entry(currency.clone()).or_default() -= amount;
    }
    let mut orders_by_channel = BTreeMap::new();
    for (_, channel, ..) in &purchases {
        *orders_by_channel.entry(channel.clone()).or_default() += 1;
    }
    let mut top_skus: Vec<(String, i64)> = units.into_iter().filter(|(_, u)| *u > 0).collect();
    // Most units first; the crate breaks ties on spend, so only the unit counts are compared.
    top_skus.sort_by_key(|sku| std::cmp::Reverse(sku.1));
    top_skus.truncate(5);
    let first_purchase = purchases.iter().map(|p| p.0).min();
    let last_purchase = purchases.iter().map(|p| p.0).max();
    Expected {
        events: events.len() as u64,
        orders: purchases.len() as u64,
        returns: returns.len() as u64,
        coupon_orders: purchases.iter().filter(|p| p.4).count() as u64,
        first_purchase,
        last_purchase,
        net_by_currency,
        orders_by_channel,
        traits,
        consent,
        following,
        stores,
        guides,
        top_skus,
        recency_days: last_purchase.map(|last| (at - last).max(0) / DAY_MICROS),
    }
}

fn observed(state: &ProfileState, rules: &ProfileRules, at: i64) -> Expected {
    let profile = state.profile(rules, at);
    Expected {
        events: profile.events,
        orders: profile.overall.orders,
        returns: profile.overall.returns,
        coupon_orders: profile.overall.coupon_orders,
        first_purchase: profile.overall.first_purchase,
        last_purchase: profile.overall.last_purchase,
        net_by_currency: profile
            .overall
            .money
            .iter()
            .map(|(currency, spend)| (currency.clone(), spend.net_minor()))
            .collect(),
        orders_by_channel: profile
            .channels
            .iter()
            .filter(|(_, facts)| facts.orders > 0)
            .map(|(channel, facts)| (channel.clone(), facts.orders))
            .collect(),
        traits: profile
            .traits
            .iter()
            .map(|(name, value)| (name.clone(), value.value.clone()))
            .collect(),
        consent: profile
            .consent
            .iter()
            .map(|(purpose, consent)| (purpose.clone(), consent.granted))
            .collect(),
        following: profile
            .follows
            .iter()
            .map(|(app, follow)| (app.clone(), (follow.following, follow.scene.clone())))
            .collect(),
        stores: profile.stores.clone(),
        guides: profile
            .guides
            .iter()
            .map(|guide| ((guide.corp_id.clone(), guide.guide_id.clone()), guide.since))
            .collect(),
        top_skus: profile
            .top_skus
            .iter()
            .map(|(sku, bought)| (sku.clone(), bought.units))
            .collect(),
        recency_days: profile.rfm.as_ref().map(|rfm| rfm.recency_days),
    }
}

/// Top SKUs tied on units may come in either order in the oracle: compare them as sets of
/// (units) per position and as a set of names when units tie.
fn same_top(a: &[(String, i64)], b: &[(String, i64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.1 == y.1)
}

#[test]
fn any_arrival_order_with_duplicates_folds_to_the_sorted_once_profile() {
    let rules = ProfileRules::default_rules();
    let at = START + 400 * DAY_MICROS;
    let mut late_cases = 0;
    for case in 0..CASES {
        let mut rng = StdRng::seed_from_u64(case);
        let distinct = events(&mut rng);
        let mut arrivals = distinct.clone();
        for event in &distinct {
            if rng.random_bool(0.1) {
                arrivals.push(event.clone());
            }
        }
        arrivals.shuffle(&mut rng);

        let mut journal = Journal::new();
        let mut state = ProfileState::default();
        let mut late = false;
        for event in arrivals {
            late |= add_and_fold(&mut journal, &mut state, event) == kinfold_profile::Added::Late;
        }
        late_cases += u64::from(late);

        let mut expected = oracle(distinct, at);
        let mut got = observed(&state, &rules, at);
        assert!(
            same_top(&expected.top_skus, &got.top_skus),
            "case {case}: top SKUs {:?} vs {:?}",
            got.top_skus,
            expected.top_skus
        );
        expected.top_skus.clear();
        got.top_skus.clear();
        assert_eq!(got, expected, "case {case}");
        // And the incremental state is the state of folding the journal once, and survives
        // being encoded as the stage stores it.
        assert_eq!(state, fold(journal.events()), "case {case}");
        // The view taken from the state is the view worked out from it.
        assert_eq!(
            state.clone().into_profile(&rules, at),
            state.profile(&rules, at),
            "case {case}"
        );
        let stored = kinfold_profile::stage::encode_state(&state);
        let back: ProfileState =
            kinfold_profile::stage::decode_state(&stored).expect("and reads back");
        assert_eq!(back, state, "case {case}");
    }
    // The shuffles did exercise late arrivals.
    assert!(late_cases > CASES / 2, "{late_cases} cases had late events");
}
