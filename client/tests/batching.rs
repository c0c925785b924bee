//! Automatic batching and `submit_batch` against an in-process Ledger server over a real
//! socket. The server answers SubmitStream and SubmitBatch: gifts from "poor" are
//! INSUFFICIENT_COINS, gifts from "flaky" are UNAVAILABLE the first time their request id is
//! seen, the first stream frame holding a gift from "crash" makes the server drop the stream
//! unanswered, gifts from "slow" take 500 ms, every other gift succeeds after `delay` with the
//! request id echoed in tx_id. It records the request ids of every frame (or batch).

mod common;
use common::serve;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::ledger_server::Ledger;
use coinledger_client::proto::*;
use coinledger_client::{Client, ClientConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const SLOW_MS: u64 = 500;

#[derive(Clone, Default)]
struct Recorder {
    /// Request ids of every stream frame or SubmitBatch, in arrival order.
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    /// SubmitStream calls opened.
    streams: Arc<AtomicUsize>,
    /// How long each command takes, so concurrent callers pile up behind it.
    delay: Duration,
}

impl Recorder {
    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }

    fn first_time(&self, request_id: &str) -> bool {
        self.seen.lock().unwrap().insert(request_id.to_string())
    }

    fn answer(&self, gift: &GiftRequest) -> Answer {
        let first_time = self.first_time(&gift.request_id);
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

    fn delay_of(&self, gift: &GiftRequest) -> Duration {
        if gift.sender == "slow" {
            Duration::from_millis(SLOW_MS)
        } else {
            self.delay
        }
    }
}

fn gift_of(command: Option<BatchCommand>) -> Result<GiftRequest, Status> {
    match command {
        Some(BatchCommand {
            command: Some(Command::Gift(g)),
        }) => Ok(g),
        _ => Err(Status::invalid_argument("gifts only")),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Ledger for Recorder {
    async fn submit_batch(&self, request: Request<SubmitBatchRequest>) -> Reply<SubmitBatchReply> {
        let mut ids = Vec::new();
        let mut results = Vec::new();
        for c in request.into_inner().commands {
            let g = gift_of(Some(c))?;
            ids.push(g.request_id.clone());
            results.push(BatchResult {
                result: Some(self.answer(&g)),
            });
        }
        self.batches.lock().unwrap().push(ids);
        Ok(Response::new(SubmitBatchReply { results }))
    }

    type SubmitStreamStream = ReceiverStream<Result<SubmitStreamReply, Status>>;

    async fn submit_stream(&self, request: Request<Streaming<SubmitStreamRequest>>) -> Reply<Self::SubmitStreamStream> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let (replies, out) = mpsc::channel(64);
        let mut frames = request.into_inner();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = frames.message().await {
                let mut ids = Vec::new();
                let mut crash = false;
                for call in frame.calls {
                    let g = match gift_of(call.command) {
                        Ok(g) => g,
                        Err(status) => return drop(replies.send(Err(status)).await),
                    };
                    ids.push(g.request_id.clone());
                    if g.sender == "crash" && me.first_time(&g.request_id) {
                        crash = true;
                        continue;
                    }
                    let (me, replies) = (me.clone(), replies.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(me.delay_of(&g)).await;
                        let result = StreamResult {
                            call_id: call.call_id,
                            result: Some(BatchResult {
                                result: Some(me.answer(&g)),
                            }),
                        };
                        let _ = replies.send(Ok(SubmitStreamReply { results: vec![result] })).await;
                    });
                }
                me.batches.lock().unwrap().push(ids);
                if crash {
                    // Ends the reply stream as soon as the calls already running are answered.
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out)))
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
async fn concurrent_calls_share_frames_of_one_stream_and_each_gets_its_own_answer() {
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
    let frames = server.batches();
    let sent: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(sent, 100, "each command sent once");
    assert!(frames.iter().all(|b| b.len() <= 16), "max_batch bounds a frame");
    assert!(frames.len() < 50, "calls shared frames: {} frames", frames.len());
    assert_eq!(server.streams.load(Ordering::SeqCst), 1, "one stream carried them all");
}

#[tokio::test]
async fn a_slow_command_holds_up_none_of_the_commands_sent_with_it() {
    let server = Recorder::default();
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr).batching(64, 20_000)).unwrap();
    let started = Instant::now();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { (client.gift(gift("slow", 1)).await, started.elapsed()) })
    };
    let fast = {
        let client = client.clone();
        tokio::spawn(async move { (client.gift(gift("alice", 2)).await, started.elapsed()) })
    };
    let ((slow, slow_took), (fast, fast_took)) = (slow.await.unwrap(), fast.await.unwrap());
    assert!(slow.is_ok() && fast.is_ok());
    assert_eq!(server.batches().len(), 1, "the linger put both in one frame: {:?}", server.batches());
    assert!(slow_took >= Duration::from_millis(SLOW_MS), "{slow_took:?}");
    assert!(fast_took < Duration::from_millis(SLOW_MS / 2), "the fast one was answered alone: {fast_took:?}");
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
    // The linger gathered the three concurrent calls into one first frame.
    assert_eq!(server.batches()[0].len(), 3);
}

#[tokio::test]
async fn a_lone_caller_is_not_delayed_into_a_frame() {
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
async fn a_stream_that_ends_unanswered_is_replaced_and_its_calls_retried_with_their_ids() {
    let server = Recorder::default();
    let addr = serve(server.clone()).await;
    let client = Client::connect(config(addr).batching(64, 0)).unwrap();
    let reply = client
        .gift(GiftRequest {
            request_id: "crash-1".into(),
            ..gift("crash", 1)
        })
        .await
        .expect("answered on a new stream");
    assert_eq!(reply.tx_id, "tx-crash-1");
    assert_eq!(server.streams.load(Ordering::SeqCst), 2, "the broken stream was replaced");
    assert_eq!(server.batches().concat(), vec!["crash-1", "crash-1"], "resent with the same id");
    // The new stream serves later calls.
    client.gift(gift("alice", 1)).await.unwrap();
    assert_eq!(server.streams.load(Ordering::SeqCst), 2);
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
