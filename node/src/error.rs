//! The node layer's error: a ledger (business) error, or a reason the command's outcome is
//! not known here (not leader, unavailable, timeout), or a fatal fault. `api::status` is the
//! one place that maps it to a gRPC status.

use crate::ledger::LedgerError;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum NodeError {
    /// A definite answer from the state machine (or stateless validation).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// This node does not lead the shard; the leader's id and gRPC address, if known.
    #[error("node does not lead shard {shard}")]
    NotLeader { shard: u32, leader_id: Option<u64>, leader_hint: Option<String> },
    /// Retry: an election is running, a queue is full, or leadership moved mid-flight.
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed: the command may or may not have been applied.
    #[error("deadline passed before the outcome was known: retry with the same request id")]
    Timeout,
    /// A bug or a storage failure.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type NodeResult<T> = Result<T, NodeError>;
