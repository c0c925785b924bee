//! What the state machine may know besides the store and the command: it comes from the raft
//! entry, never from the replica's clock.

/// The raft entry a command was committed in.
#[derive(Clone, Copy, Debug)]
pub struct EntryContext {
    /// The shard applying the command.
    pub shard: u32,
    /// Raft log index of the entry.
    pub index: u64,
    /// Position of the command inside the entry (a batch).
    pub position: u32,
    /// The leader's clock when it proposed the entry, ms since the Unix epoch (UTC).
    pub timestamp_ms: u64,
}

/// Milliseconds in a UTC day: daily limits count days since the epoch.
pub const DAY_MS: u64 = 86_400_000;

impl EntryContext {
    /// The transaction id of the command: `tx-{shard}-{index}-{position}`.
    pub fn tx_id(&self) -> String {
        format!("tx-{}-{}-{}", self.shard, self.index, self.position)
    }

    /// The payout id a cash-out in this entry creates: `po-{shard}-{index}-{position}`.
    pub fn payout_id(&self) -> String {
        format!("po-{}-{}-{}", self.shard, self.index, self.position)
    }
}
