//! The identity graph: which customer holds which identifier, and how each event's identifiers
//! move it.
//!
//! Pure and deterministic: the same events and decisions in the same order give the same
//! graph, the same customer ids and the same changes, so the graph is a projection of the log
//! like any other. Every change it makes is returned as a [`Change`] with its cause, for
//! `identity.changes`.
//!
//! Resolving one event's identifiers (after dropping blocked values):
//! 1. The customers that hold any of its **merge kinds** (verified server-side identifiers, see
//!    [`Rules::merges_on`]) are its candidates. Identifiers of other kinds never pull an event,
//!    or another customer, towards the one that holds them.
//! 2. No candidate: a weak-only event goes to the customer that holds its strongest weak
//!    identifier, if any; otherwise the event creates a customer, whose id derives from the
//!    event id.
//! 3. Several candidates: the earliest created survives and absorbs each other one, in creation
//!    order, unless the union would break a per-customer limit or the two were split apart by
//!    hand; such a merge is refused, recorded, and held for review.
//! 4. The event's identifiers that nobody holds are linked to the customer it resolved to,
//!    strongest first, unless one would break a limit: that link is refused and held for
//!    review (a recycled phone arriving with a new unionid, a second member card).
//!
//! Identifiers held by a customer the event did not resolve to stay where they are.

use super::rules::Rules;
use kinfold_core::{EventId, Identifier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// A unified customer id: derived from the id of the event that first saw the customer, so
/// that replaying the log gives every customer the same id again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CustomerId(pub uuid::Uuid);

/// The namespace of customer ids (a fixed random UUID).
const CUSTOMER_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_37a4_52c8_4c1e_9a0d_5e2b_7f31_c804);

impl CustomerId {
    /// The customer first seen in `event`.
    pub fn first_seen_in(event: &EventId) -> Self {
        Self(uuid::Uuid::new_v5(&CUSTOMER_NAMESPACE, event.as_bytes()))
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Cause {
    /// An event's identifiers.
    Event { event_id: EventId },
    /// A person, with their reason.
    Manual { reason: String },
}

/// One change to the graph, as it goes to `identity.changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Created {
        customer: CustomerId,
        cause: Cause,
    },
    Linked {
        customer: CustomerId,
        identifier: Identifier,
        cause: Cause,
    },
    Merged {
        survivor: CustomerId,
        absorbed: CustomerId,
        /// The identifiers that moved to the survivor.
        identifiers: Vec<Identifier>,
        cause: Cause,
    },
    /// A customer's identifiers removed at their request (or by law); events carrying them
    /// later make a new customer.
    Erased {
        customer: CustomerId,
        cause: Cause,
    },
    /// A person decided a refused merge or link: approved (it is made now) or rejected.
    Decided {
        review: u64,
        approved: bool,
        cause: Cause,
    },
    /// A merge or a link the rules did not allow; held for review.
    Refused {
        review: u64,
        customer: CustomerId,
        /// The other customer, for a refused merge.
        other: Option<CustomerId>,
        /// The identifier, for a refused link.
        identifier: Option<Identifier>,
        rule: String,
        cause: Cause,
    },
}

/// A customer: its identifiers, and when it was created (the order of creation decides which
/// of two merged customers survives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub created: u64,
    pub identifiers: BTreeSet<Identifier>,
}

/// A refused merge or link waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub id: u64,
    pub customer: CustomerId,
    pub other: Option<CustomerId>,
    pub identifier: Option<Identifier>,
    pub rule: String,
    pub cause: Cause,
}

/// Where an event went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The customer the event belongs to; `None` when it carries no usable identifier.
    pub customer: Option<CustomerId>,
    /// Identifiers dropped as blocked, with the rule.
    pub blocked: Vec<(Identifier, String)>,
    pub changes: Vec<Change>,
}

/// Why a manual operation cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("no customer {0}")]
    UnknownCustomer(CustomerId),
    #[error("a customer cannot be merged with itself")]
    SameCustomer,
    #[error("merging would break a rule: {0}")]
    BreaksRule(String),
    #[error("no review item {0}")]
    UnknownReview(u64),
}

/// The identity graph.
#[derive(Debug, Clone)]
pub struct IdentityGraph {
    rules: Rules,
    customers: BTreeMap<CustomerId, Customer>,
    holder: HashMap<Identifier, CustomerId>,
    next_created: u64,
    review: BTreeMap<u64, ReviewItem>,
    next_review: u64,
}

impl IdentityGraph {
    /// An empty graph under `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            customers: BTreeMap::new(),
            holder: HashMap::new(),
            next_created: 0,
            review: BTreeMap::new(),
            next_review: 1,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Every customer, by id.
    pub fn customers(&self) -> impl Iterator<Item = &Customer> {
        self.customers.values()
    }

    pub fn customer(&self, id: &CustomerId) -> Option<&Customer> {
        self.customers.get(id)
    }

    /// The customer holding `identifier`.
    pub fn holder(&self, identifier: &Identifier) -> Option<CustomerId> {
        self.holder.get(identifier).copied()
    }

    /// The refused merges and links waiting for a person, oldest first.
    pub fn review(&self) -> impl Iterator<Item = &ReviewItem> {
        self.review.values()
    }

    /// Resolves the identifiers of event `event_id` (see the module's documentation).
    pub fn observe(&mut self, event_id: EventId, identifiers: &[Identifier]) -> Resolution {
        let cause = Cause::Event { event_id };
        let mut changes = Vec::new();
        let mut blocked = Vec::new();
        let mut usable: Vec<&Identifier> = Vec::new();
        for identifier in identifiers {
            if let Some(rule) = self.rules.blocked(identifier) {
                blocked.push((identifier.clone(), rule.to_owned()));
            } else if !usable.contains(&identifier) {
                usable.push(identifier);
            }
        }
        // Strongest first; equal kinds in value order, so the input order never matters.
        usable.sort_by(|a, b| (self.rules.rank(a.kind), *a).cmp(&(self.rules.rank(b.kind), *b)));
        if usable.is_empty() {
            return Resolution {
                customer: None,
                blocked,
                changes,
            };
        }

        let mut candidates: Vec<CustomerId> = Vec::new();
        for identifier in &usable {
            if !self.rules.merges_on(identifier.kind) {
                continue;
            }
            if let Some(holder) = self.holder.get(*identifier)
                && !candidates.contains(holder)
            {
                candidates.push(*holder);
            }
        }
        let has_merge_kind = usable.iter().any(|i| self.rules.merges_on(i.kind));
        let target = if candidates.is_empty() {
            let weak_holder = if has_merge_kind {
                None
            } else {
                usable.iter().find_map(|i| self.holder.get(*i).copied())
            };
            match weak_holder {
                Some(holder) => holder,
                None => self.create(CustomerId::first_seen_in(&event_id), &cause, &mut changes),
            }
        } else {
            candidates.sort_by_key(|id| self.customers[id].created);
            let survivor = candidates[0];
            for other in &candidates[1..] {
                let union = self.customers[&survivor]
                    .identifiers
                    .iter()
                    .chain(&self.customers[other].identifiers);
                match self.rules.broken_limit(union) {
                    None => self.absorb(survivor, *other, &cause, &mut changes),
                    Some(rule) => {
                        self.refuse(survivor, Some(*other), None, rule, &cause, &mut changes);
                    }
                }
            }
            survivor
        };

        for identifier in usable {
            if self.holder.contains_key(identifier) {
                continue;
            }
            let held = &self.customers[&target].identifiers;
            match self
                .rules
                .broken_limit(held.iter().chain(std::iter::once(identifier)))
            {
                None => self.link(target, identifier.clone(), &cause, &mut changes),
                Some(rule) => self.refuse(
                    target,
                    None,
                    Some(identifier.clone()),
                    rule,
                    &cause,
                    &mut changes,
                ),
            }
        }
        Resolution {
            customer: Some(target),
            blocked,
            changes,
        }
    }

    /// Merges `absorbed` into `survivor` by hand.
    pub fn merge(
        &mut self,
        survivor: CustomerId,
        absorbed: CustomerId,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        if survivor == absorbed {
            return Err(GraphError::SameCustomer);
        }
        for id in [survivor, absorbed] {
            if !self.customers.contains_key(&id) {
                return Err(GraphError::UnknownCustomer(id));
            }
        }
        let union = self.customers[&survivor]
            .identifiers
            .iter()
            .chain(&self.customers[&absorbed].identifiers);
        if let Some(rule) = self.rules.broken_limit(union) {
            return Err(GraphError::BreaksRule(rule));
        }
        let mut changes = Vec::new();
        let cause = Cause::Manual {
            reason: reason.to_owned(),
        };
        self.absorb(survivor, absorbed, &cause, &mut changes);
        Ok(changes)
    }

    /// Removes `customer` and lets go of its identifiers; review items about it are dropped.
    pub fn erase(&mut self, customer: CustomerId, reason: &str) -> Result<Vec<Change>, GraphError> {
        let gone = self
            .customers
            .remove(&customer)
            .ok_or(GraphError::UnknownCustomer(customer))?;
        for identifier in &gone.identifiers {
            self.holder.remove(identifier);
        }
        self.review
            .retain(|_, item| item.customer != customer && item.other != Some(customer));
        Ok(vec![Change::Erased {
            customer,
            cause: Cause::Manual {
                reason: reason.to_owned(),
            },
        }])
    }

    /// Decides review item `review`. Approving makes the refused merge or link now, whatever the
    /// limits say (a person checked); when the customers or the identifier have moved on since
    /// (merged, erased, linked elsewhere), there is nothing left to make and only the decision
    /// is recorded. Rejecting records the decision.
    pub fn decide(
        &mut self,
        review: u64,
        approve: bool,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        let item = self
            .review
            .remove(&review)
            .ok_or(GraphError::UnknownReview(review))?;
        let cause = Cause::Manual {
            reason: reason.to_owned(),
        };
        let mut changes = vec![Change::Decided {
            review,
            approved: approve,
            cause: cause.clone(),
        }];
        if !approve || !self.customers.contains_key(&item.customer) {
            return Ok(changes);
        }
        if let Some(other) = item.other
            && other != item.customer
            && self.customers.contains_key(&other)
        {
            self.absorb(item.customer, other, &cause, &mut changes);
        }
        if let Some(identifier) = item.identifier
            && !self.holder.contains_key(&identifier)
        {
            self.link(item.customer, identifier, &cause, &mut changes);
        }
        Ok(changes)
    }

    fn create(&mut self, id: CustomerId, cause: &Cause, changes: &mut Vec<Change>) -> CustomerId {
        debug_assert!(!self.customers.contains_key(&id), "customer ids are unique");
        self.customers.insert(
            id,
            Customer {
                id,
                created: self.next_created,
                identifiers: BTreeSet::new(),
            },
        );
        self.next_created += 1;
        changes.push(Change::Created {
            customer: id,
            cause: cause.clone(),
        });
        id
    }

    fn link(
        &mut self,
        customer: CustomerId,
        identifier: Identifier,
        cause: &Cause,
        changes: &mut Vec<Change>,
    ) {
        self.holder.insert(identifier.clone(), customer);
        if let Some(held) = self.customers.get_mut(&customer) {
            held.identifiers.insert(identifier.clone());
        }
        changes.push(Change::Linked {
            customer,
            identifier,
            cause: cause.clone(),
        });
    }

    fn absorb(
        &mut self,
        survivor: CustomerId,
        absorbed: CustomerId,
        cause: &Cause,
        changes: &mut Vec<Change>,
    ) {
        let Some(gone) = self.customers.remove(&absorbed) else {
            return;
        };
        for identifier in &gone.identifiers {
            self.holder.insert(identifier.clone(), survivor);
        }
        if let Some(kept) = self.customers.get_mut(&survivor) {
            kept.identifiers.extend(gone.identifiers.iter().cloned());
        }
        changes.push(Change::Merged {
            survivor,
            absorbed,
            identifiers: gone.identifiers.into_iter().collect(),
            cause: cause.clone(),
        });
    }

    fn refuse(
        &mut self,
        customer: CustomerId,
        other: Option<CustomerId>,
        identifier: Option<Identifier>,
        rule: String,
        cause: &Cause,
        changes: &mut Vec<Change>,
    ) {
        let id = self.next_review;
        self.next_review += 1;
        self.review.insert(
            id,
            ReviewItem {
                id,
                customer,
                other,
                identifier: identifier.clone(),
                rule: rule.clone(),
                cause: cause.clone(),
            },
        );
        changes.push(Change::Refused {
            review: id,
            customer,
            other,
            identifier,
            rule,
            cause: cause.clone(),
        });
    }
}
