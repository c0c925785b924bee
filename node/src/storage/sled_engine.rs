use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::engine::{Engine, Result, StorageError, WriteBatch, WriteOp};

/// sled's log segments. Items larger than a quarter of a segment become "blob" files, which
/// sled writes without any sync; 8 MiB segments keep every record we write (raft entries are
/// bounded by `MAX_ENTRY_BYTES` in the shard) out of blobs. Blobs are still synced below.
const SEGMENT_BYTES: usize = 8 << 20;

/// sled behind the [`Engine`] trait, with a real fsync.
///
/// sled's `flush()` writes its log buffers with `sync_file_range`, which neither flushes the
/// drive's cache nor the file's metadata, so it is not a durability point on Linux. `sync`
/// therefore flushes, then `fdatasync`s the log file (and any blob files written since).
pub struct SledEngine {
    db: sled::Db,
    log_file: File,
    dir: PathBuf,
    synced_blobs: Mutex<HashSet<PathBuf>>,
    /// Written since the last sync began. Most group commits carry only raft entries (which
    /// go to the raft log): their sync then costs sled nothing, not even an `fdatasync`.
    dirty: AtomicBool,
}

/// Hands the frees this thread deferred to the global epoch collector, which runs them once
/// no reader can still see the memory.
///
/// sled frees a replaced log buffer (a whole `SEGMENT_BYTES` allocation, one per segment
/// written, and a flush at every group commit rolls to the next one soon) through
/// crossbeam-epoch, which keeps up to 64 deferred frees per thread until that thread's bag
/// fills. Once raft entries moved out of sled (storage format 9) few other frees passed
/// through those bags: 25 log buffers, 200 MiB, stayed allocated on a node after 300,000
/// batched gifts (jemalloc heap profile; nodes at 240-390 MiB resident, where format 8 was
/// at 180 MiB). Called after every write and flush: it costs a pin and an empty-bag check.
fn release_deferred_frees() {
    crossbeam_epoch::pin().flush();
}

fn engine_err(e: sled::Error) -> StorageError {
    match e {
        sled::Error::Io(io) => StorageError::Io(io),
        other => StorageError::Engine(other.to_string()),
    }
}

impl SledEngine {
    /// Opens (or creates) the database in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_BYTES)
            .cache_capacity(cache_bytes)
            // Our sync thread flushes at every group commit; sled's own timer would only add
            // writes that nobody waits for.
            .flush_every_ms(None)
            .open()
            .map_err(engine_err)?;
        let log_file = File::open(dir.join("db"))?;
        File::open(dir)?.sync_all()?;
        Ok(Self { db, log_file, dir: dir.to_path_buf(), synced_blobs: Mutex::new(HashSet::new()), dirty: AtomicBool::new(true) })
    }

    fn sync_new_blobs(&self) -> Result<()> {
        let blob_dir = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blob_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut synced = self.synced_blobs.lock().expect("blob set lock");
        let mut any = false;
        for entry in entries {
            let path = entry?.path();
            if !synced.contains(&path) {
                match File::open(&path) {
                    Ok(f) => f.sync_data()?,
                    // sled garbage-collects blobs concurrently.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                synced.insert(path);
                any = true;
            }
        }
        if any {
            File::open(&blob_dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl SledEngine {
    /// The batch as single-key operations in order (value `None`: delete); a range is deleted
    /// key by key, as sled has no range deletion.
    fn for_each_key(&self, batch: WriteBatch, mut op: impl FnMut(sled::IVec, Option<Vec<u8>>) -> Result<()>) -> Result<()> {
        for write in batch.ops {
            match write {
                WriteOp::Put(k, v) => op(k.into(), Some(v))?,
                WriteOp::Delete(k) => op(k.into(), None)?,
                WriteOp::DeleteRange(start, end) => {
                    for key in self.db.range(start..end).keys() {
                        op(key.map_err(engine_err)?, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(engine_err)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let range = self.db.range(start..end);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse { Box::new(range.rev()) } else { Box::new(range) };
        iter.take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine_err))
            .collect()
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut sled_batch = sled::Batch::default();
        self.for_each_key(batch, |key, value| {
            match value {
                Some(v) => sled_batch.insert(key, v),
                None => sled_batch.remove(key),
            }
            Ok(())
        })?;
        self.db.apply_batch(sled_batch).map_err(engine_err)?;
        self.dirty.store(true, Ordering::Release);
        release_deferred_frees();
        Ok(())
    }

    fn write_ordered(&self, batch: WriteBatch) -> Result<()> {
        // Single-key operations join sled's current log buffer; sled's recovery keeps a
        // prefix of its log, so a crash keeps a prefix of these operations.
        self.for_each_key(batch, |key, value| {
            match value {
                Some(v) => self.db.insert(key, v).map(drop),
                None => self.db.remove(key).map(drop),
            }
            .map_err(engine_err)
        })?;
        self.dirty.store(true, Ordering::Release);
        release_deferred_frees();
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // Cleared before the flush: a write during it sets it again for the next sync.
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.db.flush().map_err(engine_err)?;
        release_deferred_frees();
        self.log_file.sync_data()?;
        self.sync_new_blobs()
    }
}
