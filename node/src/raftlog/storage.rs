use std::collections::VecDeque;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use std::sync::Arc;

use super::wal::{EntryPos, RaftWal, ReplayedEntry};
use crate::keys;
use crate::storage::{SharedEngine, StorageError, WriteBatch};

/// Bytes of raft entries a node keeps in memory over all its replicas ([`ShardStorage`]'s
/// entry cache). The cache holds the entries raft reads back soon after writing them, a few
/// seconds of a shard's log under load, so a fixed budget per node serves any shard count;
/// one per replica cost a node of 64 replicas 64 MiB (its RSS after the matrix went from 192
/// MiB at 16 shards to 281 MiB at 64).
pub const NODE_ENTRY_CACHE_BYTES: usize = 16 << 20;
/// Each replica's share is within these bounds.
const ENTRY_CACHE_BYTES_MIN: usize = 64 << 10;
const ENTRY_CACHE_BYTES_MAX: usize = 1 << 20;

/// The entry cache of each replica of a node hosting `replicas` of them.
pub fn entry_cache_bytes(replicas: usize) -> usize {
    (NODE_ENTRY_CACHE_BYTES / replicas.max(1)).clamp(ENTRY_CACHE_BYTES_MIN, ENTRY_CACHE_BYTES_MAX)
}

/// One shard replica's raft log (in the node's [`RaftWal`]), and its hard state, conf state
/// and truncation point (in the node's engine, next to the ledger state they must agree with).
///
/// Entries are appended to the log at once (readable at once, durable at the next sync); the
/// other writes go into a caller's [`WriteBatch`]. Terms are cached as runs (`term_runs`):
/// raft asks for terms on every append and commit, and terms change rarely.
///
/// The truncation point carries an epoch, bumped by every snapshot installed: the log's
/// records of an earlier epoch belong to a log the snapshot replaced, and are ignored when the
/// log is read back at start (see [`RaftWal`]).
///
/// The newest entries are also kept in memory (`cache`, up to [`entry_cache_bytes`]): raft
/// reads every entry back from storage once it is persisted, to apply it when it commits and
/// to send it to a follower that was not sent it straight from raft's unstable log. From the
/// engine that read was a sled scan and a protobuf decode per entry; from the cache it is a
/// clone that shares the entry's data.
pub struct ShardStorage {
    engine: SharedEngine,
    wal: Arc<RaftWal>,
    shard: u32,
    epoch: u64,
    /// Where each entry `first_index..=last_index` is in the log.
    positions: VecDeque<EntryPos>,
    /// The truncation point moved and the log has not been told yet (it is told once the
    /// write holding it is in the engine: [`Self::announce_truncation`]).
    truncation_unannounced: bool,
    hard_state: HardState,
    conf_state: ConfState,
    /// The log holds entries `first_index..=last_index`; `first_index - 1` has `truncated_term`.
    first_index: u64,
    last_index: u64,
    truncated_term: u64,
    /// `(first index of the run, term)`, ascending, covering `first_index..=last_index`.
    term_runs: Vec<(u64, u64)>,
    /// Raft asked for a snapshot newer than the state in the engine (the replica flushes its
    /// state cache, then raft's next attempt succeeds).
    snapshot_wanted: std::sync::atomic::AtomicBool,
    /// The newest entries, contiguous and ending at `last_index` (or empty): what raft reads
    /// back soon after writing it. Older entries are read from the engine.
    cache: VecDeque<Entry>,
    /// Encoded bytes of the cached entries, kept at most `cache_bytes_max` (but for one).
    cache_bytes: usize,
    cache_bytes_max: usize,
    /// `hard_state.commit` is newer than the stored one (see [`Self::update_hard_state`]).
    commit_unwritten: bool,
}

fn corrupt(key: &[u8], reason: impl ToString) -> StorageError {
    StorageError::Corrupt { key: format!("{key:?}"), reason: reason.to_string() }
}

fn to_raft_err(e: StorageError) -> raft::Error {
    raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

/// The live entries of a shard's log from the records replay found, in log order: records of
/// another epoch are ignored (a snapshot replaced their log, or its install was lost by a
/// crash), a record overwrites the entries from its first index on, and entries at or below
/// the truncation point are gone. What is left must follow the truncation point without a gap.
fn live_entries(shard: u32, epoch: u64, truncated_index: u64, records: Vec<super::wal::ReplayedRecord>) -> Result<Vec<ReplayedEntry>, StorageError> {
    let gap = |reason: String| StorageError::Corrupt { key: format!("raft log of shard {shard}"), reason };
    let mut live: Vec<ReplayedEntry> = Vec::new();
    for record in records.into_iter().filter(|r| r.epoch == epoch) {
        for e in record.entries {
            if let Some(first) = live.first() {
                // Keep the entries below `e` (all of them if `e` follows the last).
                live.truncate(e.index.saturating_sub(first.index).min(live.len() as u64) as usize);
            }
            if let Some(last) = live.last() {
                if e.index != last.index + 1 {
                    return Err(gap(format!("entry {} follows entry {}", e.index, last.index)));
                }
            }
            live.push(e);
        }
    }
    live.retain(|e| e.index > truncated_index);
    match live.first() {
        Some(first) if first.index != truncated_index + 1 => {
            Err(gap(format!("the log starts at entry {} but is truncated through {truncated_index}", first.index)))
        }
        _ => Ok(live),
    }
}

impl ShardStorage {
    /// Whether raft wanted a snapshot of a state newer than the engine's.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn clear_snapshot_wanted(&self) {
        self.snapshot_wanted.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Loads the shard's raft state, or bootstraps it with `voters` if it has none yet. The
    /// log's entries are those replay found in `wal` for this shard.
    pub fn open(engine: SharedEngine, wal: Arc<RaftWal>, shard: u32, voters: &[u64]) -> Result<Self, StorageError> {
        let mut hard_state = match engine.get(&keys::hard_state(shard))? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(|e| corrupt(&keys::hard_state(shard), e))?,
            None => HardState::default(),
        };
        let conf_state = match engine.get(&keys::conf_state(shard))? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(|e| corrupt(&keys::conf_state(shard), e))?,
            None => {
                let mut cs = ConfState::default();
                cs.set_voters(voters.to_vec());
                let mut batch = WriteBatch::default();
                batch.put(keys::conf_state(shard), cs.write_to_bytes().expect("encode conf state"));
                engine.write(batch)?;
                cs
            }
        };
        let (truncated_index, truncated_term, epoch) = match engine.get(&keys::truncated_state(shard))? {
            // Before the raft log moved out of the engine (format 9) there was no epoch.
            Some(b) if b.len() == 16 || b.len() == 24 => (
                u64::from_be_bytes(b[..8].try_into().unwrap()),
                u64::from_be_bytes(b[8..16].try_into().unwrap()),
                if b.len() == 24 { u64::from_be_bytes(b[16..].try_into().unwrap()) } else { 0 },
            ),
            Some(b) => return Err(corrupt(&keys::truncated_state(shard), format!("{} bytes", b.len()))),
            None => (0, 0, 0),
        };
        let live = live_entries(shard, epoch, truncated_index, wal.take_replayed(shard))?;
        wal.restore(shard, epoch, live.iter().copied());
        if let Some(last) = live.last() {
            // The engine's hard state and the log are synced in the same round but are two
            // files: a crash between their writes can keep a hard state whose commit index is
            // past the entries kept (lowering it is safe: a restarted replica learns the commit
            // index again), or entries of a term the hard state does not know yet (raising the
            // term, with no vote, is safe: no vote of that term was sent before the sync).
            if hard_state.term < last.term {
                hard_state.term = last.term;
                hard_state.vote = 0;
            }
        }
        let last_index = live.last().map_or(truncated_index, |e| e.index);
        hard_state.commit = hard_state.commit.min(last_index);
        let mut storage = Self {
            engine,
            wal,
            shard,
            epoch,
            positions: live.iter().map(|e| e.pos).collect(),
            truncation_unannounced: false,
            hard_state,
            conf_state,
            first_index: truncated_index + 1,
            last_index,
            truncated_term,
            term_runs: Vec::new(),
            snapshot_wanted: Default::default(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_bytes_max: ENTRY_CACHE_BYTES_MAX,
            commit_unwritten: false,
        };
        for e in &live {
            storage.push_term(e.index, e.term);
        }
        Ok(storage)
    }

    fn push_term(&mut self, index: u64, term: u64) {
        match self.term_runs.last() {
            Some(&(_, last_term)) if last_term == term => {}
            Some(&(_, last_term)) => {
                assert!(term > last_term, "raft terms must increase along the log");
                self.term_runs.push((index, term));
            }
            None => self.term_runs.push((index, term)),
        }
    }

    /// Whether this log keeps old segments of the node's raft log on disk (see
    /// [`RaftWal::pins_old_segments`]).
    pub fn pins_old_segments(&self) -> bool {
        self.wal.pins_old_segments(self.shard)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn last_log_index(&self) -> u64 {
        self.last_index
    }

    /// Appends entries to the log, replacing any conflicting suffix (a new leader's log wins).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index >= self.first_index && first.index <= self.last_index + 1,
            "shard {}: append at {} leaves a gap after {} (first {})",
            self.shard, first.index, self.last_index, self.first_index
        );
        if first.index <= self.last_index {
            self.positions.truncate((first.index - self.first_index) as usize);
            while let Some(&(run_start, _)) = self.term_runs.last() {
                if run_start >= first.index {
                    self.term_runs.pop();
                } else {
                    break;
                }
            }
        }
        self.uncache_from(first.index);
        let encoded: Vec<Vec<u8>> = entries.iter().map(|e| e.write_to_bytes().expect("encode raft entry")).collect();
        let records: Vec<(u64, u64, &[u8])> = entries.iter().zip(&encoded).map(|(e, b)| (e.index, e.term, b.as_slice())).collect();
        self.positions.extend(self.wal.append(self.shard, self.epoch, &records));
        for (entry, bytes) in entries.iter().zip(&encoded) {
            self.cache_push(entry, bytes.len());
            self.push_term(entry.index, entry.term);
        }
        self.last_index = entries.last().map(|e| e.index).unwrap();
        debug_assert_eq!(self.positions.len() as u64, self.last_index + 1 - self.first_index);
    }

    /// Bounds the entry cache (the default is the largest share, [`entry_cache_bytes`]`(1)`).
    pub fn set_entry_cache_bytes(&mut self, bytes: usize) {
        self.cache_bytes_max = bytes;
        self.evict_beyond_bound();
    }

    /// Drops cached entries from `index` on (a new leader replaces them).
    fn uncache_from(&mut self, index: u64) {
        while self.cache.back().is_some_and(|e| e.index >= index) {
            let gone = self.cache.pop_back().expect("checked above");
            self.cache_bytes -= gone.compute_size() as usize;
        }
    }

    /// Caches `entry` as the newest, then evicts the oldest entries beyond the byte bound.
    fn cache_push(&mut self, entry: &Entry, encoded_bytes: usize) {
        if self.cache.back().is_some_and(|e| e.index + 1 != entry.index) {
            // Not contiguous (cannot happen after `uncache_from`; stay correct regardless).
            self.cache.clear();
            self.cache_bytes = 0;
        }
        self.cache.push_back(entry.clone());
        self.cache_bytes += encoded_bytes;
        self.evict_beyond_bound();
    }

    /// Evicts the oldest entries while the cache holds more than its bound, keeping the newest.
    fn evict_beyond_bound(&mut self) {
        while self.cache_bytes > self.cache_bytes_max && self.cache.len() > 1 {
            self.uncache_oldest();
        }
    }

    fn uncache_oldest(&mut self) {
        if let Some(gone) = self.cache.pop_front() {
            self.cache_bytes -= gone.compute_size() as usize;
        }
    }

    /// Index of the oldest cached entry (`last_index + 1` when none is cached).
    fn cache_first_index(&self) -> u64 {
        self.cache.front().map_or(self.last_index + 1, |e| e.index)
    }

    pub fn set_hard_state(&mut self, hs: &HardState, batch: &mut WriteBatch) {
        batch.put(keys::hard_state(self.shard), hs.write_to_bytes().expect("encode hard state"));
        self.hard_state = hs.clone();
        self.commit_unwritten = false;
    }

    /// Takes a Ready's hard state, writing it only if its term or vote changed.
    ///
    /// Term and vote must be durable before the messages that rely on them leave (a vote, an
    /// append response), so they are written into this Ready's batch. The commit index alone
    /// is volatile state in Raft (Figure 2 of the paper: a restarted server learns it again
    /// from the leader), and with followers learning it from every append, nearly every
    /// Ready moves it: writing it each time cost a sled insert per Ready, as many as the
    /// entries themselves at 64 shards. It is written with the next term or vote change,
    /// snapshot or state flush ([`Self::write_commit`]), which keeps the stored commit index
    /// at or above the stored applied index.
    pub fn update_hard_state(&mut self, hs: &HardState, batch: &mut WriteBatch) {
        if hs.term != self.hard_state.term || hs.vote != self.hard_state.vote {
            self.set_hard_state(hs, batch);
        } else if hs.commit != self.hard_state.commit {
            debug_assert!(hs.commit > self.hard_state.commit, "shard {}: commit index went back from {} to {}", self.shard, self.hard_state.commit, hs.commit);
            self.hard_state.commit = self.hard_state.commit.max(hs.commit);
            self.commit_unwritten = true;
        }
    }

    /// Writes the hard state if its commit index moved since it was last written (a state
    /// flush calls this: its applied index must never be stored above the commit index).
    pub fn write_commit(&mut self, batch: &mut WriteBatch) {
        if self.commit_unwritten {
            let hs = self.hard_state.clone();
            self.set_hard_state(&hs, batch);
        }
    }

    /// Records the commit index of a `LightReady` or a Ready's hard state.
    pub fn set_commit(&mut self, commit: u64, batch: &mut WriteBatch) {
        if commit > self.hard_state.commit {
            let mut hs = self.hard_state.clone();
            hs.commit = commit;
            self.set_hard_state(&hs, batch);
        }
    }

    pub fn set_conf_state(&mut self, cs: &ConfState, batch: &mut WriteBatch) {
        batch.put(keys::conf_state(self.shard), cs.write_to_bytes().expect("encode conf state"));
        self.conf_state = cs.clone();
    }

    fn set_truncated(&mut self, index: u64, term: u64, batch: &mut WriteBatch) {
        let mut value = index.to_be_bytes().to_vec();
        value.extend_from_slice(&term.to_be_bytes());
        value.extend_from_slice(&self.epoch.to_be_bytes());
        batch.put(keys::truncated_state(self.shard), value);
        self.first_index = index + 1;
        self.truncated_term = term;
        self.truncation_unannounced = true;
    }

    /// Tells the log that the truncation point written into a batch is now in the engine:
    /// its segments may go once a sync round has made it durable. Call it after every engine
    /// write of a batch this storage wrote into.
    pub fn announce_truncation(&mut self) {
        if std::mem::take(&mut self.truncation_unannounced) {
            self.wal.truncated(self.shard, self.epoch, self.first_index - 1);
        }
    }

    /// Drops the log up to and including `to_index` (which must be applied: the state machine
    /// holds its effects, and a snapshot can replace it for any follower that needs it).
    pub fn compact(&mut self, to_index: u64, batch: &mut WriteBatch) {
        if to_index < self.first_index {
            return;
        }
        assert!(to_index <= self.last_index, "shard {}: compact to {to_index} beyond last {}", self.shard, self.last_index);
        let term = raft::Storage::term(self, to_index).expect("term of a live entry");
        self.positions.drain(..(to_index + 1 - self.first_index) as usize);
        self.set_truncated(to_index, term, batch);
        while self.cache.front().is_some_and(|e| e.index <= to_index) {
            self.uncache_oldest();
        }
        let keep_from = self.term_runs.partition_point(|&(start, _)| start <= self.first_index).saturating_sub(1);
        self.term_runs.drain(..keep_from);
        if let Some(first) = self.term_runs.first_mut() {
            first.0 = first.0.max(self.first_index);
        }
    }

    /// Replaces the log with a snapshot's position: no entries, truncated at its index.
    /// The new epoch, written with the snapshot's state in one atomic batch, sets apart the
    /// log records of the replaced log, whichever of the two files a crash kept.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata, batch: &mut WriteBatch) {
        self.epoch += 1;
        self.positions.clear();
        self.set_truncated(meta.index, meta.term, batch);
        self.last_index = meta.index;
        self.term_runs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.set_conf_state(meta.get_conf_state(), batch);
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(&hs, batch);
    }

    /// Entries currently in the log.
    pub fn log_len(&self) -> u64 {
        self.last_index + 1 - self.first_index
    }

    pub fn first_log_index(&self) -> u64 {
        self.first_index
    }

    /// `entries(low, high)` from the cache, which holds all of them: the same answer as from
    /// the engine, within `max_bytes` of encoded entries (but at least one).
    fn cached_entries(&self, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        let skip = (low - self.cache_first_index()) as usize;
        let mut out = Vec::with_capacity((high.saturating_sub(low) as usize).min(self.cache.len()));
        let mut total_bytes = 0u64;
        for entry in self.cache.iter().skip(skip).take_while(|e| e.index < high) {
            total_bytes += u64::from(entry.compute_size());
            if !out.is_empty() && total_bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    fn read_entry(&self, index: u64) -> Result<Entry, StorageError> {
        let what = || format!("raft entry {index} of shard {}", self.shard);
        let pos = *self
            .positions
            .get(index.wrapping_sub(self.first_index) as usize)
            .ok_or_else(|| StorageError::Corrupt { key: what(), reason: format!("not in the log {}..={}", self.first_index, self.last_index) })?;
        let bytes = self.wal.read(pos)?;
        let entry = Entry::parse_from_bytes(&bytes).map_err(|e| StorageError::Corrupt { key: what(), reason: e.to_string() })?;
        if entry.index != index {
            return Err(StorageError::Corrupt { key: what(), reason: format!("the log holds entry {} there", entry.index) });
        }
        Ok(entry)
    }
}

impl raft::Storage for ShardStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState { hard_state: self.hard_state.clone(), conf_state: self.conf_state.clone() })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        assert!(high <= self.last_index + 1, "entries({low}, {high}) beyond last {}", self.last_index);
        let max_bytes = max_size.into().unwrap_or(u64::MAX);
        let cache_first = self.cache_first_index();
        if low >= cache_first {
            return Ok(self.cached_entries(low, high, max_bytes));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut total_bytes = 0u64;
        for index in low..high {
            let entry = if index >= cache_first {
                self.cache[(index - cache_first) as usize].clone()
            } else {
                self.read_entry(index).map_err(to_raft_err)?
            };
            total_bytes += u64::from(entry.compute_size());
            // At least one entry is always returned, even if it alone exceeds max_size.
            if !out.is_empty() && total_bytes > max_bytes {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.first_index - 1 {
            return Ok(self.truncated_term);
        }
        if idx < self.first_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let run = self.term_runs.partition_point(|&(start, _)| start <= idx);
        match run.checked_sub(1).map(|i| self.term_runs[i].1) {
            Some(term) => Ok(term),
            // The cache always covers the log; fall back to disk rather than trust a bug.
            None => self.read_entry(idx).map(|e| e.term).map_err(to_raft_err),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let data = super::snapshot::build(self.engine.as_ref(), self.shard).map_err(to_raft_err)?;
        if data.applied_index < request_index || data.applied_index + 1 < self.first_index {
            self.snapshot_wanted.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = data.applied_index;
        meta.term = self.term(data.applied_index)?;
        meta.set_conf_state(self.conf_state.clone());
        snapshot.data = super::snapshot::encode(&data).into();
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {

    use raft::Storage;

    use super::*;
    use crate::sim::SimDisk;
    use crate::storage::Engine;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8; 10].into(), ..Default::default() }
    }

    fn open(disk: &SimDisk, shard: u32, voters: &[u64]) -> ShardStorage {
        ShardStorage::open(disk.engine.clone(), disk.wal.clone(), shard, voters).unwrap()
    }

    fn write(_disk: &SimDisk, s: &mut ShardStorage, entries: &[Entry]) {
        s.append(entries);
    }

    /// Writes a batch of this storage's engine writes, as the replica does.
    fn commit(disk: &SimDisk, s: &mut ShardStorage, b: WriteBatch) {
        disk.engine.write(b).unwrap();
        s.announce_truncation();
    }

    #[test]
    fn bootstraps_voters_then_appends_and_truncates_conflicts() {
        let engine = SimDisk::new();
        let mut s = open(&engine, 3, &[1, 2, 3]);
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
        assert_eq!(s.term(0).unwrap(), 0);

        write(&engine, &mut s, &[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
        assert_eq!(s.term(2).unwrap(), 1);
        assert_eq!(s.term(4).unwrap(), 2);
        assert!(s.term(5).is_err());

        // A new leader overwrites 3..=4 with a term-3 suffix.
        write(&engine, &mut s, &[entry(3, 3)]);
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(3).unwrap(), 3);
        let got = s.entries(1, 4, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 3)]);

        // max_size bounds the answer but never below one entry.
        let one = s.entries(1, 4, 1, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(one.len(), 1);

        // Reopen: everything written is recovered, term runs included.
        let hs = HardState { term: 3, vote: 2, commit: 2, ..Default::default() };
        let mut b = WriteBatch::default();
        s.set_hard_state(&hs, &mut b);
        commit(&engine, &mut s, b);
        engine.sync().unwrap();
        let s2 = open(&engine.crash(0), 3, &[9]);
        assert_eq!(s2.last_index().unwrap(), 3);
        assert_eq!(s2.term(3).unwrap(), 3);
        assert_eq!(s2.term(1).unwrap(), 1);
        assert_eq!(s2.initial_state().unwrap().hard_state, hs);
        assert_eq!(s2.initial_state().unwrap().conf_state.voters, vec![1, 2, 3], "bootstrap happens once");
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    /// What the raft log alone answers: a storage reopened from it after a sync has an
    /// empty cache.
    fn from_engine(engine: &SimDisk, low: u64, high: u64, max_bytes: Option<u64>) -> Vec<Entry> {
        engine.sync().unwrap();
        let fresh = open(&engine.crash(0), 3, &[1]);
        assert!(fresh.cache.is_empty());
        fresh.entries(low, high, max_bytes, GetEntriesContext::empty(false)).unwrap()
    }

    #[test]
    fn the_entry_cache_answers_as_the_engine_does_through_conflicts_and_compaction() {
        let engine = SimDisk::new();
        let mut s = open(&engine, 3, &[1]);
        write(&engine, &mut s, &(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>());
        write(&engine, &mut s, &[entry(4, 2), entry(5, 2)]);
        assert_eq!(indexes(&s.cache.iter().cloned().collect::<Vec<_>>()), vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]);
        for (low, high, max) in [(1, 6, None), (2, 5, None), (4, 6, None), (1, 6, Some(1)), (1, 6, Some(30)), (6, 6, None)] {
            let cached = s.entries(low, high, max, GetEntriesContext::empty(false)).unwrap();
            assert_eq!(cached, from_engine(&engine, low, high, max), "entries({low}, {high}, {max:?})");
        }
        let mut b = WriteBatch::default();
        s.compact(3, &mut b);
        commit(&engine, &mut s, b);
        assert_eq!(s.cache.front().map(|e| e.index), Some(4), "compacted entries leave the cache");
        assert_eq!(s.cache_bytes, s.cache.iter().map(|e| e.compute_size() as usize).sum::<usize>());
        assert!(matches!(s.entries(3, 5, None, GetEntriesContext::empty(false)), Err(raft::Error::Store(RaftStorageError::Compacted))));
        assert_eq!(indexes(&s.entries(4, 6, None, GetEntriesContext::empty(false)).unwrap()), vec![(4, 2), (5, 2)]);
    }

    #[test]
    fn entries_beyond_the_cache_bound_are_read_from_the_engine() {
        let engine = SimDisk::new();
        let mut s = open(&engine, 3, &[1]);
        let big = |index: u64| {
            let mut e = entry(index, 1);
            e.data = vec![index as u8; ENTRY_CACHE_BYTES_MAX / 3].into();
            e
        };
        write(&engine, &mut s, &(1..=5).map(big).collect::<Vec<_>>());
        assert!(s.cache_bytes <= ENTRY_CACHE_BYTES_MAX && s.cache.len() == 2, "the newest entries that fit: {}", s.cache.len());
        assert_eq!(s.cache_first_index(), 4);
        let all = s.entries(1, 6, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(all, from_engine(&engine, 1, 6, None));
        assert_eq!(all.len(), 5);
        // One entry larger than the whole bound is still cached (raft reads it back next).
        let mut huge = entry(6, 1);
        huge.data = vec![6; ENTRY_CACHE_BYTES_MAX + 1].into();
        write(&engine, &mut s, &[huge]);
        assert_eq!((s.cache.len(), s.cache_first_index()), (1, 6));
        assert_eq!(s.entries(6, 7, None, GetEntriesContext::empty(false)).unwrap(), from_engine(&engine, 6, 7, None));
    }

    #[test]
    fn a_nodes_entry_cache_budget_is_shared_by_its_replicas() {
        assert_eq!(entry_cache_bytes(16), 1 << 20);
        assert_eq!(entry_cache_bytes(64), 256 << 10);
        assert_eq!(entry_cache_bytes(1), 1 << 20, "one replica gets the largest share, not the whole budget");
        assert_eq!(entry_cache_bytes(100_000), 64 << 10);
        assert!(64 * entry_cache_bytes(64) <= NODE_ENTRY_CACHE_BYTES);
        let engine = SimDisk::new();
        let mut s = open(&engine, 3, &[1]);
        s.set_entry_cache_bytes(100);
        write(&engine, &mut s, &(1..=20).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert!(s.cache_bytes <= 100, "{} bytes cached", s.cache_bytes);
        assert_eq!(s.entries(1, 21, None, GetEntriesContext::empty(false)).unwrap(), from_engine(&engine, 1, 21, None));
    }

    #[test]
    fn shards_do_not_see_each_other() {
        let engine = SimDisk::new();
        let mut a = open(&engine, 1, &[1]);
        write(&engine, &mut a, &[entry(1, 1), entry(2, 1)]);
        engine.sync().unwrap();
        let restarted = engine.crash(0);
        let b = open(&restarted, 2, &[1]);
        assert_eq!(b.last_index().unwrap(), 0);
        assert_eq!(open(&restarted, 1, &[1]).last_index().unwrap(), 2);
    }
}
