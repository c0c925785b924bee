//! Forwarding a proposal or a read to the node that leads a shard, over the Peer service.
//! Payloads use the node's internal encoding (postcard of the same types the replicas use).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::link::PEER_MESSAGE_BYTES_MAX;
use crate::error::{NodeError, NodeResult};
use crate::ledger::{Applied, Command};
use crate::proto::peer::{peer_client::PeerClient, ForwardRequest};
use crate::shard::{ReadAnswer, ReadQuery};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    Propose { shard: u32, cmd: Command },
    Read { shard: u32, query: ReadQuery },
}

impl PeerRequest {
    pub fn shard(&self) -> u32 {
        match self {
            PeerRequest::Propose { shard, .. } | PeerRequest::Read { shard, .. } => *shard,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerReply {
    Applied(Applied),
    Read(ReadAnswer),
}

/// Lazily connected channels to every other node.
pub struct Peers {
    clients: BTreeMap<u64, PeerClient<Channel>>,
}

impl Peers {
    pub fn new(self_id: u64, members: &BTreeMap<u64, String>, source_ip: Option<std::net::IpAddr>) -> Result<Self, String> {
        let mut clients = BTreeMap::new();
        for (&id, addr) in members.iter().filter(|(&id, _)| id != self_id) {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| format!("peer {id} address {addr:?}: {e}"))?
                .connect_timeout(Duration::from_millis(1_000))
                .tcp_nodelay(true)
                .local_address(source_ip);
            let client = PeerClient::new(endpoint.connect_lazy())
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
            clients.insert(id, client);
        }
        Ok(Self { clients })
    }

    /// Sends `request` to node `to`; its answer (or its error, e.g. NOT_LEADER) comes back.
    pub async fn forward(&self, to: u64, request: &PeerRequest, timeout: Duration) -> NodeResult<PeerReply> {
        let mut client = self
            .clients
            .get(&to)
            .cloned()
            .ok_or_else(|| NodeError::Internal(format!("node {to} is not a cluster member")))?;
        let bytes = postcard::to_stdvec(request).map_err(|e| NodeError::Internal(format!("encode forward: {e}")))?;
        let mut grpc = tonic::Request::new(ForwardRequest {
            shard: request.shard(),
            command: bytes,
            deadline_ms: timeout.as_millis() as u64,
        });
        grpc.set_timeout(timeout);
        let reply = client
            .forward(grpc)
            .await
            .map_err(|s| NodeError::Unavailable(format!("node {to} unreachable: {}", s.message())))?
            .into_inner();
        let answer: NodeResult<PeerReply> = postcard::from_bytes(&reply.outcome)
            .map_err(|e| NodeError::Internal(format!("decode forward reply from node {to}: {e}")))?;
        answer
    }
}
