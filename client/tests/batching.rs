//! Automatic batching and `submit_batch` against an in-process Ledger server over a real
//! socket. The server answers SubmitBatch only: gifts from "poor" are INSUFFICIENT_COINS,
//! gifts from "flaky" are UNAVAILABLE the first time their request id is seen, every other
//! gift succeeds with the request id echoed in tx_id. It records every batch it received and
//! how many were in flight at once.

mod common;
use common::serve;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::ledger_server::Ledger;
use coinledger_client::proto::*;
use coinledger_client::{Client, ClientConfig, LANE_BATCHES_IN_FLIGHT};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Recorder {
    /// Request ids of every batch, in arrival order.
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    in_flight: Arc<AtomicUsize>,
    in_flight_max: Arc<AtomicUsize>,
    /// How long each SubmitBatch takes, so concurrent callers pile up behind it.
    delay: Duration,
}

impl Recorder {
    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }

    fn answer(&self, gift: &GiftRequest) -> Answer {
        let first_time = self.seen.lock().unwrap().insert(gift.request_id.clone());
        let error = |code: ErrorCode| {
            Answer::Error(ErrorDetail {
                code: code as i32,
                code_name: code.as_str_name().into(),
                message: format!("scripted {}", code.as_str_name()),
                leader_hint: String::new(),
                shard: 1,
            })
        };
        match gift.sender.as_str() {
            "poor" => error(ErrorCode::InsufficientCoins),
            "flaky" if first_time => error(ErrorCode::Unavailable),
            _ => Answer::Gift(GiftReply {
                tx_id: format!("tx-{}", gift.request_id),
                quantity: gift.quantity,
                ..Default::default()
            }),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Ledger for Recorder {
    async fn submit_batch(&self, request: Request<SubmitBatchRequest>) -> Reply<SubmitBatchReply> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight_max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let mut ids = Vec::new();
        let mut results = Vec::new();
        for c in request.into_inner().commands {
            let Some(Command::Gift(g)) = c.command else {
                return Err(Status::invalid_argument("gifts only"));
            };
            ids.push(g.request_id.clone());
            results.push(BatchResult {
                result: Some(self.answer(&g)),
            });
        }
        self.batches.lock().unwrap().push(ids);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(Response::new(SubmitBatchReply { results }))
    }

    // Single-command RPCs must not be used while batching is on.
    unused_rpcs!("single-command RPC called";
        purchase: PurchaseRequest => PurchaseReply,
        cash_out: CashOutRequest => CashOutReply,
        void_payout: PayoutRequest => PayoutReply,
        balance: BalanceRequest => BalanceReply,
        get_rates: GetRatesRequest => RateCard,
        topology: TopologyRequest => TopologyReply,
        gift: GiftRequest => GiftReply,
        post_payout: PayoutRequest => PayoutReply,
        refund: RefundRequest => RefundReply,
        history: HistoryRequest => HistoryReply,
        list_gifts: ListGiftsRequest => ListGiftsReply,
    );
}

fn config(addr: SocketAddr) -> ClientConfig {
    let mut config = ClientConfig::from_endpoints(&addr.to_string()).unwrap();
    config.backoff_ms_initial = 1;
    config.backoff_ms_max = 5;
    config.deadline_ms = 5_000;
    config
}

fn gift(sender: &str, n: u32) -> GiftRequest {
    GiftRequest {
        sender: sender.into(),
        recipient: "creator".into(),
        gift_id: "rose".into(),
        quantity: n,
        ..Default::default()
    }
}

#[tokio::test]
async fn concurrent_calls_share_batches_a_few_in_flight_and_each_gets_its_own_answer() {
    let server = Recorder {
        delay: Duration::from_millis(30),
        ..Default::default()
    };
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr).batching(16, 0)).unwrap();
    let calls = (1..=100u32).map(|n| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut req = gift("alice", n);
            req.request_id = format!("id-{n}");
            (n, client.gift(req).await)
        })
    });
    for call in futures_join(calls).await {
        let (n, reply) = call;
        let reply = reply.unwrap();
        assert_eq!(reply.tx_id, format!("tx-id-{n}"), "answer routed to its caller");
        assert_eq!(reply.quantity, n);
    }
    let batches = server.batches();
    let sent: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(sent, 100, "each command sent once");
    assert!(batches.iter().all(|b| b.len() <= 16), "max_batch bounds a batch");
    assert!(batches.len() < 20, "calls were batched: {} batches", batches.len());
    let in_flight_max = server.in_flight_max.load(Ordering::SeqCst);
    assert!(
        (2..=LANE_BATCHES_IN_FLIGHT).contains(&in_flight_max),
        "a slow batch does not hold up the next, within the bound: {in_flight_max} in flight"
    );
}

#[tokio::test]
async fn per_command_errors_reach_their_callers_and_retryable_ones_retry_with_the_same_id() {
    let server = Recorder::default();
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr).batching(64, 2_000)).unwrap();
    let (ok, poor, flaky) = tokio::join!(
        client.gift(gift("alice", 1)),
        client.gift(gift("poor", 1)),
        client.gift(GiftRequest {
            request_id: "flaky-1".into(),
            ..gift("flaky", 1)
        }),
    );
    assert!(ok.is_ok());
    assert_eq!(poor.unwrap_err().code, ErrorCode::InsufficientCoins);
    assert_eq!(flaky.unwrap().tx_id, "tx-flaky-1");
    let ids: Vec<String> = server.batches().concat();
    assert_eq!(ids.iter().filter(|id| *id == "flaky-1").count(), 2, "{ids:?}");
    assert_eq!(ids.len(), 4, "only the UNAVAILABLE command was resent: {ids:?}");
    // The linger gathered the three concurrent calls into one first batch.
    assert_eq!(server.batches()[0].len(), 3);
}

#[tokio::test]
async fn a_lone_caller_is_not_delayed_into_a_batch() {
    let server = Recorder::default();
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr).batching(256, 0)).unwrap();
    for n in 1..=3 {
        client.gift(gift("alice", n)).await.unwrap();
    }
    let sizes: Vec<usize> = server.batches().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1, 1, 1]);
}

#[tokio::test]
async fn submit_batch_answers_in_order_and_resends_only_retryable_commands() {
    let server = Recorder::default();
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr)).unwrap();
    let commands = ["alice", "flaky", "poor", "bob"]
        .iter()
        .map(|s| BatchCommand {
            command: Some(Command::Gift(gift(s, 1))),
        })
        .collect();
    let outcomes = client.submit_batch(commands).await.unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(matches!(outcomes[0], Ok(Answer::Gift(_))));
    assert!(matches!(outcomes[1], Ok(Answer::Gift(_))));
    assert_eq!(
        outcomes[2].as_ref().unwrap_err().code,
        ErrorCode::InsufficientCoins
    );
    assert!(matches!(outcomes[3], Ok(Answer::Gift(_))));
    let batches = server.batches();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1], vec![batches[0][1].clone()], "same id resent");
    assert!(client.submit_batch(Vec::new()).await.is_err());
}

/// Awaits spawned tasks in order (no futures crate in dev-dependencies).
async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}
