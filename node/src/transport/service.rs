//! The receiving side of the Peer service: raft frames into local replicas, forwarded
//! proposals and reads into the local router (never forwarded again: one hop at most).

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;
use tonic::{Request, Response, Status, Streaming};

use super::forward::{PeerReply, PeerRequest};
use crate::error::{NodeError, NodeResult};
use crate::proto::peer::{peer_server::Peer, ForwardReply, ForwardRequest, RaftAck, RaftFrame};
use crate::router::Router;

pub struct PeerService {
    router: Arc<Router>,
    request_timeout: Duration,
}

impl PeerService {
    pub fn new(router: Arc<Router>, request_timeout: Duration) -> Self {
        Self { router, request_timeout }
    }

    async fn serve(&self, request: PeerRequest, timeout: Duration) -> NodeResult<PeerReply> {
        let work = async {
            match request {
                PeerRequest::Propose { shard, cmd } => self.router.propose_local(shard, cmd).await.map(PeerReply::Applied),
                PeerRequest::ProposeMany { shard, cmds } => Ok(PeerReply::AppliedMany(self.router.propose_local_many(shard, cmds).await)),
                PeerRequest::Read { shard, query } => self.router.read_local(shard, query).await.map(PeerReply::Read),
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(NodeError::Timeout))
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftFrame>>) -> Result<Response<RaftAck>, Status> {
        let mut stream = request.into_inner();
        let mut frames = 0u64;
        while let Some(frame) = stream.message().await? {
            frames += 1;
            for m in frame.messages {
                match RaftMessage::parse_from_bytes(&m.message) {
                    Ok(msg) => self.router.step(m.shard, msg),
                    Err(e) => tracing::warn!(from = frame.from_node, shard = m.shard, error = %e, "undecodable raft message dropped"),
                }
            }
        }
        Ok(Response::new(RaftAck { frames }))
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let r = request.into_inner();
        let timeout = Duration::from_millis(r.deadline_ms).min(self.request_timeout);
        let requests: Vec<PeerRequest> = postcard::from_bytes(&r.requests)
            .map_err(|e| Status::invalid_argument(format!("undecodable forwarded requests: {e}")))?;
        let answers: Vec<NodeResult<PeerReply>> =
            futures::future::join_all(requests.into_iter().map(|req| self.serve(req, timeout))).await;
        let replies = postcard::to_stdvec(&answers).map_err(|e| Status::internal(format!("encode forward reply: {e}")))?;
        Ok(Response::new(ForwardReply { replies }))
    }
}
