//! Test support, for the client's tests and the node's (feature `testing`): a TCP proxy that
//! can make the connections through it go silent, as a peer does that is paused or cut off by
//! a firewall that drops packets (no reset, no FIN). Keepalive must find such a connection,
//! on a client's channel to a node as on a node's links to its peers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to an upstream server on loopback. After [`FreezingProxy::freeze`], the
/// connections open at that moment swallow their bytes both ways and stay open; connections
/// made afterwards pass (as a node that was resumed, or a route that came back, is reached
/// through a fresh connection).
pub struct FreezingProxy {
    pub addr: SocketAddr,
    /// Bumped by `freeze`; a connection made before the latest bump forwards nothing more.
    generation: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    upstream_closed: Arc<AtomicUsize>,
}

impl FreezingProxy {
    /// # Panics
    /// If it cannot bind a loopback port, or a connection to `upstream` fails.
    pub async fn start(upstream: SocketAddr) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let proxy = FreezingProxy {
            addr: listener.local_addr().expect("a bound listener has an address"),
            generation: Arc::default(),
            connections: Arc::default(),
            upstream_closed: Arc::default(),
        };
        let (generation, connections, upstream_closed) = (proxy.generation.clone(), proxy.connections.clone(), proxy.upstream_closed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let born = generation.load(Ordering::SeqCst);
                let server = TcpStream::connect(upstream).await.expect("the upstream accepts");
                let (client_rx, client_tx) = client.into_split();
                let (server_rx, server_tx) = server.into_split();
                tokio::spawn(pipe(client_rx, server_tx, generation.clone(), born, None));
                tokio::spawn(pipe(server_rx, client_tx, generation.clone(), born, Some(upstream_closed.clone())));
            }
        });
        proxy
    }

    /// Makes every connection open now go silent.
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
