//! The node's key space in its one storage engine. Every shard's data sits under its own
//! prefix so that one engine (and one fsync) serves all shards.
//!
//! ```text
//! R {shard:u32be} e {index:u64be}   raft log entry (before format 9; now in `raftlog/wal.rs`)
//! R {shard:u32be} h                 raft hard state
//! R {shard:u32be} c                 raft conf state
//! R {shard:u32be} t                 truncated log state (index, term, epoch) after compaction
//! A {shard:u32be}                   applied index (written with the ledger changes it covers)
//! L {shard:u32be} {ledger key}      ledger state, see coinledger_ledger's key layout
//! N meta                            node identity and layout, checked at every start
//! N format                          storage format (u32 be), checked at every start
//! N raftlog-moved                   the upgrade to format 9 moved the raft entries out
//! ```

pub const NODE_META: &[u8] = b"Nmeta";
/// The storage format the data directory was written in (absent: format 1).
pub const STORAGE_FORMAT: &[u8] = b"Nformat";
/// Written with the deletion of the engine's raft entries once the upgrade to format 9 has
/// copied them into the raft log (and synced it); removed when the upgrade completes.
pub const RAFT_LOG_MOVED: &[u8] = b"Nraftlog-moved";

fn shard_key(tag: u8, shard: u32, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + suffix.len());
    key.push(tag);
    key.extend_from_slice(&shard.to_be_bytes());
    key.extend_from_slice(suffix);
    key
}

pub fn raft_entry(shard: u32, index: u64) -> Vec<u8> {
    let mut key = shard_key(b'R', shard, b"e");
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The range end that covers raft entries up to and including `u64::MAX`.
pub fn raft_entries_end(shard: u32) -> Vec<u8> {
    shard_key(b'R', shard, b"f")
}

pub fn raft_entry_index(key: &[u8]) -> u64 {
    let bytes: [u8; 8] = key[key.len() - 8..].try_into().expect("raft entry key has an index");
    u64::from_be_bytes(bytes)
}

pub fn hard_state(shard: u32) -> Vec<u8> {
    shard_key(b'R', shard, b"h")
}

pub fn conf_state(shard: u32) -> Vec<u8> {
    shard_key(b'R', shard, b"c")
}

pub fn truncated_state(shard: u32) -> Vec<u8> {
    shard_key(b'R', shard, b"t")
}

pub fn applied_index(shard: u32) -> Vec<u8> {
    shard_key(b'A', shard, b"")
}

pub fn ledger_prefix(shard: u32) -> Vec<u8> {
    shard_key(b'L', shard, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_entry_keys_sort_by_shard_then_index() {
        assert!(raft_entry(1, 255) < raft_entry(1, 256));
        assert!(raft_entry(1, u64::MAX) < raft_entry(2, 0));
        assert!(raft_entry(1, u64::MAX) < raft_entries_end(1));
        assert!(hard_state(1) > raft_entry(1, u64::MAX));
        assert_eq!(raft_entry_index(&raft_entry(7, 42)), 42);
    }
}
