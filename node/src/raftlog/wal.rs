//! The raft logs of all replicas of a node in one write-ahead log: append-only segment files,
//! written and `fdatasync`ed once per group commit, instead of a storage-engine key per entry.
//!
//! Why: with the entries in sled, every entry was a sled insert (its tree, its page cache and
//! its log buffer, written out by sled's thread pool), and every group commit flushed sled
//! whether or not any state had changed. Profiled on 2026-12-06, the raft log's sled inserts
//! were 14% of a node's samples under batched gifts, and sled's IO threads another 6%. Here an
//! append only encodes a record into a memory buffer; the sync thread writes the buffer with
//! one `pwrite` per segment and syncs the file (the way TiKV's raft-engine does it).
//!
//! What the log holds: entry records, each `(shard, epoch, entries)`. Everything else about a
//! replica's raft state (hard state, conf state, the truncation point and its epoch) stays in
//! the engine, next to the ledger state it must agree with. A record whose first index is at or
//! below the shard's last one replaces the entries from there on (a new leader overwrote our
//! tail). The epoch counts the snapshots a replica installed: installing one bumps the epoch in
//! the engine, in the same atomic write as the snapshot's state, so records of earlier epochs
//! (a log the snapshot replaced) are ignored by replay whichever of the two writes a crash kept.
//!
//! Segments are never rewritten: once every shard's log has been truncated past a segment's
//! entries (and the truncation is durable in the engine), the segment file is deleted.
//!
//! On-disk record: `len: u32 LE, crc32: u32 LE, payload[len]`; payload: `shard: u32 LE, epoch:
//! u64 LE, count: u32 LE`, then `count` times `index: u64 LE, term: u64 LE, bytes: u32 LE,
//! entry[bytes]` (the protobuf `eraftpb.Entry`). A crash can leave a torn record at the end of
//! the last segment; replay cuts the segment there (nothing past the last fsync was answered).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::StorageError;

/// A segment is closed once it holds this much (the default of `--raft-log-segment-mb`); the
/// next record starts a new one. Large enough that rotation (a file creation and a directory
/// fsync) is rare, small enough that a deleted segment gives its space back soon after the
/// logs move past it.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Closed segments a node keeps behind the one being written before it asks the shards whose
/// entries hold them to compact (see [`RaftWal::pins_old_segments`]): 512 MiB of log, about
/// what 16 busy shards keep under the default `--compact-log-mb` of 32.
pub const RETAINED_SEGMENTS: u64 = 8;

const RECORD_HEADER_BYTES: usize = 8;
const PAYLOAD_HEADER_BYTES: usize = 16;
const ENTRY_HEADER_BYTES: usize = 20;
const SEGMENT_SUFFIX: &str = ".wal";

/// Where one entry's encoded bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPos {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// One entry as replay found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayedEntry {
    pub index: u64,
    pub term: u64,
    pub pos: EntryPos,
}

/// One record as replay found it, in log order.
#[derive(Debug, Clone)]
pub struct ReplayedRecord {
    pub epoch: u64,
    pub entries: Vec<ReplayedEntry>,
}

/// A shard's entries in one segment: `first..=last` of `epoch` (the lowest first index any of
/// its records there had, the last index of its last record there).
#[derive(Debug, Clone, Copy)]
struct Run {
    segment: u64,
    epoch: u64,
    first: u64,
    last: u64,
}

/// A shard's log truncated through `index` in `epoch` (an epoch above the runs' means a
/// snapshot replaced them all), written to the engine before it was announced.
#[derive(Debug, Clone, Copy)]
pub struct Truncation {
    shard: u32,
    epoch: u64,
    index: u64,
}

/// Appended bytes not yet written: `bytes` go at `offset` of `segment`.
struct Chunk {
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
}

struct SegmentFile {
    file: Arc<File>,
    /// Bytes written and synced (a reader may read below this).
    durable: u64,
}

struct Inner {
    /// The segment appends go to, and the bytes assigned in it so far.
    current: u64,
    current_len: u64,
    pending: Vec<Chunk>,
    segments: BTreeMap<u64, SegmentFile>,
    runs: HashMap<u32, VecDeque<Run>>,
    truncations: Vec<Truncation>,
    replayed: HashMap<u32, Vec<ReplayedRecord>>,
}

/// A node's raft write-ahead log (see the module documentation).
pub struct RaftWal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Held by [`RaftWal::sync`] while it writes and syncs: a reader whose bytes are in that
    /// round (neither pending nor durable) waits for it.
    round: Mutex<()>,
    /// False only in simulations, whose crashes copy the bytes counted durable (see
    /// [`RaftWal::crash_copy`]) and need no disk to make them so.
    fsync: bool,
    /// Where a segment is closed: [`SEGMENT_BYTES`] unless set by [`RaftWal::with_segment_bytes`].
    segment_bytes: u64,
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StorageError {
    StorageError::Corrupt { key: what.into(), reason: reason.to_string() }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the records of one segment's bytes; returns them with the length of the valid
/// prefix (shorter than `bytes` if the segment ends in a torn or zeroed record).
fn parse_segment(segment: u64, bytes: &[u8]) -> (Vec<(u32, ReplayedRecord)>, u64) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= RECORD_HEADER_BYTES {
        let len = u32_at(bytes, at) as usize;
        let crc = u32_at(bytes, at + 4);
        let start = at + RECORD_HEADER_BYTES;
        if len < PAYLOAD_HEADER_BYTES || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let (shard, epoch, count) = (u32_at(payload, 0), u64_at(payload, 4), u32_at(payload, 12) as usize);
        let mut entries = Vec::with_capacity(count);
        let mut p = PAYLOAD_HEADER_BYTES;
        let mut valid = true;
        for _ in 0..count {
            if payload.len() - p < ENTRY_HEADER_BYTES {
                valid = false;
                break;
            }
            let (index, term, n) = (u64_at(payload, p), u64_at(payload, p + 8), u32_at(payload, p + 16));
            p += ENTRY_HEADER_BYTES;
            if payload.len() - p < n as usize {
                valid = false;
                break;
            }
            entries.push(ReplayedEntry { index, term, pos: EntryPos { segment, offset: (start + p) as u64, len: n } });
            p += n as usize;
        }
        if !valid || p != payload.len() {
            // A record whose checksum matches but whose contents do not parse was written
            // wrong, not torn: stop here as well, the caller decides whether that is fatal.
            break;
        }
        records.push((shard, ReplayedRecord { epoch, entries }));
        at = start + len;
    }
    (records, at as u64)
}

impl RaftWal {
    /// Opens the log in `dir` (creating it), replaying every segment. A torn record at the end
    /// of the last segment is cut off; an invalid record anywhere else is corruption.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, true)
    }

    /// A log whose syncs write but do not `fdatasync`: for simulations, which crash it with
    /// [`RaftWal::crash_copy`] (thousands of simulated syncs need not wait for a disk).
    pub fn open_for_simulation(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, false)
    }

    fn open_with(dir: &Path, fsync: bool) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(SEGMENT_SUFFIX).and_then(|s| s.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut replayed: HashMap<u32, Vec<ReplayedRecord>> = HashMap::new();
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let bytes = std::fs::read(&path)?;
            let (records, valid) = parse_segment(id, &bytes);
            if valid < bytes.len() as u64 {
                if i + 1 < ids.len() {
                    return Err(corrupt(path.display().to_string(), format!("invalid record at byte {valid} of {} in a closed segment", bytes.len())));
                }
                tracing::warn!(segment = %path.display(), valid_bytes = valid, file_bytes = bytes.len(), "raft log: cutting a torn record off the last segment");
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid)?;
                file.sync_all()?;
            }
            for (shard, record) in records {
                replayed.entry(shard).or_default().push(record);
            }
            let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path)?);
            segments.insert(id, SegmentFile { file, durable: valid });
        }
        if fsync {
            sync_dir(dir)?;
        }
        // Appends never go to a replayed segment: its tail may have been cut.
        let current = ids.last().map_or(1, |last| last + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                current,
                current_len: 0,
                pending: Vec::new(),
                segments,
                runs: HashMap::new(),
                truncations: Vec::new(),
                replayed,
            }),
            round: Mutex::new(()),
            fsync,
            segment_bytes: SEGMENT_BYTES,
        })
    }

    /// Closes segments at `bytes` instead of [`SEGMENT_BYTES`] (the node's
    /// `--raft-log-segment-mb`; tests, to roll segments with little data).
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Whether `shard`'s oldest live entry is in a segment [`RETAINED_SEGMENTS`] or more behind
    /// the one appends go to. A segment is deleted only once no shard has live entries in it,
    /// so such a shard keeps that segment and every later one on disk: a shard that went quiet
    /// before its log reached the compaction bounds would keep the whole log of the node for as
    /// long as it stayed quiet. The replica compacts its log up to its flushed state then.
    pub fn pins_old_segments(&self, shard: u32) -> bool {
        let inner = self.inner();
        inner.runs.get(&shard).and_then(|runs| runs.front()).is_some_and(|run| run.segment + RETAINED_SEGMENTS <= inner.current)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("raft log lock")
    }

    /// The records replay found for `shard`, in log order (taken: a second call gets none).
    pub fn take_replayed(&self, shard: u32) -> Vec<ReplayedRecord> {
        self.inner().replayed.remove(&shard).unwrap_or_default()
    }

    /// Drops what replay found for shards nobody took (no longer hosted here): their segments
    /// become garbage once no hosted shard's entries live in them.
    pub fn forget_untaken(&self) {
        self.inner().replayed.clear();
    }

    /// Tells the log which replayed entries of `shard` are live (`epoch`, ascending indexes),
    /// so their segments are kept.
    pub fn restore(&self, shard: u32, epoch: u64, live: impl IntoIterator<Item = ReplayedEntry>) {
        let mut inner = self.inner();
        let runs = inner.runs.entry(shard).or_default();
        runs.clear();
        for e in live {
            note_run(runs, e.pos.segment, epoch, e.index, e.index);
        }
    }

    /// Appends `entries` (index, term, encoded entry) of `shard` as one record and returns
    /// where each entry's bytes will be. Nothing is written until the next [`RaftWal::sync`].
    pub fn append(&self, shard: u32, epoch: u64, entries: &[(u64, u64, &[u8])]) -> Vec<EntryPos> {
        let Some(&(first, _, _)) = entries.first() else { return Vec::new() };
        let last = entries.last().expect("not empty").0;
        let payload_len = PAYLOAD_HEADER_BYTES + entries.iter().map(|(_, _, b)| ENTRY_HEADER_BYTES + b.len()).sum::<usize>();
        let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload_len);
        record.extend_from_slice(&u32::try_from(payload_len).expect("a raft record under 4 GiB").to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&shard.to_le_bytes());
        record.extend_from_slice(&epoch.to_le_bytes());
        record.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        let mut offsets = Vec::with_capacity(entries.len());
        for &(index, term, bytes) in entries {
            record.extend_from_slice(&index.to_le_bytes());
            record.extend_from_slice(&term.to_le_bytes());
            record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            offsets.push((record.len() as u64, bytes.len() as u32));
            record.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&record[RECORD_HEADER_BYTES..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());

        let mut inner = self.inner();
        if inner.current_len > 0 && inner.current_len + record.len() as u64 > self.segment_bytes {
            inner.current += 1;
            inner.current_len = 0;
        }
        let (segment, base) = (inner.current, inner.current_len);
        inner.current_len += record.len() as u64;
        match inner.pending.last_mut() {
            Some(chunk) if chunk.segment == segment => chunk.bytes.extend_from_slice(&record),
            _ => inner.pending.push(Chunk { segment, offset: base, bytes: record }),
        }
        note_run(inner.runs.entry(shard).or_default(), segment, epoch, first, last);
        offsets.into_iter().map(|(at, len)| EntryPos { segment, offset: base + at, len }).collect()
    }

    /// Reads one entry's encoded bytes back.
    pub fn read(&self, pos: EntryPos) -> Result<Vec<u8>, StorageError> {
        let (start, end) = (pos.offset, pos.offset + u64::from(pos.len));
        // Twice at most: bytes neither pending nor durable are in the sync round in progress,
        // and are durable once it ends.
        for _ in 0..2 {
            let file = {
                let inner = self.inner();
                if let Some(chunk) = inner.pending.iter().find(|c| c.segment == pos.segment && c.offset <= start && end <= c.offset + c.bytes.len() as u64) {
                    let at = (start - chunk.offset) as usize;
                    return Ok(chunk.bytes[at..at + pos.len as usize].to_vec());
                }
                match inner.segments.get(&pos.segment) {
                    Some(seg) if end <= seg.durable => Some(seg.file.clone()),
                    _ => None,
                }
            };
            match file {
                Some(file) => {
                    let mut buf = vec![0; pos.len as usize];
                    file.read_exact_at(&mut buf, start)?;
                    return Ok(buf);
                }
                None => drop(self.round.lock().expect("raft log round lock")),
            }
        }
        Err(corrupt(format!("raft log segment {}", pos.segment), format!("no entry at bytes {start}..{end}")))
    }

    /// Records that `shard`'s log was truncated through `index` in `epoch` (a new epoch: a
    /// snapshot replaced it), once that is written to the engine. Its segments are released
    /// by a later [`sync_round`], whose engine sync makes the truncation durable first.
    pub fn truncated(&self, shard: u32, epoch: u64, index: u64) {
        self.inner().truncations.push(Truncation { shard, epoch, index });
    }

    /// Writes everything appended so far and makes it durable (one `pwrite` per segment
    /// touched and an `fdatasync`; a segment left behind by rotation is synced before the
    /// next one is written).
    pub fn sync(&self) -> Result<(), StorageError> {
        let _round = self.round.lock().expect("raft log round lock");
        let (chunks, mut files) = {
            let mut inner = self.inner();
            let chunks = std::mem::take(&mut inner.pending);
            let files: HashMap<u64, Arc<File>> = chunks
                .iter()
                .filter_map(|c| inner.segments.get(&c.segment).map(|s| (c.segment, s.file.clone())))
                .collect();
            (chunks, files)
        };
        if chunks.is_empty() {
            return Ok(());
        }
        let mut written: Vec<(u64, u64)> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let file = match files.get(&chunk.segment) {
                Some(file) => file.clone(),
                None => {
                    let path = segment_path(&self.dir, chunk.segment);
                    let file = Arc::new(OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?);
                    if self.fsync {
                        sync_dir(&self.dir)?;
                    }
                    files.insert(chunk.segment, file.clone());
                    file
                }
            };
            file.write_all_at(&chunk.bytes, chunk.offset)?;
            let last_of_segment = chunks.get(i + 1).is_none_or(|next| next.segment != chunk.segment);
            if last_of_segment && self.fsync {
                file.sync_data()?;
            }
            written.push((chunk.segment, chunk.offset + chunk.bytes.len() as u64));
        }
        let mut inner = self.inner();
        for (segment, end) in written {
            let file = files[&segment].clone();
            let seg = inner.segments.entry(segment).or_insert(SegmentFile { file, durable: 0 });
            seg.durable = seg.durable.max(end);
        }
        Ok(())
    }

    /// Takes the truncations announced so far: a [`sync_round`] applies them once the engine
    /// sync that follows has made them durable.
    fn take_truncations(&self) -> Vec<Truncation> {
        std::mem::take(&mut self.inner().truncations)
    }

    /// Forgets the entries the (now durable) truncations dropped and deletes every segment
    /// no live entry is in any more. Returns how many segments were deleted.
    fn release(&self, truncations: Vec<Truncation>) -> Result<usize, StorageError> {
        let doomed: Vec<u64> = {
            let mut inner = self.inner();
            for t in truncations {
                if let Some(runs) = inner.runs.get_mut(&t.shard) {
                    release_runs(runs, t);
                }
            }
            let oldest_live = inner.runs.values().filter_map(|runs| runs.front().map(|r| r.segment)).min();
            let keep_from = oldest_live.unwrap_or(inner.current).min(inner.current);
            let doomed: Vec<u64> = inner.segments.range(..keep_from).map(|(&id, _)| id).collect();
            for id in &doomed {
                inner.segments.remove(id);
            }
            doomed
        };
        for id in &doomed {
            std::fs::remove_file(segment_path(&self.dir, *id))?;
        }
        Ok(doomed.len())
    }

    /// Segment files on disk (for tests).
    pub fn segment_count(&self) -> usize {
        self.disk_usage().0
    }

    /// Segment files on disk and the bytes written to them (for status).
    pub fn disk_usage(&self) -> (usize, u64) {
        let inner = self.inner();
        (inner.segments.len(), inner.segments.values().map(|s| s.durable).sum())
    }

    /// What a crash would leave in `to`: the durable bytes of every segment, none of the
    /// appends not yet synced. For the simulation and tests.
    pub fn crash_copy(&self, to: &Path) -> Result<RaftWal, StorageError> {
        let _round = self.round.lock().expect("raft log round lock");
        std::fs::create_dir_all(to)?;
        let segments: Vec<(u64, Arc<File>, u64)> = self.inner().segments.iter().map(|(&id, s)| (id, s.file.clone(), s.durable)).collect();
        for (id, file, durable) in segments {
            let mut bytes = vec![0; durable as usize];
            file.read_exact_at(&mut bytes, 0)?;
            std::fs::write(segment_path(to, id), bytes)?;
        }
        RaftWal::open_with(to, self.fsync).map(|wal| wal.with_segment_bytes(self.segment_bytes))
    }
}

/// Notes that `shard` has entries `first..=last` of `epoch` in `segment` (a record or a
/// replayed entry); a record overwriting earlier indexes lowers the run's first index.
fn note_run(runs: &mut VecDeque<Run>, segment: u64, epoch: u64, first: u64, last: u64) {
    match runs.back_mut() {
        Some(run) if run.segment == segment && run.epoch == epoch => {
            run.first = run.first.min(first);
            run.last = last;
        }
        _ => runs.push_back(Run { segment, epoch, first, last }),
    }
}

/// Drops the runs a durable truncation made dead: every run of an older epoch, and every run
/// whose entries are all at or below the truncation or overwritten by a later run.
fn release_runs(runs: &mut VecDeque<Run>, t: Truncation) {
    while runs.front().is_some_and(|r| r.epoch < t.epoch) {
        runs.pop_front();
    }
    while let Some(front) = runs.front() {
        if front.epoch != t.epoch {
            break;
        }
        // A later run starting at or below the truncation point + 1 overwrote (or continues)
        // everything of the front run above the truncation.
        let superseded = runs.get(1).is_some_and(|next| next.epoch == t.epoch && next.first <= t.index + 1);
        let all_truncated = runs.len() == 1 && front.last <= t.index;
        if superseded || all_truncated {
            runs.pop_front();
        } else {
            break;
        }
    }
}

/// One group commit of a node: the raft log and the engine made durable, then the raft log's
/// segments released that truncations durable in this round no longer need. The truncations
/// are taken before the engine syncs, so each was written to the engine before that sync.
pub fn sync_round(wal: &RaftWal, engine: &dyn crate::storage::Engine) -> Result<(), StorageError> {
    let truncations = wal.take_truncations();
    wal.sync()?;
    engine.sync()?;
    let deleted = wal.release(truncations)?;
    if deleted > 0 {
        tracing::debug!(deleted, "raft log: segments released");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_bytes(index: u64) -> Vec<u8> {
        format!("entry {index}").into_bytes().repeat(3)
    }

    fn append(wal: &RaftWal, shard: u32, epoch: u64, range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<EntryPos> {
        let bytes: Vec<(u64, Vec<u8>)> = range.map(|i| (i, entry_bytes(i))).collect();
        let entries: Vec<(u64, u64, &[u8])> = bytes.iter().map(|(i, b)| (*i, term, b.as_slice())).collect();
        wal.append(shard, epoch, &entries)
    }

    fn indexes(records: &[ReplayedRecord]) -> Vec<(u64, Vec<u64>)> {
        records.iter().map(|r| (r.epoch, r.entries.iter().map(|e| e.index).collect())).collect()
    }

    #[test]
    fn appends_are_readable_before_and_after_sync_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = RaftWal::open(dir.path()).unwrap();
        let a = append(&wal, 1, 0, 1..=3, 1);
        let b = append(&wal, 2, 0, 1..=2, 1);
        assert_eq!(wal.read(a[1]).unwrap(), entry_bytes(2), "read from the pending buffer");
        wal.sync().unwrap();
        assert_eq!(wal.read(a[2]).unwrap(), entry_bytes(3), "read from the file");
        assert_eq!(wal.read(b[0]).unwrap(), entry_bytes(1));
        append(&wal, 1, 0, 3..=4, 2);
        wal.sync().unwrap();
        drop(wal);

        let wal = RaftWal::open(dir.path()).unwrap();
        let one = wal.take_replayed(1);
        assert_eq!(indexes(&one), vec![(0, vec![1, 2, 3]), (0, vec![3, 4])]);
        assert_eq!(one[1].entries[0].term, 2);
        assert_eq!(wal.read(one[1].entries[1].pos).unwrap(), entry_bytes(4));
        assert_eq!(indexes(&wal.take_replayed(2)), vec![(0, vec![1, 2])]);
        assert!(wal.take_replayed(2).is_empty(), "taken once");
        // Appends after a restart go to a new segment.
        let c = append(&wal, 1, 0, 5..=5, 2);
        assert!(c[0].segment > one[0].entries[0].pos.segment);
    }

    #[test]
    fn unsynced_appends_are_lost_by_a_crash_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let wal = RaftWal::open(dir.path()).unwrap();
        append(&wal, 1, 0, 1..=2, 1);
        wal.sync().unwrap();
        append(&wal, 1, 0, 3..=3, 1);
        let crashed_dir = tempfile::tempdir().unwrap();
        let crashed = wal.crash_copy(crashed_dir.path()).unwrap();
        assert_eq!(indexes(&crashed.take_replayed(1)), vec![(0, vec![1, 2])]);

        wal.sync().unwrap();
        drop(wal);
        // Tear the last record: replay keeps the records before it and cuts the file.
        let path = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let wal = RaftWal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal.take_replayed(1)), vec![(0, vec![1, 2])]);
        let cut = std::fs::metadata(&path).unwrap().len();
        assert!(cut < len - 3, "the torn record is cut off ({cut} of {len} bytes)");

        // A flipped byte in a closed segment is corruption, not a torn tail.
        drop(wal);
        let wal = RaftWal::open(dir.path()).unwrap();
        append(&wal, 1, 0, 3..=3, 1);
        wal.sync().unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD_HEADER_BYTES + 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(RaftWal::open(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn a_quiet_shard_pins_the_segments_from_its_oldest_entry_on() {
        let dir = tempfile::tempdir().unwrap();
        let wal = RaftWal::open(dir.path()).unwrap().with_segment_bytes(1_024);
        let engine = crate::storage::MemEngine::new();
        append(&wal, 1, 0, 1..=2, 1);
        // Shard 2's records do not fit beside another: one segment each, from segment 2 on.
        let entry = vec![0u8; 900];
        let mut written = 0;
        while !wal.pins_old_segments(1) {
            written += 1;
            assert_eq!(wal.append(2, 0, &[(written, 1, entry.as_slice())])[0].segment, 1 + written);
        }
        assert_eq!(written, RETAINED_SEGMENTS, "pinned once its segment is that far behind");
        assert!(!wal.pins_old_segments(2));
        sync_round(&wal, &engine).unwrap();
        let segments = wal.segment_count();
        wal.truncated(2, 0, written - 1);
        sync_round(&wal, &engine).unwrap();
        assert_eq!(wal.segment_count(), segments, "shard 1's entries keep segment 1, and so every later one");
        wal.truncated(1, 0, 2);
        sync_round(&wal, &engine).unwrap();
        assert_eq!(wal.segment_count(), 1, "only the segment of shard 2's live entry is left");
        assert!(!wal.pins_old_segments(1));
    }

    #[test]
    fn a_segment_is_deleted_once_every_shard_truncated_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = RaftWal::open(dir.path()).unwrap();
        let engine = crate::storage::MemEngine::new();
        let big = vec![7u8; (SEGMENT_BYTES / 3) as usize - 64];
        let mut next = [1u64, 1u64];
        let mut push = |wal: &RaftWal, shard: u32| {
            let i = next[shard as usize];
            next[shard as usize] += 1;
            wal.append(shard, 0, &[(i, 1, big.as_slice())])[0]
        };
        // Segment 1: shard 0 entries 1-2, shard 1 entry 1; segment 2: shard 0 entry 3 ...
        let p = [push(&wal, 0), push(&wal, 0), push(&wal, 1), push(&wal, 0), push(&wal, 1)];
        assert_eq!(p.iter().map(|p| p.segment).collect::<Vec<_>>(), vec![1, 1, 1, 2, 2]);
        sync_round(&wal, &engine).unwrap();
        assert_eq!(wal.segment_count(), 2);
        wal.truncated(0, 0, 2);
        sync_round(&wal, &engine).unwrap();
        assert_eq!(wal.segment_count(), 2, "shard 1's entry 1 is still live in segment 1");
        wal.truncated(1, 0, 1);
        // Announced but not yet made durable by a round: nothing is deleted.
        assert_eq!(wal.segment_count(), 2);
        sync_round(&wal, &engine).unwrap();
        assert_eq!(wal.segment_count(), 1);
        assert!(!segment_path(dir.path(), 1).exists());
        assert_eq!(wal.read(p[3]).unwrap(), big);
        // A snapshot (a new epoch) releases everything of the old one.
        wal.truncated(0, 1, 100);
        wal.truncated(1, 1, 100);
        let new = wal.append(0, 1, &[(101, 3, big.as_slice())])[0];
        sync_round(&wal, &engine).unwrap();
        assert_eq!((new.segment, wal.segment_count()), (2, 1), "segment 2 holds only the new epoch's entry");
        wal.append(0, 1, &[(102, 3, big.as_slice())]);
        let later = wal.append(0, 1, &[(103, 3, big.as_slice())])[0];
        assert_eq!(later.segment, 3);
        wal.truncated(0, 1, 102);
        sync_round(&wal, &engine).unwrap();
        assert!(!segment_path(dir.path(), 2).exists());
        assert_eq!(wal.read(later).unwrap(), big);
    }

    #[test]
    fn an_overwritten_tail_does_not_keep_its_segment() {
        let mut runs = VecDeque::new();
        note_run(&mut runs, 1, 0, 1, 10);
        note_run(&mut runs, 2, 0, 6, 8); // a new leader replaced 6..=10 with 6..=8
        release_runs(&mut runs, Truncation { shard: 0, epoch: 0, index: 5 });
        assert_eq!(runs.iter().map(|r| r.segment).collect::<Vec<_>>(), vec![2]);
        release_runs(&mut runs, Truncation { shard: 0, epoch: 0, index: 7 });
        assert_eq!(runs.len(), 1, "entry 8 is still live");
        release_runs(&mut runs, Truncation { shard: 0, epoch: 0, index: 8 });
        assert!(runs.is_empty());
    }
}
