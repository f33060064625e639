//! A vector kept in chunks of a fixed size: growing it never moves what it already holds.
//!
//! The graph's vectors (its inputs, its known identifiers, its customers) grow by one entry
//! per event, identifier or customer, to millions. A `Vec` that doubles copies everything it
//! holds into fresh memory each time, and the fresh pages are faulted in as they are written;
//! these vectors only take a new chunk. The first chunk grows as a `Vec` does, so a small graph
//! stays small.

use std::ops::{Index, IndexMut};

/// Entries per chunk.
const CHUNK: usize = 1 << 14;

#[derive(Debug, Clone)]
pub(super) struct Chunked<T> {
    /// Every chunk but the last holds exactly [`CHUNK`] entries.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, at: usize) -> &T {
        &self.chunks[at / CHUNK][at % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, at: usize) -> &mut T {
        &mut self.chunks[at / CHUNK][at % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_in_order_across_chunks() {
        let total = 3 * CHUNK + 17;
        let mut chunked = Chunked::default();
        for n in 0..total {
            chunked.push(n);
        }
        assert_eq!(chunked.len(), total);
        for at in [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 5, total - 1] {
            assert_eq!(chunked[at], at);
        }
        assert!(chunked.iter().copied().eq(0..total));
        chunked[CHUNK + 2] = 0;
        assert_eq!(chunked[CHUNK + 2], 0);
    }
}
