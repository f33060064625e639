//! Which offsets of a partition are processed, and how far a position may be committed.
//!
//! A stage processes records out of order (batches finish at different times), but a
//! position may only move past offsets that are all done: committing offset 10 while 7 is
//! still in flight would lose 7 in a crash. [`ContiguousOffsets`] keeps that rule for one
//! partition; [`PartitionPositions`] for every partition a process owns, and forgets a
//! partition the moment it is revoked, so nothing is ever committed for a partition the
//! process no longer owns.

use crate::ports::TopicPartition;
use std::collections::{BTreeSet, HashMap};

/// Processed offsets of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContiguousOffsets {
    /// Every offset below this one is processed: the position to commit.
    committable: u64,
    /// Processed offsets above `committable`, waiting for the gap below them to close.
    done_ahead: BTreeSet<u64>,
}

impl ContiguousOffsets {
    /// Starts at `position`: the next offset to process (everything before it is done).
    pub fn new(position: u64) -> Self {
        Self {
            committable: position,
            done_ahead: BTreeSet::new(),
        }
    }

    /// Records `offset` as processed. Returns false when it was already known (a redelivery).
    pub fn mark_done(&mut self, offset: u64) -> bool {
        if offset < self.committable {
            return false;
        }
        if offset == self.committable {
            self.committable += 1;
            while self.done_ahead.remove(&self.committable) {
                self.committable += 1;
            }
            return true;
        }
        self.done_ahead.insert(offset)
    }

    /// The position that may be committed: the offset after the longest processed prefix.
    pub fn committable(&self) -> u64 {
        self.committable
    }

    /// How many processed offsets wait behind a gap.
    pub fn waiting(&self) -> usize {
        self.done_ahead.len()
    }
}

/// Processed offsets of every partition a process owns.
#[derive(Debug, Clone, Default)]
pub struct PartitionPositions {
    owned: HashMap<TopicPartition, ContiguousOffsets>,
}

impl PartitionPositions {
    /// Takes ownership of `partition`, resuming at `position`.
    pub fn assign(&mut self, partition: TopicPartition, position: u64) {
        self.owned
            .insert(partition, ContiguousOffsets::new(position));
    }

    /// Gives `partition` up; returns its last committable position, to commit before the
    /// partition moves on.
    pub fn revoke(&mut self, partition: &TopicPartition) -> Option<u64> {
        self.owned
            .remove(partition)
            .map(|offsets| offsets.committable())
    }

    /// Records a processed offset. Returns false for a partition not owned (its result must be
    /// dropped, not committed) or an offset already processed.
    pub fn mark_done(&mut self, partition: &TopicPartition, offset: u64) -> bool {
        self.owned
            .get_mut(partition)
            .is_some_and(|offsets| offsets.mark_done(offset))
    }

    /// Whether `partition` is owned.
    pub fn owns(&self, partition: &TopicPartition) -> bool {
        self.owned.contains_key(partition)
    }

    /// The committable position of every owned partition.
    pub fn committable(&self) -> Vec<(TopicPartition, u64)> {
        let mut positions: Vec<(TopicPartition, u64)> = self
            .owned
            .iter()
            .map(|(partition, offsets)| (partition.clone(), offsets.committable()))
            .collect();
        positions.sort();
        positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partition(number: u32) -> TopicPartition {
        TopicPartition {
            topic: "t".to_owned(),
            partition: number,
        }
    }

    proptest! {
        /// Whatever order offsets finish in, the committable position is the end of the longest
        /// run of processed offsets from the start (an oracle that scans the set).
        #[test]
        fn the_position_never_passes_a_gap(
            start in 0u64..1_000,
            order in Just((0u64..60).collect::<Vec<_>>()).prop_shuffle(),
            repeats in proptest::collection::vec(0usize..60, 0..20),
        ) {
            let mut offsets = ContiguousOffsets::new(start);
            let mut done = BTreeSet::new();
            let mut sequence: Vec<u64> = order.iter().map(|o| start + o).collect();
            for index in repeats {
                let again = sequence[index.min(sequence.len() - 1)];
                sequence.insert(index.min(sequence.len()), again);
            }
            for offset in sequence {
                let first_time = done.insert(offset);
                prop_assert_eq!(offsets.mark_done(offset), first_time);
                let mut expected = start;
                while done.contains(&expected) {
                    expected += 1;
                }
                prop_assert_eq!(offsets.committable(), expected);
            }
            prop_assert_eq!(offsets.committable(), start + 60);
            prop_assert_eq!(offsets.waiting(), 0);
        }
    }

    #[test]
    fn offsets_before_the_start_are_redeliveries() {
        let mut offsets = ContiguousOffsets::new(10);
        assert!(!offsets.mark_done(9));
        assert!(offsets.mark_done(11));
        assert_eq!(offsets.committable(), 10);
        assert!(offsets.mark_done(10));
        assert_eq!(offsets.committable(), 12);
    }

    #[test]
    fn a_revoked_partition_takes_no_more_results() {
        let mut positions = PartitionPositions::default();
        positions.assign(partition(0), 5);
        positions.assign(partition(1), 0);
        assert!(positions.mark_done(&partition(0), 5));
        assert_eq!(positions.revoke(&partition(0)), Some(6));
        assert!(!positions.owns(&partition(0)));
        assert!(
            !positions.mark_done(&partition(0), 6),
            "late result of a revoked partition"
        );
        assert_eq!(positions.committable(), vec![(partition(1), 0)]);
        assert_eq!(positions.revoke(&partition(0)), None);
    }
}
