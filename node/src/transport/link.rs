//! One outbound raft stream per peer node.
//!
//! Replicas hand their messages to `RaftLinks::send` (never blocking the actor thread). Each
//! peer has a bounded queue; a task drains it into frames (every message available, up to
//! `FRAME_MESSAGES_MAX`) on a client stream, reconnecting with backoff when the peer is down.
//! A full queue drops messages: raft retransmits, and an unbounded queue would turn a slow
//! peer into an out-of-memory node. HTTP/2 keepalive closes a connection to a peer that went
//! silent without a reset; the next message then reconnects.

use std::collections::BTreeMap;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use std::sync::Arc;

use crate::proto::peer::{peer_client::PeerClient, RaftFrame, ShardMessage};
use crate::stats::NodeStats;

/// Messages queued per peer before new ones are dropped.
const QUEUE_MESSAGES_MAX: usize = 16_384;
/// Messages per frame at most.
const FRAME_MESSAGES_MAX: usize = 4_096;
/// Frames buffered in the stream before the link waits for the network.
const STREAM_FRAMES_MAX: usize = 8;
const BACKOFF_MS_MIN: u64 = 20;
const BACKOFF_MS_MAX: u64 = 1_000;
/// Largest gRPC message between peers (a raft snapshot travels in one message).
pub const PEER_MESSAGE_BYTES_MAX: usize = 256 << 20;

pub struct RaftLinks {
    queues: BTreeMap<u64, mpsc::Sender<ShardMessage>>,
    stats: Arc<NodeStats>,
}

impl RaftLinks {
    /// Starts one link task per peer (every member but `self_id`) on the current runtime.
    /// `source_ip`: the local address peer connections leave from (the node's own listen IP),
    /// so that per-node-pair firewall rules, as the chaos harness uses, see who talks to whom.
    pub fn start(self_id: u64, members: &BTreeMap<u64, String>, source_ip: Option<std::net::IpAddr>, stats: Arc<NodeStats>) -> Self {
        let mut queues = BTreeMap::new();
        for (&id, addr) in members.iter().filter(|(&id, _)| id != self_id) {
            let (tx, rx) = mpsc::channel(QUEUE_MESSAGES_MAX);
            tokio::spawn(run_link(self_id, id, addr.clone(), source_ip, rx, stats.clone()));
            queues.insert(id, tx);
        }
        Self { queues, stats }
    }

    /// Queues raft messages of `shard` for their destination nodes; drops them when full.
    pub fn send(&self, shard: u32, messages: Vec<RaftMessage>) {
        for msg in messages {
            let Some(queue) = self.queues.get(&msg.to) else {
                tracing::warn!(shard, to = msg.to, "raft message for an unknown node dropped");
                continue;
            };
            let encoded = ShardMessage { shard, message: msg.write_to_bytes().expect("encode raft message") };
            if queue.try_send(encoded).is_ok() {
                NodeStats::add(&self.stats.raft_messages_sent, 1);
            } else {
                NodeStats::add(&self.stats.raft_messages_dropped, 1);
                tracing::debug!(shard, to = msg.to, "peer queue full: raft message dropped");
            }
        }
    }
}

async fn run_link(
    self_id: u64,
    peer: u64,
    addr: String,
    source_ip: Option<std::net::IpAddr>,
    mut queue: mpsc::Receiver<ShardMessage>,
    stats: Arc<NodeStats>,
) {
    let mut backoff_ms = BACKOFF_MS_MIN;
    loop {
        let endpoint = match super::peer_endpoint(&addr, source_ip) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(peer, %addr, error = %e, "invalid peer address; link stopped");
                return;
            }
        };
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(peer, %addr, error = %e, "peer unreachable");
                // What queued while the peer was down is stale; raft will resend what matters.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff_ms = BACKOFF_MS_MIN;
        let (frames, frames_rx) = mpsc::channel::<RaftFrame>(STREAM_FRAMES_MAX);
        let mut client = PeerClient::new(channel)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let call = tokio::spawn(async move { client.raft(ReceiverStream::new(frames_rx)).await });
        tracing::info!(peer, %addr, "raft link up");
        loop {
            let Some(first) = queue.recv().await else {
                call.abort();
                return; // the node is shutting down
            };
            let mut messages = Vec::with_capacity(64);
            messages.push(first);
            while messages.len() < FRAME_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(m) => messages.push(m),
                    Err(_) => break,
                }
            }
            if frames.send(RaftFrame { from_node: self_id, messages }).await.is_err() {
                break; // the stream ended: reconnect
            }
            NodeStats::add(&stats.raft_frames_sent, 1);
        }
        let outcome = call.await;
        tracing::info!(peer, %addr, ?outcome, "raft link down; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::transport::testing::serve_counting_peer;
    use coinledger_client::testing::FreezingProxy;

    fn heartbeat() -> RaftMessage {
        let mut m = RaftMessage::default();
        m.set_msg_type(raft::prelude::MessageType::MsgHeartbeat);
        m.from = 1;
        m.to = 2;
        m
    }

    /// Sends a heartbeat every 100 ms until `received` exceeds `above`; the time it took.
    async fn heartbeats_until_received(links: &RaftLinks, received: &AtomicUsize, above: usize) -> Duration {
        let started = std::time::Instant::now();
        while received.load(Ordering::SeqCst) <= above {
            assert!(started.elapsed() < Duration::from_secs(20), "no message got through");
            links.send(0, vec![heartbeat()]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    #[tokio::test]
    async fn a_link_to_a_peer_gone_silent_is_closed_by_keepalive_and_reconnects() {
        let (upstream, received) = serve_counting_peer(tonic::transport::Server::builder()).await;
        let proxy = FreezingProxy::start(upstream).await;
        let members = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, proxy.addr.to_string())]);
        let stats = Arc::new(NodeStats::default());
        let links = RaftLinks::start(1, &members, None, stats.clone());
        heartbeats_until_received(&links, &received, 0).await;
        let sent = stats.snapshot();
        assert!(sent.raft_messages_sent >= 1 && sent.raft_frames_sent >= 1, "{sent:?}");
        assert!(sent.raft_frames_sent <= sent.raft_messages_sent, "{sent:?}");

        proxy.freeze();
        let before = received.load(Ordering::SeqCst);
        let took = heartbeats_until_received(&links, &received, before).await;
        assert_eq!(proxy.connections(), 2, "the link reconnected");
        // A ping after 1 s of silence, 2 s to answer it, then the next message reconnects.
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
}
