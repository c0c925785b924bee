//! The ledger's `Store` over the node's engine, for one shard and one apply round.
//!
//! Writes are buffered and handed to the caller as one engine batch, together with the applied
//! index they lead to: state and applied index change atomically, so a restart re-applies
//! exactly the entries whose effects are not on disk, and nothing twice.

use std::collections::BTreeMap;

use crate::ledger::Store;
use crate::storage::{prefix_end, Engine, WriteBatch};

pub struct EngineStore<'a> {
    engine: &'a dyn Engine,
    prefix: Vec<u8>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// The ledger cannot handle a storage failure, by design: the replica stops (fail-stop)
/// rather than answer from a state it could not read.
fn fatal(e: impl std::fmt::Display) -> ! {
    panic!("storage failure under the ledger: {e}")
}

impl<'a> EngineStore<'a> {
    pub fn new(engine: &'a dyn Engine, prefix: Vec<u8>) -> Self {
        Self { engine, prefix, writes: BTreeMap::new() }
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Moves the buffered writes into `batch` (with the shard prefix).
    pub fn drain_into(&mut self, batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.writes) {
            let full = self.full_key(&key);
            match value {
                Some(v) => batch.put(full, v),
                None => batch.delete(full),
            }
        }
    }

    fn merged_scan(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = self.full_key(prefix);
        let end = match before {
            Some(b) => self.full_key(b),
            None => prefix_end(&start).unwrap_or_else(|| vec![0xff; start.len() + 1]),
        };
        // Deleted keys may hide engine entries: fetch enough to still fill `limit`.
        let pending = self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).count();
        let fetched = self
            .engine
            .scan(&start, &end, limit.saturating_add(pending), reverse)
            .unwrap_or_else(|e| fatal(e));
        let strip = self.prefix.len();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            fetched.into_iter().map(|(k, v)| (k[strip..].to_vec(), v)).collect();
        for (key, value) in self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            if before.is_some_and(|b| key.as_slice() >= b) {
                continue;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        if reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        }
    }
}

impl Store for EngineStore<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(buffered) = self.writes.get(key) {
            return buffered.clone();
        }
        self.engine.get(&self.full_key(key)).unwrap_or_else(|e| fatal(e))
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.writes.insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.merged_scan(prefix, None, limit, false)
    }

    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.merged_scan(prefix, before, limit, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemEngine;

    #[test]
    fn passes_the_ledger_store_conformance_suite_and_stays_in_its_shard() {
        let engine = MemEngine::new();
        let mut other = WriteBatch::default();
        other.put(b"L\0\0\0\x02k/a".to_vec(), b"other shard".to_vec());
        engine.write(other).unwrap();
        let mut store = EngineStore::new(&engine, b"L\0\0\0\x01".to_vec());
        crate::ledger::store::conformance(&mut store);
        // Buffered writes reach the engine only through drain_into, under the prefix.
        store.put(b"k/z", b"1".to_vec());
        assert_eq!(engine.get(b"L\0\0\0\x01k/z").unwrap(), None);
        let mut batch = WriteBatch::default();
        store.drain_into(&mut batch);
        engine.write(batch).unwrap();
        assert_eq!(engine.get(b"L\0\0\0\x01k/z").unwrap(), Some(b"1".to_vec()));
        let fresh = EngineStore::new(&engine, b"L\0\0\0\x01".to_vec());
        assert_eq!(fresh.scan(b"k/", 10).len(), 1, "shard 2's key is invisible");
    }
}
