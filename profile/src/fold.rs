//! The fold of a journal into a customer's profile.
//!
//! [`ProfileState`] is the projection that is stored: what folding the journal in order gives.
//! Folding an event on top is what the stage does for an event in order; a late one, a merge or
//! a split folds the journal again ([`fold`]); both give the same state, because every rule
//! here depends on the journal's order alone, never on arrival:
//! - traits, consent, follow state and guides: the latest by event time (then event id) wins;
//! - an online order is the version with the highest `source_version` (the later in the journal
//!   on a tie); it counts as a purchase while that version is paid, shipped or completed, at the
//!   time it was first paid; its amount is what was paid (the total when nothing is recorded);
//! - a till sale is a purchase, a till return and an online refund are returns; net spend is
//!   purchases less returns, per currency.
//!
//! [`Profile`] is what a reader gets: the state's facts with the figures derived from them
//! (average order value, purchase interval, coupon use rate, top categories and SKUs, RFM scores
//! at the instant asked for, a simple lifetime value) under [`ProfileRules`].
//!
//! A later loyalty ledger (points lots, tiers, stored value) is one more fold of this shape over
//! the same journal.

use crate::journal::{Added, Journal, JournalKey, journal_key};
use crate::rules::ProfileRules;
use kinfold_core::event::{
    EcomOrder, EcomRefund, EventBody, MembershipEvent, MembershipEventType, OrderItem, OrderStatus,
    PosLine, PosTransaction, PosTransactionKind, TenderKind, WechatEvent, WechatEventType,
};
use kinfold_core::time::TimestampMicros;
use kinfold_core::{CanonicalEvent, Identifier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A map stored as its entries in key order, read back by one bulk build rather than an insert
/// (and a search) per entry: a customer's SKUs are most of a stored state.
mod entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<
        'de,
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    >(
        deserializer: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        let entries: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().collect())
    }
}

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// A value and when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dated<T> {
    pub value: T,
    pub at: TimestampMicros,
}

/// Consent to one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub granted: bool,
    pub channel: Option<String>,
    pub at: TimestampMicros,
}

/// Money of one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// Purchases counted in this currency.
    pub orders: u64,
    pub gross_minor: i64,
    pub returned_minor: i64,
}

impl Spend {
    /// Purchases less returns.
    pub fn net_minor(&self) -> i64 {
        self.gross_minor.saturating_sub(self.returned_minor)
    }
}

/// Purchases and returns, of one channel or overall.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub orders: u64,
    /// Till returns and online refunds.
    pub returns: u64,
    /// Purchases paid in part with a coupon.
    pub coupon_orders: u64,
    pub first_purchase: Option<TimestampMicros>,
    pub last_purchase: Option<TimestampMicros>,
    /// By currency.
    pub money: BTreeMap<String, Spend>,
}

impl OrderFacts {
    fn purchase(&mut self, at: TimestampMicros, currency: &str, amount: i64, coupon: bool) {
        self.orders += 1;
        self.coupon_orders += u64::from(coupon);
        self.first_purchase = Some(self.first_purchase.map_or(at, |first| first.min(at)));
        self.last_purchase = Some(self.last_purchase.map_or(at, |last| last.max(at)));
        let spend = self.money.entry(currency.to_owned()).or_default();
        spend.orders += 1;
        spend.gross_minor = spend.gross_minor.saturating_add(amount);
    }

    /// Takes in `other`'s purchases and returns.
    fn add(&mut self, other: &OrderFacts) {
        self.orders += other.orders;
        self.returns += other.returns;
        self.coupon_orders += other.coupon_orders;
        self.first_purchase = self
            .first_purchase
            .into_iter()
            .chain(other.first_purchase)
            .min();
        self.last_purchase = self
            .last_purchase
            .into_iter()
            .chain(other.last_purchase)
            .max();
        for (currency, spend) in &other.money {
            let kept = self.money.entry(currency.clone()).or_default();
            kept.orders += spend.orders;
            kept.gross_minor = kept.gross_minor.saturating_add(spend.gross_minor);
            kept.returned_minor = kept.returned_minor.saturating_add(spend.returned_minor);
        }
    }

    fn returned(&mut self, currency: &str, amount: i64) {
        self.returns += 1;
        let spend = self.money.entry(currency.to_owned()).or_default();
        spend.returned_minor = spend.returned_minor.saturating_add(amount);
    }
}

/// Units and spend of one SKU or category, net of returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bought {
    pub units: i64,
    pub spend_minor: i64,
}

/// The winning version of an online order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineOrder {
    pub channel: String,
    pub source_version: i64,
    pub status: OrderStatus,
    pub currency: String,
    pub amount_minor: i64,
    pub coupon: bool,
    /// When it was first paid (any version at paid or later).
    pub paid_at: Option<TimestampMicros>,
    pub items: Vec<OrderItem>,
}

impl OnlineOrder {
    /// Whether the order counts as a purchase.
    pub fn purchased(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Completed
        )
    }
}

/// Following one WeChat official account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follow {
    pub following: bool,
    pub at: TimestampMicros,
    /// The QR scene of the last follow (a store or a campaign).
    pub scene: Option<String>,
}

/// The projection that is stored: the fold of the journal, in journal order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    /// Events folded.
    pub events: u64,
    /// The journal key of the last event folded: an event after it folds on top.
    pub last: Option<JournalKey>,
    pub identifiers: BTreeSet<Identifier>,
    /// name, gender, birthday, home_store, guide, phone, email.
    pub traits: BTreeMap<String, Dated<String>>,
    /// By purpose.
    pub consent: BTreeMap<String, Consent>,
    /// Till purchases and returns, by store.
    pub pos: OrderFacts,
    pub stores: BTreeMap<String, u64>,
    /// Online orders by platform, shop and order id.
    pub online_orders: BTreeMap<String, OnlineOrder>,
    /// Online refunds, by channel.
    pub online_refunds: BTreeMap<String, OrderFacts>,
    /// Till lines and online refunds' items, net (an online order's items count from the
    /// order while it is a purchase).
    #[serde(with = "entries")]
    pub skus: BTreeMap<String, Bought>,
    #[serde(with = "entries")]
    pub categories: BTreeMap<String, Bought>,
    /// By official account (app id).
    pub follows: BTreeMap<String, Follow>,
    /// Store guides who have the customer as a WeCom contact: by corp id, then guide id, since
    /// when. (Nested maps: JSON map keys are strings.)
    pub guides: BTreeMap<String, BTreeMap<String, TimestampMicros>>,
    pub coupons_redeemed: u64,
    pub views: u64,
}

/// Folds `events`, in the order given (journal order), into a state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a CanonicalEvent>) -> ProfileState {
    let mut state = ProfileState::default();
    for event in events {
        state.apply(event);
    }
    state
}

/// Adds `event` to `journal` and brings `state` (the fold of `journal`) up to date: on top for
/// an event in order, folding the journal again for a late one, not at all for a duplicate.
pub fn add_and_fold(
    journal: &mut Journal,
    state: &mut ProfileState,
    event: CanonicalEvent,
) -> Added {
    let added = journal.add(event);
    match added {
        Added::Duplicate => {}
        Added::InOrder => {
            let last = journal.events().next_back().expect("an event was added");
            state.apply(last);
        }
        Added::Late => *state = fold(journal.events()),
    }
    added
}

/// The spend of one line: units times price, less its discount.
fn line_spend(quantity: i64, unit_price_minor: i64, discount_minor: i64) -> i64 {
    quantity
        .saturating_mul(unit_price_minor)
        .saturating_sub(discount_minor)
}

fn add_bought(map: &mut BTreeMap<String, Bought>, key: &str, units: i64, spend: i64) {
    let bought = map.entry(key.to_owned()).or_default();
    bought.units = bought.units.saturating_add(units);
    bought.spend_minor = bought.spend_minor.saturating_add(spend);
}

impl ProfileState {
    /// Folds `event` on top. It must sort after every event folded so far.
    pub fn apply(&mut self, event: &CanonicalEvent) {
        debug_assert!(
            self.last.is_none_or(|last| last < journal_key(event)),
            "events fold in journal order"
        );
        self.events += 1;
        self.last = Some(journal_key(event));
        self.identifiers.extend(event.identifiers.iter().cloned());
        let at = event.event_time;
        match &event.body {
            EventBody::PosTransaction(transaction) => self.pos_transaction(at, transaction),
            EventBody::EcomOrder(order) => self.ecom_order(at, order),
            EventBody::EcomRefund(refund) => self.ecom_refund(refund),
            EventBody::Wechat(wechat) => self.wechat(at, wechat),
            EventBody::Membership(membership) => self.membership(at, membership),
        }
    }

    fn set_trait(&mut self, name: &str, value: Option<&String>, at: TimestampMicros) {
        if let Some(value) = value.filter(|value| !value.trim().is_empty()) {
            self.traits.insert(
                name.to_owned(),
                Dated {
                    value: value.clone(),
                    at,
                },
            );
        }
    }

    fn pos_transaction(&mut self, at: TimestampMicros, transaction: &PosTransaction) {
        let sign = match transaction.kind {
            PosTransactionKind::Sale => 1,
            PosTransactionKind::Return => -1,
        };
        match transaction.kind {
            PosTransactionKind::Sale => {
                let coupon = transaction
                    .tenders
                    .iter()
                    .any(|tender| tender.kind == TenderKind::Coupon);
                self.pos
                    .purchase(at, &transaction.currency, transaction.total_minor, coupon);
                *self.stores.entry(transaction.store_id.clone()).or_default() += 1;
            }
            PosTransactionKind::Return => {
                self.pos
                    .returned(&transaction.currency, transaction.total_minor);
            }
        }
        for PosLine {
            sku,
            category,
            quantity,
            unit_price_minor,
            discount_minor,
            ..
        } in &transaction.lines
        {
            let units = sign * quantity;
            let spend = sign * line_spend(*quantity, *unit_price_minor, *discount_minor);
            add_bought(&mut self.skus, sku, units, spend);
            if let Some(category) = category {
                add_bought(&mut self.categories, category, units, spend);
            }
        }
        self.set_trait("guide", transaction.guide_id.as_ref(), at);
    }

    fn ecom_order(&mut self, at: TimestampMicros, order: &EcomOrder) {
        let key = format!(
            "{}|{}|{}",
            order.platform.as_str(),
            order.shop_id,
            order.order_id
        );
        let version = OnlineOrder {
            channel: order.platform.as_str().to_owned(),
            source_version: order.source_version,
            status: order.status,
            currency: order.currency.clone(),
            amount_minor: if order.paid_minor > 0 {
                order.paid_minor
            } else {
                order.total_minor
            },
            coupon: !order.coupons.is_empty(),
            paid_at: None,
            items: order.items.clone(),
        };
        let paid_now = version.purchased().then_some(at);
        let entry = self.online_orders.entry(key);
        let kept = match entry {
            std::collections::btree_map::Entry::Vacant(vacant) => vacant.insert(version),
            std::collections::btree_map::Entry::Occupied(occupied) => {
                let kept = occupied.into_mut();
                if version.source_version >= kept.source_version {
                    let paid_at = kept.paid_at;
                    *kept = version;
                    kept.paid_at = paid_at;
                }
                kept
            }
        };
        // Events fold in time order: the first paid one is the earliest.
        if kept.paid_at.is_none() {
            kept.paid_at = paid_now;
        }
    }

    fn ecom_refund(&mut self, refund: &EcomRefund) {
        self.online_refunds
            .entry(refund.platform.as_str().to_owned())
            .or_default()
            .returned(&refund.currency, refund.amount_minor);
        for item in &refund.items {
            let spend = line_spend(item.quantity, item.unit_price_minor, item.discount_minor);
            add_bought(&mut self.skus, &item.sku, -item.quantity, -spend);
            if let Some(category) = &item.category {
                add_bought(&mut self.categories, category, -item.quantity, -spend);
            }
        }
    }

    fn wechat(&mut self, at: TimestampMicros, wechat: &WechatEvent) {
        match wechat.event_type {
            WechatEventType::Follow | WechatEventType::Unfollow => {
                let following = wechat.event_type == WechatEventType::Follow;
                let scene = if following {
                    wechat.scene.clone()
                } else {
                    self.follows
                        .get(&wechat.app_id)
                        .and_then(|follow| follow.scene.clone())
                };
                self.follows.insert(
                    wechat.app_id.clone(),
                    Follow {
                        following,
                        at,
                        scene,
                    },
                );
            }
            WechatEventType::PhoneBound => {
                self.set_trait("phone", wechat.phone.as_ref(), at);
                if let Some(granted) = wechat.phone_consent {
                    self.consent.insert(
                        "wechat_phone".to_owned(),
                        Consent {
                            granted,
                            channel: Some("wechat".to_owned()),
                            at,
                        },
                    );
                }
            }
            WechatEventType::WecomContactAdded | WechatEventType::WecomContactRemoved => {
                if let (Some(corp), Some(guide)) = (&wechat.corp_id, &wechat.guide_id) {
                    if wechat.event_type == WechatEventType::WecomContactAdded {
                        self.guides
                            .entry(corp.clone())
                            .or_default()
                            .entry(guide.clone())
                            .or_insert(at);
                        self.set_trait("guide", Some(guide), at);
                    } else if let Some(guides) = self.guides.get_mut(corp) {
                        guides.remove(guide);
                        if guides.is_empty() {
                            self.guides.remove(corp);
                        }
                    }
                }
            }
            WechatEventType::View => self.views += 1,
            WechatEventType::MiniProgramLogin | WechatEventType::Location => {}
        }
    }

    fn membership(&mut self, at: TimestampMicros, membership: &MembershipEvent) {
        match membership.event_type {
            MembershipEventType::Registered | MembershipEventType::ProfileUpdated => {
                self.set_trait("name", membership.name.as_ref(), at);
                self.set_trait("gender", membership.gender.as_ref(), at);
                self.set_trait("birthday", membership.birthday.as_ref(), at);
                self.set_trait("home_store", membership.home_store.as_ref(), at);
                self.set_trait("phone", membership.phone.as_ref(), at);
                self.set_trait("email", membership.email.as_ref(), at);
            }
            MembershipEventType::ConsentGranted | MembershipEventType::ConsentWithdrawn => {
                if let Some(purpose) = &membership.consent_purpose {
                    self.consent.insert(
                        purpose.clone(),
                        Consent {
                            granted: membership.event_type == MembershipEventType::ConsentGranted,
                            channel: membership.consent_channel.clone(),
                            at,
                        },
                    );
                }
            }
            MembershipEventType::CouponRedeemed => self.coupons_redeemed += 1,
            // The loyalty ledger's (a fold of its own).
            MembershipEventType::PointsAdjusted
            | MembershipEventType::CouponIssued
            | MembershipEventType::CouponExpired
            | MembershipEventType::StoredValueToppedUp
            | MembershipEventType::StoredValueSpent
            | MembershipEventType::TierChanged => {}
        }
    }

    /// Purchases and returns by channel (`pos` and each platform), and overall.
    pub fn order_facts(&self) -> (BTreeMap<String, OrderFacts>, OrderFacts) {
        let mut channels: BTreeMap<String, OrderFacts> = BTreeMap::new();
        if self.pos.orders > 0 || self.pos.returns > 0 {
            channels.insert("pos".to_owned(), self.pos.clone());
        }
        for order in self.online_orders.values() {
            if let (true, Some(paid_at)) = (order.purchased(), order.paid_at) {
                channels.entry(order.channel.clone()).or_default().purchase(
                    paid_at,
                    &order.currency,
                    order.amount_minor,
                    order.coupon,
                );
            }
        }
        for (channel, refunds) in &self.online_refunds {
            channels.entry(channel.clone()).or_default().add(refunds);
        }
        let mut overall = OrderFacts::default();
        for facts in channels.values() {
            overall.add(facts);
        }
        (channels, overall)
    }

    /// Units and spend by SKU and by category, with the items of online orders that count as
    /// purchases.
    fn bought(&self) -> (BTreeMap<String, Bought>, BTreeMap<String, Bought>) {
        let mut skus = self.skus.clone();
        let mut categories = self.categories.clone();
        for order in self
            .online_orders
            .values()
            .filter(|order| order.purchased())
        {
            for item in &order.items {
                let spend = line_spend(item.quantity, item.unit_price_minor, item.discount_minor);
                add_bought(&mut skus, &item.sku, item.quantity, spend);
                if let Some(category) = &item.category {
                    add_bought(&mut categories, category, item.quantity, spend);
                }
            }
        }
        (skus, categories)
    }

    /// The profile a reader gets, with RFM recency measured at `at`.
    /// [`Self::profile`], taking the state: what the view shares with it is moved, not copied
    /// (what a `GetProfile` does with the state it read).
    pub fn into_profile(mut self, rules: &ProfileRules, at: TimestampMicros) -> Profile {
        let identifiers = std::mem::take(&mut self.identifiers);
        let traits = std::mem::take(&mut self.traits);
        let consent = std::mem::take(&mut self.consent);
        let stores = std::mem::take(&mut self.stores);
        let follows = std::mem::take(&mut self.follows);
        let mut profile = self.profile(rules, at);
        profile.identifiers = identifiers.into_iter().collect();
        profile.traits = traits;
        profile.consent = consent;
        profile.stores = stores;
        profile.follows = follows;
        profile
    }

    pub fn profile(&self, rules: &ProfileRules, at: TimestampMicros) -> Profile {
        let (channels, overall) = self.order_facts();
        let (skus, categories) = self.bought();
        let primary_currency = overall
            .money
            .iter()
            .max_by(|(a_currency, a), (b_currency, b)| {
                a.orders.cmp(&b.orders).then(b_currency.cmp(a_currency))
            })
            .map(|(currency, _)| currency.clone());
        let primary = primary_currency
            .as_ref()
            .and_then(|currency| overall.money.get(currency))
            .cloned()
            .unwrap_or_default();
        let average_order_value_minor = (primary.orders > 0)
            .then(|| primary.gross_minor / i64::try_from(primary.orders).unwrap_or(i64::MAX));
        let mean_purchase_interval_days = match (overall.first_purchase, overall.last_purchase) {
            (Some(first), Some(last)) if overall.orders >= 2 => {
                Some((last - first) as f64 / DAY_MICROS as f64 / (overall.orders - 1) as f64)
            }
            _ => None,
        };
        let coupon_use_rate =
            (overall.orders > 0).then(|| overall.coupon_orders as f64 / overall.orders as f64);
        let rfm = overall.last_purchase.map(|last| {
            let recency_days = (at - last).max(0) / DAY_MICROS;
            Rfm {
                recency_days,
                frequency: overall.orders,
                monetary_minor: primary.net_minor(),
                r: rules.rfm.recency_score(recency_days),
                f: rules.rfm.frequency_score(overall.orders),
                m: rules.rfm.monetary_score(primary.net_minor()),
            }
        });
        let lifetime_value_minor = primary_currency.as_ref().map(|_| {
            rules.clv.value(
                primary.net_minor(),
                average_order_value_minor,
                mean_purchase_interval_days,
            )
        });
        Profile {
            events: self.events,
            identifiers: self.identifiers.iter().cloned().collect(),
            traits: self.traits.clone(),
            consent: self.consent.clone(),
            overall,
            channels,
            stores: self.stores.clone(),
            top_skus: top(&skus, rules.top),
            top_categories: top(&categories, rules.top),
            primary_currency,
            average_order_value_minor,
            mean_purchase_interval_days,
            coupon_use_rate,
            rfm,
            lifetime_value_minor,
            follows: self.follows.clone(),
            guides: self
                .guides
                .iter()
                .flat_map(|(corp, guides)| {
                    guides.iter().map(move |(guide, since)| Guide {
                        corp_id: corp.clone(),
                        guide_id: guide.clone(),
                        since: *since,
                    })
                })
                .collect(),
            coupons_redeemed: self.coupons_redeemed,
            views: self.views,
        }
    }
}

/// The `n` with the most units (then the most spend, then by name), with more than none.
fn top(bought: &BTreeMap<String, Bought>, n: usize) -> Vec<(String, Bought)> {
    let mut ranked: Vec<(&String, &Bought)> = bought
        .iter()
        .filter(|(_, bought)| bought.units > 0)
        .collect();
    let order = |(a_name, a): &(&String, &Bought), (b_name, b): &(&String, &Bought)| {
        b.units
            .cmp(&a.units)
            .then(b.spend_minor.cmp(&a.spend_minor))
            .then(a_name.cmp(b_name))
    };
    // The first `n` in order, without ordering the rest (a customer can have bought thousands).
    if n == 0 {
        return Vec::new();
    }
    if ranked.len() > n {
        ranked.select_nth_unstable_by(n - 1, order);
        ranked.truncate(n);
    }
    ranked.sort_by(order);
    ranked
        .into_iter()
        .take(n)
        .map(|(name, bought)| (name.clone(), bought.clone()))
        .collect()
}

/// Recency, frequency and monetary value, with their scores (1 to 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rfm {
    pub recency_days: i64,
    pub frequency: u64,
    pub monetary_minor: i64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

/// A store guide with the customer as a WeCom contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guide {
    pub corp_id: String,
    pub guide_id: String,
    pub since: TimestampMicros,
}

/// A customer's profile as a reader gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub events: u64,
    pub identifiers: Vec<Identifier>,
    pub traits: BTreeMap<String, Dated<String>>,
    pub consent: BTreeMap<String, Consent>,
    pub overall: OrderFacts,
    /// `pos` and each online platform.
    pub channels: BTreeMap<String, OrderFacts>,
    /// Till purchases by store.
    pub stores: BTreeMap<String, u64>,
    pub top_skus: Vec<(String, Bought)>,
    pub top_categories: Vec<(String, Bought)>,
    /// The currency of most purchases: average order value, RFM's monetary value and lifetime
    /// value are in it.
    pub primary_currency: Option<String>,
    pub average_order_value_minor: Option<i64>,
    pub mean_purchase_interval_days: Option<f64>,
    pub coupon_use_rate: Option<f64>,
    pub rfm: Option<Rfm>,
    pub lifetime_value_minor: Option<i64>,
    pub follows: BTreeMap<String, Follow>,
    pub guides: Vec<Guide>,
    pub coupons_redeemed: u64,
    pub views: u64,
}
