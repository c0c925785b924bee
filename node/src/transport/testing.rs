//! Test support for the node's connections: a peer that counts the raft messages it gets. (The
//! proxy that makes connections go silent is the client's, `coinledger_client::testing`.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::peer::peer_server::{Peer, PeerServer};
use crate::proto::peer::{ForwardAnswers, ForwardFrame, RaftAck, RaftFrame};

/// Counts the raft messages it receives.
#[derive(Clone, Default)]
struct CountingPeer(Arc<AtomicUsize>);

#[tonic::async_trait]
impl Peer for CountingPeer {
    async fn raft(&self, request: Request<Streaming<RaftFrame>>) -> Result<Response<RaftAck>, Status> {
        let mut frames = request.into_inner();
        while let Some(Ok(frame)) = frames.next().await {
            self.0.fetch_add(frame.messages.len(), Ordering::SeqCst);
        }
        Ok(Response::new(RaftAck::default()))
    }

    type ForwardStreamStream = ReceiverStream<Result<ForwardAnswers, Status>>;

    async fn forward_stream(&self, _: Request<Streaming<ForwardFrame>>) -> Result<Response<Self::ForwardStreamStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// Serves a peer that counts the raft messages it receives, with `server`'s settings, on a
/// loopback port; returns the address and the count.
pub(crate) async fn serve_counting_peer(mut server: tonic::transport::Server) -> (SocketAddr, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.add_service(PeerServer::new(CountingPeer(received.clone())));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, received)
}
