//! Node-to-node traffic: raft messages on one long-lived stream per peer (`link`), and
//! forwarded proposals and reads to a shard's leader (`forward`). `service` is the receiving
//! side of both.

pub mod forward;
pub mod link;
pub mod service;

pub use forward::{PeerReply, PeerRequest, Peers};
pub use link::RaftLinks;
