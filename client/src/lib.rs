//! Typed async client for coinledger.
//!
//! The client hides the cluster: give it any nodes' endpoints and it finds the leader of the
//! shard a request belongs to (NOT_LEADER answers carry a hint), retries what can be retried
//! with the SAME request id (so nothing is applied twice), and returns typed errors whose
//! `code` is the stable [`proto::ErrorCode`].
//!
//! ```no_run
//! use coinledger_client::{Client, ClientConfig, proto};
//!
//! # async fn run() -> Result<(), coinledger_client::ClientError> {
//! let client = Client::connect(ClientConfig::from_endpoints("127.0.0.1:7001,127.0.0.1:7002")?)?;
//! let reply = client
//!     .purchase(proto::PurchaseRequest {
//!         request_id: Client::new_request_id(), // or leave empty: the client fills it
//!         account: "alice".into(),
//!         paid: Some(proto::Money { amount: "9.99".into(), currency: "USD".into() }),
//!         payment_ref: "psp-123".into(),
//!     })
//!     .await?;
//! println!("+{} coins", reply.coins_credited);
//! # Ok(()) }
//! ```
//!
//! Files: `config.rs` (endpoints, timings), `error.rs` (status → [`ClientError`]),
//! `retry.rs` (decision table, backoff), `client.rs` (channels, the retry loop),
//! `ops.rs` (one method per RPC), `request_id.rs` (idempotency ids), `batch.rs`
//! (`submit_batch`: many commands, per-command retries), `batcher.rs` (opt-in automatic
//! batching of concurrent calls, [`ClientConfig::batching`]), `route.rs` (shard-aware
//! routing: each call starts at its home shard's leader, [`ClientConfig::routing`]),
//! `workload.rs` (the load generator's workloads and ids, shared by `coinctl bench` and the
//! node's in-process cost harness), `testing.rs` (feature `testing`: a TCP proxy that goes
//! silent, for keepalive tests of the client and the node).

pub mod proto {
    //! Code generated from ledger.proto and admin.proto (messages, clients, and servers for
    //! tests).
    tonic::include_proto!("coinledger.v1");
}

mod batch;
#[cfg(feature = "testing")]
pub mod testing;
mod batcher;
mod client;
mod config;
mod error;
mod ops;
mod request_id;
mod retry;
mod route;
pub mod workload;

pub use batch::{fill_command_request_id, BatchOutcome, BATCH_COMMANDS_MAX};
pub use batcher::{BatchConfig, LANE_SEATS_MAX, LINGER_US_MAX};
pub use client::{Client, ATTEMPTS_MAX};
pub use config::{normalize_endpoint, ClientConfig, ENDPOINTS_MAX};
pub use error::{ClientError, ERROR_CODE_TRAILER};
pub use request_id::{new_request_id, WithRequestId, REQUEST_ID_LEN};
pub use route::{RouteKey, Routed, TOPOLOGY_REFRESH_MS};
