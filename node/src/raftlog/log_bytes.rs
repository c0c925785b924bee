//! How many bytes a replica's raft log holds, so it can be compacted by size as well as by
//! entry count.
//!
//! A bound in entries alone lets the log's size follow the batch size: 10,000 entries of one
//! command are a few MiB, 10,000 batched entries of hundreds of commands are gigabytes per
//! shard. The tracker keeps one sample per append, the running total of entry bytes up to its
//! last index, so the bytes between two indexes are a subtraction away. Entries that were in
//! the log before the process started are not counted (the entry bound still covers them).

use std::collections::VecDeque;

use raft::prelude::Entry;

/// What an entry costs beyond its payload (index, term, type and framing), roughly.
const ENTRY_OVERHEAD_BYTES: u64 = 24;

#[derive(Debug, Default)]
pub struct LogBytes {
    /// (last index of an append, running total of entry bytes up to and including it),
    /// ascending in both.
    samples: VecDeque<(u64, u64)>,
    /// Running total below the first sample (entries compacted or forgotten).
    base: u64,
}

impl LogBytes {
    /// Counts entries just appended. Entries at or above the first one replace what the log
    /// held there (a new leader overwrote our tail), so samples from there on are dropped.
    pub fn appended(&mut self, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
        while self.samples.back().is_some_and(|&(index, _)| index >= first.index) {
            self.samples.pop_back();
        }
        let before = self.samples.back().map_or(self.base, |&(_, total)| total);
        let bytes: u64 = entries.iter().map(|e| e.data.len() as u64 + ENTRY_OVERHEAD_BYTES).sum();
        self.samples.push_back((last.index, before + bytes));
    }

    /// Running total up to `index`, as of the last sample at or below it.
    fn total_at(&self, index: u64) -> u64 {
        let after = self.samples.partition_point(|&(i, _)| i <= index);
        if after == 0 { self.base } else { self.samples[after - 1].1 }
    }

    /// Bytes of the entries in `(after, upto]`.
    pub fn between(&self, after: u64, upto: u64) -> u64 {
        self.total_at(upto).saturating_sub(self.total_at(after))
    }

    /// The lowest sampled index at or below `upto` such that the entries in `(index, upto]`
    /// hold at most `keep_bytes`: compacting through it keeps about that much log. `None`
    /// if no sample qualifies.
    pub fn compact_point(&self, upto: u64, keep_bytes: u64) -> Option<u64> {
        let top = self.total_at(upto);
        self.samples
            .iter()
            .take_while(|&&(index, _)| index <= upto)
            .find(|&&(_, total)| top - total <= keep_bytes)
            .map(|&(index, _)| index)
    }

    /// The log was compacted through `index`: forget the samples below it.
    pub fn compacted(&mut self, index: u64) {
        self.base = self.total_at(index);
        while self.samples.front().is_some_and(|&(i, _)| i <= index) {
            self.samples.pop_front();
        }
    }

    /// A snapshot replaced the whole log.
    pub fn reset(&mut self) {
        self.base = self.samples.back().map_or(self.base, |&(_, total)| total);
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, count: u64, payload: usize) -> Vec<Entry> {
        (first..first + count)
            .map(|index| Entry { index, data: vec![0; payload].into(), ..Default::default() })
            .collect()
    }

    const E: u64 = 100 + ENTRY_OVERHEAD_BYTES;

    #[test]
    fn counts_bytes_between_indexes() {
        let mut log = LogBytes::default();
        log.appended(&entries(1, 10, 100));
        log.appended(&entries(11, 10, 100));
        assert_eq!(log.between(0, 20), 20 * E);
        assert_eq!(log.between(10, 20), 10 * E);
        assert_eq!(log.between(0, 0), 0);
    }

    #[test]
    fn an_overwritten_tail_is_counted_once() {
        let mut log = LogBytes::default();
        log.appended(&entries(1, 10, 100));
        log.appended(&entries(11, 10, 100));
        // A new leader replaces 11..=20 with 11..=12.
        log.appended(&entries(11, 2, 100));
        assert_eq!(log.between(0, 20), 12 * E);
    }

    #[test]
    fn compact_point_keeps_at_most_the_asked_bytes() {
        let mut log = LogBytes::default();
        for first in (1..=100).step_by(10) {
            log.appended(&entries(first, 10, 100));
        }
        let point = log.compact_point(100, 35 * E).unwrap();
        assert_eq!(point, 70, "keeps 71..=100 (30 entries), not 61..=100 (40)");
        log.compacted(point);
        assert_eq!(log.between(70, 100), 30 * E);
        assert_eq!(log.compact_point(100, 5 * E), Some(100), "only whole appends can be kept");
    }

    #[test]
    fn a_snapshot_forgets_the_log() {
        let mut log = LogBytes::default();
        log.appended(&entries(1, 10, 100));
        log.reset();
        log.appended(&entries(50, 1, 100));
        assert_eq!(log.between(49, 50), E);
        assert_eq!(log.compact_point(50, 0), Some(50));
    }
}
