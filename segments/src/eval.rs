//! Evaluating a rule for one customer at an instant: whether it holds, and the next instant at
//! which it could stop or start holding with no new event (the timer that wakes the customer).
//!
//! Logic is three-valued: a comparison with a fact the customer does not have (no purchase yet,
//! no birthday trait) is unknown, `not` of unknown is unknown, and a customer is a member only
//! when the rule is known to hold. Consent, follows and tags that are not recorded are false, a
//! store or channel never bought at counts zero.
//!
//! `percentile` ranks the customer in a [`Population`] gathered beforehand (unknown without
//! one). `distance` measures from where the customer last reported being (a WeChat location,
//! GCJ-02 converted) to a point or to the nearest of the [`Stores`] listed (unknown without a
//! location, or without any of the stores).

pub mod facts;

pub use facts::{Decided, Facts};

use crate::rule::ast::{Arg, DistanceUnit, Op, Rule, Sign, TimeUnit, Value};
use chrono::{Datelike, NaiveDate, TimeZone};
use kinfold_core::CanonicalEvent;
use kinfold_core::event::{
    CoordinateSystem, EventBody, MembershipEventType, PosTransactionKind, WechatEventType,
};
use kinfold_core::time::TimestampMicros;
use kinfold_profile::fold::DAY_MICROS;
use kinfold_profile::{Journal, Profile};

/// What a rule is evaluated over: one customer's profile (as of `now`) and journal.
#[derive(Debug)]
pub struct Subject<'a> {
    pub profile: &'a Profile,
    pub journal: &'a Journal,
    pub now: TimestampMicros,
    /// The customer's time zone, for calendar conditions.
    pub time_zone: chrono_tz::Tz,
    /// Every customer's values of the rule's `percentile` arguments; without it a percentile
    /// is unknown.
    pub population: Option<&'a Population>,
    /// The stores `distance(store = ...)` measures to; without them such a distance is
    /// unknown.
    pub stores: Option<&'a Stores>,
}

/// Stores' positions, by store id, in WGS-84 (latitude, longitude).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stores(std::collections::BTreeMap<String, (f64, f64)>);

impl Stores {
    /// Reads a store list: `[[store]]` tables of `id`, `latitude`, `longitude` and `datum`
    /// (`wgs84`, the default, or `gcj02`, converted).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            store: Vec<Store>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Store {
            id: String,
            latitude: f64,
            longitude: f64,
            #[serde(default)]
            datum: Option<String>,
        }
        let file: File = toml::from_str(text).map_err(|error| error.to_string())?;
        let mut stores = std::collections::BTreeMap::new();
        for store in file.store {
            if !(-90.0..=90.0).contains(&store.latitude)
                || !(-180.0..=180.0).contains(&store.longitude)
            {
                return Err(format!(
                    "store {}: latitude {} or longitude {} out of range",
                    store.id, store.latitude, store.longitude
                ));
            }
            let datum = match store.datum.as_deref() {
                None | Some("wgs84") => CoordinateSystem::Wgs84,
                Some("gcj02") => CoordinateSystem::Gcj02,
                Some(other) => {
                    return Err(format!(
                        "store {}: datum `{other}`, expected wgs84 or gcj02",
                        store.id
                    ));
                }
            };
            let at = wgs84(store.latitude, store.longitude, datum);
            if stores.insert(store.id.clone(), at).is_some() {
                return Err(format!("store {} twice", store.id));
            }
        }
        Ok(Self(stores))
    }

    /// Where store `id` is.
    pub fn get(&self, id: &str) -> Option<(f64, f64)> {
        self.0.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// (latitude, longitude) in `datum`, in WGS-84.
pub fn wgs84(latitude: f64, longitude: f64, datum: CoordinateSystem) -> (f64, f64) {
    match datum {
        CoordinateSystem::Wgs84 => (latitude, longitude),
        CoordinateSystem::Gcj02 => {
            let (longitude, latitude) = coordtransform::gcj02_to_wgs84(longitude, latitude);
            (latitude, longitude)
        }
    }
}

/// The great-circle distance between two WGS-84 points, in metres (haversine, mean Earth
/// radius: within half a percent of the ellipsoid's over a city).
pub fn metres_between((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    const EARTH_RADIUS: f64 = 6_371_008.8;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let half_chord = (((lat2 - lat1).to_radians() / 2.0).sin()).powi(2)
        + phi1.cos() * phi2.cos() * (((lon2 - lon1).to_radians() / 2.0).sin()).powi(2);
    2.0 * EARTH_RADIUS * half_chord.sqrt().min(1.0).asin()
}

/// Where the customer last reported being (a WeChat location), as of now, in WGS-84.
pub fn last_location(subject: &Subject<'_>) -> Option<(f64, f64)> {
    subject
        .journal
        .events()
        .rev()
        .filter(|event| event.event_time <= subject.now)
        .find_map(|event| match &event.body {
            EventBody::Wechat(wechat) if wechat.event_type == WechatEventType::Location => {
                Some(wgs84(
                    wechat.latitude?,
                    wechat.longitude?,
                    wechat.coordinate_system.unwrap_or(CoordinateSystem::Wgs84),
                ))
            }
            _ => None,
        })
}

/// Whether the customer has granted consent to `purpose` (no purpose: nothing to grant).
pub fn consented(purpose: Option<&str>, profile: &Profile) -> bool {
    purpose.is_none_or(|purpose| {
        profile
            .consent
            .get(purpose)
            .is_some_and(|consent| consent.granted)
    })
}

/// The population's values of each `percentile(...)` argument, for ranking one customer
/// among them. Built by evaluating the arguments for every customer (a full pass: the
/// segment stage refreshes it on a schedule).
#[derive(Debug, Default, Clone)]
pub struct Population {
    /// The `percentile` arguments gathered.
    arguments: Vec<Value>,
    /// By the argument's text: every known value, ascending once finished.
    values: std::collections::HashMap<String, Vec<f64>>,
}

impl Population {
    /// Gathers, for each `percentile` in `rule`, its argument's value for every customer.
    pub fn gather<'a>(rule: &Rule, subjects: impl IntoIterator<Item = Subject<'a>>) -> Self {
        let mut population = Self::of(rule);
        for subject in subjects {
            population.add(&subject);
        }
        population.finish();
        population
    }

    /// An empty population for the `percentile`s of `rule`: [`Self::add`] each customer, then
    /// [`Self::finish`].
    pub fn of(rule: &Rule) -> Self {
        let mut arguments = Vec::new();
        percentile_arguments(rule, &mut arguments);
        Self {
            values: arguments
                .iter()
                .map(|argument| (argument.to_string(), Vec::new()))
                .collect(),
            arguments: arguments.into_iter().cloned().collect(),
        }
    }

    /// Whether the rule has no `percentile` (nothing to gather).
    pub fn is_empty(&self) -> bool {
        self.arguments.is_empty()
    }

    /// Adds one customer's values.
    pub fn add(&mut self, subject: &Subject<'_>) {
        for argument in &self.arguments {
            if let Some(Val::Number(value)) = eval(argument, subject).value {
                self.values
                    .get_mut(&argument.to_string())
                    .expect("gathered")
                    .push(value);
            }
        }
    }

    /// Sorts what was added, ready for ranking.
    pub fn finish(&mut self) {
        for list in self.values.values_mut() {
            list.sort_by(f64::total_cmp);
        }
    }

    /// `value`'s percentile among `argument`'s values: the share of the others below it, 0
    /// to 100 (SQL's `percent_rank`, times 100).
    fn percentile(&self, argument: &Value, value: f64) -> Option<f64> {
        let values = self.values.get(&argument.to_string())?;
        let below = values.partition_point(|other| *other < value);
        Some(if values.len() <= 1 {
            0.0
        } else {
            100.0 * below as f64 / (values.len() - 1) as f64
        })
    }
}

fn percentile_arguments<'a>(rule: &'a Rule, out: &mut Vec<&'a Value>) {
    fn in_value<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Call { name, args } => {
                if name == "percentile"
                    && let Some(first) = args.first()
                    && !out.contains(&&first.value)
                {
                    out.push(&first.value);
                }
                for arg in args {
                    in_value(&arg.value, out);
                }
            }
            Value::Offset { base, by, .. } => {
                in_value(base, out);
                in_value(by, out);
            }
            Value::List(values) => values.iter().for_each(|value| in_value(value, out)),
            _ => {}
        }
    }
    match rule {
        Rule::Or(rules) | Rule::And(rules) => {
            rules
                .iter()
                .for_each(|rule| percentile_arguments(rule, out));
        }
        Rule::Not(rule) => percentile_arguments(rule, out),
        Rule::Compare { left, right, .. } => {
            in_value(left, out);
            in_value(right, out);
        }
        Rule::In { value, list } => {
            in_value(value, out);
            list.iter().for_each(|value| in_value(value, out));
        }
        Rule::Holds(value) => in_value(value, out),
    }
}

/// The answer for one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `Some(true)`: a member.
    pub holds: Option<bool>,
    /// The earliest instant after `now` at which the answer could change with no new event;
    /// `None`: not before an event arrives.
    pub next_change: Option<TimestampMicros>,
}

/// A value, and how it moves with `now`: `Instant(a, k)` is `a + k × now` (k is -1, 0 or 1).
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Number(f64),
    Text(String),
    Bool(bool),
    Instant(i128, i128),
    Date(NaiveDate),
    Duration(i64),
    Distance(f64),
    List(Vec<Val>),
}

/// A value (unknown: `None`) and the earliest instant it could change.
struct Eval {
    value: Option<Val>,
    next: Option<TimestampMicros>,
}

fn earliest(a: Option<TimestampMicros>, b: Option<TimestampMicros>) -> Option<TimestampMicros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn known(value: Val) -> Eval {
    Eval {
        value: Some(value),
        next: None,
    }
}

const UNKNOWN: Eval = Eval {
    value: None,
    next: None,
};

/// Evaluates `rule` for `subject`.
pub fn evaluate(rule: &Rule, subject: &Subject<'_>) -> Outcome {
    let (holds, next_change) = truth(rule, subject);
    Outcome { holds, next_change }
}

fn truth(rule: &Rule, subject: &Subject<'_>) -> (Option<bool>, Option<TimestampMicros>) {
    match rule {
        Rule::Or(rules) | Rule::And(rules) => {
            let is_or = matches!(rule, Rule::Or(_));
            let mut next = None;
            let mut answer = Some(!is_or);
            for inner in rules {
                let (holds, inner_next) = truth(inner, subject);
                next = earliest(next, inner_next);
                answer = match (answer, holds) {
                    (Some(done), _) if done == is_or => Some(done),
                    (_, Some(value)) if value == is_or => Some(value),
                    (Some(_), Some(value)) => Some(value),
                    _ => None,
                };
            }
            (answer, next)
        }
        Rule::Not(inner) => {
            let (holds, next) = truth(inner, subject);
            (holds.map(|holds| !holds), next)
        }
        Rule::Holds(value) => {
            let value = eval(value, subject);
            let holds = match value.value {
                Some(Val::Bool(holds)) => Some(holds),
                _ => None,
            };
            (holds, value.next)
        }
        Rule::In { value, list } => {
            let value = eval(value, subject);
            let holds = value.value.map(|value| {
                list.iter()
                    .any(|item| eval(item, subject).value.as_ref() == Some(&value))
            });
            (holds, value.next)
        }
        Rule::Compare { left, op, right } => {
            let (left, right) = (eval(left, subject), eval(right, subject));
            let next = earliest(left.next, right.next);
            let (Some(a), Some(b)) = (left.value, right.value) else {
                return (None, next);
            };
            compare(&a, *op, &b, subject.now, next)
        }
    }
}

fn ordering(op: Op, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Eq => order == Equal,
        Op::Ne => order != Equal,
        Op::Lt => order == Less,
        Op::Le => order != Greater,
        Op::Gt => order == Greater,
        Op::Ge => order != Less,
    }
}

fn compare(
    a: &Val,
    op: Op,
    b: &Val,
    now: TimestampMicros,
    next: Option<TimestampMicros>,
) -> (Option<bool>, Option<TimestampMicros>) {
    let order = match (a, b) {
        (Val::Number(a), Val::Number(b)) | (Val::Distance(a), Val::Distance(b)) => a.partial_cmp(b),
        (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
        (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
        (Val::Date(a), Val::Date(b)) => Some(a.cmp(b)),
        (Val::Duration(a), Val::Duration(b)) => Some(a.cmp(b)),
        (Val::Instant(a, k), Val::Instant(b, j)) => {
            let now = i128::from(now);
            let holds_at = |t: i128| ordering(op, (a + k * t).cmp(&(b + j * t)));
            let holds = holds_at(now);
            // The sides meet where a + k·t = b + j·t: the answer changes there or one
            // microsecond later (a strict comparison), whichever first differs from now's.
            let mut next = next;
            if k != j {
                let meet = (b - a) / (k - j);
                if let Some(at) = [meet - 1, meet, meet + 1]
                    .into_iter()
                    .find(|&t| t > now && holds_at(t) != holds)
                    .and_then(|t| i64::try_from(t).ok())
                {
                    next = earliest(next, Some(at));
                }
            }
            return (Some(holds), next);
        }
        _ => None,
    };
    (order.map(|order| ordering(op, order)), next)
}

fn duration_micros(amount: f64, unit: TimeUnit) -> i64 {
    (amount * unit.micros() as f64).round() as i64
}

fn eval(value: &Value, subject: &Subject<'_>) -> Eval {
    match value {
        Value::Number(number) => known(Val::Number(*number)),
        Value::String(text) => known(Val::Text(text.clone())),
        Value::Bool(value) => known(Val::Bool(*value)),
        Value::Date(date) => match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(date) => known(Val::Date(date)),
            Err(_) => UNKNOWN,
        },
        Value::Duration { amount, unit } => known(Val::Duration(duration_micros(*amount, *unit))),
        Value::Distance { amount, unit } => known(Val::Distance(match unit {
            DistanceUnit::Kilometres => amount * 1000.0,
            DistanceUnit::Metres => *amount,
        })),
        Value::Now => known(Val::Instant(0, 1)),
        Value::Offset { base, sign, by } => {
            let (base, by) = (eval(base, subject), eval(by, subject));
            let next = earliest(base.next, by.next);
            match (base.value, by.value) {
                (Some(Val::Instant(a, k)), Some(Val::Duration(d))) => Eval {
                    value: Some(Val::Instant(
                        match sign {
                            Sign::Plus => a + i128::from(d),
                            Sign::Minus => a - i128::from(d),
                        },
                        k,
                    )),
                    next,
                },
                _ => Eval { value: None, next },
            }
        }
        Value::List(values) => {
            let values: Option<Vec<Val>> = values
                .iter()
                .map(|value| eval(value, subject).value)
                .collect();
            Eval {
                value: values.map(Val::List),
                next: None,
            }
        }
        Value::Field(path) => field(path, subject),
        Value::Call { name, args } => call(name, args, subject),
    }
}

fn money(profile: &Profile, pick: impl Fn(&kinfold_profile::fold::Spend) -> i64) -> Option<Val> {
    let currency = profile.primary_currency.as_ref()?;
    let spend = profile.overall.money.get(currency)?;
    Some(Val::Number(pick(spend) as f64 / 100.0))
}

fn instant(at: Option<TimestampMicros>) -> Option<Val> {
    at.map(|at| Val::Instant(i128::from(at), 0))
}

fn field(path: &[String], subject: &Subject<'_>) -> Eval {
    let profile = subject.profile;
    let count = |n: u64| Some(Val::Number(n as f64));
    let number = |n: Option<f64>| n.map(Val::Number);
    // The path's parts as texts, on the stack: a field is read for every rule evaluated.
    let mut parts = [""; 4];
    for (part, name) in parts.iter_mut().zip(path) {
        *part = name.as_str();
    }
    let parts = if path.len() <= parts.len() {
        &parts[..path.len()]
    } else {
        &[][..]
    };
    let value = match *parts {
        ["events"] => count(profile.events),
        ["orders"] => count(profile.overall.orders),
        ["returns"] => count(profile.overall.returns),
        ["views"] => count(profile.views),
        ["coupons_redeemed"] => count(profile.coupons_redeemed),
        ["net_spend"] => money(profile, |spend| spend.net_minor()),
        ["gross_spend"] => money(profile, |spend| spend.gross_minor),
        ["returned_spend"] => money(profile, |spend| spend.returned_minor),
        ["average_order_value"] => {
            number(profile.average_order_value_minor.map(|v| v as f64 / 100.0))
        }
        ["lifetime_value"] => number(profile.lifetime_value_minor.map(|v| v as f64 / 100.0)),
        ["mean_purchase_interval_days"] => number(profile.mean_purchase_interval_days),
        ["coupon_use_rate"] => number(profile.coupon_use_rate),
        ["first_purchase_at"] => instant(profile.overall.first_purchase),
        ["last_purchase_at"] => instant(profile.overall.last_purchase),
        ["last_event_at"] => instant(
            subject
                .journal
                .events()
                .next_back()
                .map(|event| event.event_time),
        ),
        ["primary_currency"] => profile.primary_currency.clone().map(Val::Text),
        ["recency_days"] | ["rfm", "r"] => {
            // Both move at each whole day after the last purchase.
            let Some(last) = profile.overall.last_purchase else {
                return UNKNOWN;
            };
            let days = (subject.now - last).max(0) / DAY_MICROS;
            let next = Some(last + (days + 1) * DAY_MICROS);
            let value = match path[0].as_str() {
                "recency_days" => Val::Number(days as f64),
                _ => Val::Number(f64::from(profile.rfm.as_ref().map_or(0, |rfm| rfm.r))),
            };
            return Eval {
                value: Some(value),
                next,
            };
        }
        ["rfm", "f"] => profile
            .rfm
            .as_ref()
            .map(|rfm| Val::Number(f64::from(rfm.f))),
        ["rfm", "m"] => profile
            .rfm
            .as_ref()
            .map(|rfm| Val::Number(f64::from(rfm.m))),
        ["trait", name] => profile
            .traits
            .get(name)
            .map(|dated| Val::Text(dated.value.clone())),
        ["consent", purpose] => Some(Val::Bool(
            profile.consent.get(purpose).is_some_and(|c| c.granted),
        )),
        ["follows", app] => Some(Val::Bool(
            profile.follows.get(app).is_some_and(|f| f.following),
        )),
        // Dynamic tags come with the segment stage; no static tag is folded yet.
        ["tag", _] => Some(Val::Bool(false)),
        ["store", store] => count(profile.stores.get(store).copied().unwrap_or(0)),
        ["channel", channel, fact] => {
            let facts = profile.channels.get(channel);
            match fact {
                "orders" => count(facts.map_or(0, |f| f.orders)),
                "returns" => count(facts.map_or(0, |f| f.returns)),
                "net_spend" => {
                    let currency = profile.primary_currency.as_deref().unwrap_or_default();
                    Some(Val::Number(
                        facts
                            .and_then(|f| f.money.get(currency))
                            .map_or(0, |spend| spend.net_minor()) as f64
                            / 100.0,
                    ))
                }
                "first_purchase_at" => instant(facts.and_then(|f| f.first_purchase)),
                "last_purchase_at" => instant(facts.and_then(|f| f.last_purchase)),
                _ => None,
            }
        }
        _ => None,
    };
    Eval { value, next: None }
}

/// One journal event as the journal functions see it.
struct Happening<'a> {
    kind: &'static str,
    /// An online order's key: its versions count once, at the first that is a purchase.
    order: Option<(&'a str, &'a str, &'a str)>,
    at: TimestampMicros,
    channel: &'a str,
    store: Option<&'a str>,
    /// (sku, category, net spend of the line)
    lines: Vec<(&'a str, Option<&'a str>, i64)>,
}

fn happening(event: &CanonicalEvent) -> Happening<'_> {
    let at = event.event_time;
    match &event.body {
        EventBody::PosTransaction(t) => {
            let sign = match t.kind {
                PosTransactionKind::Sale => 1,
                PosTransactionKind::Return => -1,
            };
            Happening {
                kind: match t.kind {
                    PosTransactionKind::Sale => "purchase",
                    PosTransactionKind::Return => "return",
                },
                order: None,
                at,
                channel: "pos",
                store: Some(&t.store_id),
                lines: t
                    .lines
                    .iter()
                    .map(|line| {
                        (
                            line.sku.as_str(),
                            line.category.as_deref(),
                            sign * (line.quantity * line.unit_price_minor - line.discount_minor),
                        )
                    })
                    .collect(),
            }
        }
        EventBody::EcomOrder(order) => Happening {
            kind: match order.status.as_str() {
                "paid" | "shipped" | "completed" => "purchase",
                "cancelled" => "cancel",
                _ => "order",
            },
            order: Some((order.platform.as_str(), &order.shop_id, &order.order_id)),
            at,
            channel: order.platform.as_str(),
            store: None,
            lines: order
                .items
                .iter()
                .map(|item| {
                    (
                        item.sku.as_str(),
                        item.category.as_deref(),
                        item.quantity * item.unit_price_minor - item.discount_minor,
                    )
                })
                .collect(),
        },
        EventBody::EcomRefund(refund) => Happening {
            kind: "refund",
            order: None,
            at,
            channel: refund.platform.as_str(),
            store: None,
            lines: Vec::new(),
        },
        EventBody::Wechat(wechat) => Happening {
            kind: wechat.event_type.as_str(),
            order: None,
            at,
            channel: "wechat",
            store: None,
            lines: match (wechat.event_type, wechat.sku.as_deref()) {
                (WechatEventType::View, Some(sku)) => vec![(sku, None, 0)],
                _ => Vec::new(),
            },
        },
        EventBody::Membership(membership) => Happening {
            kind: membership.event_type.as_str(),
            order: None,
            at,
            channel: "membership",
            store: None,
            lines: Vec::new(),
        },
    }
}

fn texts(value: &Val) -> Vec<&str> {
    match value {
        Val::Text(text) => vec![text.as_str()],
        Val::List(values) => values
            .iter()
            .filter_map(|value| match value {
                Val::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn call(name: &str, args: &[Arg], subject: &Subject<'_>) -> Eval {
    let arg = |wanted: &str| {
        args.iter()
            .find(|arg| arg.name.as_deref() == Some(wanted))
            .and_then(|arg| eval(&arg.value, subject).value)
    };
    match name {
        "count" | "spend" | "bought" => journal_function(name, &arg, subject),
        "birthday_within" => {
            let Some(Val::Duration(window)) =
                args.first().and_then(|a| eval(&a.value, subject).value)
            else {
                return UNKNOWN;
            };
            birthday_within(subject, window)
        }
        "coupon_expiring_within" => {
            let Some(Val::Duration(window)) =
                args.first().and_then(|a| eval(&a.value, subject).value)
            else {
                return UNKNOWN;
            };
            coupon_expiring_within(subject, window)
        }
        "has" => {
            let Some(Val::Text(kind)) = args.first().and_then(|a| eval(&a.value, subject).value)
            else {
                return UNKNOWN;
            };
            known(Val::Bool(
                subject
                    .profile
                    .identifiers
                    .iter()
                    .any(|identifier| identifier.kind.as_str() == kind),
            ))
        }
        "percentile" => {
            let (Some(population), Some(argument)) = (subject.population, args.first()) else {
                return UNKNOWN;
            };
            match eval(&argument.value, subject).value {
                Some(Val::Number(value)) => population
                    .percentile(&argument.value, value)
                    .map_or(UNKNOWN, |rank| known(Val::Number(rank))),
                _ => UNKNOWN,
            }
        }
        "distance" => {
            let Some(here) = last_location(subject) else {
                return UNKNOWN;
            };
            let there = if let Some(stores) = arg("store") {
                let Some(known_stores) = subject.stores else {
                    return UNKNOWN;
                };
                // The nearest of the stores listed that the store list knows.
                texts(&stores)
                    .into_iter()
                    .filter_map(|id| known_stores.get(id))
                    .map(|store| metres_between(here, store))
                    .min_by(f64::total_cmp)
            } else {
                match (arg("lat"), arg("lon"), arg("datum")) {
                    (Some(Val::Number(lat)), Some(Val::Number(lon)), datum) => {
                        let datum = match datum {
                            None => Some(CoordinateSystem::Wgs84),
                            Some(Val::Text(text)) if text == "wgs84" => {
                                Some(CoordinateSystem::Wgs84)
                            }
                            Some(Val::Text(text)) if text == "gcj02" => {
                                Some(CoordinateSystem::Gcj02)
                            }
                            _ => None,
                        };
                        datum.map(|datum| metres_between(here, wgs84(lat, lon, datum)))
                    }
                    _ => None,
                }
            };
            there.map_or(UNKNOWN, |metres| known(Val::Distance(metres)))
        }
        _ => UNKNOWN,
    }
}

fn journal_function(name: &str, arg: &dyn Fn(&str) -> Option<Val>, subject: &Subject<'_>) -> Eval {
    // Each filter's texts, once for the whole journal.
    let filter = |name: &str| {
        arg(name).map(|value| {
            texts(&value)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let kinds = filter("type");
    let skus = filter("sku");
    let categories = filter("category");
    let stores = filter("store");
    let channels = filter("channel");
    let window = match arg("within") {
        Some(Val::Duration(window)) => Some(window),
        _ => None,
    };
    let now = subject.now;
    let mut total = 0i64;
    let mut count = 0u64;
    let mut next = None;
    let mut counted_orders = std::collections::HashSet::new();
    for event in subject.journal.events() {
        let happening = happening(event);
        let wanted_kind = kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|kind| kind == happening.kind));
        // `spend` nets purchases and returns; `bought` is purchases only.
        let counts = match name {
            "count" => true,
            "spend" => matches!(happening.kind, "purchase" | "return"),
            _ => happening.kind == "purchase",
        };
        if !counts
            || !wanted_kind
            || channels
                .as_ref()
                .is_some_and(|c| !c.iter().any(|channel| channel == happening.channel))
            || stores.as_ref().is_some_and(|s| {
                !happening
                    .store
                    .is_some_and(|store| s.iter().any(|wanted| wanted == store))
            })
        {
            continue;
        }
        // In the window [now - within, now]: it enters at its time and leaves `within` later.
        if happening.at > now {
            next = earliest(next, Some(happening.at));
            continue;
        }
        if let Some(window) = window {
            let leaves = happening.at + window + 1;
            if leaves <= now {
                continue;
            }
            next = earliest(next, Some(leaves));
        }
        let lines: Vec<&(&str, Option<&str>, i64)> = happening
            .lines
            .iter()
            .filter(|(sku, category, _)| {
                skus.as_ref()
                    .is_none_or(|s| s.iter().any(|wanted| wanted == sku))
                    && categories.as_ref().is_none_or(|c| {
                        category.is_some_and(|category| c.iter().any(|wanted| wanted == category))
                    })
            })
            .collect();
        let filtered = skus.is_some() || categories.is_some();
        if filtered && lines.is_empty() {
            continue;
        }
        if let Some(order) = happening.order
            && !counted_orders.insert(order)
        {
            continue;
        }
        count += 1;
        total += lines.iter().map(|(_, _, spend)| spend).sum::<i64>();
    }
    let value = match name {
        "count" => Val::Number(count as f64),
        "spend" => Val::Number(total as f64 / 100.0),
        _ => Val::Bool(count > 0),
    };
    Eval {
        value: Some(value),
        next,
    }
}

/// The instant a calendar day starts in `zone`.
fn day_start(zone: chrono_tz::Tz, day: NaiveDate) -> Option<TimestampMicros> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    let start = zone.from_local_datetime(&midnight).earliest()?;
    Some(start.timestamp_micros())
}

/// The customer's birthday trait, as a date.
pub(crate) fn birthday_of(profile: &Profile) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&profile.traits.get("birthday")?.value, "%Y-%m-%d").ok()
}

/// The calendar day it is at `subject.now` in the customer's time zone.
pub(crate) fn today(subject: &Subject<'_>) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp_micros(subject.now)
        .map(|at| at.with_timezone(&subject.time_zone).date_naive())
}

/// The birthday `birthday` falls on in `year` (29 February on 28 February in other years).
pub(crate) fn birthday_in(year: i32, birthday: NaiveDate) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day() - 1))
}

/// The coupons issued to the customer that are neither redeemed nor expired as of now (their
/// own expiry still ahead): (expiry, coupon id), soonest first.
pub fn open_coupons(subject: &Subject<'_>) -> Vec<(TimestampMicros, String)> {
    let mut open: std::collections::BTreeMap<&str, TimestampMicros> = Default::default();
    for event in subject
        .journal
        .events()
        .filter(|event| event.event_time <= subject.now)
    {
        let EventBody::Membership(membership) = &event.body else {
            continue;
        };
        let Some(coupon) = membership.coupon_id.as_deref() else {
            continue;
        };
        match membership.event_type {
            MembershipEventType::CouponIssued => {
                if let Some(expires) = membership.coupon_expires_at {
                    open.insert(coupon, expires);
                }
            }
            MembershipEventType::CouponRedeemed | MembershipEventType::CouponExpired => {
                open.remove(coupon);
            }
            _ => {}
        }
    }
    let mut open: Vec<(TimestampMicros, String)> = open
        .into_iter()
        .filter(|(_, expires)| *expires > subject.now)
        .map(|(coupon, expires)| (expires, coupon.to_owned()))
        .collect();
    open.sort();
    open
}

/// Whether an open coupon expires within `window` of now; it changes when the window reaches
/// the next coupon's expiry, or a coupon in it expires.
fn coupon_expiring_within(subject: &Subject<'_>, window: i64) -> Eval {
    let now = subject.now;
    let mut holds = false;
    let mut next = None;
    for (expires, _) in open_coupons(subject) {
        let opens = expires - window;
        if opens <= now {
            holds = true;
            next = earliest(next, Some(expires));
        } else {
            next = earliest(next, Some(opens));
        }
    }
    Eval {
        value: Some(Val::Bool(holds)),
        next,
    }
}

fn birthday_within(subject: &Subject<'_>, window: i64) -> Eval {
    let (Some(birthday), Some(today)) = (birthday_of(subject.profile), today(subject)) else {
        return UNKNOWN;
    };
    let zone = subject.time_zone;
    let now = subject.now;
    // Whole days ahead the window reaches (7d: the birthday is today or in the next 7 days).
    let days = window / DAY_MICROS;
    let mut holds = false;
    let mut next = None;
    for year in [today.year() - 1, today.year(), today.year() + 1] {
        let Some(date) = birthday_in(year, birthday) else {
            continue;
        };
        // In the window from `date - days` to the end of `date`.
        let opens = date - chrono::Days::new(u64::try_from(days).unwrap_or(0));
        let closes = date + chrono::Days::new(1);
        if opens <= today && today < closes {
            holds = true;
        }
        for edge in [opens, closes] {
            if let Some(at) = day_start(zone, edge)
                && at > now
            {
                next = earliest(next, Some(at));
            }
        }
    }
    Eval {
        value: Some(Val::Bool(holds)),
        next,
    }
}

/// Why a rule holds or not for one customer: each clause with its answer and the values it
/// compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The clause, as rule text.
    pub clause: String,
    pub holds: Option<bool>,
    /// What its sides came to: (the side as written, its value).
    pub values: Vec<(String, String)>,
    /// The clauses it is made of (`and`, `or`, `not`).
    pub parts: Vec<Explanation>,
}

impl Explanation {
    /// The explanation as indented lines: `yes`, `no` or `unknown`, then the clause and values.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.write(0, &mut lines);
        lines
    }

    fn write(&self, depth: usize, lines: &mut Vec<String>) {
        let answer = match self.holds {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        let values = self
            .values
            .iter()
            .map(|(side, value)| format!("{side} = {value}"))
            .collect::<Vec<_>>()
            .join(", ");
        let values = if values.is_empty() {
            String::new()
        } else {
            format!(" ({values})")
        };
        lines.push(format!(
            "{}{answer}: {}{values}",
            "  ".repeat(depth),
            self.clause
        ));
        for part in &self.parts {
            part.write(depth + 1, lines);
        }
    }
}

fn show(value: Option<&Val>, now: TimestampMicros) -> String {
    let Some(value) = value else {
        return "unknown".to_owned();
    };
    match value {
        Val::Number(number) => format!("{number}"),
        Val::Text(text) => format!("{text:?}"),
        Val::Bool(value) => value.to_string(),
        Val::Instant(a, k) => i64::try_from(a + k * i128::from(now))
            .ok()
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map_or_else(|| "out of range".to_owned(), |at| at.to_rfc3339()),
        Val::Date(date) => date.to_string(),
        Val::Duration(micros) if micros % DAY_MICROS == 0 => format!("{}d", micros / DAY_MICROS),
        Val::Duration(micros) => format!("{}s", *micros as f64 / 1e6),
        Val::Distance(metres) => format!("{metres}m"),
        Val::List(values) => format!(
            "[{}]",
            values
                .iter()
                .map(|value| show(Some(value), now))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Explains `rule` for `subject`: the same answers as [`evaluate`], clause by clause.
pub fn explain(rule: &Rule, subject: &Subject<'_>) -> Explanation {
    let (holds, _) = truth(rule, subject);
    let side = |value: &Value| {
        (
            value.to_string(),
            show(eval(value, subject).value.as_ref(), subject.now),
        )
    };
    let (values, parts) = match rule {
        Rule::Or(rules) | Rule::And(rules) => (
            Vec::new(),
            rules.iter().map(|rule| explain(rule, subject)).collect(),
        ),
        Rule::Not(inner) => (Vec::new(), vec![explain(inner, subject)]),
        Rule::Compare { left, right, .. } => (vec![side(left), side(right)], Vec::new()),
        Rule::In { value, .. } | Rule::Holds(value) => (vec![side(value)], Vec::new()),
    };
    Explanation {
        clause: rule.to_string(),
        holds,
        values,
        parts,
    }
}
