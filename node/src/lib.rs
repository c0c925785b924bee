//! coinledger node: a sharded, Raft-replicated virtual-currency ledger.
//!
//! Request path: gRPC (`api`) → `router` (shard = hash(routing key) mod S) → the shard's
//! replica actor (`shard`) → raft-rs proposal → entries written to the `storage` engine and
//! fsynced by the group-commit `syncer` → committed → applied by the pure `ledger` → answered.

pub use coinledger_ledger as ledger;

pub mod api;
pub mod call_stream;
pub mod config;
pub mod node;
pub mod placement;

pub mod error;
pub mod keys;
pub mod raftlog;
pub mod router;
pub mod shard;
pub mod sim;
pub mod stats;
pub mod storage;
pub mod syncer;
pub mod transport;

pub mod proto {
    tonic::include_proto!("coinledger.v1");
    pub mod peer {
        tonic::include_proto!("coinledger.peer.v1");
    }
}
