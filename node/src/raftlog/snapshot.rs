//! A shard replica's snapshot: its whole ledger state at its applied index. Sent by raft to a
//! follower whose needed log entries were compacted away (a replica that fell far behind, or
//! whose data directory was wiped), and installed there in one atomic engine write.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::storage::{prefix_end, Engine, StorageError, WriteBatch};

/// Format version of [`SnapshotData`], checked when installing. Format 2 carries the records
/// as storage format 10 stores them (long request pages, accounts and history pages
/// compressed), which a build of format 1 cannot read, so it refuses them; format 3 carries
/// them as storage format 11 does (full history pages under seal numbers, named by their
/// account's record), which a build of format 2 cannot read. Snapshots of formats 1 and 2
/// install here as they are: this build reads both layouts.
const SNAPSHOT_FORMAT: u32 = 3;
/// The oldest snapshot format this build installs.
const OLDEST_SNAPSHOT_FORMAT: u32 = 1;
/// Ledger pairs read per engine scan while building a snapshot.
const SCAN_CHUNK: usize = 4_096;

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotData {
    pub format: u32,
    pub applied_index: u64,
    /// Ledger keys relative to the shard's prefix, ascending, with their values.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn read_applied_index(engine: &dyn Engine, shard: u32) -> Result<u64, StorageError> {
    match engine.get(&keys::applied_index(shard))? {
        None => Ok(0),
        Some(b) => Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| StorageError::Corrupt {
            key: format!("applied index of shard {shard}"),
            reason: format!("{} bytes", b.len()),
        })?)),
    }
}

/// The shard's ledger state and the index it reflects. Called on the replica's own thread,
/// so no apply runs concurrently: state and index are consistent.
pub fn build(engine: &dyn Engine, shard: u32) -> Result<SnapshotData, StorageError> {
    let applied_index = read_applied_index(engine, shard)?;
    let prefix = keys::ledger_prefix(shard);
    let end = prefix_end(&prefix).expect("ledger prefix has an end");
    let mut pairs = Vec::new();
    let mut start = prefix.clone();
    loop {
        let chunk = engine.scan(&start, &end, SCAN_CHUNK, false)?;
        let full = chunk.len() == SCAN_CHUNK;
        if let Some((last, _)) = chunk.last() {
            let mut next = last.clone();
            next.push(0);
            start = next;
        }
        pairs.extend(chunk.into_iter().map(|(k, v)| (k[prefix.len()..].to_vec(), v)));
        if !full {
            break;
        }
    }
    Ok(SnapshotData { format: SNAPSHOT_FORMAT, applied_index, pairs })
}

pub fn encode(data: &SnapshotData) -> Vec<u8> {
    postcard::to_stdvec(data).expect("encode snapshot")
}

/// Replaces the shard's ledger state with the snapshot's, and its applied index, in `batch`.
pub fn install(bytes: &[u8], shard: u32, snapshot_index: u64, batch: &mut WriteBatch) -> Result<(), StorageError> {
    let data: SnapshotData = postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt {
        key: format!("snapshot of shard {shard}"),
        reason: e.to_string(),
    })?;
    if !(OLDEST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&data.format) || data.applied_index != snapshot_index {
        return Err(StorageError::Corrupt {
            key: format!("snapshot of shard {shard}"),
            reason: format!(
                "format {} at index {}, expected format {OLDEST_SNAPSHOT_FORMAT} to {SNAPSHOT_FORMAT} at {snapshot_index}",
                data.format, data.applied_index
            ),
        });
    }
    let prefix = keys::ledger_prefix(shard);
    batch.delete_range(prefix.clone(), prefix_end(&prefix).expect("ledger prefix has an end"));
    for (key, value) in data.pairs {
        let mut full = prefix.clone();
        full.extend_from_slice(&key);
        batch.put(full, value);
    }
    batch.put(keys::applied_index(shard), snapshot_index.to_be_bytes().to_vec());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemEngine;

    #[test]
    fn build_then_install_reproduces_the_shard_state_exactly() {
        let source = MemEngine::new();
        let mut b = WriteBatch::default();
        for i in 0..10_000u32 {
            let mut k = keys::ledger_prefix(2);
            k.extend_from_slice(format!("acct/{i:05}").as_bytes());
            b.put(k, i.to_be_bytes().to_vec());
        }
        b.put(keys::applied_index(2), 77u64.to_be_bytes().to_vec());
        b.put(keys::ledger_prefix(3), b"other shard".to_vec());
        source.write(b).unwrap();
        let data = build(&source, 2).unwrap();
        assert_eq!((data.applied_index, data.pairs.len()), (77, 10_000));

        let target = MemEngine::new();
        let mut stale = WriteBatch::default();
        let mut k = keys::ledger_prefix(2);
        k.extend_from_slice(b"stale");
        stale.put(k.clone(), b"x".to_vec());
        target.write(stale).unwrap();
        let mut b = WriteBatch::default();
        install(&encode(&data), 2, 77, &mut b).unwrap();
        target.write(b).unwrap();
        assert_eq!(target.get(&k).unwrap(), None, "state not in the snapshot is gone");
        let rebuilt = build(&target, 2).unwrap();
        assert_eq!(rebuilt.pairs, data.pairs);
        assert_eq!(rebuilt.applied_index, 77);
        let mut b = WriteBatch::default();
        assert!(install(&encode(&data), 2, 78, &mut b).is_err(), "index mismatch is refused");
    }

    #[test]
    fn snapshots_of_earlier_formats_install_and_unknown_formats_are_refused() {
        let pairs = vec![(b"acct/a".to_vec(), b"1".to_vec())];
        for (format, installs) in [(0, false), (1, true), (2, true), (3, true), (4, false)] {
            let data = SnapshotData { format, applied_index: 5, pairs: pairs.clone() };
            let mut b = WriteBatch::default();
            assert_eq!(install(&encode(&data), 4, 5, &mut b).is_ok(), installs, "snapshot format {format}");
        }
        assert_eq!(build(&MemEngine::new(), 4).unwrap().format, SNAPSHOT_FORMAT);
    }
}
