//! Node-to-node traffic, on two long-lived streams per ordered pair of nodes: raft messages
//! (`link`), and proposals and reads forwarded to a shard's leader (`forward`). `service` is
//! the receiving side of both.

pub mod forward;
pub mod link;
pub mod service;

pub use forward::{PeerReply, PeerRequest, Peers};
pub use link::RaftLinks;
