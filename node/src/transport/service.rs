//! The receiving side of the Peer service: raft frames into local replicas, forwarded
//! proposals and reads into the local router (never forwarded again: one hop at most).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;
use tonic::{Request, Response, Status, Streaming};

use super::forward::{PeerReply, PeerRequest};
use crate::call_stream::spawn_serving;
use crate::error::{NodeError, NodeResult};
use crate::proto::peer::{peer_server::Peer, ForwardAnswer, ForwardAnswers, ForwardCall, ForwardFrame, RaftAck, RaftFrame};
use crate::router::Router;
use crate::stats::NodeStats;

pub struct PeerService {
    router: Arc<Router>,
    request_timeout: Duration,
    stats: Arc<NodeStats>,
}

impl PeerService {
    pub fn new(router: Arc<Router>, request_timeout: Duration, stats: Arc<NodeStats>) -> Self {
        Self { router, request_timeout, stats }
    }
}

/// Runs one forwarded call on this node (bounded by its deadline and the node's request
/// timeout) and encodes its answer.
async fn serve(router: Arc<Router>, call: ForwardCall, request_timeout: Duration) -> ForwardAnswer {
    let timeout = Duration::from_millis(call.deadline_ms).min(request_timeout);
    let answer: NodeResult<PeerReply> = match postcard::from_bytes::<PeerRequest>(&call.request) {
        Ok(request) => {
            let work = async {
                match request {
                    PeerRequest::Propose { shard, cmd } => router.propose_local(shard, cmd).await.map(PeerReply::Applied),
                    PeerRequest::ProposeMany { shard, cmds } => Ok(PeerReply::AppliedMany(router.propose_local_many(shard, cmds).await)),
                    PeerRequest::Read { shard, query } => router.read_local(shard, query).await.map(PeerReply::Read),
                }
            };
            tokio::time::timeout(timeout, work).await.unwrap_or(Err(NodeError::Timeout))
        }
        Err(e) => Err(NodeError::Internal(format!("undecodable forwarded request: {e}"))),
    };
    let reply = postcard::to_stdvec(&answer).unwrap_or_else(|e| {
        postcard::to_stdvec(&NodeResult::<PeerReply>::Err(NodeError::Internal(format!("encode forward answer: {e}"))))
            .expect("an error encodes")
    });
    ForwardAnswer { call_id: call.call_id, reply }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftFrame>>) -> Result<Response<RaftAck>, Status> {
        let mut stream = request.into_inner();
        let mut frames = 0u64;
        while let Some(frame) = stream.message().await? {
            frames += 1;
            NodeStats::add(&self.stats.raft_frames_received, 1);
            NodeStats::add(&self.stats.raft_messages_received, frame.messages.len() as u64);
            for m in frame.messages {
                match RaftMessage::parse_from_bytes(&m.message) {
                    Ok(msg) => self.router.step(m.shard, msg),
                    Err(e) => tracing::warn!(from = frame.from_node, shard = m.shard, error = %e, "undecodable raft message dropped"),
                }
            }
        }
        Ok(Response::new(RaftAck { frames }))
    }

    type ForwardStreamStream = Pin<Box<dyn Stream<Item = Result<ForwardAnswers, Status>> + Send + 'static>>;

    async fn forward_stream(&self, request: Request<Streaming<ForwardFrame>>) -> Result<Response<Self::ForwardStreamStream>, Status> {
        let (router, request_timeout) = (self.router.clone(), self.request_timeout);
        let run = move |call| serve(router.clone(), call, request_timeout);
        let answers = spawn_serving(request.into_inner(), |frame: ForwardFrame| Ok(frame.calls), run, |answers| ForwardAnswers { answers });
        Ok(Response::new(Box::pin(answers)))
    }
}
