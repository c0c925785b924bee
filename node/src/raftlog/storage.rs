use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};

use crate::keys;
use crate::storage::{SharedEngine, StorageError, WriteBatch};

/// One shard replica's raft log, hard state and conf state, kept in the node's engine.
///
/// Writes go into a caller's [`WriteBatch`] (so one engine write carries a whole Ready) and
/// update the in-memory indexes at once; the caller must write the batch to the engine before
/// raft reads the entries back (before `advance_append_async`). Terms are cached as runs
/// (`term_runs`): raft asks for terms on every append and commit, and terms change rarely.
pub struct ShardStorage {
    engine: SharedEngine,
    shard: u32,
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
}

fn corrupt(key: &[u8], reason: impl ToString) -> StorageError {
    StorageError::Corrupt { key: format!("{key:?}"), reason: reason.to_string() }
}

fn to_raft_err(e: StorageError) -> raft::Error {
    raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

impl ShardStorage {
    /// Whether raft wanted a snapshot of a state newer than the engine's.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn clear_snapshot_wanted(&self) {
        self.snapshot_wanted.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Loads the shard's raft state, or bootstraps it with `voters` if it has none yet.
    pub fn open(engine: SharedEngine, shard: u32, voters: &[u64]) -> Result<Self, StorageError> {
        let hard_state = match engine.get(&keys::hard_state(shard))? {
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
        let (truncated_index, truncated_term) = match engine.get(&keys::truncated_state(shard))? {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().unwrap()),
                u64::from_be_bytes(b[8..].try_into().unwrap()),
            ),
            Some(b) => return Err(corrupt(&keys::truncated_state(shard), format!("{} bytes", b.len()))),
            None => (0, 0),
        };
        let mut storage = Self {
            engine,
            shard,
            hard_state,
            conf_state,
            first_index: truncated_index + 1,
            last_index: truncated_index,
            truncated_term,
            term_runs: Vec::new(),
            snapshot_wanted: Default::default(),
        };
        storage.load_term_runs()?;
        Ok(storage)
    }

    fn load_term_runs(&mut self) -> Result<(), StorageError> {
        const SCAN_CHUNK: usize = 1024;
        let end = keys::raft_entries_end(self.shard);
        let mut start = keys::raft_entry(self.shard, self.first_index);
        loop {
            let chunk = self.engine.scan(&start, &end, SCAN_CHUNK, false)?;
            for (key, value) in &chunk {
                let entry = Entry::parse_from_bytes(value).map_err(|e| corrupt(key, e))?;
                let index = keys::raft_entry_index(key);
                assert_eq!(index, self.last_index + 1, "shard {} raft log has a gap", self.shard);
                self.push_term(index, entry.term);
                self.last_index = index;
            }
            match chunk.last() {
                Some((key, _)) if chunk.len() == SCAN_CHUNK => {
                    start = keys::raft_entry(self.shard, keys::raft_entry_index(key) + 1)
                }
                _ => return Ok(()),
            }
        }
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

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn last_log_index(&self) -> u64 {
        self.last_index
    }

    /// Appends entries, replacing any conflicting suffix (a new leader's log wins).
    pub fn append(&mut self, entries: &[Entry], batch: &mut WriteBatch) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index >= self.first_index && first.index <= self.last_index + 1,
            "shard {}: append at {} leaves a gap after {} (first {})",
            self.shard, first.index, self.last_index, self.first_index
        );
        if first.index <= self.last_index {
            batch.delete_range(
                keys::raft_entry(self.shard, first.index),
                keys::raft_entries_end(self.shard),
            );
            while let Some(&(run_start, _)) = self.term_runs.last() {
                if run_start >= first.index {
                    self.term_runs.pop();
                } else {
                    break;
                }
            }
        }
        for entry in entries {
            batch.put(
                keys::raft_entry(self.shard, entry.index),
                entry.write_to_bytes().expect("encode raft entry"),
            );
            self.push_term(entry.index, entry.term);
        }
        self.last_index = entries.last().map(|e| e.index).unwrap();
    }

    pub fn set_hard_state(&mut self, hs: &HardState, batch: &mut WriteBatch) {
        batch.put(keys::hard_state(self.shard), hs.write_to_bytes().expect("encode hard state"));
        self.hard_state = hs.clone();
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
        batch.put(keys::truncated_state(self.shard), value);
        self.first_index = index + 1;
        self.truncated_term = term;
    }

    /// Drops the log up to and including `to_index` (which must be applied: the state machine
    /// holds its effects, and a snapshot can replace it for any follower that needs it).
    pub fn compact(&mut self, to_index: u64, batch: &mut WriteBatch) {
        if to_index < self.first_index {
            return;
        }
        assert!(to_index <= self.last_index, "shard {}: compact to {to_index} beyond last {}", self.shard, self.last_index);
        let term = raft::Storage::term(self, to_index).expect("term of a live entry");
        batch.delete_range(keys::raft_entry(self.shard, self.first_index), keys::raft_entry(self.shard, to_index + 1));
        self.set_truncated(to_index, term, batch);
        let keep_from = self.term_runs.partition_point(|&(start, _)| start <= self.first_index).saturating_sub(1);
        self.term_runs.drain(..keep_from);
        if let Some(first) = self.term_runs.first_mut() {
            first.0 = first.0.max(self.first_index);
        }
    }

    /// Replaces the log with a snapshot's position: no entries, truncated at its index.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata, batch: &mut WriteBatch) {
        batch.delete_range(keys::raft_entry(self.shard, 0), keys::raft_entries_end(self.shard));
        self.set_truncated(meta.index, meta.term, batch);
        self.last_index = meta.index;
        self.term_runs.clear();
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

    fn read_entry(&self, index: u64) -> Result<Entry, StorageError> {
        let key = keys::raft_entry(self.shard, index);
        let bytes = self
            .engine
            .get(&key)?
            .ok_or_else(|| corrupt(&key, format!("missing entry {index} of {}..={}", self.first_index, self.last_index)))?;
        Entry::parse_from_bytes(&bytes).map_err(|e| corrupt(&key, e))
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
        let pairs = self
            .engine
            .scan(&keys::raft_entry(self.shard, low), &keys::raft_entry(self.shard, high), usize::MAX, false)
            .map_err(to_raft_err)?;
        let mut out = Vec::with_capacity(pairs.len());
        let mut total_bytes = 0u64;
        for (key, value) in pairs {
            total_bytes += value.len() as u64;
            // At least one entry is always returned, even if it alone exceeds max_size.
            if !out.is_empty() && total_bytes > max_bytes {
                break;
            }
            out.push(Entry::parse_from_bytes(&value).map_err(|e| to_raft_err(corrupt(&key, e)))?);
        }
        if out.is_empty() && high > low {
            return Err(to_raft_err(corrupt(&keys::raft_entry(self.shard, low), "entries missing")));
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
    use std::sync::Arc;

    use raft::Storage;

    use super::*;
    use crate::storage::{Engine, MemEngine};

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = vec![index as u8; 10].into();
        e
    }

    fn write(engine: &Arc<MemEngine>, s: &mut ShardStorage, entries: &[Entry]) {
        let mut b = WriteBatch::default();
        s.append(entries, &mut b);
        engine.write(b).unwrap();
    }

    #[test]
    fn bootstraps_voters_then_appends_and_truncates_conflicts() {
        let engine = Arc::new(MemEngine::new());
        let mut s = ShardStorage::open(engine.clone(), 3, &[1, 2, 3]).unwrap();
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
        let mut hs = HardState::default();
        hs.term = 3;
        hs.vote = 2;
        hs.commit = 2;
        let mut b = WriteBatch::default();
        s.set_hard_state(&hs, &mut b);
        engine.write(b).unwrap();
        let s2 = ShardStorage::open(engine.clone(), 3, &[9]).unwrap();
        assert_eq!(s2.last_index().unwrap(), 3);
        assert_eq!(s2.term(3).unwrap(), 3);
        assert_eq!(s2.term(1).unwrap(), 1);
        assert_eq!(s2.initial_state().unwrap().hard_state, hs);
        assert_eq!(s2.initial_state().unwrap().conf_state.voters, vec![1, 2, 3], "bootstrap happens once");
    }

    #[test]
    fn shards_do_not_see_each_other() {
        let engine = Arc::new(MemEngine::new());
        let mut a = ShardStorage::open(engine.clone(), 1, &[1]).unwrap();
        write(&engine, &mut a, &[entry(1, 1), entry(2, 1)]);
        let b = ShardStorage::open(engine.clone(), 2, &[1]).unwrap();
        assert_eq!(b.last_index().unwrap(), 0);
    }
}
