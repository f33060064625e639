//! The identifiers the graph knows, each with the customer that holds it (if any), by its place
//! among the graph's customers.
//!
//! Each identifier is known once, by a dense index, from the first event that carries it (a
//! blocked value is never known). The graph's customers, inputs and changes share its one
//! allocation. Resolving an event costs one hash and one probe per identifier, and linking or
//! moving an identifier it already found costs no second look-up.

use super::chunked::Chunked;
use super::places::spread;
use kinfold_core::Identifier;
use smallvec::SmallVec;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// An identifier as one run of bytes: its kind, its issuer's length, its issuer, its value.
/// Most (a phone, a member card, an openid with its app id) sit inline, so that comparing one on a probe reads no
/// other memory; the identifier itself is three allocations apart.
type Key = SmallVec<[u8; 56]>;

fn key(identifier: &Identifier) -> Key {
    let issuer = identifier.issuer.as_bytes();
    let issuer_len = u32::try_from(issuer.len()).expect("an issuer under 4 GiB");
    let mut key = Key::with_capacity(5 + issuer.len() + identifier.value.len());
    key.push(identifier.kind as u8);
    key.extend_from_slice(&issuer_len.to_le_bytes());
    key.extend_from_slice(issuer);
    key.extend_from_slice(identifier.value.as_bytes());
    key
}

/// Whether `key` is [`key`]`(identifier)`, without making it.
fn is_key_of(key: &[u8], identifier: &Identifier) -> bool {
    let issuer = identifier.issuer.as_bytes();
    let value = identifier.value.as_bytes();
    key.len() == 5 + issuer.len() + value.len()
        && key[0] == identifier.kind as u8
        && key[1..5] == (issuer.len() as u32).to_le_bytes()
        && key[5..5 + issuer.len()] == *issuer
        && key[5 + issuer.len()..] == *value
}

#[derive(Debug, Clone)]
struct Known {
    key: Key,
    identifier: Arc<Identifier>,
    /// The holder's place among the graph's customers, or [`NOBODY`].
    holder: u32,
}

/// The place of no customer: the holder of an identifier nobody holds.
pub(super) const NOBODY: u32 = u32::MAX;

/// Every known identifier and its holder. Nothing iterates the table, so its (per process
/// random) order never shows.
#[derive(Debug, Clone, Default)]
pub(super) struct KnownIdentifiers {
    /// (where the identifier is in `known`, the low half of its hash): probing past other
    /// identifiers and growing the table read no entry.
    table: hashbrown::HashTable<(u32, u32)>,
    known: Chunked<Known>,
    hasher: foldhash::fast::RandomState,
}

impl KnownIdentifiers {
    /// The low half of the identifier's hash: its kind and issuer's length in one word, then
    /// its issuer and value (three writes, where the derived hash makes five).
    fn hash(&self, identifier: &Identifier) -> u32 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u64(identifier.kind as u64 | (identifier.issuer.len() as u64) << 8);
        hasher.write(identifier.issuer.as_bytes());
        hasher.write(identifier.value.as_bytes());
        hasher.finish() as u32
    }

    fn find_hashed(&self, half: u32, identifier: &Identifier) -> Option<u32> {
        self.table
            .find(spread(half), |&(at, other)| {
                other == half && is_key_of(&self.known[at as usize].key, identifier)
            })
            .map(|&(at, _)| at)
    }

    /// Where `identifier` is, if known.
    pub(super) fn find(&self, identifier: &Identifier) -> Option<u32> {
        self.find_hashed(self.hash(identifier), identifier)
    }

    /// Where `identifier` is, known from now on; the first time, `share` gives the allocation
    /// that everything holding it shares.
    pub(super) fn intern(
        &mut self,
        identifier: &Identifier,
        share: impl FnOnce() -> Arc<Identifier>,
    ) -> u32 {
        let half = self.hash(identifier);
        if let Some(at) = self.find_hashed(half, identifier) {
            return at;
        }
        let at = u32::try_from(self.known.len()).expect("fewer than 2^32 identifiers");
        self.known.push(Known {
            key: key(identifier),
            identifier: share(),
            holder: NOBODY,
        });
        self.table
            .insert_unique(spread(half), (at, half), |&(_, other)| spread(other));
        at
    }

    /// The identifier at `at`.
    pub(super) fn identifier(&self, at: u32) -> &Arc<Identifier> {
        &self.known[at as usize].identifier
    }

    /// Where the customer holding the identifier at `at` is among the graph's customers.
    pub(super) fn holder_at(&self, at: u32) -> Option<u32> {
        let holder = self.known[at as usize].holder;
        (holder != NOBODY).then_some(holder)
    }

    /// Where the customer holding `identifier` is among the graph's customers.
    pub(super) fn holder(&self, identifier: &Identifier) -> Option<u32> {
        self.find(identifier).and_then(|at| self.holder_at(at))
    }

    /// Gives the identifier at `at` to the customer at `holder` (`None`: to nobody).
    pub(super) fn hold_at(&mut self, at: u32, holder: Option<u32>) {
        self.known[at as usize].holder = holder.unwrap_or(NOBODY);
    }

    /// Gives `identifier`, which must be known, to the customer at `holder` (`None`: to
    /// nobody).
    pub(super) fn hold(&mut self, identifier: &Identifier, holder: Option<u32>) {
        if let Some(at) = self.find(identifier) {
            self.hold_at(at, holder);
        }
    }
}
