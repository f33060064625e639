//! The Online Retail II data set as the profile benchmarks' customers: its invoices with a
//! member card, mapped as `kinfold import online-retail` maps them and canonicalised as ingest
//! does, as one journal per card (a card is its customer's only identifier in this data set,
//! so identity resolution makes one customer of each).

use kinfold_core::CanonicalEvent;
use kinfold_core::event::EventBody;
use kinfold_ingest::{IngestLimits, canonicalise, online_retail};
use kinfold_profile::Journal;
use std::collections::HashMap;
use std::path::Path;

/// The file, in the shared data sets.
pub const FILE: &str = "online_retail_II_2009-2010.csv.gz";

/// The receive time given to `canonicalise`: 2011-01-01, after every invoice.
pub const RECEIVED: i64 = 1_293_840_000_000_000;

/// The members' journals.
#[derive(Debug)]
pub struct Members {
    /// One per member card, ordered by their last event.
    pub journals: Vec<Journal>,
    /// Invoice lines in the journals.
    pub lines: usize,
}

impl Members {
    /// Every journal's events.
    pub fn events(&self) -> usize {
        self.journals.iter().map(Journal::len).sum()
    }
}

/// Reads the data set at `path`.
pub fn members(path: &Path) -> Members {
    let file = online_retail::read_path(path).expect("reads the Online Retail data set");
    let limits = IngestLimits::default();
    let mut by_card: HashMap<String, Vec<CanonicalEvent>> = HashMap::new();
    let mut lines = 0;
    for invoice in file.invoices {
        let Some(card) = invoice.transaction.member_card.clone() else {
            continue;
        };
        lines += invoice.transaction.lines.len();
        let body = EventBody::PosTransaction(invoice.transaction);
        let canonical = canonicalise(body, "import:online-retail", RECEIVED, &limits)
            .expect("an imported invoice canonicalises");
        by_card.entry(card).or_default().push(canonical.event);
    }
    let mut journals: Vec<Journal> = by_card.into_values().map(Journal::of).collect();
    journals.sort_by_key(Journal::last_key);
    Members { journals, lines }
}
