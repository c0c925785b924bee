//! A node that stops answering without a reset (paused, cut off by a firewall that drops
//! packets) must not hold the client's connection for ever: HTTP/2 keepalive pings find it,
//! the connection is closed, and the next attempt reconnects. A TCP proxy between the client
//! and an in-process Ledger server plays the silent node: `freeze` makes every connection
//! open at that moment swallow its bytes in both directions and stay open, while connections
//! made afterwards are proxied as before (as a node that was paused and resumed, or a route
//! that came back, would be reached through a fresh connection).

mod common;
use common::serve;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::ledger_server::Ledger;
use coinledger_client::proto::*;
use coinledger_client::testing::FreezingProxy;
use coinledger_client::{Client, ClientConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Answers every gift at once, unary or on a stream.
#[derive(Clone, Default)]
struct Gifts;

fn reply(gift: &GiftRequest) -> GiftReply {
    GiftReply {
        tx_id: format!("tx-{}", gift.request_id),
        quantity: gift.quantity,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Ledger for Gifts {
    async fn gift(&self, request: Request<GiftRequest>) -> Result<Response<GiftReply>, Status> {
        Ok(Response::new(reply(request.get_ref())))
    }

    type SubmitStreamStream = ReceiverStream<Result<SubmitStreamReply, Status>>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<SubmitStreamRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let (replies, out) = mpsc::channel(64);
        let mut frames = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = frames.message().await {
                let results = frame
                    .calls
                    .into_iter()
                    .map(|call| {
                        let result = match call.command.and_then(|c| c.command) {
                            Some(Command::Gift(g)) => Answer::Gift(reply(&g)),
                            _ => Answer::Error(ErrorDetail {
                                code: ErrorCode::InvalidArgument as i32,
                                code_name: ErrorCode::InvalidArgument.as_str_name().into(),
                                message: "gifts only".into(),
                                ..Default::default()
                            }),
                        };
                        StreamResult {
                            call_id: call.call_id,
                            result: Some(BatchResult {
                                result: Some(result),
                            }),
                        }
                    })
                    .collect();
                if replies.send(Ok(SubmitStreamReply { results })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    unused_rpcs!("not used by this test";
        purchase: PurchaseRequest => PurchaseReply,
        cash_out: CashOutRequest => CashOutReply,
        void_payout: PayoutRequest => PayoutReply,
        balance: BalanceRequest => BalanceReply,
        get_rates: GetRatesRequest => RateCard,
        topology: TopologyRequest => TopologyReply,
        post_payout: PayoutRequest => PayoutReply,
        refund: RefundRequest => RefundReply,
        history: HistoryRequest => HistoryReply,
        list_gifts: ListGiftsRequest => ListGiftsReply,
        submit_batch: SubmitBatchRequest => SubmitBatchReply,
    );
}

fn config(addr: SocketAddr, keepalive_ms: u64, batching: bool) -> ClientConfig {
    let mut config = ClientConfig::from_endpoints(&addr.to_string()).unwrap();
    config.attempt_timeout_ms = 300;
    config.keepalive_ms = keepalive_ms;
    config.deadline_ms = 2_500;
    config.backoff_ms_initial = 1;
    config.backoff_ms_max = 5;
    config.routing = false;
    if batching {
        config = config.batching(64, 0);
    }
    config
}

fn gift(request_id: &str) -> GiftRequest {
    GiftRequest {
        request_id: request_id.into(),
        sender: "alice".into(),
        recipient: "creator".into(),
        gift_id: "rose".into(),
        quantity: 1,
        ..Default::default()
    }
}

/// A gift answered over the proxy, then the proxy freezes; returns the next gift's outcome,
/// how long it took, and how many connections the proxy took.
async fn gift_after_freeze(
    keepalive_ms: u64,
    batching: bool,
) -> (Result<GiftReply, coinledger_client::ClientError>, Duration, usize) {
    let proxy = FreezingProxy::start(serve(Gifts).await).await;
    let client = Client::connect(config(proxy.addr, keepalive_ms, batching)).unwrap();
    client
        .gift(gift("before"))
        .await
        .expect("answered through the proxy");
    proxy.freeze();
    let started = Instant::now();
    let outcome = client.gift(gift("after")).await;
    (outcome, started.elapsed(), proxy.connections())
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_keepalive_and_the_call_reconnects() {
    for batching in [false, true] {
        let (outcome, took, connections) = gift_after_freeze(100, batching).await;
        let reply = outcome.unwrap_or_else(|e| panic!("batching {batching}: {e}"));
        eprintln!("batching {batching}: answered {took:?} after the freeze");
        assert_eq!(reply.tx_id, "tx-after", "same request id after the reconnect");
        assert_eq!(connections, 2, "batching {batching}: one new connection");
        // A ping after 100 ms of silence, unanswered for 300 ms; then a fresh connection.
        assert!(took < Duration::from_millis(2_000), "batching {batching}: took {took:?}");
    }
}

#[tokio::test]
async fn without_keepalive_a_silent_connection_holds_every_attempt() {
    for batching in [false, true] {
        let (outcome, _, connections) = gift_after_freeze(0, batching).await;
        let err = outcome.expect_err("every attempt went to the frozen connection");
        assert_eq!(err.code, ErrorCode::Timeout, "batching {batching}: {err}");
        assert_eq!(connections, 1, "batching {batching}: never reconnected");
    }
}
