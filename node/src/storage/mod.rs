//! The node's storage engine, behind a trait: the raft log and the ledger state never name sled.
//!
//! One engine holds every shard of the node, so that one `sync` (one fsync) makes the work of
//! many shards durable at once: that is the group commit.

mod engine;
mod mem;
mod sled_engine;

#[cfg(test)]
mod conformance;

pub use engine::{prefix_end, Engine, SharedEngine, StorageError, WriteBatch, WriteOp};
pub use mem::MemEngine;
pub use sled_engine::SledEngine;
