//! Forwarding proposals and reads to the node that leads their shard, over the Peer service.
//!
//! Each peer has a lane: callers queue their request and await its own answer; the lane sends
//! everything queued as one Forward call (up to `FORWARD_BATCH_MAX`), with at most
//! `FORWARD_CALLS_IN_FLIGHT` calls outstanding. Under load, hundreds of forwarded commands
//! share one round trip; a lone command goes out at once. Payloads use the node's internal
//! encoding (postcard of the types the replicas use).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;

use super::link::PEER_MESSAGE_BYTES_MAX;
use crate::error::{NodeError, NodeResult};
use crate::ledger::{Applied, Command};
use crate::proto::peer::{peer_client::PeerClient, ForwardRequest};
use crate::shard::{ReadAnswer, ReadQuery};

/// Requests per Forward call at most.
const FORWARD_BATCH_MAX: usize = 1_024;
/// Forward calls outstanding per peer: enough to keep one slow command (a cross-shard gift
/// waiting for its credit) from holding up the others.
const FORWARD_CALLS_IN_FLIGHT: usize = 8;
/// Requests queued per peer before callers are told UNAVAILABLE.
const FORWARD_QUEUE_MAX: usize = 65_536;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    Propose { shard: u32, cmd: Command },
    /// Commands of one shard, each answered on its own (`PeerReply::AppliedMany`, in order).
    ProposeMany { shard: u32, cmds: Vec<Command> },
    Read { shard: u32, query: ReadQuery },
}

impl PeerRequest {
    pub fn shard(&self) -> u32 {
        match self {
            PeerRequest::Propose { shard, .. } | PeerRequest::ProposeMany { shard, .. } | PeerRequest::Read { shard, .. } => *shard,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerReply {
    Applied(Applied),
    AppliedMany(Vec<NodeResult<Applied>>),
    Read(ReadAnswer),
}

type Waiter = oneshot::Sender<NodeResult<PeerReply>>;

/// Forwarding lanes to every other node.
pub struct Peers {
    lanes: BTreeMap<u64, mpsc::Sender<(PeerRequest, Waiter)>>,
}

impl Peers {
    /// Starts one lane per peer on the current runtime; connections are made lazily.
    pub fn new(self_id: u64, members: &BTreeMap<u64, String>, source_ip: Option<std::net::IpAddr>) -> Result<Self, String> {
        let mut lanes = BTreeMap::new();
        for (&id, addr) in members.iter().filter(|(&id, _)| id != self_id) {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| format!("peer {id} address {addr:?}: {e}"))?
                .connect_timeout(Duration::from_millis(1_000))
                .tcp_nodelay(true)
                .local_address(source_ip);
            let client = PeerClient::new(endpoint.connect_lazy())
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
            let (tx, rx) = mpsc::channel(FORWARD_QUEUE_MAX);
            tokio::spawn(run_lane(id, client, rx));
            lanes.insert(id, tx);
        }
        Ok(Self { lanes })
    }

    /// Sends `request` to node `to`; its answer (or its error, e.g. NOT_LEADER) comes back.
    pub async fn forward(&self, to: u64, request: PeerRequest, timeout: Duration) -> NodeResult<PeerReply> {
        let lane = self.lanes.get(&to).ok_or_else(|| NodeError::Internal(format!("node {to} is not a cluster member")))?;
        let (tx, rx) = oneshot::channel();
        lane.try_send((request, tx)).map_err(|_| NodeError::Unavailable(format!("forwarding queue to node {to} is full")))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NodeError::Unavailable(format!("forwarding to node {to} stopped"))),
            Err(_) => Err(NodeError::Timeout),
        }
    }
}

async fn run_lane(peer: u64, client: PeerClient<Channel>, mut queue: mpsc::Receiver<(PeerRequest, Waiter)>) {
    let permits = Arc::new(Semaphore::new(FORWARD_CALLS_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let permit = permits.clone().acquire_owned().await.expect("semaphore is never closed");
        let mut batch = vec![first];
        while batch.len() < FORWARD_BATCH_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut client = client.clone();
        tokio::spawn(async move {
            let (requests, waiters): (Vec<PeerRequest>, Vec<Waiter>) = batch.into_iter().unzip();
            let answers = call(peer, &mut client, &requests).await;
            match answers {
                Ok(answers) if answers.len() == waiters.len() => {
                    for (waiter, answer) in waiters.into_iter().zip(answers) {
                        let _ = waiter.send(answer);
                    }
                }
                Ok(answers) => {
                    let e = NodeError::Internal(format!("node {peer} answered {} of {} forwarded requests", answers.len(), waiters.len()));
                    waiters.into_iter().for_each(|w| drop(w.send(Err(e.clone()))));
                }
                Err(e) => waiters.into_iter().for_each(|w| drop(w.send(Err(e.clone())))),
            }
            drop(permit);
        });
    }
}

/// Deadline of one Forward call; callers' own deadlines bound their wait separately.
const FORWARD_CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn call(peer: u64, client: &mut PeerClient<Channel>, requests: &[PeerRequest]) -> NodeResult<Vec<NodeResult<PeerReply>>> {
    let bytes = postcard::to_stdvec(requests).map_err(|e| NodeError::Internal(format!("encode forward: {e}")))?;
    let mut grpc = tonic::Request::new(ForwardRequest { requests: bytes, deadline_ms: FORWARD_CALL_TIMEOUT.as_millis() as u64 });
    grpc.set_timeout(FORWARD_CALL_TIMEOUT);
    let reply = client
        .forward(grpc)
        .await
        .map_err(|s| NodeError::Unavailable(format!("node {peer} unreachable: {}", s.message())))?
        .into_inner();
    postcard::from_bytes(&reply.replies).map_err(|e| NodeError::Internal(format!("decode forward reply from node {peer}: {e}")))
}
