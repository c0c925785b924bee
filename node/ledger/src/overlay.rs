//! A write buffer over a [`Store`]: a command's writes become visible to its own reads at once
//! and reach the store only on [`Overlay::commit`]. A refused command simply drops its overlay,
//! so "a business error changes nothing" holds by construction, not by the order of checks.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::store::Store;

/// Base values a command reads and keeps: a handful (its accounts, the shard totals, the rate
/// card), so a list searched in order beats a map.
const READS_KEPT_MAX: usize = 8;

pub(crate) struct Overlay<'a> {
    base: &'a mut dyn Store,
    /// `None` marks a delete. A BTreeMap, so commit order is the key order on every replica.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values the base read from disk, kept for the command's next read of the same key. A
    /// command reads an account once to check and change it and again to append to its
    /// statement (`book::save_account`), and each read of a value not in the state cache is a
    /// sled lookup (7% of replica_cost's count went to the second one). Values the base holds
    /// in memory are lent again instead ([`Store::read_in_memory`]), and misses are not kept:
    /// a fresh request id or payment reference is looked up once.
    reads: RefCell<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a mut dyn Store) -> Self {
        Overlay { base, writes: BTreeMap::new(), reads: RefCell::new(Vec::new()) }
    }

    pub(crate) fn commit(self) {
        for (key, value) in self.writes {
            match value {
                Some(value) => self.base.put(&key, value),
                None => self.base.delete(&key),
            }
        }
    }

    /// Base entries merged with the buffered writes under `prefix`. `fetched` must hold at
    /// least `limit + deletes under prefix` base entries (or all of them), in either order.
    fn merge(&self, prefix: &[u8], fetched: Vec<(Vec<u8>, Vec<u8>)>, keep: impl Fn(&[u8]) -> bool) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = fetched.into_iter().collect();
        for (key, value) in self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(value) if keep(key) => {
                    merged.insert(key.clone(), value.clone());
                }
                _ => {
                    merged.remove(key);
                }
            }
        }
        merged
    }

    fn deletes_under(&self, prefix: &[u8]) -> usize {
        self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).filter(|(_, v)| v.is_none()).count()
    }
}

impl Store for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut value = None;
        self.read_with(key, &mut |bytes| value = bytes.map(<[u8]>::to_vec));
        value
    }

    fn read_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) {
        if self.read_in_memory(key, read) {
            return;
        }
        let Some(value) = self.base.get(key) else { return read(None) };
        let mut reads = self.reads.borrow_mut();
        if reads.len() < READS_KEPT_MAX {
            reads.push((key.to_vec(), value));
            let (_, kept) = reads.last().expect("just pushed");
            read(Some(kept));
        } else {
            read(Some(&value));
        }
    }

    fn read_in_memory(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> bool {
        if let Some(value) = self.writes.get(key) {
            read(value.as_deref());
            return true;
        }
        // The base does not change while the overlay lives (it holds the only reference).
        if let Some((_, value)) = self.reads.borrow().iter().find(|(k, _)| k == key) {
            read(Some(value));
            return true;
        }
        self.base.read_in_memory(key, read)
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.writes.insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let fetched = self.base.scan(prefix, limit.saturating_add(self.deletes_under(prefix)));
        self.merge(prefix, fetched, |_| true).into_iter().take(limit).collect()
    }

    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let fetched = self.base.scan_rev(prefix, before, limit.saturating_add(self.deletes_under(prefix)));
        let below = |key: &[u8]| before.is_none_or(|before| key < before);
        self.merge(prefix, fetched, below).into_iter().rev().take(limit).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, MemStore};

    #[test]
    fn overlay_passes_the_conformance_suite_and_commits_nothing_until_asked() {
        let mut base = MemStore::new();
        base.put(b"z/0", b"base".to_vec());
        conformance(&mut Overlay::new(&mut base));
        base.put(b"k/0", b"base".to_vec());
        let mut overlay = Overlay::new(&mut base);
        overlay.put(b"k/1", b"new".to_vec());
        overlay.delete(b"k/0");
        assert_eq!(overlay.scan(b"k/", 10), vec![(b"k/1".to_vec(), b"new".to_vec())]);
        drop(overlay);
        assert_eq!(base.get(b"k/1"), None);
        let mut overlay = Overlay::new(&mut base);
        overlay.put(b"k/1", b"new".to_vec());
        overlay.commit();
        assert_eq!(base.get(b"k/1"), Some(b"new".to_vec()));
    }

    #[test]
    fn overlay_scans_merge_buffered_writes_and_deletes() {
        let mut base = MemStore::new();
        for i in 0..6u8 {
            base.put(&[b'p', i], vec![i]);
        }
        let mut overlay = Overlay::new(&mut base);
        overlay.delete(&[b'p', 0]);
        overlay.delete(&[b'p', 1]);
        overlay.put(&[b'p', 9], vec![9]);
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k[1]).collect::<Vec<_>>();
        assert_eq!(keys(overlay.scan(b"p", 2)), vec![2, 3]);
        assert_eq!(keys(overlay.scan_rev(b"p", None, 2)), vec![9, 5]);
        assert_eq!(keys(overlay.scan_rev(b"p", Some(&[b'p', 4]), 5)), vec![3, 2]);
    }

    /// A store that counts its point reads.
    struct Counting {
        inner: MemStore,
        gets: std::cell::Cell<usize>,
    }

    impl Store for Counting {
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.gets.set(self.gets.get() + 1);
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: Vec<u8>) {
            self.inner.put(key, value);
        }
        fn delete(&mut self, key: &[u8]) {
            self.inner.delete(key);
        }
        fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.inner.scan(prefix, limit)
        }
        fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.inner.scan_rev(prefix, before, limit)
        }
    }

    #[test]
    fn a_value_read_twice_is_read_from_the_base_once_and_writes_still_win() {
        let mut base = Counting { inner: MemStore::new(), gets: std::cell::Cell::new(0) };
        base.put(b"acct/a", b"v1".to_vec());
        let mut overlay = Overlay::new(&mut base);
        assert_eq!(overlay.get(b"acct/a"), Some(b"v1".to_vec()));
        assert_eq!(overlay.get(b"acct/a"), Some(b"v1".to_vec()));
        assert_eq!(overlay.get(b"req/x"), None);
        assert_eq!(overlay.get(b"req/x"), None);
        overlay.put(b"acct/a", b"v2".to_vec());
        assert_eq!(overlay.get(b"acct/a"), Some(b"v2".to_vec()), "the command's own write, not the kept read");
        overlay.delete(b"acct/a");
        assert_eq!(overlay.get(b"acct/a"), None);
        drop(overlay);
        assert_eq!(base.gets.get(), 3, "one read of the value, two of the miss (misses are not kept)");
    }
}

