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
//!
//! The graph records its [`Input`]s (events' identifiers and decisions by hand) and is their
//! fold: [`IdentityGraph::replay`] gives the same graph again. A split is a decision too: it
//! keeps two lineages apart and re-resolves the whole history under that constraint (see
//! [`Input::Split`]), so every event lands where it would have without the merge, and the ids
//! come back because they derive from first-seen events.

use super::chunked::Chunked;
use super::inputs::{Inputs, Recorded};
use super::known::{KnownIdentifiers, NOBODY};
use super::places::Places;
use super::rules::{Rules, RulesFile};
use kinfold_core::{EventId, Identifier};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::borrow::Borrow;
use std::sync::Arc;
// foldhash: fast, and seeded per process, so identifiers from outside cannot aim at its
// buckets; nothing iterates these maps in an order that shows.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::{BTreeMap, BTreeSet};
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
    ///
    /// A UUID version 5: the SHA-1 of the namespace and the event id, as `Uuid::new_v5` makes
    /// it, with a SHA-1 that uses the processor's SHA instructions where it has them (one is
    /// computed for every new customer).
    pub fn first_seen_in(event: &EventId) -> Self {
        use sha1::Digest as _;
        let mut hasher = sha1::Sha1::new();
        hasher.update(CUSTOMER_NAMESPACE.as_bytes());
        hasher.update(event.as_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(uuid::Builder::from_sha1_bytes(bytes).into_uuid())
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
        identifier: Arc<Identifier>,
        cause: Cause,
    },
    Merged {
        survivor: CustomerId,
        absorbed: CustomerId,
        /// The identifiers that moved to the survivor.
        identifiers: Vec<Arc<Identifier>>,
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
        /// The customer the review item is about.
        customer: CustomerId,
        approved: bool,
        cause: Cause,
    },
    /// A merge undone: `restored` is a customer of its own again, holding `identifiers`.
    Split {
        customer: CustomerId,
        restored: CustomerId,
        identifiers: Vec<Arc<Identifier>>,
        cause: Cause,
    },
    /// The rules changed by hand: the whole history was re-resolved under the new ones, and
    /// every event that went to another customer follows as [`Change::Moved`].
    RulesChanged {
        cause: Cause,
    },
    /// After a split or a rule change, an event that now belongs to another customer (`None`: to nobody, its
    /// customer was erased).
    Moved {
        event_id: EventId,
        from: Option<CustomerId>,
        to: Option<CustomerId>,
    },
    /// A merge or a link the rules did not allow; held for review (`review`), except a merge
    /// of customers a split keeps apart, which is not put to a person again.
    Refused {
        review: Option<u64>,
        customer: CustomerId,
        /// The other customer, for a refused merge.
        other: Option<CustomerId>,
        /// The identifier, for a refused link.
        identifier: Option<Arc<Identifier>>,
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
    /// In order, each once; shared with the graph's index and its inputs: an identifier is
    /// allocated once.
    pub identifiers: Vec<Arc<Identifier>>,
}

/// A refused merge or link waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub id: u64,
    pub customer: CustomerId,
    pub other: Option<CustomerId>,
    pub identifier: Option<Arc<Identifier>>,
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
    #[error("invalid rules: {0}")]
    InvalidRules(String),
    #[error("{restored} was not merged into {customer}")]
    NotMerged {
        customer: CustomerId,
        restored: CustomerId,
    },
}

/// An event's identifiers as the graph shares them; most events carry one or two, which sit
/// inline.
pub type EventIdentifiers = SmallVec<[Arc<Identifier>; 2]>;

/// What the graph is a fold of: events' identifiers and decisions by hand, in order. Replaying
/// the inputs from an empty graph gives the same graph; a split does exactly that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Observe {
        event_id: EventId,
        identifiers: EventIdentifiers,
    },
    Merge {
        survivor: CustomerId,
        absorbed: CustomerId,
        reason: String,
    },
    Erase {
        customer: CustomerId,
        reason: String,
    },
    /// A review decision, by what was refused (review numbers change when history is
    /// re-resolved; what was refused does not).
    Decide {
        customer: CustomerId,
        other: Option<CustomerId>,
        identifier: Option<Arc<Identifier>>,
        approve: bool,
        reason: String,
    },
    Split {
        customer: CustomerId,
        restored: CustomerId,
        reason: String,
    },
    /// New rules from here on, and for the whole history before: it is re-resolved under them
    /// (see [`IdentityGraph::change_rules`]).
    Rules {
        rules: Box<RulesFile>,
        reason: String,
    },
}

/// Two lineages a split keeps apart: no automatic merge joins a customer holding `a` (itself or
/// absorbed) and one holding `b`, from the beginning of history; a manual merge made before
/// the split is void, one made after it lifts the constraint.
#[derive(Debug, Clone)]
struct Apart {
    a: CustomerId,
    b: CustomerId,
    /// The index of the split among the inputs.
    split_at: usize,
    lifted: bool,
}

const KEPT_APART: &str = "kept apart by a split";

/// One of an event's usable identifiers: where the graph knows it, and the place of the customer
/// that held it as the event arrived.
type Usable<'a> = (&'a Identifier, u32, Option<u32>);

/// The identity graph.
#[derive(Debug, Clone)]
pub struct IdentityGraph {
    rules: Rules,
    /// Every customer ever made, at its place: the order of creation (`None` once absorbed or
    /// erased). The hot path goes by place, with no hashing of customer ids; customers are
    /// sorted by id wherever they show.
    customers: Chunked<Option<Customer>>,
    /// The place of every customer ever made (live or not: see `customers`), by its id in
    /// `ids`.
    places: Places<CustomerId>,
    /// The id of every customer ever made, by place.
    ids: Vec<CustomerId>,
    /// How many customers are live.
    live: usize,
    /// Every identifier known and who holds it.
    known: KnownIdentifiers,
    review: BTreeMap<u64, ReviewItem>,
    next_review: u64,
    /// Every input: events (each once) and decisions.
    inputs: Inputs,
    /// The customers each live customer absorbed, directly or not.
    lineage: HashMap<CustomerId, BTreeSet<CustomerId>>,
    absorbed_into: HashMap<CustomerId, CustomerId>,
    erased: HashSet<CustomerId>,
    apart: Vec<Apart>,
    /// Where each event is among the inputs: an event delivered again changes nothing.
    seen: Places<EventId>,
}

impl IdentityGraph {
    /// An empty graph under `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            customers: Chunked::default(),
            places: Places::default(),
            ids: Vec::new(),
            live: 0,
            known: KnownIdentifiers::default(),
            review: BTreeMap::new(),
            next_review: 1,
            inputs: Inputs::default(),
            lineage: HashMap::new(),
            absorbed_into: HashMap::new(),
            erased: HashSet::new(),
            apart: Vec::new(),
            seen: Places::default(),
        }
    }

    /// The graph that `inputs` make under `rules`, or under the last rules the inputs change
    /// to: a rule change re-resolves the whole history.
    pub fn replay(rules: Rules, inputs: &[Input]) -> Self {
        let rules = inputs
            .iter()
            .rev()
            .find_map(|input| match input {
                Input::Rules { rules, .. } => Rules::new((**rules).clone()).ok(),
                _ => None,
            })
            .unwrap_or(rules);
        let mut graph = Self::new(rules);
        for (index, input) in inputs.iter().enumerate() {
            if let Input::Split {
                customer, restored, ..
            } = input
            {
                graph.apart.push(Apart {
                    a: *customer,
                    b: *restored,
                    split_at: index,
                    lifted: false,
                });
            }
        }
        for (index, input) in inputs.iter().enumerate() {
            // What failed when it was first applied fails again; it stays in the inputs all
            // the same, so that the next replay sees the same history.
            let _ = graph.apply(index, input);
            if !matches!(input, Input::Observe { .. }) {
                graph.inputs.push_decision(input.clone());
            }
        }
        graph
    }

    /// The graph's canonical bytes: every customer (id, creation order, identifiers), where
    /// each absorbed and erased customer went, the review queue, and the customer of every
    /// event seen, all in sorted order, as JSON. Two graphs are the same exactly when these
    /// bytes are; replay must give them again.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Snapshot<'a> {
            customers: Vec<&'a Customer>,
            absorbed_into: BTreeMap<&'a CustomerId, &'a CustomerId>,
            erased: BTreeSet<&'a CustomerId>,
            review: Vec<&'a ReviewItem>,
            next_review: u64,
            events: BTreeMap<EventId, Option<CustomerId>>,
        }
        let snapshot = Snapshot {
            customers: self.customers().collect(),
            absorbed_into: self.absorbed_into.iter().collect(),
            erased: self.erased.iter().collect(),
            review: self.review.values().collect(),
            next_review: self.next_review,
            events: self.event_customers().into_iter().collect(),
        };
        serde_json::to_vec(&snapshot).expect("a graph always serialises")
    }

    /// The SHA-256 of [`Self::canonical_bytes`], in hex: the graph's digest.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.canonical_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The inputs so far.
    pub fn inputs(&self) -> Vec<Input> {
        self.inputs_since(0).collect()
    }

    /// The inputs from number `start` on.
    pub fn inputs_since(&self, start: usize) -> impl Iterator<Item = Input> + '_ {
        (start..self.inputs.len()).map(|at| match self.inputs.get(at) {
            Recorded::Observe {
                event_id, located, ..
            } => Input::Observe {
                event_id,
                identifiers: located
                    .iter()
                    .map(|at| self.known.identifier(*at).clone())
                    .collect(),
            },
            Recorded::Decision(input) => input.clone(),
        })
    }

    /// How many inputs there are.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The customers `customer` absorbed, directly or not.
    pub fn absorbed(&self, customer: &CustomerId) -> impl Iterator<Item = &CustomerId> {
        self.lineage.get(customer).into_iter().flatten()
    }

    /// The customer an event belongs to now (merges followed; `None` once erased).
    pub fn current(&self, customer: CustomerId) -> Option<CustomerId> {
        let mut current = customer;
        loop {
            if self.erased.contains(&current) {
                return None;
            }
            match self.absorbed_into.get(&current) {
                Some(next) => current = *next,
                None => return Some(current),
            }
        }
    }

    /// Where an event that went to the customer at `place` ([`NOBODY`]: none) belongs now.
    fn now_of(&self, place: u32) -> Option<CustomerId> {
        self.ids
            .get(place as usize)
            .and_then(|&customer| self.current(customer))
    }

    /// Every event observed, with the customer it belongs to now.
    pub fn event_customers(&self) -> Vec<(EventId, Option<CustomerId>)> {
        self.inputs
            .events()
            .map(|(event_id, customer)| (event_id, self.now_of(customer)))
            .collect()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Every customer, by id.
    pub fn customers(&self) -> impl Iterator<Item = &Customer> {
        let mut customers: Vec<&Customer> = self.customers.iter().flatten().collect();
        customers.sort_unstable_by_key(|customer| customer.id);
        customers.into_iter()
    }

    /// How many customers there are.
    pub fn customer_count(&self) -> usize {
        self.live
    }

    pub fn customer(&self, id: &CustomerId) -> Option<&Customer> {
        self.place(id).map(|place| self.at(place))
    }

    /// The place of live customer `id`.
    fn place(&self, id: &CustomerId) -> Option<u32> {
        let ids = &self.ids;
        self.places
            .find(id, |at| ids[at as usize])
            .filter(|&place| self.customers[place as usize].is_some())
    }

    /// The live customer at `place`.
    fn at(&self, place: u32) -> &Customer {
        self.customers[place as usize]
            .as_ref()
            .expect("places are of live customers")
    }

    fn at_mut(&mut self, place: u32) -> &mut Customer {
        self.customers[place as usize]
            .as_mut()
            .expect("places are of live customers")
    }

    /// The customer holding `identifier`.
    pub fn holder(&self, identifier: &Identifier) -> Option<CustomerId> {
        self.known.holder(identifier).map(|place| self.at(place).id)
    }

    /// The refused merges and links waiting for a person, oldest first.
    pub fn review(&self) -> impl Iterator<Item = &ReviewItem> {
        self.review.values()
    }

    /// Resolves the identifiers of event `event_id` (see the module's documentation).
    ///
    /// An event seen before (delivered again: delivery is at least once) changes nothing and
    /// goes to the customer it belongs to now; it is not recorded again.
    pub fn observe(&mut self, event_id: EventId, identifiers: &[Identifier]) -> Resolution {
        if let Some(again) = self.delivered_again(event_id) {
            return again;
        }
        // One look-up per identifier: where the graph knows it (allocated the first time).
        let first = self.locate(identifiers, |identifier| Arc::new(identifier.clone()));
        self.record_observation(event_id, identifiers, first)
    }

    /// [`Self::observe`], with the identifiers already shared.
    fn observe_shared(&mut self, event_id: EventId, identifiers: &[Arc<Identifier>]) -> Resolution {
        if let Some(again) = self.delivered_again(event_id) {
            return again;
        }
        let first = self.locate(identifiers, Arc::clone);
        self.record_observation(event_id, identifiers, first)
    }

    /// Where the graph knows each of `identifiers` (made known now if new, with the
    /// allocation `share` gives), pushed for the next event's input; returns where they start.
    fn locate<I: Borrow<Identifier>>(
        &mut self,
        identifiers: &[I],
        share: impl Fn(&I) -> Arc<Identifier>,
    ) -> usize {
        let first = self.inputs.located_mut().len();
        for identifier in identifiers {
            let at = self.known.intern(identifier.borrow(), || share(identifier));
            self.inputs.located_mut().push(at);
        }
        first
    }

    /// For an event seen before: where it belongs now, with no change. A new one is marked
    /// seen, at the place in `events` that resolving it takes.
    fn delivered_again(&mut self, event_id: EventId) -> Option<Resolution> {
        let inputs = &self.inputs;
        let at = self
            .seen
            .first_sight(&event_id, inputs.len(), |at| inputs.event_id(at as usize))?;
        Some(Resolution {
            customer: self.now_of(self.inputs.customer(at as usize)),
            blocked: Vec::new(),
            changes: Vec::new(),
        })
    }

    /// Resolves a new event and records it among the inputs; where the graph knows each of
    /// its identifiers was pushed from `first` on (see [`Self::locate`]).
    fn record_observation<I: Borrow<Identifier>>(
        &mut self,
        event_id: EventId,
        identifiers: &[I],
        first: usize,
    ) -> Resolution {
        // Resolving touches no input: lend it the places without copying them.
        let located = std::mem::take(self.inputs.located_mut());
        let (resolution, customer) = self.resolve(event_id, identifiers, &located[first..]);
        *self.inputs.located_mut() = located;
        self.inputs.push_event(event_id, customer, first);
        resolution
    }

    /// Merges `absorbed` into `survivor` by hand (the limits still apply). Customers a split
    /// keeps apart may be merged by hand: that lifts the split's constraint from now on.
    pub fn merge(
        &mut self,
        survivor: CustomerId,
        absorbed: CustomerId,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        self.decision(Input::Merge {
            survivor,
            absorbed,
            reason: reason.to_owned(),
        })
    }

    /// Removes `customer` and lets go of its identifiers; review items about it are dropped.
    pub fn erase(&mut self, customer: CustomerId, reason: &str) -> Result<Vec<Change>, GraphError> {
        self.decision(Input::Erase {
            customer,
            reason: reason.to_owned(),
        })
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
            .get(&review)
            .ok_or(GraphError::UnknownReview(review))?;
        let input = Input::Decide {
            customer: item.customer,
            other: item.other,
            identifier: item.identifier.clone(),
            approve,
            reason: reason.to_owned(),
        };
        // This very item; a replay finds the first one refused alike (see `apply`).
        let changes = self.decide_now(review, approve, reason);
        self.inputs.push_decision(input);
        Ok(changes)
    }

    /// Undoes the merge that brought `restored` into `customer`: the history is re-resolved
    /// with the two kept apart (see [`Input::Split`]), so that each event lands on the customer
    /// it belongs to without that merge. Returns the split and every event that moved.
    pub fn split(
        &mut self,
        customer: CustomerId,
        restored: CustomerId,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        if self.place(&customer).is_none() {
            return Err(GraphError::UnknownCustomer(customer));
        }
        if !self
            .absorbed(&customer)
            .any(|absorbed| *absorbed == restored)
        {
            return Err(GraphError::NotMerged { customer, restored });
        }
        let moved = self.re_resolve(
            self.rules.clone(),
            Input::Split {
                customer,
                restored,
                reason: reason.to_owned(),
            },
        );
        let mut changes = vec![Change::Split {
            customer,
            restored,
            identifiers: self
                .customer(&restored)
                .map(|c| c.identifiers.clone())
                .unwrap_or_default(),
            cause: Cause::Manual {
                reason: reason.to_owned(),
            },
        }];
        changes.extend(moved);
        Ok(changes)
    }

    /// Changes the rules by hand: the whole history is re-resolved under `rules` (limits,
    /// merge kinds and blocked values apply from the beginning, as if they always had), and the
    /// change is recorded, so that a replay makes it again. Returns the rule change and every
    /// event that moved.
    pub fn change_rules(
        &mut self,
        rules: RulesFile,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        let checked = Rules::new(rules.clone())
            .map_err(|error| GraphError::InvalidRules(error.to_string()))?;
        let moved = self.re_resolve(
            checked,
            Input::Rules {
                rules: Box::new(rules),
                reason: reason.to_owned(),
            },
        );
        let mut changes = vec![Change::RulesChanged {
            cause: Cause::Manual {
                reason: reason.to_owned(),
            },
        }];
        changes.extend(moved);
        Ok(changes)
    }

    /// Records `input` and re-resolves the whole history under `rules`; returns every event
    /// whose customer changed.
    fn re_resolve(&mut self, rules: Rules, input: Input) -> Vec<Change> {
        let before = self.event_customers();
        let mut inputs = self.inputs();
        inputs.push(input);
        *self = Self::replay(rules, &inputs);
        before
            .into_iter()
            .zip(self.event_customers())
            .filter(|((_, from), (_, to))| from != to)
            .map(|((event_id, from), (_, to))| Change::Moved { event_id, from, to })
            .collect()
    }

    /// Applies a decision by hand that comes as an input (as `identity.inputs` carries it):
    /// a review decision names what was refused rather than a review number. An event is not a
    /// decision: use [`Self::observe`].
    pub fn apply_decision(&mut self, input: Input) -> Result<Vec<Change>, GraphError> {
        match input {
            Input::Split {
                customer,
                restored,
                reason,
            } => self.split(customer, restored, &reason),
            Input::Rules { rules, reason } => self.change_rules(*rules, &reason),
            Input::Observe {
                event_id,
                identifiers,
            } => Ok(self.observe_shared(event_id, &identifiers).changes),
            decision => self.decision(decision),
        }
    }

    /// Applies a decision by hand and records it.
    fn decision(&mut self, input: Input) -> Result<Vec<Change>, GraphError> {
        let changes = self.apply(self.inputs.len(), &input)?;
        self.inputs.push_decision(input);
        Ok(changes)
    }

    /// Applies input number `index`; an event is recorded, a decision is not (the caller
    /// records it).
    fn apply(&mut self, index: usize, input: &Input) -> Result<Vec<Change>, GraphError> {
        match input {
            Input::Observe {
                event_id,
                identifiers,
            } => {
                // Inputs hold each event once (see `delivered_again`).
                self.seen.insert(event_id, self.inputs.len());
                let first = self.locate(identifiers, Arc::clone);
                Ok(self
                    .record_observation(*event_id, identifiers, first)
                    .changes)
            }
            Input::Merge {
                survivor,
                absorbed,
                reason,
            } => self.merge_at(index, *survivor, *absorbed, reason),
            Input::Erase { customer, reason } => self.erase_now(*customer, reason),
            Input::Decide {
                customer,
                other,
                identifier,
                approve,
                reason,
            } => {
                let review = self
                    .review
                    .values()
                    .find(|item| {
                        item.customer == *customer
                            && item.other == *other
                            && item.identifier == *identifier
                    })
                    .map(|item| item.id)
                    .ok_or(GraphError::UnknownReview(0))?;
                Ok(self.decide_now(review, *approve, reason))
            }
            // Its constraint is set up before a replay starts (see `replay`).
            Input::Split { .. } => Ok(Vec::new()),
            // The replay runs under the last rules the inputs change to (see `replay`).
            Input::Rules { .. } => Ok(Vec::new()),
        }
    }

    /// The split constraint, not lifted, between the lineages of `x` and `y`, if any.
    fn apart_between(&self, x: CustomerId, y: CustomerId) -> Option<usize> {
        let holds = |customer: CustomerId, member: CustomerId| {
            customer == member
                || self
                    .lineage
                    .get(&customer)
                    .is_some_and(|lineage| lineage.contains(&member))
        };
        self.apart.iter().position(|apart| {
            !apart.lifted
                && ((holds(x, apart.a) && holds(y, apart.b))
                    || (holds(x, apart.b) && holds(y, apart.a)))
        })
    }

    fn merge_at(
        &mut self,
        index: usize,
        survivor: CustomerId,
        absorbed: CustomerId,
        reason: &str,
    ) -> Result<Vec<Change>, GraphError> {
        if survivor == absorbed {
            return Err(GraphError::SameCustomer);
        }
        let mut places = [0; 2];
        for (place, id) in places.iter_mut().zip([survivor, absorbed]) {
            *place = self.place(&id).ok_or(GraphError::UnknownCustomer(id))?;
        }
        let [survivor_at, absorbed_at] = places;
        let apart = self.apart_between(survivor, absorbed);
        if let Some(apart) = apart
            && self.apart[apart].split_at > index
        {
            // Re-resolving history: a later split undid this merge.
            return Err(GraphError::NotMerged {
                customer: survivor,
                restored: absorbed,
            });
        }
        let union = self
            .at(survivor_at)
            .identifiers
            .iter()
            .chain(&self.at(absorbed_at).identifiers);
        if let Some(rule) = self.rules.broken_limit(union) {
            return Err(GraphError::BreaksRule(rule));
        }
        if let Some(apart) = apart {
            self.apart[apart].lifted = true;
        }
        let mut changes = Vec::new();
        let cause = Cause::Manual {
            reason: reason.to_owned(),
        };
        self.absorb(survivor_at, absorbed_at, &cause, &mut changes);
        Ok(changes)
    }

    fn erase_now(&mut self, customer: CustomerId, reason: &str) -> Result<Vec<Change>, GraphError> {
        let place = self
            .place(&customer)
            .ok_or(GraphError::UnknownCustomer(customer))?;
        let gone = self.customers[place as usize]
            .take()
            .expect("places are of live customers");
        self.live -= 1;
        for identifier in &gone.identifiers {
            self.known.hold(identifier, None);
        }
        self.erased.insert(customer);
        self.review
            .retain(|_, item| item.customer != customer && item.other != Some(customer));
        Ok(vec![Change::Erased {
            customer,
            cause: Cause::Manual {
                reason: reason.to_owned(),
            },
        }])
    }

    fn decide_now(&mut self, review: u64, approve: bool, reason: &str) -> Vec<Change> {
        let Some(item) = self.review.remove(&review) else {
            return Vec::new();
        };
        let cause = Cause::Manual {
            reason: reason.to_owned(),
        };
        let mut changes = vec![Change::Decided {
            review,
            customer: item.customer,
            approved: approve,
            cause: cause.clone(),
        }];
        let Some(place) = self.place(&item.customer).filter(|_| approve) else {
            return changes;
        };
        if let Some(other) = item.other
            && other != item.customer
            && let Some(other) = self.place(&other)
        {
            self.absorb(place, other, &cause, &mut changes);
        }
        if let Some(identifier) = item.identifier {
            let at = self.known.intern(&identifier, || identifier.clone());
            if self.known.holder_at(at).is_none() {
                self.link(place, at, &cause, &mut changes);
            }
        }
        changes
    }

    /// Resolves an event; returns where it went and the place of its customer ([`NOBODY`]:
    /// none).
    fn resolve<I: Borrow<Identifier>>(
        &mut self,
        event_id: EventId,
        identifiers: &[I],
        known: &[u32],
    ) -> (Resolution, u32) {
        let cause = Cause::Event { event_id };
        // Most events change nothing: no allocation for them.
        let mut changes = Vec::new();
        let mut blocked = Vec::new();
        // Who holds each identifier as the event arrives. Merges below move identifiers between
        // holders but never let one go, and each unheld one is linked at most once, so this
        // also says which ones the event may link.
        let mut usable: SmallVec<[Usable; 8]> = SmallVec::new();
        for (identifier, at) in identifiers.iter().zip(known) {
            let identifier = identifier.borrow();
            if let Some(rule) = self.rules.blocked(identifier) {
                blocked.push((identifier.clone(), rule.to_owned()));
            } else if !usable.iter().any(|(_, other, _)| other == at) {
                usable.push((identifier, *at, self.known.holder_at(*at)));
            }
        }
        // Strongest first; equal kinds in value order, so the input order never matters.
        if usable.len() > 1 {
            usable.sort_by(|(a, ..), (b, ..)| {
                (self.rules.rank(a.kind), *a).cmp(&(self.rules.rank(b.kind), *b))
            });
        }
        if usable.is_empty() {
            let resolution = Resolution {
                customer: None,
                blocked,
                changes,
            };
            return (resolution, NOBODY);
        }

        // By place: the order of creation, which decides the survivor.
        let mut candidates: SmallVec<[u32; 4]> = SmallVec::new();
        for (identifier, _, holder) in &usable {
            if !self.rules.merges_on(identifier.kind) {
                continue;
            }
            if let Some(holder) = holder
                && !candidates.contains(holder)
            {
                candidates.push(*holder);
            }
        }
        let has_merge_kind = usable.iter().any(|(i, ..)| self.rules.merges_on(i.kind));
        let target = if candidates.is_empty() {
            let weak_holder = if has_merge_kind {
                None
            } else {
                usable.iter().find_map(|(.., holder)| *holder)
            };
            match weak_holder {
                Some(holder) => holder,
                None => self.create(CustomerId::first_seen_in(&event_id), &cause, &mut changes),
            }
        } else {
            candidates.sort_unstable();
            let survivor = candidates[0];
            for &other in &candidates[1..] {
                let (survivor_id, other_id) = (self.at(survivor).id, self.at(other).id);
                if self.apart_between(survivor_id, other_id).is_some() {
                    changes.push(Change::Refused {
                        review: None,
                        customer: survivor_id,
                        other: Some(other_id),
                        identifier: None,
                        rule: KEPT_APART.to_owned(),
                        cause: cause.clone(),
                    });
                    continue;
                }
                let union = self
                    .at(survivor)
                    .identifiers
                    .iter()
                    .chain(&self.at(other).identifiers);
                match self.rules.broken_limit(union) {
                    None => self.absorb(survivor, other, &cause, &mut changes),
                    Some(rule) => {
                        self.refuse(
                            survivor_id,
                            Some(other_id),
                            None,
                            rule,
                            &cause,
                            &mut changes,
                        );
                    }
                }
            }
            survivor
        };

        for (identifier, at, holder) in usable {
            if holder.is_some() {
                continue;
            }
            let held = &self.at(target).identifiers;
            match self.rules.broken_limit(
                held.iter()
                    .map(|held| &**held)
                    .chain(std::iter::once(identifier)),
            ) {
                None => self.link(target, at, &cause, &mut changes),
                Some(rule) => self.refuse(
                    self.at(target).id,
                    None,
                    Some(self.known.identifier(at).clone()),
                    rule,
                    &cause,
                    &mut changes,
                ),
            }
        }
        let resolution = Resolution {
            customer: Some(self.ids[target as usize]),
            blocked,
            changes,
        };
        (resolution, target)
    }

    /// Makes customer `id`; returns its place.
    fn create(&mut self, id: CustomerId, cause: &Cause, changes: &mut Vec<Change>) -> u32 {
        let place = u32::try_from(self.customers.len()).expect("fewer than 2^32 customers");
        debug_assert!(
            self.places.find(&id, |at| self.ids[at as usize]).is_none(),
            "customer ids are unique"
        );
        self.places.insert(&id, place as usize);
        self.ids.push(id);
        self.live += 1;
        self.customers.push(Some(Customer {
            id,
            created: u64::from(place),
            identifiers: Vec::new(),
        }));
        changes.push(Change::Created {
            customer: id,
            cause: cause.clone(),
        });
        place
    }

    /// Gives the identifier known at `at` to the customer at `place`.
    fn link(&mut self, place: u32, at: u32, cause: &Cause, changes: &mut Vec<Change>) {
        self.known.hold_at(at, Some(place));
        let identifier = self.known.identifier(at).clone();
        let held = self.at_mut(place);
        if let Err(index) = held.identifiers.binary_search(&identifier) {
            held.identifiers.insert(index, identifier.clone());
        }
        changes.push(Change::Linked {
            customer: held.id,
            identifier,
            cause: cause.clone(),
        });
    }

    /// Moves the customer at `absorbed` into the one at `survivor`, with its identifiers and
    /// lineage.
    fn absorb(&mut self, survivor: u32, absorbed: u32, cause: &Cause, changes: &mut Vec<Change>) {
        let Some(gone) = self.customers[absorbed as usize].take() else {
            return;
        };
        self.live -= 1;
        let survivor_id = self.at(survivor).id;
        let mut inherited = self.lineage.remove(&gone.id).unwrap_or_default();
        inherited.insert(gone.id);
        self.lineage
            .entry(survivor_id)
            .or_default()
            .extend(inherited);
        self.absorbed_into.insert(gone.id, survivor_id);
        for identifier in &gone.identifiers {
            self.known.hold(identifier, Some(survivor));
        }
        let kept = self.at_mut(survivor);
        kept.identifiers.extend(gone.identifiers.iter().cloned());
        kept.identifiers.sort_unstable();
        changes.push(Change::Merged {
            survivor: survivor_id,
            absorbed: gone.id,
            identifiers: gone.identifiers,
            cause: cause.clone(),
        });
    }

    fn refuse(
        &mut self,
        customer: CustomerId,
        other: Option<CustomerId>,
        identifier: Option<Arc<Identifier>>,
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
            review: Some(id),
            customer,
            other,
            identifier,
            rule,
            cause: cause.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_are_the_uuid_crates_version_5_of_the_first_event() {
        let mut event = uuid::Uuid::nil();
        for n in 0..1_000u64 {
            let expected = uuid::Uuid::new_v5(&CUSTOMER_NAMESPACE, event.as_bytes());
            let made = CustomerId::first_seen_in(&EventId(event));
            assert_eq!(made.0, expected, "event {event}");
            assert_eq!(made.0.get_version_num(), 5);
            // The next event id: spread over all sixteen bytes.
            let bytes = u128::from_le_bytes(*event.as_bytes())
                .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                .wrapping_add(u128::from(n) + 1);
            event = uuid::Uuid::from_bytes(bytes.to_le_bytes());
        }
    }
}
