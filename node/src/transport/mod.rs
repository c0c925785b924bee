//! Node-to-node traffic, on two long-lived streams per ordered pair of nodes: raft messages
//! (`link`), and proposals and reads forwarded to a shard's leader (`forward`). `service` is
//! the receiving side of both.

pub mod forward;
pub mod link;
pub mod service;
#[cfg(test)]
pub(crate) mod testing;

pub use forward::{PeerReply, PeerRequest, Peers};
pub use link::RaftLinks;

use std::time::Duration;

use tonic::transport::Endpoint;

const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// A peer that answers no HTTP/2 ping within `KEEPALIVE_TIMEOUT_MS` of one sent after
/// `KEEPALIVE_INTERVAL_MS` of silence has its connection closed, and the stream on it ends:
/// forwarded calls are answered UNAVAILABLE instead of each waiting out its deadline, and the
/// raft link reconnects. Without pings a peer cut off without a reset (paused, a firewall
/// dropping packets) held the connection until the kernel gave up on it, and after a cut
/// the link waited for TCP's next retransmission, whose interval doubles with every one
/// lost (up to 2 minutes), before anything flowed again.
const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
const KEEPALIVE_TIMEOUT_MS: u64 = 2_000;

/// The endpoint of peer `addr` ("host:port") as both streams to it use it. `source_ip`: the
/// local address connections leave from (the node's own listen IP), so that per-node-pair
/// firewall rules, as the chaos harness uses, see who talks to whom.
pub(crate) fn peer_endpoint(addr: &str, source_ip: Option<std::net::IpAddr>) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("peer address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .http2_keep_alive_interval(Duration::from_millis(KEEPALIVE_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(KEEPALIVE_TIMEOUT_MS))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .local_address(source_ip))
}
