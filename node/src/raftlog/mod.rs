//! Raft persistence for one shard replica: the log, hard state and conf state in the node's
//! storage engine, behind raft-rs's `Storage` trait. Pure logic over the `Engine` trait: no
//! actor types here.

mod log_bytes;
mod logger;
pub mod snapshot;
mod storage;
pub mod wal;

pub use log_bytes::LogBytes;
pub use logger::raft_logger;
pub use storage::{entry_cache_bytes, ShardStorage};
pub use wal::{sync_round, RaftWal};
