//! One shard replica: the raft-rs group member and its slice of the ledger.
//!
//! `replica.rs` is the logic (raft driving, batching, apply, replies) with no actor types:
//! inputs are method calls, outputs are returned as [`replica::Output`]. `actor.rs` is the thin
//! actix adapter that feeds it messages, ticks and fsync completions. `entry.rs` is the format
//! of a raft entry; `store.rs` adapts the storage engine to the ledger's `Store`, `lz4.rs`
//! is how it compresses long records.

pub mod actor;
pub mod entry;
pub mod lz4;
pub mod msg;
pub mod replica;
pub mod request_pages;
pub mod store;

pub use actor::ShardActor;
pub use msg::{ReadAnswer, ReadQuery, ShardMsg, ShardStatus};
