//! The ledger's `Store` over the node's engine, for one shard, with a write-back cache.
//!
//! Applying an entry writes into the replica's [`StateCache`], not into the engine. The cache
//! reaches the engine in one batch together with the applied index it corresponds to
//! ([`StateCache::drain_into`]), every few hundred milliseconds. That is safe because the
//! state is a function of the raft log: the log is what is fsynced before an acknowledgement,
//! and after a crash the replica re-applies the committed entries above the applied index it
//! finds on disk (the log is never compacted past that index). What it buys: a hot creator's
//! account, the shard totals and the rate card are written once per flush instead of once per
//! command, and an outbox record that is created and cleared within one flush never reaches
//! the engine at all.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::ledger::{self, Store};
use crate::shard::{lz4, request_pages};
use crate::storage::{prefix_end, Engine, WriteBatch};

/// A hash map with foldhash instead of SipHash: its keys are ledger keys the replica hashes
/// several times per command (SipHash was 0.7% of replica_cost's instructions for the
/// request records alone). foldhash's per-process random seed still spreads keys that a
/// client chose to collide.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// A value of a point table in the cache: `None` for a deletion (or a key the engine lacks).
struct Point {
    value: Option<Vec<u8>>,
    /// Written since the last flush; a clean point is what the engine holds.
    dirty: bool,
}

/// Ledger writes not yet in the engine: key (without the shard prefix) → value, or `None` for
/// a deletion; and the point-table values the last flush wrote.
#[derive(Default)]
pub struct StateCache {
    /// Writes of the tables the ledger scans by ranges, in key order for those scans.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values of the tables the ledger reads by key (`ledger::keys::POINT_TABLES`: accounts,
    /// totals, inbox fences, ...): most of a command's reads and writes. In the sorted map
    /// each lookup compared the key with a dozen others sharing its first bytes (the state
    /// cache's B-tree searches were about 9% of replica_cost's instructions, a third of them
    /// in `memcmp`); hashed, it is one hash and one comparison. Their rare scans (the audit)
    /// filter and sort.
    ///
    /// A flush keeps what it wrote here, clean, until the next flush: an account written in
    /// one flush period is usually written again in the next (a sender gifting, a creator
    /// receiving), and reading it back from sled cost more than the whole lookup here (sled
    /// reads of accounts were 3.4% of a node's CPU under batched gifts, sled materializing the
    /// leaf first). Entries not written again by the next flush are dropped then.
    points: FastMap<Vec<u8>, Point>,
    /// Request records written since the last flush, by request id (their ledger key without
    /// `req/`). Apart from `writes` because they are a third of the cache's inserts, nobody
    /// scans them (the ledger only looks ids up, see `ledger::keys::REQUEST_PREFIX`), they
    /// are never deleted, and in a sorted map each insert compared ids that share their first
    /// 20 bytes with a dozen others (4.3% of replica_cost's instructions in `memcmp` under
    /// the map's inserts). Sorted once, at the flush, for the merge into pages.
    requests: FastMap<Vec<u8>, Vec<u8>>,
    /// Approximate bytes of the writes not yet flushed (keys and values), to bound the cache's
    /// memory: a flush is due at `STATE_FLUSH_BYTES`. The clean points are at most what the
    /// last flush wrote.
    bytes: usize,
    /// Dirty entries of `points`.
    dirty_points: usize,
    /// The outbox keys of the applied state (engine and cache), kept across flushes so that
    /// every pending answer can say which effects are completed without scanning the outbox.
    /// `None` until loaded ([`StateCache::load_outbox`]) and again once a snapshot replaced
    /// the state.
    outbox: Option<BTreeSet<Vec<u8>>>,
    /// The inbox pages the engine holds (keys without the shard prefix), exact: read from the
    /// engine once (`EngineStore` does, at the first write of an inbox page) and kept by
    /// [`StateCache::drain_into`], the only writer of the cached state; `None` until then and
    /// again once a snapshot replaced the state. A page lives a few raft rounds (created by
    /// the first delivery of its home indexes, deleted once the home completed them), far
    /// less than a flush period, so most deletions are of pages the engine never had: counted
    /// in replica_cost at 64 shards, 2,988 of the 3,051 inbox deletions a flush found (98%),
    /// nine in ten keys of `writes`, each also a sled tree walk at the flush for nothing.
    /// Such a deletion now only drops the cached page.
    engine_inbox: Option<FastSet<Vec<u8>>>,
    /// The applied value of the rate card in force (`ledger::keys::RATE_CURRENT`), once read.
    /// Every gift and purchase reads it, it changes only when a card is published, and in a
    /// cluster that never published one the read is a miss that sled can only answer by
    /// walking its tree: one engine lookup per command for a value that hardly ever changes.
    /// Kept current by [`StateCache::record`], dropped by [`StateCache::clear`].
    rate_current: OnceCell<Option<Vec<u8>>>,
    /// The shard's request pages in use, with the intervals of ids they cover: kept exact by
    /// [`StateCache::drain_into`], the only writer of pages, dropped by [`StateCache::clear`].
    /// A cell because a lookup (through a read-only store too) caches the page it read.
    request_pages: RefCell<request_pages::PageCache>,
}

impl StateCache {
    /// Whether nothing waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.keys() == 0
    }

    /// Keys waiting to be flushed.
    pub fn keys(&self) -> usize {
        self.writes.len() + self.dirty_points + self.requests.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every cached write (a snapshot replaced the state they applied to).
    pub fn clear(&mut self) {
        self.writes.clear();
        self.points.clear();
        self.dirty_points = 0;
        self.requests.clear();
        self.bytes = 0;
        self.outbox = None;
        self.engine_inbox = None;
        self.rate_current = OnceCell::new();
        self.request_pages.get_mut().clear();
    }

    pub fn outbox_loaded(&self) -> bool {
        self.outbox.is_some()
    }

    /// Starts tracking the outbox from its current keys; later writes keep it current.
    pub fn load_outbox(&mut self, keys: impl IntoIterator<Item = Vec<u8>>) {
        self.outbox = Some(keys.into_iter().collect());
    }

    /// [`ledger::read::completed_below`] from the tracked outbox: the oldest pending effect's
    /// index, or `applied_index + 1`. None if the outbox is not loaded.
    pub fn completed_below(&self, applied_index: u64) -> Option<u64> {
        let outbox = self.outbox.as_ref()?;
        Some(outbox.first().map_or(applied_index + 1, |key| ledger::keys::index_of_outbox_key(key)))
    }

    /// Moves the cached writes into `batch`, under the shard's `prefix`; request records go
    /// into their pages (`request_pages.rs`), read from `engine`, which must hold every
    /// earlier flush of this shard.
    ///
    /// # Panics
    /// On a storage failure reading a page.
    pub fn drain_into(&mut self, engine: &dyn Engine, prefix: &[u8], batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.writes) {
            let full = prefixed(prefix, &key);
            if let Some(pages) = self.engine_inbox.as_mut().filter(|_| key.starts_with(ledger::keys::INBOX_PREFIX)) {
                if value.is_some() {
                    pages.insert(key.clone());
                } else {
                    pages.remove(&key);
                }
            }
            match value {
                Some(v) => batch.put(full, compressed_form(&key, &v).unwrap_or(v)),
                None => batch.delete(full),
            }
        }
        // Points written since the last flush are written and kept, clean; the clean ones
        // were not written since and go.
        self.points.retain(|key, point| {
            if !point.dirty {
                return false;
            }
            let full = prefixed(prefix, key);
            match &point.value {
                Some(v) => batch.put(full, compressed_form(key, v).unwrap_or_else(|| v.clone())),
                None => batch.delete(full),
            }
            point.dirty = false;
            true
        });
        self.dirty_points = 0;
        let requests = std::mem::take(&mut self.requests);
        let mut requests: Vec<(&[u8], &[u8])> = requests.iter().map(|(id, record)| (id.as_slice(), record.as_slice())).collect();
        requests.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.request_pages.get_mut().merge(engine, prefix, &requests, batch).unwrap_or_else(|e| fatal(e));
        self.bytes = 0;
    }

    /// The cached value of `key` (not a request record): `Some(None)` for a deletion.
    fn cached(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        if ledger::keys::is_point_key(key) {
            self.points.get(key).map(|point| &point.value)
        } else {
            self.writes.get(key)
        }
    }

    /// The cached writes of keys starting with `prefix`, in key order.
    fn cached_under(&self, prefix: &[u8]) -> Vec<(&Vec<u8>, &Option<Vec<u8>>)> {
        let mut under: Vec<_> = self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).collect();
        if ledger::keys::scan_reaches_point_keys(prefix) {
            under.extend(self.points.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, point)| (k, &point.value)));
            under.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        under
    }

    /// # Panics
    /// If a request record is deleted: they are kept for ever.
    fn record(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if let Some(id) = key.strip_prefix(ledger::keys::REQUEST_PREFIX) {
            let record = value.unwrap_or_else(|| panic!("request record {key:?} deleted: they are kept for ever"));
            self.bytes += id.len() + record.len();
            if let Some(old) = self.requests.insert(id.to_vec(), record) {
                self.bytes = self.bytes.saturating_sub(id.len() + old.len());
            }
            return;
        }
        if key == ledger::keys::RATE_CURRENT {
            self.rate_current = OnceCell::from(value.clone());
        }
        let outbox_key = key.starts_with(ledger::keys::OUTBOX_PREFIX);
        if let Some(outbox) = self.outbox.as_mut().filter(|_| outbox_key) {
            if value.is_some() {
                outbox.insert(key.to_vec());
            } else {
                outbox.remove(key);
            }
        }
        // An outbox key is written once, by the entry whose index it carries. Cached as a put,
        // it was created after the last flush and the engine never had it, so its deletion
        // (the effect completed within one flush period, the common case) needs no engine write.
        // Likewise an inbox page the engine does not hold (see `engine_inbox`).
        let never_flushed = value.is_none()
            && ((outbox_key && matches!(self.writes.get(key), Some(Some(_))))
                || (key.starts_with(ledger::keys::INBOX_PREFIX) && self.engine_inbox.as_ref().is_some_and(|pages| !pages.contains(key))));
        if never_flushed {
            if let Some(Some(old)) = self.writes.remove(key) {
                self.bytes = self.bytes.saturating_sub(key.len() + old.len());
            }
            return;
        }
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        let old = if ledger::keys::is_point_key(key) {
            match self.points.get_mut(key) {
                Some(point) => {
                    let was_dirty = std::mem::replace(&mut point.dirty, true);
                    let old = std::mem::replace(&mut point.value, value);
                    if was_dirty {
                        Some(old)
                    } else {
                        self.dirty_points += 1;
                        None
                    }
                }
                None => {
                    self.points.insert(key.to_vec(), Point { value, dirty: true });
                    self.dirty_points += 1;
                    None
                }
            }
        } else {
            self.writes.insert(key.to_vec(), value)
        };
        if let Some(old) = old {
            self.bytes = self.bytes.saturating_sub(key.len() + old.map_or(0, |v| v.len()));
        }
    }
}

/// Records of these tables are held by the engine lz4-compressed from
/// [`COMPRESS_MIN_BYTES`] on (since storage format 10): account records (with their open
/// history page, up to 15 entries) and full history pages (of both layouts). With the request pages (which
/// `request_pages.rs` compresses itself) they are nearly all the bytes a state flush writes,
/// and sled's cost follows the bytes of the leaf a key lands in: every insert clones the
/// in-memory leaf (up to 16 values) to apply itself, and every tenth rewrites it to the log.
/// The cache holds them plain; a flush compresses them and an engine read decompresses.
fn compressed_table(key: &[u8]) -> bool {
    [ledger::keys::ACCOUNT_PREFIX, ledger::keys::SEALED_HISTORY_PREFIX, ledger::keys::HISTORY_PREFIX].iter().any(|table| key.starts_with(table))
}

/// Records shorter than this are stored plain: lz4 gains little on them (an account without
/// history entries in its record is about 60 bytes).
pub const COMPRESS_MIN_BYTES: usize = 256;

/// First byte of a compressed record; lz4 (block format, the plain size in the first 4 bytes,
/// little-endian) follows. No plain record of these tables starts with it: an account record
/// starts with the length of the account's id (1 to 64), a history page of format 10 with the
/// seq of its first entry (at least 1), one of format 11 with the length of its account's id
/// (its header), all postcard varints.
const LZ4_TAG: u8 = 0x00;

/// How the engine stores `value` at the ledger key `key` when that is not `value` itself:
/// lz4-compressed, for a long record of a [`compressed_table`].
fn compressed_form(key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    (value.len() >= COMPRESS_MIN_BYTES && compressed_table(key)).then(|| lz4::compress_tagged(LZ4_TAG, value))
}

/// The record the engine holds at the ledger key `key` as `stored`.
///
/// # Panics
/// If a compressed record does not decompress: the store is corrupt (see [`fatal`]).
fn plain_form(key: &[u8], stored: Vec<u8>) -> Vec<u8> {
    if stored.first() != Some(&LZ4_TAG) || !compressed_table(key) {
        return stored;
    }
    lz4::decompress_tagged(&stored).unwrap_or_else(|reason| fatal(format!("record at key {:?}: {reason}", String::from_utf8_lossy(key))))
}

/// A ledger key as the engine stores it: under the shard's prefix.
fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(prefix.len() + key.len());
    full.extend_from_slice(prefix);
    full.extend_from_slice(key);
    full
}

enum Cache<'a> {
    Write(&'a mut StateCache),
    Read(&'a StateCache),
}

impl Cache<'_> {
    fn get(&self) -> &StateCache {
        match self {
            Cache::Write(c) => c,
            Cache::Read(c) => c,
        }
    }
}

/// The shard's state as the ledger sees it: the cache over the engine.
pub struct EngineStore<'a> {
    engine: &'a dyn Engine,
    prefix: &'a [u8],
    cache: Cache<'a>,
}

/// The ledger cannot handle a storage failure, by design: the replica stops (fail-stop)
/// rather than answer from a state it could not read.
fn fatal(e: impl std::fmt::Display) -> ! {
    panic!("storage failure under the ledger: {e}")
}

impl<'a> EngineStore<'a> {
    /// A store that applies writes into `cache`.
    pub fn new(engine: &'a dyn Engine, prefix: &'a [u8], cache: &'a mut StateCache) -> Self {
        Self { engine, prefix, cache: Cache::Write(cache) }
    }

    /// A view for queries.
    ///
    /// # Panics
    /// On a write: reads never change the state.
    pub fn read_only(engine: &'a dyn Engine, prefix: &'a [u8], cache: &'a StateCache) -> Self {
        Self { engine, prefix, cache: Cache::Read(cache) }
    }

    fn cache_mut(&mut self) -> &mut StateCache {
        match &mut self.cache {
            Cache::Write(c) => c,
            Cache::Read(_) => panic!("a read-only view of the shard state was written"),
        }
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        prefixed(self.prefix, key)
    }

    /// The engine keys of this shard that start with `prefix`: `start <= key < end`.
    fn engine_range(&self, prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        let end = prefix_end(&start).unwrap_or_else(|| vec![0xff; start.len() + 1]);
        (start, end)
    }

    /// Reads which inbox pages the engine holds (a few per home shard: those not yet
    /// forgotten) before the first write of an inbox page since the replica started or
    /// installed a snapshot (see `StateCache::engine_inbox`).
    fn load_engine_inbox_for(&mut self, key: &[u8]) {
        if !key.starts_with(ledger::keys::INBOX_PREFIX) || self.cache.get().engine_inbox.is_some() {
            return;
        }
        let (start, end) = self.engine_range(ledger::keys::INBOX_PREFIX);
        let strip = self.prefix.len();
        let pages = self.engine.scan(&start, &end, usize::MAX, false).unwrap_or_else(|e| fatal(e));
        self.cache_mut().engine_inbox = Some(pages.into_iter().map(|(k, _)| k[strip..].to_vec()).collect());
    }

    fn merged_scan(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (start, prefix_end) = self.engine_range(prefix);
        let end = match before {
            Some(b) => self.full_key(b),
            None => prefix_end,
        };
        // Deleted keys may hide engine entries: fetch enough to still fill `limit`.
        debug_assert!(
            !ledger::keys::REQUEST_PREFIX.starts_with(prefix) && !prefix.starts_with(ledger::keys::REQUEST_PREFIX),
            "request records are looked up, never scanned (scan of {prefix:?})"
        );
        let cached = self.cache.get().cached_under(prefix);
        let fetched = self
            .engine
            .scan(&start, &end, limit.saturating_add(cached.len()), reverse)
            .unwrap_or_else(|e| fatal(e));
        let strip = self.prefix.len();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            fetched.into_iter().map(|(k, v)| {
                let key = k[strip..].to_vec();
                let value = plain_form(&key, v);
                (key, value)
            }).collect();
        for (key, value) in cached {
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

impl EngineStore<'_> {
    /// The value of `key` that [`Store::read_in_memory`] could not answer: a request record
    /// from its page, the rate card in force (then kept), anything else from the engine.
    fn read_from_engine(&self, key: &[u8]) -> Option<Vec<u8>> {
        let cache = self.cache.get();
        if let Some(id) = key.strip_prefix(ledger::keys::REQUEST_PREFIX) {
            return cache.request_pages.borrow_mut().get(self.engine, self.prefix, id).unwrap_or_else(|e| fatal(e));
        }
        let from_engine = || self.engine.get(&self.full_key(key)).unwrap_or_else(|e| fatal(e)).map(|stored| plain_form(key, stored));
        if key == ledger::keys::RATE_CURRENT {
            return cache.rate_current.get_or_init(from_engine).clone();
        }
        from_engine()
    }
}

impl Store for EngineStore<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut value = None;
        if self.read_in_memory(key, &mut |bytes| value = bytes.map(<[u8]>::to_vec)) {
            return value;
        }
        self.read_from_engine(key)
    }

    fn read_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) {
        if !self.read_in_memory(key, read) {
            read(self.read_from_engine(key).as_deref());
        }
    }

    /// The state cache's values (points kept from the last flush included) and the rate card
    /// in force once read; request records only while unflushed (their pages are decoded).
    fn read_in_memory(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> bool {
        let cache = self.cache.get();
        if let Some(id) = key.strip_prefix(ledger::keys::REQUEST_PREFIX) {
            let Some(record) = cache.requests.get(id) else { return false };
            read(Some(record));
            return true;
        }
        if let Some(buffered) = cache.cached(key) {
            read(buffered.as_deref());
            return true;
        }
        if key == ledger::keys::RATE_CURRENT {
            if let Some(card) = cache.rate_current.get() {
                read(card.as_deref());
                return true;
            }
        }
        false
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.load_engine_inbox_for(key);
        self.cache_mut().record(key, Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.load_engine_inbox_for(key);
        self.cache_mut().record(key, None);
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
    use crate::storage::{MemEngine, WriteOp};

    const PREFIX: &[u8] = b"L\0\0\0\x01";

    #[test]
    fn passes_the_ledger_store_conformance_suite_and_stays_in_its_shard() {
        let engine = MemEngine::new();
        let mut other = WriteBatch::default();
        other.put(b"L\0\0\0\x02k/a".to_vec(), b"other shard".to_vec());
        engine.write(other).unwrap();
        let mut cache = StateCache::default();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        crate::ledger::store::conformance(&mut store);
        // Cached writes reach the engine only through drain_into, under the prefix.
        store.put(b"k/z", b"1".to_vec());
        assert_eq!(engine.get(b"L\0\0\0\x01k/z").unwrap(), None);
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert!(cache.is_empty() && cache.bytes() == 0);
        engine.write(batch).unwrap();
        assert_eq!(engine.get(b"L\0\0\0\x01k/z").unwrap(), Some(b"1".to_vec()));
        let fresh = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(fresh.scan(b"k/", 10).len(), 1, "shard 2's key is invisible");
    }

    #[test]
    fn an_inbox_page_the_engine_never_held_is_deleted_without_an_engine_write() {
        use ledger::keys::inbox_page;
        let engine = MemEngine::new();
        // Page 1 of home 2 is in the engine from before this cache (an earlier run).
        let mut seed = WriteBatch::default();
        seed.put([PREFIX, inbox_page(2, 1).as_slice()].concat(), b"flushed long ago".to_vec());
        engine.write(seed).unwrap();
        let deletes = |batch: &WriteBatch| {
            let mut keys: Vec<Vec<u8>> = batch.ops.iter().filter_map(|op| match op {
                WriteOp::Delete(key) => Some(key[PREFIX.len()..].to_vec()),
                _ => None,
            }).collect();
            keys.sort();
            keys
        };
        let mut cache = StateCache::default();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&inbox_page(2, 2), b"created".to_vec());
        store.put(&inbox_page(2, 3), b"kept".to_vec());
        store.delete(&inbox_page(2, 1));
        store.delete(&inbox_page(2, 2));
        store.delete(&inbox_page(2, 9));
        assert_eq!(cache.keys(), 2, "page 1's deletion and page 3; nothing left of pages 2 and 9");
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert_eq!(deletes(&batch), vec![inbox_page(2, 1)], "only the page the engine held is deleted there");
        engine.write(batch).unwrap();

        // Page 3 reached the engine with that flush: its deletion must reach it too.
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&inbox_page(2, 4), b"created".to_vec());
        store.delete(&inbox_page(2, 3));
        store.delete(&inbox_page(2, 4));
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert_eq!(deletes(&batch), vec![inbox_page(2, 3)]);
        engine.write(batch).unwrap();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert!(view.scan(&ledger::keys::inbox_prefix(2), 10).is_empty(), "no page left in the engine");

        // A snapshot replaces the state behind the cache: what the engine holds is read again.
        let mut snapshot = WriteBatch::default();
        snapshot.put([PREFIX, inbox_page(2, 7).as_slice()].concat(), b"from the snapshot".to_vec());
        engine.write(snapshot).unwrap();
        cache.clear();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.delete(&inbox_page(2, 7));
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert_eq!(deletes(&batch), vec![inbox_page(2, 7)]);
    }

    #[test]
    fn the_cache_shadows_the_engine_until_it_is_drained() {
        let engine = MemEngine::new();
        let mut seed = WriteBatch::default();
        seed.put([PREFIX, b"a/1"].concat(), b"old".to_vec());
        seed.put([PREFIX, b"a/2"].concat(), b"gone".to_vec());
        engine.write(seed).unwrap();
        let mut cache = StateCache::default();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(b"a/1", b"new".to_vec());
        store.delete(b"a/2");
        store.put(b"a/3", b"added".to_vec());
        store.delete(b"a/3");
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(view.get(b"a/1"), Some(b"new".to_vec()));
        assert_eq!(view.get(b"a/2"), None);
        assert_eq!(view.scan(b"a/", 10), vec![(b"a/1".to_vec(), b"new".to_vec())]);
        assert_eq!(view.scan_rev(b"a/", None, 10).len(), 1);
        assert_eq!(cache.keys(), 3);
        assert_eq!(cache.bytes(), 3 + 3 + 3 + 3, "overwritten values are not counted twice");
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        engine.write(batch).unwrap();
        let after = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(after.scan(b"a/", 10), vec![(b"a/1".to_vec(), b"new".to_vec())]);
    }

    #[test]
    fn point_keys_are_cached_apart_and_still_scanned_in_order() {
        use ledger::keys::{account, history_page, TOTALS};
        let engine = MemEngine::new();
        let mut seed = WriteBatch::default();
        for (key, value) in [(account("bo"), "engine"), (account("cy"), "gone"), (history_page("bo", 0), "page")] {
            seed.put([PREFIX, &key].concat(), value.as_bytes().to_vec());
        }
        engine.write(seed).unwrap();
        let mut cache = StateCache::default();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&account("al"), b"cached".to_vec());
        store.delete(&account("cy"));
        store.put(&account("di"), b"cached".to_vec());
        store.put(TOTALS, b"t".to_vec());
        store.put(&history_page("bo", 1), b"page".to_vec());
        assert_eq!((cache.points.len(), cache.writes.len()), (4, 1), "accounts and totals hashed, history pages sorted");

        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(view.get(&account("al")), Some(b"cached".to_vec()));
        assert_eq!(view.get(&account("cy")), None, "a cached deletion hides the engine's value");
        let names = |pairs: Vec<(Vec<u8>, Vec<u8>)>| pairs.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        // The audit's scan: engine and cache merged, in key order, the deletion applied.
        assert_eq!(names(view.scan(b"acct/", 10)), ["acct/al", "acct/bo", "acct/di"]);
        assert_eq!(names(view.scan(b"acct/", 2)), ["acct/al", "acct/bo"]);
        assert_eq!(names(view.scan_rev(b"acct/", Some(b"acct/di"), 5)), ["acct/bo", "acct/al"]);
        // A scan of everything sees both maps, in order.
        assert_eq!(names(view.scan(b"", 10)), ["acct/al", "acct/bo", "acct/di", "hpg/bo/\0\0\0\0\0\0\0\0", "hpg/bo/\0\0\0\0\0\0\0\x01", "totals"]);
        // A history scan never looks at the hashed keys, and still sees its own.
        assert_eq!(view.scan(&ledger::keys::history_prefix("bo"), 10).len(), 2);

        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert!(cache.is_empty());
        engine.write(batch).unwrap();
        let after = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(names(after.scan(b"acct/", 10)), ["acct/al", "acct/bo", "acct/di"]);
        assert_eq!(after.get(TOTALS), Some(b"t".to_vec()));
    }

    #[test]
    fn the_outbox_index_follows_writes_once_loaded_and_is_dropped_by_clear() {
        let engine = MemEngine::new();
        let mut cache = StateCache::default();
        let (oldest, newer) = (ledger::keys::outbox(7, 0), ledger::keys::outbox(9, 1));
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&oldest, b"r".to_vec());
        assert_eq!(cache.completed_below(10), None, "not tracked before it is loaded");
        cache.load_outbox([oldest.clone()]);
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&newer, b"r".to_vec());
        store.put(b"acct/x", b"a".to_vec());
        assert_eq!(cache.completed_below(10), Some(7));
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert_eq!(cache.completed_below(10), Some(7), "a flush keeps the index");
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.delete(&oldest);
        assert_eq!(cache.completed_below(10), Some(9));
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.delete(&newer);
        assert_eq!(cache.completed_below(10), Some(11), "an empty outbox: all applied effects are completed");
        let third = ledger::keys::outbox(10, 0);
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&third, b"r".to_vec());
        store.delete(&third);
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        assert_eq!(batch.ops.len(), 2, "the two flushed records are deleted; one created and deleted within a flush leaves nothing to write");
        cache.clear();
        assert!(!cache.outbox_loaded());
    }

    #[test]
    fn long_accounts_and_history_pages_are_stored_compressed_and_read_back_plain() {
        use ledger::keys::{account, history_page, inbox_page};
        let engine = MemEngine::new();
        let mut cache = StateCache::default();
        let long: Vec<u8> = [&[5u8][..], b"alice", &b"gift from alice to bob, rose x1; ".repeat(20)].concat();
        let short = [&[5u8][..], b"carol", b"60 bytes or so"].concat();
        let writes = [(account("alice"), long.clone()), (account("carol"), short.clone()), (history_page("alice", 3), long.clone()), (inbox_page(2, 7), long.clone())];
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        for (key, value) in &writes {
            store.put(key, value.clone());
        }
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        engine.write(batch).unwrap();
        cache.clear();
        for (key, value) in &writes {
            let stored = engine.get(&[PREFIX, key].concat()).unwrap().unwrap();
            let compressed = compressed_table(key) && value.len() >= COMPRESS_MIN_BYTES;
            assert_eq!(stored[0] == LZ4_TAG, compressed, "key {key:?}");
            if compressed {
                assert!(stored.len() * 3 < value.len(), "{} bytes stored for {}", stored.len(), value.len());
            } else {
                assert_eq!(&stored, value, "stored as it is");
            }
            let view = EngineStore::read_only(&engine, PREFIX, &cache);
            assert_eq!(view.get(key).as_ref(), Some(value), "read back plain");
        }
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(view.scan(ledger::keys::ACCOUNT_PREFIX, 10), vec![(account("alice"), long.clone()), (account("carol"), short)]);
        assert_eq!(view.scan(&ledger::keys::history_prefix("alice"), 10), vec![(history_page("alice", 3), long)]);
    }

    /// Directories of storage format 9 and earlier hold these records plain, long ones too.
    #[test]
    fn a_long_plain_record_of_an_older_format_is_read_as_it_is() {
        use ledger::keys::account;
        let engine = MemEngine::new();
        let old = [&[3u8][..], b"bob", &[7u8; 900]].concat();
        let mut batch = WriteBatch::default();
        batch.put([PREFIX, &account("bob")].concat(), old.clone());
        engine.write(batch).unwrap();
        let cache = StateCache::default();
        assert_eq!(EngineStore::read_only(&engine, PREFIX, &cache).get(&account("bob")), Some(old));
    }

    #[test]
    #[should_panic(expected = "storage failure under the ledger")]
    fn a_corrupt_compressed_record_stops_the_replica() {
        use ledger::keys::account;
        let engine = MemEngine::new();
        let mut stored = compressed_form(&account("bob"), &[9u8; 1_000]).expect("a long account record is compressed");
        stored.truncate(stored.len() - 3);
        let mut batch = WriteBatch::default();
        batch.put([PREFIX, &account("bob")].concat(), stored);
        engine.write(batch).unwrap();
        let cache = StateCache::default();
        EngineStore::read_only(&engine, PREFIX, &cache).get(&account("bob"));
    }

    #[test]
    fn a_flush_keeps_the_points_it_wrote_until_the_next_flush() {
        use ledger::keys::{account, TOTALS};
        let engine = MemEngine::new();
        let mut cache = StateCache::default();
        let flush = |cache: &mut StateCache| {
            let mut batch = WriteBatch::default();
            cache.drain_into(&engine, PREFIX, &mut batch);
            let written = batch.ops.len();
            engine.write(batch).unwrap();
            written
        };
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&account("al"), b"al 1".to_vec());
        store.put(&account("bo"), b"bo 1".to_vec());
        store.put(TOTALS, b"t 1".to_vec());
        store.delete(&account("cy"));
        assert_eq!(flush(&mut cache), 4);
        assert!(cache.is_empty() && cache.bytes() == 0, "nothing left to write");
        assert_eq!(engine.get(&[PREFIX, &account("al")].concat()).unwrap(), Some(b"al 1".to_vec()));
        // Changed behind the cache's back (no replica does this): what the flush wrote is
        // still answered from the cache, so those reads do not reach the engine.
        let mut behind = WriteBatch::default();
        for key in [account("al"), account("bo"), account("cy")] {
            behind.put([PREFIX, &key].concat(), b"engine".to_vec());
        }
        engine.write(behind).unwrap();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(view.get(&account("al")), Some(b"al 1".to_vec()));
        assert_eq!(view.get(&account("cy")), None, "a deletion is kept too");
        assert_eq!(view.scan(ledger::keys::ACCOUNT_PREFIX, 10).len(), 2, "a scan sees the kept points over the engine");

        // Written again in the next period: written by the next flush, and kept again; the
        // points not written since the last flush are dropped by it.
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(&account("al"), b"al 2".to_vec());
        assert_eq!((cache.keys(), cache.bytes()), (1, account("al").len() + 4), "a kept point counts once it is written");
        assert_eq!(flush(&mut cache), 1, "only the point written since is written");
        assert_eq!(engine.get(&[PREFIX, &account("al")].concat()).unwrap(), Some(b"al 2".to_vec()));
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(view.get(&account("al")), Some(b"al 2".to_vec()));
        assert_eq!(view.get(&account("bo")), Some(b"engine".to_vec()), "dropped: read from the engine");
        assert_eq!(view.get(&account("cy")), Some(b"engine".to_vec()));
        assert_eq!(view.get(TOTALS), Some(b"t 1".to_vec()), "dropped, and the engine has what the flush wrote");
        assert_eq!(flush(&mut cache), 0);
        cache.clear();
        assert_eq!(EngineStore::read_only(&engine, PREFIX, &cache).get(&account("al")), Some(b"al 2".to_vec()));
    }

    #[test]
    fn the_rate_card_in_force_is_read_from_the_engine_once_and_follows_writes() {
        let engine = MemEngine::new();
        let full = [PREFIX, ledger::keys::RATE_CURRENT].concat();
        let mut cache = StateCache::default();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, ledger::keys::RATE_CURRENT), None);
        // Written behind the cache's back (no replica does this): the memo still answers, so
        // the read above was the only engine lookup.
        let mut behind = WriteBatch::default();
        behind.put(full.clone(), b"v9".to_vec());
        engine.write(behind).unwrap();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, ledger::keys::RATE_CURRENT), None, "memoized, not looked up again");
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.put(ledger::keys::RATE_CURRENT, b"v2".to_vec());
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        engine.write(batch).unwrap();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, ledger::keys::RATE_CURRENT), Some(b"v2".to_vec()), "a published card is in force after its flush");
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        store.delete(ledger::keys::RATE_CURRENT);
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        engine.write(batch).unwrap();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, ledger::keys::RATE_CURRENT), None);
        let mut installed = WriteBatch::default();
        installed.put(full, b"v5".to_vec());
        engine.write(installed).unwrap();
        cache.clear();
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, ledger::keys::RATE_CURRENT), Some(b"v5".to_vec()), "a snapshot's card is read afresh");
    }

    #[test]
    #[should_panic(expected = "read-only view")]
    fn a_read_only_view_refuses_writes() {
        let engine = MemEngine::new();
        let cache = StateCache::default();
        let mut view = EngineStore::read_only(&engine, PREFIX, &cache);
        view.put(b"k", b"v".to_vec());
    }

    #[test]
    fn request_records_are_found_before_and_after_their_flush_into_pages() {
        let engine = MemEngine::new();
        let mut cache = StateCache::default();
        let ids: Vec<Vec<u8>> = (0..300).map(|i| ledger::keys::request(&format!("t{}-{:012}", i % 3, i))).collect();
        let mut store = EngineStore::new(&engine, PREFIX, &mut cache);
        for (i, key) in ids.iter().enumerate() {
            store.put(key, format!("first {i}").into_bytes());
        }
        store.put(&ids[7], b"completed 7".to_vec());
        assert_eq!(ledger::Store::get(&store, &ids[7]), Some(b"completed 7".to_vec()), "the cache answers its latest write");
        let id_bytes: usize = ids.iter().map(|k| k.len() - ledger::keys::REQUEST_PREFIX.len()).sum();
        let record_bytes: usize = (0..300).map(|i| format!("first {i}").len()).sum::<usize>() + "completed 7".len() - "first 7".len();
        assert_eq!((cache.keys(), cache.bytes()), (300, id_bytes + record_bytes), "a rewritten record is counted once");
        let mut batch = WriteBatch::default();
        cache.drain_into(&engine, PREFIX, &mut batch);
        engine.write(batch).unwrap();
        assert!(cache.is_empty() && cache.bytes() == 0);
        assert!(engine.scan(b"L\0\0\0\x01req/", b"L\0\0\0\x01req0", 10, false).unwrap().is_empty(), "no key per record");
        let view = EngineStore::read_only(&engine, PREFIX, &cache);
        assert_eq!(ledger::Store::get(&view, &ids[7]), Some(b"completed 7".to_vec()));
        assert_eq!(ledger::Store::get(&view, &ids[299]), Some(b"first 299".to_vec()));
        assert_eq!(ledger::Store::get(&view, &ledger::keys::request("t9-000000000001")), None);
    }

    #[test]
    #[should_panic(expected = "kept for ever")]
    fn a_request_record_is_never_deleted() {
        let engine = MemEngine::new();
        let mut cache = StateCache::default();
        EngineStore::new(&engine, PREFIX, &mut cache).delete(&ledger::keys::request("r-1"));
    }
}
