//! Test support for the node's connections: a peer that counts the raft messages it gets, and
//! a TCP proxy that can make the connections through it go silent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// A TCP proxy to an upstream server. After [`FreezingProxy::freeze`], the connections open
/// at that moment swallow their bytes both ways and stay open (a peer cut off without a
/// reset); connections made afterwards pass.
pub(crate) struct FreezingProxy {
    pub addr: SocketAddr,
    generation: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    upstream_closed: Arc<AtomicUsize>,
}

impl FreezingProxy {
    pub async fn start(upstream: SocketAddr) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FreezingProxy {
            addr: listener.local_addr().unwrap(),
            generation: Arc::default(),
            connections: Arc::default(),
            upstream_closed: Arc::default(),
        };
        let (generation, connections, upstream_closed) = (proxy.generation.clone(), proxy.connections.clone(), proxy.upstream_closed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let born = generation.load(Ordering::SeqCst);
                let server = TcpStream::connect(upstream).await.unwrap();
                let (client_rx, client_tx) = client.into_split();
                let (server_rx, server_tx) = server.into_split();
                tokio::spawn(pipe(client_rx, server_tx, generation.clone(), born, None));
                tokio::spawn(pipe(server_rx, client_tx, generation.clone(), born, Some(upstream_closed.clone())));
            }
        });
        proxy
    }

    pub fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections the proxy took.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections the upstream server closed.
    pub fn upstream_closed(&self) -> usize {
        self.upstream_closed.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until `from` ends (then counts it in `closed`, if given); once the
/// proxy froze after this connection was made, drops what it reads instead.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    generation: Arc<AtomicU64>,
    born: u64,
    closed: Option<Arc<AtomicUsize>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if generation.load(Ordering::SeqCst) == born && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if let Some(closed) = closed {
        closed.fetch_add(1, Ordering::SeqCst);
    }
}
