//! Everything a shard replica can be asked: one enum, one handler.

use raft::prelude::Message as RaftMessage;
use tokio::sync::oneshot;

use crate::error::NodeResult;
use crate::ledger::{self, Account, Applied, Command, EffectResult, HistoryEntry, Payout, RateCard};

/// Where a proposal's outcome goes once its entry is applied (or fails).
pub type ProposeReply = oneshot::Sender<NodeResult<Applied>>;
pub type ReadReply = oneshot::Sender<NodeResult<ReadAnswer>>;

/// Linearizable queries: served after a ReadIndex round confirms leadership and the replica
/// has applied up to the read index.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ReadQuery {
    Account(String),
    History { account: String, limit: u32, cursor: Option<ledger::HistoryCursor> },
    Rates,
    Payout(String),
    PendingEffects,
    EffectResult(String),
    Audit,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ReadAnswer {
    Account(Option<Account>),
    History { entries: Vec<HistoryEntry>, next_cursor: Option<ledger::HistoryCursor> },
    Rates(RateCard),
    Payout(Option<Payout>),
    PendingEffects(Vec<ledger::Effect>),
    EffectResult(Option<EffectResult>),
    Audit(ledger::ShardAudit),
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardStatus {
    pub shard: u32,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub role: String,
    pub voters: Vec<u64>,
    pub pending_proposals: usize,
    /// Snapshots this replica installed since it started.
    pub snapshots_installed: u64,
}

pub enum ShardMsg {
    Propose { cmd: Command, reply: ProposeReply },
    /// Many proposals in one message (a client's batch, or effects bound for this shard).
    ProposeMany { proposals: Vec<(Command, ProposeReply)> },
    Read { query: ReadQuery, reply: ReadReply },
    /// A raft message from a peer replica of this shard.
    Raft(Box<RaftMessage>),
    /// The group-commit fsync covering Ready `number` (and every earlier one) completed.
    Persisted { number: u64 },
    /// The fsync failed: the replica stops accepting writes.
    PersistFailed { error: String },
    Status { reply: oneshot::Sender<ShardStatus> },
    /// The node is stopping: hand leadership to a caught-up follower. Answers whether a
    /// transfer started.
    HandOff { reply: oneshot::Sender<bool> },
    /// The node is stopping: write the cached state to the engine, so the next start does
    /// not re-apply the entries since the last flush.
    FlushState { reply: oneshot::Sender<()> },
}

impl actix::Message for ShardMsg {
    type Result = ();
}
