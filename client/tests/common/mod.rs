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

/// Ledger methods a mock does not serve, answered UNIMPLEMENTED (`$why` says why), written
/// in the form `#[tonic::async_trait]` expands `async fn` to, so that the macro can sit inside
/// an `impl Ledger` block. Usage: `unused_rpcs!("reason"; purchase: PurchaseRequest => PurchaseReply, ...);`
#[macro_export]
macro_rules! unused_rpcs {
    ($why:literal; $($method:ident: $req:ty => $rep:ty),* $(,)?) => {
        $(fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: tonic::Request<$req>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<$rep>, tonic::Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move { Err(tonic::Status::unimplemented($why)) })
        })*
    };
}

/// SubmitStream for a mock that does not serve it (answered UNIMPLEMENTED, `$why` says why),
/// in the form `#[tonic::async_trait]` expands it to. Usage: `unused_submit_stream!("reason");`
#[macro_export]
macro_rules! unused_submit_stream {
    ($why:literal) => {
        type SubmitStreamStream = tokio_stream::Empty<Result<SubmitStreamReply, tonic::Status>>;

        fn submit_stream<'life0, 'async_trait>(
            &'life0 self,
            _request: tonic::Request<tonic::Streaming<SubmitStreamRequest>>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Self::SubmitStreamStream>, tonic::Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move { Err(tonic::Status::unimplemented($why)) })
        }
    };
}
