//! Forwarding proposals and reads to the node that leads their shard, over the Peer service.
//!
//! Each peer has a lane: one long-lived Forward stream. Callers queue their request and await
//! its own answer; the lane sends everything queued as one frame (up to `FRAME_CALLS_MAX`),
//! and a reader task hands each answer, tagged with its call id, to its caller as soon as it
//! arrives, so a slow command (a cross-shard gift waiting for its credit) holds up no other.
//! Under load hundreds of forwarded commands share a frame; a lone command goes out at once.
//! A stream costs one DATA frame per batch each way where a unary call cost a new HTTP/2
//! stream (headers, data, trailers, a task on the receiver) per batch. Payloads use the node's
//! internal encoding (postcard of the types the replicas use).
//!
//! When the stream breaks, every call on it is answered UNAVAILABLE (the router then tries
//! another replica; every command is idempotent) and the next request reconnects. HTTP/2
//! keepalive pings find a peer that stopped answering (paused, cut off) without a reset.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::link::PEER_MESSAGE_BYTES_MAX;
use crate::error::{NodeError, NodeResult};
use crate::ledger::{Applied, Command};
use crate::proto::peer::{peer_client::PeerClient, ForwardAnswers, ForwardCall, ForwardFrame};
use crate::shard::{ReadAnswer, ReadQuery};

/// Calls per frame at most.
const FRAME_CALLS_MAX: usize = 1_024;
/// Frames buffered in the stream before the lane waits for the network.
const STREAM_FRAMES_MAX: usize = 8;
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

/// What a lane's callers queue: the request, how long its caller waits, where the answer goes.
type Queued = (PeerRequest, Duration, Waiter);

/// Forwarding lanes to every other node.
pub struct Peers {
    lanes: BTreeMap<u64, mpsc::Sender<Queued>>,
}

impl Peers {
    /// Starts one lane per peer on the current runtime; each connects on its first request.
    pub fn new(self_id: u64, members: &BTreeMap<u64, String>, source_ip: Option<std::net::IpAddr>) -> Result<Self, String> {
        let mut lanes = BTreeMap::new();
        for (&id, addr) in members.iter().filter(|(&id, _)| id != self_id) {
            let endpoint = super::peer_endpoint(addr, source_ip).map_err(|e| format!("peer {id}: {e}"))?;
            let (tx, rx) = mpsc::channel(FORWARD_QUEUE_MAX);
            tokio::spawn(run_lane(id, endpoint, rx));
            lanes.insert(id, tx);
        }
        Ok(Self { lanes })
    }

    /// Sends `request` to node `to`; its answer (or its error, e.g. NOT_LEADER) comes back.
    pub async fn forward(&self, to: u64, request: PeerRequest, timeout: Duration) -> NodeResult<PeerReply> {
        let lane = self.lanes.get(&to).ok_or_else(|| NodeError::Internal(format!("node {to} is not a cluster member")))?;
        let (tx, rx) = oneshot::channel();
        lane.try_send((request, timeout, tx)).map_err(|_| NodeError::Unavailable(format!("forwarding queue to node {to} is full")))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NodeError::Unavailable(format!("forwarding to node {to} stopped"))),
            Err(_) => Err(NodeError::Timeout),
        }
    }
}

/// The calls of one stream awaiting their answers, by call id; None once the stream ended
/// (its reader answered everything then, and nothing may wait on it any more).
type Outstanding = Arc<Mutex<Option<HashMap<u64, Waiter>>>>;

/// One peer's lane: connects when a request comes and no stream is up, then sends each
/// request, with everything queued behind it, as one frame.
async fn run_lane(peer: u64, endpoint: Endpoint, mut queue: mpsc::Receiver<Queued>) {
    let mut stream: Option<ForwardStream> = None;
    while let Some(first) = queue.recv().await {
        if stream.as_ref().is_none_or(ForwardStream::broken) {
            stream = match endpoint.connect().await {
                Ok(channel) => Some(ForwardStream::open(peer, channel)),
                Err(e) => {
                    // Everything queued now would wait for a peer that is down: answer it, so
                    // the router tries another replica at once.
                    let error = NodeError::Unavailable(format!("node {peer} unreachable: {e}"));
                    for (_, _, waiter) in with_queued(first, &mut queue) {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    continue;
                }
            };
        }
        let open = stream.as_mut().expect("connected above");
        let frame = with_queued(first, &mut queue).take(FRAME_CALLS_MAX);
        if !open.send(frame).await {
            stream = None;
        }
    }
}

/// `first`, then every request queued behind it now (without waiting for more).
fn with_queued(first: Queued, queue: &mut mpsc::Receiver<Queued>) -> impl Iterator<Item = Queued> + '_ {
    std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok()))
}

/// One Forward stream to a peer: frames go out through `frames`, answers come back to the
/// reader task, which hands each to the waiter registered under its call id.
struct ForwardStream {
    peer: u64,
    frames: mpsc::Sender<ForwardFrame>,
    outstanding: Outstanding,
    next_call_id: u64,
    reader: tokio::task::JoinHandle<()>,
}

impl ForwardStream {
    fn open(peer: u64, channel: tonic::transport::Channel) -> Self {
        let client = PeerClient::new(channel)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let (frames, frames_rx) = mpsc::channel(STREAM_FRAMES_MAX);
        let outstanding: Outstanding = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_answers(peer, client, frames_rx, outstanding.clone()));
        tracing::debug!(peer, "forward stream up");
        Self { peer, frames, outstanding, next_call_id: 0, reader }
    }

    fn broken(&self) -> bool {
        self.frames.is_closed() || self.outstanding.lock().expect("forward stream lock").is_none()
    }

    /// Sends `requests` as one frame; false if the stream broke (the requests are answered
    /// UNAVAILABLE, now or by the reader as it ends).
    async fn send(&mut self, requests: impl Iterator<Item = Queued>) -> bool {
        let mut calls = Vec::new();
        let mut waiters = Vec::new();
        for (request, timeout, waiter) in requests {
            match postcard::to_stdvec(&request) {
                Ok(bytes) => {
                    self.next_call_id += 1;
                    calls.push(ForwardCall { call_id: self.next_call_id, request: bytes, deadline_ms: timeout.as_millis() as u64 });
                    waiters.push((self.next_call_id, waiter));
                }
                Err(e) => drop(waiter.send(Err(NodeError::Internal(format!("encode forward: {e}"))))),
            }
        }
        if calls.is_empty() {
            return true;
        }
        match self.outstanding.lock().expect("forward stream lock").as_mut() {
            Some(map) => map.extend(waiters),
            None => {
                let error = NodeError::Unavailable(format!("forward stream to node {} closed", self.peer));
                waiters.into_iter().for_each(|(_, w)| drop(w.send(Err(error.clone()))));
                return false;
            }
        }
        // A failed send means the call ended: its reader answers what it registered.
        self.frames.send(ForwardFrame { calls }).await.is_ok()
    }
}

impl Drop for ForwardStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Runs the Forward call of one stream: hands each answer to its waiter, and when the
/// stream ends, for whatever reason, answers every call still outstanding UNAVAILABLE.
async fn read_answers(peer: u64, mut client: PeerClient<tonic::transport::Channel>, frames: mpsc::Receiver<ForwardFrame>, outstanding: Outstanding) {
    let ended = match client.forward_stream(ReceiverStream::new(frames)).await {
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.next().await {
                    Some(Ok(ForwardAnswers { answers })) => deliver(peer, answers, &outstanding),
                    Some(Err(status)) => break status.message().to_string(),
                    None => break "stream ended".to_string(),
                }
            }
        }
        Err(status) => status.message().to_string(),
    };
    tracing::debug!(peer, reason = %ended, "forward stream down");
    let waiters = outstanding.lock().expect("forward stream lock").take().unwrap_or_default();
    let error = NodeError::Unavailable(format!("node {peer} unreachable: {ended}"));
    for (_, waiter) in waiters {
        let _ = waiter.send(Err(error.clone()));
    }
}

fn deliver(peer: u64, answers: Vec<crate::proto::peer::ForwardAnswer>, outstanding: &Outstanding) {
    let mut decoded = Vec::with_capacity(answers.len());
    for answer in answers {
        let reply = postcard::from_bytes::<NodeResult<PeerReply>>(&answer.reply)
            .unwrap_or_else(|e| Err(NodeError::Internal(format!("decode forward answer from node {peer}: {e}"))));
        decoded.push((answer.call_id, reply));
    }
    let waiters: Vec<(Waiter, NodeResult<PeerReply>)> = {
        let mut guard = outstanding.lock().expect("forward stream lock");
        let Some(map) = guard.as_mut() else { return };
        decoded.into_iter().filter_map(|(id, reply)| map.remove(&id).map(|w| (w, reply))).collect()
    };
    for (waiter, reply) in waiters {
        let _ = waiter.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::time::Instant;

    use futures::Stream;
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;
    use crate::proto::peer::peer_server::{Peer, PeerServer};
    use crate::proto::peer::{ForwardAnswer, RaftAck, RaftFrame};

    /// How the fake peer treats a Forward stream.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Waits for two calls, then answers the second first, each in a frame of its own:
        /// NOT_LEADER naming the call's shard, so each caller can tell its answer.
        AnswerTwoInReverse,
        /// Ends the stream after the first frame, answering nothing.
        HangUp,
    }

    struct FakePeer(Behaviour);

    fn not_leader(call: &ForwardCall) -> ForwardAnswer {
        let request: PeerRequest = postcard::from_bytes(&call.request).expect("a request");
        let reply: NodeResult<PeerReply> = Err(NodeError::NotLeader { shard: request.shard(), leader_id: None, leader_hint: None });
        ForwardAnswer { call_id: call.call_id, reply: postcard::to_stdvec(&reply).expect("encodes") }
    }

    #[tonic::async_trait]
    impl Peer for FakePeer {
        async fn raft(&self, _: Request<Streaming<RaftFrame>>) -> Result<Response<RaftAck>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        type ForwardStreamStream = Pin<Box<dyn Stream<Item = Result<ForwardAnswers, Status>> + Send + 'static>>;

        async fn forward_stream(&self, request: Request<Streaming<ForwardFrame>>) -> Result<Response<Self::ForwardStreamStream>, Status> {
            let mut frames = request.into_inner();
            let (out, answers) = mpsc::channel(8);
            let behaviour = self.0;
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while let Some(Ok(frame)) = frames.next().await {
                    calls.extend(frame.calls);
                    match behaviour {
                        Behaviour::HangUp => return,
                        Behaviour::AnswerTwoInReverse if calls.len() >= 2 => break,
                        Behaviour::AnswerTwoInReverse => {}
                    }
                }
                for call in calls.iter().rev() {
                    let _ = out.send(Ok(ForwardAnswers { answers: vec![not_leader(call)] })).await;
                }
                // Keep the stream open until the caller is gone, as a node does.
                while frames.next().await.is_some() {}
            });
            Ok(Response::new(Box::pin(ReceiverStream::new(answers))))
        }
    }

    /// Serves a fake peer on a loopback port; returns the members map (this node is 1, the
    /// fake is 2).
    async fn fake_peer(behaviour: Behaviour) -> BTreeMap<u64, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerServer::new(FakePeer(behaviour)))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, addr.to_string())])
    }

    fn read(shard: u32) -> PeerRequest {
        PeerRequest::Read { shard, query: ReadQuery::Rates }
    }

    #[tokio::test]
    async fn each_caller_gets_its_own_answer_in_whatever_order_they_come() {
        let peers = Peers::new(1, &fake_peer(Behaviour::AnswerTwoInReverse).await, None).unwrap();
        let timeout = Duration::from_secs(10);
        let (first, second) = tokio::join!(peers.forward(2, read(7), timeout), async {
            // After the first call went out, so that the fake sees them in this order.
            tokio::time::sleep(Duration::from_millis(50)).await;
            peers.forward(2, read(9), timeout).await
        });
        assert!(matches!(first, Err(NodeError::NotLeader { shard: 7, .. })), "{first:?}");
        assert!(matches!(second, Err(NodeError::NotLeader { shard: 9, .. })), "{second:?}");
    }

    #[tokio::test]
    async fn a_broken_stream_answers_its_calls_unavailable_at_once_and_the_next_call_reconnects() {
        let peers = Peers::new(1, &fake_peer(Behaviour::HangUp).await, None).unwrap();
        let timeout = Duration::from_secs(10);
        for attempt in 0..2 {
            let started = Instant::now();
            let answer = peers.forward(2, read(3), timeout).await;
            assert!(matches!(answer, Err(NodeError::Unavailable(_))), "attempt {attempt}: {answer:?}");
            assert!(started.elapsed() < Duration::from_secs(2), "attempt {attempt} waited {:?}", started.elapsed());
        }
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_unavailable_not_a_timeout() {
        // Port 1 on loopback: nothing listens there, the connection is refused.
        let members = BTreeMap::from([(1, "127.0.0.1:7".to_string()), (2, "127.0.0.1:1".to_string())]);
        let peers = Peers::new(1, &members, None).unwrap();
        let answer = peers.forward(2, read(0), Duration::from_secs(10)).await;
        assert!(matches!(answer, Err(NodeError::Unavailable(_))), "{answer:?}");
        let unknown = peers.forward(5, read(0), Duration::from_secs(10)).await;
        assert!(matches!(unknown, Err(NodeError::Internal(_))), "{unknown:?}");
    }
}
