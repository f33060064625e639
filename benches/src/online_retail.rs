//! The Online Retail II data set as the profile benchmarks' customers: its invoices with a
//! member card, mapped as `kinfold import online-retail` maps them and canonicalised as ingest
//! does, as one journal per card (a card is its customer's only identifier in this data set,
//! so identity resolution makes one customer of each).

use kinfold_core::event::EventBody;
use kinfold_ingest::online_retail;
use kinfold_profile::Journal;
use std::path::Path;

/// The file, in the shared data sets.
pub const FILE: &str = "online_retail_II_2009-2010.csv.gz";

/// The receive time given to `canonicalise`: 2011-01-01, after every invoice.
pub use kinfold_ingest::online_retail::RECEIVED;

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
    let members = online_retail::member_events(file);
    let lines = members
        .iter()
        .flat_map(|(_, events)| events)
        .map(|event| match &event.body {
            EventBody::PosTransaction(transaction) => transaction.lines.len(),
            _ => 0,
        })
        .sum();
    let mut journals: Vec<Journal> = members
        .into_iter()
        .map(|(_, events)| Journal::of(events))
        .collect();
    journals.sort_by_key(Journal::last_key);
    Members { journals, lines }
}
