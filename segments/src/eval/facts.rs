//! Every customer's profile facts by column, for answers over the whole population at once:
//! a preview of a rule not saved yet, or a fact's distribution. The segment stage keeps one
//! row per customer slot, written each time it evaluates the customer (so the table follows
//! the profiles as membership does) and filled from the stored profiles when it starts.
//!
//! A rule is decided column by column, in the same three-valued logic as [`super::evaluate`]:
//! each condition yields the rows where it is known to hold and those where it is known not
//! to; `and`, `or` and `not` combine those sets. Conditions over the named number and instant
//! facts, `recency_days`, `primary_currency`, traits, consent, follows, tags and `percentile`
//! of a number fact (ranked over the column) are decided here. The others (journal
//! functions, `percentile(..., within = ...)`, `distance`, birthdays, stores and channels,
//! `rfm.r`) are left open: a rule with one decides the rows its other conditions
//! settle, and names the rest for evaluating one by one.

use super::{Subject, Val, eval, field, ordering, truth};
use crate::membership::Slot;
use crate::rule::ast::{Op, Rule, Value};
use fixedbitset::FixedBitSet;
use kinfold_core::time::TimestampMicros;
use kinfold_profile::fold::{DAY_MICROS, ProfileState};
use kinfold_profile::{Journal, Profile, ProfileRules};
use std::collections::HashMap;

/// Named facts kept as numbers (unknown: NaN).
const NUMBERS: &[&str] = &[
    "events",
    "orders",
    "returns",
    "views",
    "coupons_redeemed",
    "net_spend",
    "gross_spend",
    "returned_spend",
    "average_order_value",
    "lifetime_value",
    "mean_purchase_interval_days",
    "coupon_use_rate",
    "rfm.f",
    "rfm.m",
];

/// Named facts kept as instants (unknown: `i64::MIN`).
const INSTANTS: &[&str] = &["first_purchase_at", "last_purchase_at", "last_event_at"];

const UNKNOWN_INSTANT: i64 = i64::MIN;

/// A column of texts, each distinct text once; a row holds its text's code (0: unknown).
#[derive(Debug, Default, Clone)]
struct Texts {
    names: Vec<String>,
    codes: HashMap<String, u32>,
    rows: Vec<u32>,
}

impl Texts {
    fn set(&mut self, row: usize, text: Option<&str>) {
        let code = match text {
            None => 0,
            Some(text) => match self.codes.get(text) {
                Some(code) => *code,
                None => {
                    self.names.push(text.to_owned());
                    let code = u32::try_from(self.names.len()).expect("fewer than 2^32 texts");
                    self.codes.insert(text.to_owned(), code);
                    code
                }
            },
        };
        put(&mut self.rows, row, code, 0);
    }

    /// Whether `test` holds of each code's text (index 0, unknown, unused).
    fn table(&self, test: impl Fn(&str) -> bool) -> Vec<bool> {
        std::iter::once(false)
            .chain(self.names.iter().map(|name| test(name)))
            .collect()
    }
}

/// Writes `value` at `row`, growing the column with `unknown` only for a known value.
fn put<T: Copy + PartialEq>(column: &mut Vec<T>, row: usize, value: T, unknown: T) {
    if row < column.len() {
        column[row] = value;
    } else if value != unknown {
        column.resize(row, unknown);
        column.push(value);
    }
}

/// The rows where a rule is known to hold, and where it is known not to.
#[derive(Debug, Clone)]
struct Known {
    holds: FixedBitSet,
    fails: FixedBitSet,
}

impl Known {
    fn none(rows: usize) -> Self {
        Self {
            holds: FixedBitSet::with_capacity(rows),
            fails: FixedBitSet::with_capacity(rows),
        }
    }

    fn flip(self) -> Self {
        Self {
            holds: self.fails,
            fails: self.holds,
        }
    }
}

/// The rows of `values` where `known` and then `holds` hold, 64 at a time.
fn scan<T: Copy>(
    values: &[T],
    rows: usize,
    known: impl Fn(T) -> bool,
    holds: impl Fn(T) -> bool,
) -> Known {
    let mut out = Known::none(rows);
    let values = &values[..values.len().min(rows)];
    let bits = usize::BITS as usize;
    let (holds_words, fails_words) = (out.holds.as_mut_slice(), out.fails.as_mut_slice());
    for (word, chunk) in values.chunks(bits).enumerate() {
        let (mut yes, mut no) = (0usize, 0usize);
        for (bit, &value) in chunk.iter().enumerate() {
            let (k, h) = (known(value), holds(value));
            yes |= usize::from(k & h) << bit;
            no |= usize::from(k & !h) << bit;
        }
        holds_words[word] = yes;
        fails_words[word] = no;
    }
    out
}

/// [`scan`] with `value op constant` as the test.
fn compare_scan<T: Copy + PartialOrd>(
    values: &[T],
    rows: usize,
    known: impl Fn(T) -> bool,
    op: Op,
    constant: T,
) -> Known {
    match op {
        Op::Eq => scan(values, rows, known, |v| v == constant),
        Op::Ne => scan(values, rows, known, |v| v != constant),
        Op::Lt => scan(values, rows, known, |v| v < constant),
        Op::Le => scan(values, rows, known, |v| v <= constant),
        Op::Gt => scan(values, rows, known, |v| v > constant),
        Op::Ge => scan(values, rows, known, |v| v >= constant),
    }
}

/// `a op b` read from the other side: `b op' a`.
fn mirrored(op: Op) -> Op {
    match op {
        Op::Lt => Op::Gt,
        Op::Le => Op::Ge,
        Op::Gt => Op::Lt,
        Op::Ge => Op::Le,
        same => same,
    }
}

/// What a value of a rule reads, for deciding it by column.
enum Side<'a> {
    Number(&'a [f64]),
    Instant(&'a [i64]),
    /// `recency_days`, from `last_purchase_at`.
    Recency(&'a [i64]),
    /// `percentile(fact)` of a number fact, ranked among every customer with a profile who
    /// has it.
    Percentile(&'a [f64]),
    Text(Option<&'a Texts>),
    Flag(Option<&'a FixedBitSet>),
    /// The same for every customer (no fact, no function).
    Constant(Option<Val>),
    /// Not decided by column.
    Open,
}

/// Whether `value` reads no fact and calls nothing.
fn constant(value: &Value) -> bool {
    match value {
        Value::Field(_) | Value::Call { .. } => false,
        Value::Offset { base, by, .. } => constant(base) && constant(by),
        Value::List(values) => values.iter().all(constant),
        _ => true,
    }
}

/// Every customer's profile facts by slot.
#[derive(Debug, Clone)]
pub struct Facts {
    rows: usize,
    present: FixedBitSet,
    numbers: Vec<(Vec<String>, Vec<f64>)>,
    instants: Vec<(Vec<String>, Vec<i64>)>,
    currency: Texts,
    traits: HashMap<String, Texts>,
    consent: HashMap<String, FixedBitSet>,
    follows: HashMap<String, FixedBitSet>,
    /// A customer with nothing, for evaluating conditions that read no fact.
    blank: (Profile, Journal),
}

impl Default for Facts {
    fn default() -> Self {
        let path = |name: &str| name.split('.').map(str::to_owned).collect::<Vec<_>>();
        Self {
            rows: 0,
            present: FixedBitSet::new(),
            numbers: NUMBERS.iter().map(|n| (path(n), Vec::new())).collect(),
            instants: INSTANTS.iter().map(|n| (path(n), Vec::new())).collect(),
            currency: Texts::default(),
            traits: HashMap::new(),
            consent: HashMap::new(),
            follows: HashMap::new(),
            blank: (
                ProfileState::default().profile(&ProfileRules::default_rules(), 0),
                Journal::new(),
            ),
        }
    }
}

/// A rule decided over every customer with a profile.
#[derive(Debug, Clone)]
pub struct Decided {
    /// Customers with a profile.
    pub customers: u64,
    /// Slots known to be members: the rule holds and the purpose, if any, is consented to.
    pub members: FixedBitSet,
    /// Slots with the purpose consented to that the columns cannot decide (the rule has
    /// conditions decided only one customer at a time): evaluate each of them.
    pub open: FixedBitSet,
}

/// Writes `granted` into the flag columns of one family for `row`: every purpose the
/// customer has, and false in the others.
fn set_flags<'a>(
    columns: &mut HashMap<String, FixedBitSet>,
    row: usize,
    granted: impl Iterator<Item = (&'a String, bool)>,
) {
    for column in columns.values_mut() {
        if row < column.len() {
            column.set(row, false);
        }
    }
    for (name, on) in granted {
        let column = match columns.get_mut(name) {
            Some(column) => column,
            None if !on => continue,
            None => columns.entry(name.clone()).or_default(),
        };
        if row >= column.len() {
            column.grow(row + 1);
        }
        column.set(row, on);
    }
}

impl Facts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Customers with a profile.
    pub fn customers(&self) -> u64 {
        self.present.count_ones(..) as u64
    }

    /// Writes customer `slot`'s facts as `subject` has them.
    pub fn set(&mut self, slot: Slot, subject: &Subject<'_>) {
        let row = slot as usize;
        if row >= self.rows {
            self.rows = row + 1;
            self.present.grow(self.rows);
        }
        self.present.insert(row);
        for (path, column) in &mut self.numbers {
            let value = match field(path, subject).value {
                Some(Val::Number(number)) => number,
                _ => f64::NAN,
            };
            if row < column.len() || !value.is_nan() {
                put(column, row, value, f64::NAN);
            }
        }
        for (path, column) in &mut self.instants {
            let value = match field(path, subject).value {
                Some(Val::Instant(at, 0)) => i64::try_from(at).unwrap_or(UNKNOWN_INSTANT),
                _ => UNKNOWN_INSTANT,
            };
            put(column, row, value, UNKNOWN_INSTANT);
        }
        let profile = subject.profile;
        self.currency.set(row, profile.primary_currency.as_deref());
        for (name, column) in &mut self.traits {
            if !profile.traits.contains_key(name) {
                column.set(row, None);
            }
        }
        for (name, dated) in &profile.traits {
            match self.traits.get_mut(name) {
                Some(column) => column.set(row, Some(&dated.value)),
                None => {
                    let mut column = Texts::default();
                    column.set(row, Some(&dated.value));
                    self.traits.insert(name.clone(), column);
                }
            }
        }
        set_flags(
            &mut self.consent,
            row,
            profile.consent.iter().map(|(p, c)| (p, c.granted)),
        );
        set_flags(
            &mut self.follows,
            row,
            profile.follows.iter().map(|(a, f)| (a, f.following)),
        );
    }

    /// Takes customer `slot` out (merged away or erased).
    pub fn clear(&mut self, slot: Slot) {
        if (slot as usize) < self.rows {
            self.present.set(slot as usize, false);
        }
    }

    /// `rule` (for `purpose`, if any) decided at `now` over every customer with a profile.
    pub fn decide(&self, rule: &Rule, purpose: Option<&str>, now: TimestampMicros) -> Decided {
        let mut open = false;
        let known = self.known(rule, now, &mut open);
        let mut members = known.holds;
        members.intersect_with(&self.present);
        let mut undecided = FixedBitSet::with_capacity(self.rows);
        if open {
            undecided.clone_from(&self.present);
            undecided.difference_with(&members);
            undecided.difference_with(&known.fails);
        }
        if let Some(purpose) = purpose {
            let consented = self.flag(&self.consent, purpose);
            members.intersect_with(&consented);
            undecided.intersect_with(&consented);
        }
        Decided {
            customers: self.customers(),
            members,
            open: undecided,
        }
    }

    /// A family's flag column, as long as the table (false where never set).
    fn flag(&self, columns: &HashMap<String, FixedBitSet>, name: &str) -> FixedBitSet {
        let mut flag = columns.get(name).cloned().unwrap_or_default();
        flag.grow(self.rows);
        flag
    }

    /// Where `rule` is known to hold and to fail; sets `open` if some condition is not
    /// decided here.
    fn known(&self, rule: &Rule, now: TimestampMicros, open: &mut bool) -> Known {
        match rule {
            Rule::And(rules) | Rule::Or(rules) => {
                let is_or = matches!(rule, Rule::Or(_));
                let mut parts = rules.iter().map(|inner| self.known(inner, now, open));
                let Some(mut all) = parts.next() else {
                    return Known::none(self.rows);
                };
                for part in parts {
                    if is_or {
                        all.holds.union_with(&part.holds);
                        all.fails.intersect_with(&part.fails);
                    } else {
                        all.holds.intersect_with(&part.holds);
                        all.fails.union_with(&part.fails);
                    }
                }
                all
            }
            Rule::Not(inner) => self.known(inner, now, open).flip(),
            Rule::Compare { left, right, .. } if constant(left) && constant(right) => {
                self.everyone(rule, now)
            }
            Rule::Compare { left, op, right } => {
                let decided = match (self.side(left, now), self.side(right, now)) {
                    (column, Side::Constant(Some(value))) => self.compare(column, *op, &value, now),
                    (Side::Constant(Some(value)), column) => {
                        self.compare(column, mirrored(*op), &value, now)
                    }
                    (_, Side::Constant(None)) | (Side::Constant(None), _) => {
                        Some(Known::none(self.rows))
                    }
                    _ => None,
                };
                decided.unwrap_or_else(|| {
                    *open = true;
                    Known::none(self.rows)
                })
            }
            Rule::In { value, .. } if constant(value) => self.everyone(rule, now),
            Rule::In { value, list } => {
                let items: Option<Vec<Val>> = list
                    .iter()
                    .map(|item| constant(item).then(|| self.constant_value(item, now)))
                    .collect::<Option<Vec<_>>>()
                    .map(|items| items.into_iter().flatten().collect());
                let decided = items.and_then(|items| match self.side(value, now) {
                    Side::Number(values) => {
                        let numbers: Vec<f64> = items
                            .iter()
                            .filter_map(|item| match item {
                                Val::Number(n) => Some(*n),
                                _ => None,
                            })
                            .collect();
                        Some(scan(
                            values,
                            self.rows,
                            |v: f64| !v.is_nan(),
                            |v| numbers.contains(&v),
                        ))
                    }
                    Side::Text(texts) => Some(self.texts(texts, |text| {
                        items
                            .iter()
                            .any(|item| matches!(item, Val::Text(t) if t == text))
                    })),
                    _ => None,
                });
                decided.unwrap_or_else(|| {
                    *open = true;
                    Known::none(self.rows)
                })
            }
            Rule::Holds(value) if constant(value) => self.everyone(rule, now),
            Rule::Holds(value) => match self.side(value, now) {
                Side::Flag(flag) => self.flags(flag, |on| on),
                Side::Constant(Some(Val::Bool(holds))) => self.all(holds),
                Side::Constant(_) => Known::none(self.rows),
                _ => {
                    *open = true;
                    Known::none(self.rows)
                }
            },
        }
    }

    /// A condition that reads nothing of the customer: the same answer for every row.
    fn everyone(&self, rule: &Rule, now: TimestampMicros) -> Known {
        match truth(rule, &self.blank_subject(now)).0 {
            Some(holds) => self.all(holds),
            None => Known::none(self.rows),
        }
    }

    fn all(&self, holds: bool) -> Known {
        let mut known = Known::none(self.rows);
        known.holds.clone_from(&self.present);
        if !holds {
            known = known.flip();
        }
        known
    }

    fn blank_subject(&self, now: TimestampMicros) -> Subject<'_> {
        Subject {
            profile: &self.blank.0,
            journal: &self.blank.1,
            now,
            time_zone: chrono_tz::UTC,
            population: None,
            stores: None,
        }
    }

    fn constant_value(&self, value: &Value, now: TimestampMicros) -> Option<Val> {
        eval(value, &self.blank_subject(now)).value
    }

    /// What `value` reads.
    fn side(&self, value: &Value, now: TimestampMicros) -> Side<'_> {
        if constant(value) {
            return Side::Constant(self.constant_value(value, now));
        }
        if let Value::Call { name, args } = value
            && name == "percentile"
            && let [argument] = args.as_slice()
            && argument.name.is_none()
        {
            return match self.side(&argument.value, now) {
                Side::Number(column) => Side::Percentile(column),
                _ => Side::Open,
            };
        }
        let Value::Field(path) = value else {
            return Side::Open;
        };
        let joined = path.join(".");
        if let Some((_, column)) = self.numbers.iter().find(|(p, _)| *p == *path) {
            return Side::Number(column);
        }
        if let Some((_, column)) = self.instants.iter().find(|(p, _)| *p == *path) {
            return Side::Instant(column);
        }
        match (path[0].as_str(), path.len()) {
            _ if joined == "recency_days" => {
                let last = INSTANTS
                    .iter()
                    .position(|name| *name == "last_purchase_at")
                    .expect("kept");
                Side::Recency(&self.instants[last].1)
            }
            _ if joined == "primary_currency" => Side::Text(Some(&self.currency)),
            ("trait", 2) => Side::Text(self.traits.get(&path[1])),
            ("consent", 2) => Side::Flag(self.consent.get(&path[1])),
            ("follows", 2) => Side::Flag(self.follows.get(&path[1])),
            ("tag", 2) => Side::Constant(Some(Val::Bool(false))),
            _ => Side::Open,
        }
    }

    /// `side op constant`, or `None` if not decided by column.
    fn compare(
        &self,
        side: Side<'_>,
        op: Op,
        constant: &Val,
        now: TimestampMicros,
    ) -> Option<Known> {
        let rows = self.rows;
        match (side, constant) {
            (Side::Number(values), Val::Number(c)) => {
                Some(compare_scan(values, rows, |v: f64| !v.is_nan(), op, *c))
            }
            (Side::Instant(values), Val::Instant(at, k)) => {
                let at = at + k * i128::from(now);
                let at = i64::try_from(at.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)))
                    .expect("clamped");
                Some(compare_scan(values, rows, |v| v != UNKNOWN_INSTANT, op, at))
            }
            (Side::Percentile(values), Val::Number(c)) => Some(self.percentile(values, op, *c)),
            (Side::Recency(values), Val::Number(c)) => {
                let days = |last: i64| (now.saturating_sub(last).max(0) / DAY_MICROS) as f64;
                let c = *c;
                Some(scan(
                    values,
                    rows,
                    |v| v != UNKNOWN_INSTANT,
                    move |v| {
                        days(v)
                            .partial_cmp(&c)
                            .is_some_and(|order| ordering(op, order))
                    },
                ))
            }
            (Side::Text(texts), Val::Text(c)) => {
                Some(self.texts(texts, |text| ordering(op, text.cmp(c.as_str()))))
            }
            (Side::Flag(flag), Val::Bool(c)) => {
                Some(self.flags(flag, |on| ordering(op, on.cmp(c))))
            }
            _ => None,
        }
    }

    /// `percentile(values) op c` for every row with a value, ranked as [`super::Population`]
    /// ranks: the share of the others' values below it, 0 to 100. The percentile only grows
    /// with the value, so the ranks where the comparison holds are one run (or, for `!=`,
    /// all but one run), and a row's answer is two comparisons of its value with the sorted
    /// values at the run's ends.
    fn percentile(&self, values: &[f64], op: Op, c: f64) -> Known {
        let mut sorted: Vec<f64> = values
            .iter()
            .enumerate()
            .filter(|(row, value)| self.present.contains(*row) && !value.is_nan())
            .map(|(_, value)| *value)
            .collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |below: usize| {
            if n <= 1 {
                0.0
            } else {
                100.0 * below as f64 / (n - 1) as f64
            }
        };
        // Where `rank op c` holds, among the ranks 0..=n; for `!=`, where `=` does, then flipped.
        let (test, flip) = match op {
            Op::Ne => (Op::Eq, true),
            op => (op, false),
        };
        let holds = |below: usize| {
            rank(below)
                .partial_cmp(&c)
                .is_some_and(|o| ordering(test, o))
        };
        let start = (0..=n).find(|&below| holds(below)).unwrap_or(n + 1);
        let end = (start..=n).find(|&below| !holds(below)).unwrap_or(n + 1);
        // A value has `below` others under it at least k exactly when it is above the k-th.
        let at_least = |value: f64, k: usize| k == 0 || (k <= n && value > sorted[k - 1]);
        scan(
            values,
            self.rows,
            |v: f64| !v.is_nan(),
            |v| (start <= n && at_least(v, start) && !at_least(v, end)) != flip,
        )
    }

    /// Rows whose text is known, and whether `test` holds of it.
    fn texts(&self, texts: Option<&Texts>, test: impl Fn(&str) -> bool) -> Known {
        let Some(texts) = texts else {
            return Known::none(self.rows);
        };
        let table = texts.table(test);
        scan(
            &texts.rows,
            self.rows,
            |code| code != 0,
            |code| table[code as usize],
        )
    }

    /// Every present row (a flag is false where not set), and whether `test` holds of its flag.
    fn flags(&self, flag: Option<&FixedBitSet>, test: impl Fn(bool) -> bool) -> Known {
        let (when_on, when_off) = (test(true), test(false));
        let mut on = flag.cloned().unwrap_or_default();
        on.grow(self.rows);
        on.intersect_with(&self.present);
        let mut off = self.present.clone();
        off.difference_with(&on);
        let pick = |yes: bool| {
            let mut rows = FixedBitSet::with_capacity(self.rows);
            if yes == when_on {
                rows.union_with(&on);
            }
            if yes == when_off {
                rows.union_with(&off);
            }
            rows
        };
        Known {
            holds: pick(true),
            fails: pick(false),
        }
    }
}
