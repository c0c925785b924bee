//! The shard-local key/value state the ledger reads and writes.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Shard-local key/value state. The node implements it over its storage engine (there, keys get
/// a shard prefix); [`MemStore`] implements it over a `BTreeMap` for tests.
///
/// The ledger never sees a storage failure: an implementation that cannot read or write must
/// stop the shard (panic or fail-stop), never return a wrong answer.
pub trait Store {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Calls `read` with the value of `key`, lent rather than copied out where the store holds
    /// it in memory: for a value that is decoded or copied into something new, not kept. An
    /// account record (up to about 1.5 KB with its open history page) is read this way twice
    /// for every change of the account. `read` is called exactly once, and must not use the
    /// store itself: it may run while the store's own buffers are borrowed.
    fn read_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) {
        read(self.get(key).as_deref());
    }
    /// As [`Store::read_with`] where the store holds `key`'s value (or knows it absent) in
    /// memory, returning true; returns false, without calling `read`, where only a disk read
    /// could tell. A command's overlay keeps a copy of what it read only when this says the
    /// read went to disk: copying an account record out of the state cache cost more than
    /// finding it there again.
    fn read_in_memory(&self, _key: &[u8], _read: &mut dyn FnMut(Option<&[u8]>)) -> bool {
        false
    }
    fn put(&mut self, key: &[u8], value: Vec<u8>);
    fn delete(&mut self, key: &[u8]);
    /// Up to `limit` entries whose key starts with `prefix`, ascending by key.
    fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Up to `limit` entries whose key starts with `prefix` and is strictly below `before`
    /// (if Some), descending by key.
    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// An in-memory store for tests; `Clone + PartialEq` so a test can prove "nothing changed".
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct MemStore {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    fn read_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) {
        read(self.map.get(key).map(Vec::as_slice));
    }

    fn read_in_memory(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> bool {
        self.read_with(key, read);
        true
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.map.insert(key.to_vec(), value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let upper = match before {
            Some(before) => Bound::Excluded(before),
            None => Bound::Unbounded,
        };
        self.map
            .range::<[u8], _>((Bound::Included(prefix), upper))
            .rev()
            .filter(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// Conformance checks every [`Store`] implementation must pass; the node can run them against
/// its own store: `coinledger_ledger::store::conformance(&mut my_store)`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub fn conformance(store: &mut dyn Store) {
    for key in [&b"k/b"[..], b"k/a", b"k/c", b"j/z", b"l/a"] {
        store.put(key, key.to_vec());
    }
    assert_eq!(store.get(b"k/a"), Some(b"k/a".to_vec()));
    assert_eq!(store.get(b"k/x"), None);
    let lent = |store: &dyn Store, key: &[u8]| {
        let (mut calls, mut value) = (0, None);
        store.read_with(key, &mut |bytes| {
            calls += 1;
            value = bytes.map(<[u8]>::to_vec);
        });
        assert_eq!(calls, 1, "read_with calls back exactly once");
        value
    };
    // What read_in_memory answers, if it answers: then exactly one call, with get's value.
    let in_memory = |store: &dyn Store, key: &[u8]| {
        let (mut calls, mut value) = (0, None);
        let answered = store.read_in_memory(key, &mut |bytes| {
            calls += 1;
            value = bytes.map(<[u8]>::to_vec);
        });
        assert_eq!(calls, usize::from(answered), "read_in_memory calls back once if it answers, else never");
        answered.then_some(value)
    };
    for key in [&b"k/a"[..], b"k/x", b"k/a"] {
        assert_eq!(lent(store, key), store.get(key), "read_with lends what get returns");
        if let Some(value) = in_memory(store, key) {
            assert_eq!(value, store.get(key), "read_in_memory lends what get returns");
        }
    }
    let keys = |entries: Vec<(Vec<u8>, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(store.scan(b"k/", 10)), vec![b"k/a".to_vec(), b"k/b".to_vec(), b"k/c".to_vec()]);
    assert_eq!(keys(store.scan(b"k/", 2)), vec![b"k/a".to_vec(), b"k/b".to_vec()]);
    assert_eq!(keys(store.scan_rev(b"k/", None, 2)), vec![b"k/c".to_vec(), b"k/b".to_vec()]);
    assert_eq!(keys(store.scan_rev(b"k/", Some(b"k/c"), 5)), vec![b"k/b".to_vec(), b"k/a".to_vec()]);
    store.delete(b"k/b");
    assert_eq!(store.get(b"k/b"), None);
    assert_eq!(lent(store, b"k/b"), None);
    assert!(matches!(in_memory(store, b"k/b"), None | Some(None)), "a deletion is never lent as a value");
    store.put(b"k/c", b"changed".to_vec());
    assert_eq!(lent(store, b"k/c"), Some(b"changed".to_vec()));
    assert!(matches!(in_memory(store, b"k/c"), None | Some(Some(_))), "an overwrite is lent as the new value");
    if let Some(value) = in_memory(store, b"k/c") {
        assert_eq!(value.as_deref(), Some(&b"changed"[..]));
    }
    assert_eq!(keys(store.scan(b"k/", 10)), vec![b"k/a".to_vec(), b"k/c".to_vec()]);
    for key in [&b"k/a"[..], b"k/c", b"j/z", b"l/a"] {
        store.delete(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memstore_passes_the_conformance_suite() {
        let mut store = MemStore::new();
        conformance(&mut store);
        assert_eq!(store, MemStore::new());
    }
}
