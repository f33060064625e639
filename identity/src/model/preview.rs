//! Rule preview: what re-resolving history under changed rules would do, without doing it.
//!
//! Both rule sets resolve the same history from scratch (the graph is deterministic, so this is
//! exactly what a re-resolution by replay would give); the two resulting groupings of
//! identifiers are then compared. A customer of the current rules whose identifiers end up with
//! several customers under the new ones would **split**; a customer under the new rules whose
//! identifiers come from several current customers is a **merge**. Identifiers that only one of
//! the two graphs holds (newly blocked, or a link one of them refuses) are counted apart.

use super::graph::{CustomerId, IdentityGraph};
use super::rules::Rules;
use kinfold_core::{EventId, Identifier};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One customer that splits, or one that results from a merge: its identifiers, grouped by
/// the customers they belong to on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Regrouping {
    /// The customer on the side where it is one.
    pub customer: CustomerId,
    /// Its identifiers, one group per customer on the other side (largest first, then by the
    /// smallest identifier).
    pub groups: Vec<BTreeSet<Identifier>>,
}

/// What re-resolving history under new rules would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulePreview {
    pub events: u64,
    pub customers_now: usize,
    pub customers_after: usize,
    /// Current customers that would split.
    pub splits: Vec<Regrouping>,
    /// Customers the new rules would make out of several current ones.
    pub merges: Vec<Regrouping>,
    /// Identifiers held now that nobody would hold.
    pub identifiers_dropped: usize,
    /// Identifiers nobody holds now that someone would.
    pub identifiers_added: usize,
    pub review_now: usize,
    pub review_after: usize,
}

impl RulePreview {
    /// Whether the new rules change nothing for this history.
    pub fn is_unchanged(&self) -> bool {
        self.splits.is_empty()
            && self.merges.is_empty()
            && self.identifiers_dropped == 0
            && self.identifiers_added == 0
    }
}

/// Resolves `history` (events with their identifiers, in log order) under `current` and under
/// `proposed`, and compares the results.
pub fn preview<'a>(
    current: &Rules,
    proposed: &Rules,
    history: impl IntoIterator<Item = (EventId, &'a [Identifier])>,
) -> RulePreview {
    let mut now = IdentityGraph::new(current.clone());
    let mut after = IdentityGraph::new(proposed.clone());
    let mut events = 0;
    for (event_id, identifiers) in history {
        now.observe(event_id, identifiers);
        after.observe(event_id, identifiers);
        events += 1;
    }
    compare(&now, &after, events)
}

/// What `after` (the same history re-resolved some other way: new rules, or a rule change
/// appended to the graph's inputs) does differently from `now`; `events` is how many events
/// the history holds.
pub fn compare(now: &IdentityGraph, after: &IdentityGraph, events: u64) -> RulePreview {
    let holders = |graph: &IdentityGraph| -> HashMap<Identifier, CustomerId> {
        graph
            .customers()
            .flat_map(|customer| {
                customer
                    .identifiers
                    .iter()
                    .map(move |identifier| ((**identifier).clone(), customer.id))
            })
            .collect()
    };
    let (held_now, held_after) = (holders(now), holders(after));
    RulePreview {
        events,
        customers_now: now.customer_count(),
        customers_after: after.customer_count(),
        splits: regroup(now, &held_after),
        merges: regroup(after, &held_now),
        identifiers_dropped: held_now
            .keys()
            .filter(|identifier| !held_after.contains_key(*identifier))
            .count(),
        identifiers_added: held_after
            .keys()
            .filter(|identifier| !held_now.contains_key(*identifier))
            .count(),
        review_now: now.review().count(),
        review_after: after.review().count(),
    }
}

/// The customers of `graph` whose identifiers belong to several customers in `other`.
fn regroup(graph: &IdentityGraph, other: &HashMap<Identifier, CustomerId>) -> Vec<Regrouping> {
    let mut regroupings = Vec::new();
    for customer in graph.customers() {
        let mut groups: BTreeMap<CustomerId, BTreeSet<Identifier>> = BTreeMap::new();
        for identifier in &customer.identifiers {
            if let Some(holder) = other.get(&**identifier) {
                groups
                    .entry(*holder)
                    .or_default()
                    .insert((**identifier).clone());
            }
        }
        if groups.len() > 1 {
            let mut groups: Vec<BTreeSet<Identifier>> = groups.into_values().collect();
            groups.sort_by(|a, b| {
                b.len()
                    .cmp(&a.len())
                    .then_with(|| a.first().cmp(&b.first()))
            });
            regroupings.push(Regrouping {
                customer: customer.id,
                groups,
            });
        }
    }
    regroupings
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinfold_core::IdentifierKind;

    use crate::model::tests::id;

    fn event(n: u128) -> EventId {
        EventId(uuid::Uuid::from_u128(n))
    }

    /// Three shoppers: two share a phone (a family), one logs in by openid and binds the phone.
    fn history() -> Vec<(EventId, Vec<Identifier>)> {
        let phone = id(IdentifierKind::Phone, "86", "+8613900000001");
        let card_a = id(IdentifierKind::MemberCard, "b", "A");
        let openid = id(IdentifierKind::WechatOpenid, "app", "o1");
        let unionid = id(IdentifierKind::WechatUnionid, "op", "u1");
        vec![
            (event(1), vec![card_a.clone()]),
            (event(2), vec![openid.clone(), unionid.clone()]),
            (event(3), vec![openid, phone.clone()]),
            (event(4), vec![card_a, phone]),
        ]
    }

    fn without_phone_merges() -> Rules {
        let mut file = Rules::default_rules().file().clone();
        file.merge_on.retain(|kind| *kind != IdentifierKind::Phone);
        Rules::new(file).expect("valid")
    }

    #[test]
    fn the_same_rules_change_nothing() {
        let rules = Rules::default_rules();
        let history = history();
        let preview = preview(
            &rules,
            &rules,
            history.iter().map(|(e, ids)| (*e, ids.as_slice())),
        );
        assert!(preview.is_unchanged(), "{preview:?}");
        assert_eq!(preview.events, 4);
        assert_eq!(preview.customers_now, preview.customers_after);
    }

    #[test]
    fn phones_no_longer_merging_split_the_customer_they_joined() {
        // Now: event 4's phone joins the card holder and the WeChat customer (one customer).
        // Without phone merges, event 4 goes to the card holder and the phone stays with the
        // WeChat customer: two customers.
        let history = history();
        let preview = preview(
            &Rules::default_rules(),
            &without_phone_merges(),
            history.iter().map(|(e, ids)| (*e, ids.as_slice())),
        );
        assert_eq!((preview.customers_now, preview.customers_after), (1, 2));
        assert_eq!(preview.splits.len(), 1);
        let sizes: Vec<usize> = preview.splits[0].groups.iter().map(BTreeSet::len).collect();
        assert_eq!(
            sizes,
            vec![3, 1],
            "the WeChat side keeps openid, unionid and phone"
        );
        assert!(preview.merges.is_empty());
        // And the other way round, the same history reads as a merge.
        let back = super::preview(
            &without_phone_merges(),
            &Rules::default_rules(),
            history.iter().map(|(e, ids)| (*e, ids.as_slice())),
        );
        assert_eq!(back.merges.len(), 1);
        assert!(back.splits.is_empty());
    }

    #[test]
    fn a_rule_change_re_resolves_the_history_as_if_the_rules_had_always_held() {
        use crate::model::{Change, GraphError, IdentityGraph};
        let history = history();
        let mut live = IdentityGraph::new(Rules::default_rules());
        for (event_id, identifiers) in &history {
            live.observe(*event_id, identifiers);
        }
        let changes = live
            .change_rules(
                without_phone_merges().file().clone(),
                "families share phones",
            )
            .expect("valid rules");
        assert!(
            matches!(changes[0], Change::RulesChanged { .. }),
            "{changes:?}"
        );
        // By hand: under the default rules event 4's phone merged the WeChat customer (events 2
        // and 3) into the card holder, created first; without phone merges they stay apart, so
        // events 2 and 3 move back to the WeChat customer and event 4 stays with the card.
        let card_holder = crate::model::CustomerId::first_seen_in(&event(1));
        let wechat = crate::model::CustomerId::first_seen_in(&event(2));
        let moved: Vec<_> = changes[1..]
            .iter()
            .filter_map(|change| match change {
                Change::Moved { event_id, from, to } => Some((*event_id, *from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(moved.len(), changes.len() - 1, "{changes:?}");
        assert_eq!(
            moved,
            vec![
                (event(2), Some(card_holder), Some(wechat)),
                (event(3), Some(card_holder), Some(wechat)),
            ]
        );
        // The oracle: the same history resolved under the new rules from the start.
        let mut always = IdentityGraph::new(without_phone_merges());
        for (event_id, identifiers) in &history {
            always.observe(*event_id, identifiers);
        }
        assert_eq!(live.digest(), always.digest());
        // A replay makes the change again, whatever rules it starts from.
        assert_eq!(
            IdentityGraph::replay(Rules::default_rules(), &live.inputs()).digest(),
            live.digest()
        );
        // Rules that do not check are refused and change nothing.
        let before = live.digest();
        let mut broken = Rules::default_rules().file().clone();
        broken.limits[0].max = 0;
        assert!(matches!(
            live.change_rules(broken, "typo"),
            Err(GraphError::InvalidRules(_))
        ));
        assert_eq!(live.digest(), before);
    }
}
