//! Golden identity scenarios: each file in `tests/golden/` gives the events (their identifiers,
//! in order) and what must come out: the customers, where each event went, the changes in
//! `identity.changes` order, and the review queue. Customers are named by the event that first
//! saw them. Adding a scenario is adding a file.
//!
//! File shape (TOML):
//! - `description`;
//! - `[[events]]`: `id` (a label), `identifiers` (`kind:issuer:value`), optional `repeat = N`
//!   to stamp the event N times with `{n}` (1..=N) replaced in its id and identifiers; or a
//!   decision by hand: `merge = [survivor, absorbed]`, `split = [customer, restored]`,
//!   `erase = customer`;
//! - `[expected]`: any of `customers` (each customer's identifiers), `customer_count`,
//!   `holders` (identifier = customer), `resolved` (event = customer), `changes` (one line per
//!   change, see `render`), `review` (how many refusals wait for a person).

use kinfold_core::{EventId, Identifier, IdentifierKind};
use kinfold_identity::model::{Cause, Change, CustomerId, IdentityGraph, Rules};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    events: Vec<EventStep>,
    expected: Expected,
}

/// An event (its identifiers), or a decision by hand: `merge` and `split` name two customers
/// (the survivor first), `erase` one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventStep {
    id: String,
    #[serde(default)]
    identifiers: Vec<String>,
    #[serde(default)]
    repeat: Option<u32>,
    #[serde(default)]
    merge: Option<[String; 2]>,
    #[serde(default)]
    split: Option<[String; 2]>,
    #[serde(default)]
    erase: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    customers: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    customer_count: Option<usize>,
    #[serde(default)]
    holders: BTreeMap<String, String>,
    #[serde(default)]
    resolved: BTreeMap<String, String>,
    #[serde(default)]
    changes: Option<String>,
    #[serde(default)]
    review: Option<usize>,
}

fn event_id(label: &str) -> EventId {
    EventId(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        label.as_bytes(),
    ))
}

fn identifier(text: &str) -> Identifier {
    let mut parts = text.splitn(3, ':');
    let (Some(kind), Some(issuer), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("`{text}` is not kind:issuer:value");
    };
    Identifier {
        kind: kind.parse::<IdentifierKind>().expect("identifier kind"),
        issuer: issuer.to_owned(),
        value: value.to_owned(),
    }
}

/// Names customers by the label of the event that first saw them, and events by their label.
struct Names {
    customers: HashMap<CustomerId, String>,
    events: HashMap<EventId, String>,
}

impl Names {
    fn of(&self, customer: &CustomerId) -> String {
        self.customers
            .get(customer)
            .cloned()
            .unwrap_or_else(|| format!("?{customer}"))
    }

    fn event(&self, event_id: &EventId) -> String {
        self.events
            .get(event_id)
            .cloned()
            .unwrap_or_else(|| event_id.to_string())
    }

    fn render(&self, change: &Change) -> String {
        let cause = |cause: &Cause| match cause {
            Cause::Event { event_id } => self.event(event_id),
            Cause::Manual { reason } => format!("by hand ({reason})"),
        };
        let whose = |customer: &Option<CustomerId>| {
            customer.map_or("nobody".to_owned(), |customer| self.of(&customer))
        };
        match change {
            Change::Created { customer, .. } => format!("created {}", self.of(customer)),
            Change::Linked {
                customer,
                identifier,
                ..
            } => format!("linked {identifier} to {}", self.of(customer)),
            Change::Merged {
                survivor, absorbed, ..
            } => format!("merged {} into {}", self.of(absorbed), self.of(survivor)),
            Change::Refused {
                customer,
                other: Some(other),
                rule,
                ..
            } => format!(
                "refused merging {} into {}: {rule}",
                self.of(other),
                self.of(customer)
            ),
            Change::Refused {
                customer,
                identifier: Some(identifier),
                rule,
                ..
            } => format!(
                "refused linking {identifier} to {}: {rule}",
                self.of(customer)
            ),
            Change::Refused { rule, cause: c, .. } => format!("refused {rule} ({})", cause(c)),
            Change::Erased { customer, .. } => format!("erased {}", self.of(customer)),
            Change::Decided {
                review, approved, ..
            } => format!(
                "review {review} {}",
                if *approved { "approved" } else { "rejected" }
            ),
            Change::Split {
                customer, restored, ..
            } => format!("split {} out of {}", self.of(restored), self.of(customer)),
            Change::RulesChanged { cause: c } => format!("rules changed ({})", cause(c)),
            Change::Moved { event_id, from, to } => format!(
                "moved {} from {} to {}",
                self.event(event_id),
                whose(from),
                whose(to)
            ),
        }
    }
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let scenario: Scenario = toml::from_str(&text).map_err(|error| error.to_string())?;
    let mut graph = IdentityGraph::new(Rules::default_rules());
    let mut names = Names {
        customers: HashMap::new(),
        events: HashMap::new(),
    };
    let customer = |label: &str| CustomerId::first_seen_in(&event_id(label));
    let mut resolved: BTreeMap<String, Option<CustomerId>> = BTreeMap::new();
    let mut changes = Vec::new();
    for step in &scenario.events {
        for n in 1..=step.repeat.unwrap_or(1) {
            let stamp = |text: &str| text.replace("{n}", &n.to_string());
            let label = stamp(&step.id);
            let decided = if let Some([survivor, absorbed]) = &step.merge {
                Some(graph.merge(customer(survivor), customer(absorbed), "golden"))
            } else if let Some([kept, restored]) = &step.split {
                Some(graph.split(customer(kept), customer(restored), "golden"))
            } else {
                step.erase
                    .as_ref()
                    .map(|erased| graph.erase(customer(erased), "golden"))
            };
            let step_changes = match decided {
                Some(decided) => decided.map_err(|error| format!("{label}: {error}"))?,
                None => {
                    let id = event_id(&label);
                    names
                        .customers
                        .insert(CustomerId::first_seen_in(&id), label.clone());
                    names.events.insert(id, label.clone());
                    let identifiers: Vec<Identifier> = step
                        .identifiers
                        .iter()
                        .map(|i| identifier(&stamp(i)))
                        .collect();
                    let resolution = graph.observe(id, &identifiers);
                    resolved.insert(label.clone(), resolution.customer);
                    resolution.changes
                }
            };
            for change in &step_changes {
                changes.push(format!("{label}: {}", names.render(change)));
            }
        }
    }
    let expected = &scenario.expected;
    let mut problems = Vec::new();
    if let Some(customers) = &expected.customers {
        let got: BTreeMap<String, BTreeSet<String>> = graph
            .customers()
            .map(|customer| {
                (
                    names.of(&customer.id),
                    customer
                        .identifiers
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                )
            })
            .collect();
        let want: BTreeMap<String, BTreeSet<String>> = customers
            .iter()
            .map(|(name, identifiers)| (name.clone(), identifiers.iter().cloned().collect()))
            .collect();
        if got != want {
            problems.push(format!("customers:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    if let Some(count) = expected.customer_count {
        let got = graph.customers().count();
        if got != count {
            problems.push(format!("customer count: got {got}, want {count}"));
        }
    }
    for (held, name) in &expected.holders {
        let got = graph.holder(&identifier(held)).map(|c| names.of(&c));
        if got.as_deref() != Some(name.as_str()) {
            problems.push(format!("holder of {held}: got {got:?}, want {name}"));
        }
    }
    for (event, name) in &expected.resolved {
        let got = resolved.get(event).copied().flatten().map(|c| names.of(&c));
        if got.as_deref() != Some(name.as_str()) {
            problems.push(format!("event {event} went to {got:?}, want {name}"));
        }
    }
    if let Some(want) = &expected.changes {
        let want: Vec<&str> = want
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if changes != want {
            problems.push(format!(
                "changes:\n  got:\n    {}\n  want:\n    {}",
                changes.join("\n    "),
                want.join("\n    ")
            ));
        }
    }
    if let Some(count) = expected.review {
        let got = graph.review().count();
        if got != count {
            problems.push(format!("review queue: got {got}, want {count}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_golden_scenario_comes_out_as_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the scenarios are there: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        if let Err(problem) = run(file) {
            failures.push(format!("{}:\n{problem}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
