//! The payload of a normal raft entry: a batch of ledger commands and the leader's clock.
//! Every replica applies the batch with the same timestamp, so nothing the state machine does
//! depends on the replica's own clock.

use serde::{Deserialize, Serialize};

use crate::ledger::Command;

/// Largest encoded entry a shard proposes. Keeps sled records far from its blob threshold
/// and bounds the work one apply round does.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Most commands in one entry (TigerBeetle-style batch bound; SubmitBatch's limit too).
pub const MAX_ENTRY_COMMANDS: usize = 8_192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryBatch {
    /// Milliseconds since the Unix epoch (UTC), never decreasing within a shard.
    pub timestamp_ms: u64,
    pub commands: Vec<Command>,
}

impl EntryBatch {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encode entry batch")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Encoded size of one command, to cut batches below [`MAX_ENTRY_BYTES`].
pub fn command_bytes(cmd: &Command) -> usize {
    postcard::experimental::serialized_size(cmd).unwrap_or(MAX_ENTRY_BYTES)
}
