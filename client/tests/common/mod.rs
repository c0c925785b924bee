//! Shared by the client's in-process tests: serve a scripted Ledger service on a free
//! loopback port.

use std::net::SocketAddr;

use coinledger_client::proto::ledger_server::{Ledger, LedgerServer};

/// Starts `service` on 127.0.0.1:0 in the background and returns its address.
pub async fn serve<S: Ledger>(service: S) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LedgerServer::new(service))
            .serve_with_incoming(incoming),
    );
    addr
}
