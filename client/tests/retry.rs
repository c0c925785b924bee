//! The retry loop against tiny in-process Ledger servers over real sockets: each server plays
//! a script of error answers for Purchase, then answers OK, and records every request id it saw.

mod common;
use common::serve;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coinledger_client::proto::ledger_server::Ledger;
use coinledger_client::proto::*;
use coinledger_client::{Client, ClientConfig};
use prost::Message;
use tonic::{Code, Request, Response, Status};

/// What a scripted server does with one Purchase.
#[derive(Clone)]
enum Answer {
    Error(ErrorCode, Option<String>),
    /// Sleep past the client's attempt timeout, then answer OK (an unknown outcome).
    Slow(Duration),
}

#[derive(Clone, Default)]
struct Scripted {
    name: String,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// Answer used once the script is exhausted; None means OK.
    forever: Option<Answer>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn node_error(code: ErrorCode, hint: Option<String>) -> Status {
    let grpc = match code {
        ErrorCode::NotLeader | ErrorCode::Unavailable => Code::Unavailable,
        _ => Code::FailedPrecondition,
    };
    let detail = ErrorDetail {
        code: code as i32,
        code_name: code.as_str_name().into(),
        message: format!("scripted {}", code.as_str_name()),
        leader_hint: hint.unwrap_or_default(),
        shard: 1,
    };
    Status::with_details(grpc, detail.message.clone(), detail.encode_to_vec().into())
}

#[tonic::async_trait]
impl Ledger for Scripted {
    async fn purchase(
        &self,
        request: Request<PurchaseRequest>,
    ) -> Result<Response<PurchaseReply>, Status> {
        self.seen
            .lock()
            .unwrap()
            .push(request.get_ref().request_id.clone());
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.forever.clone());
        match next {
            Some(Answer::Error(code, hint)) => return Err(node_error(code, hint)),
            Some(Answer::Slow(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        Ok(Response::new(PurchaseReply {
            tx_id: format!("tx-{}", self.name),
            ..Default::default()
        }))
    }

    // Only Purchase is scripted; async_trait needs every method written out.
    async fn gift(&self, _: Request<GiftRequest>) -> Reply<GiftReply> {
        Err(unscripted())
    }
    async fn cash_out(&self, _: Request<CashOutRequest>) -> Reply<CashOutReply> {
        Err(unscripted())
    }
    async fn post_payout(&self, _: Request<PayoutRequest>) -> Reply<PayoutReply> {
        Err(unscripted())
    }
    async fn void_payout(&self, _: Request<PayoutRequest>) -> Reply<PayoutReply> {
        Err(unscripted())
    }
    async fn refund(&self, _: Request<RefundRequest>) -> Reply<RefundReply> {
        Err(unscripted())
    }
    async fn balance(&self, _: Request<BalanceRequest>) -> Reply<BalanceReply> {
        Err(unscripted())
    }
    async fn history(&self, _: Request<HistoryRequest>) -> Reply<HistoryReply> {
        Err(unscripted())
    }
    async fn get_rates(&self, _: Request<GetRatesRequest>) -> Reply<RateCard> {
        Err(unscripted())
    }
    async fn list_gifts(&self, _: Request<ListGiftsRequest>) -> Reply<ListGiftsReply> {
        Err(unscripted())
    }
    async fn topology(&self, _: Request<TopologyRequest>) -> Reply<TopologyReply> {
        Err(unscripted())
    }
    async fn submit_batch(&self, _: Request<SubmitBatchRequest>) -> Reply<SubmitBatchReply> {
        Err(unscripted())
    }
    unused_submit_stream!("not scripted");
}

type Reply<T> = Result<Response<T>, Status>;

fn unscripted() -> Status {
    Status::unimplemented("not scripted")
}

fn scripted(name: &str, script: Vec<Answer>) -> Scripted {
    Scripted {
        name: name.into(),
        script: Arc::new(Mutex::new(script.into())),
        ..Default::default()
    }
}

fn client(endpoints: &[String], deadline_ms: u64) -> Client {
    let mut config = ClientConfig::from_endpoints(&endpoints.join(",")).unwrap();
    config.deadline_ms = deadline_ms;
    config.attempt_timeout_ms = 300;
    config.backoff_ms_initial = 5;
    config.backoff_ms_max = 20;
    Client::connect(config).unwrap()
}

fn purchase() -> PurchaseRequest {
    PurchaseRequest {
        account: "alice".into(),
        paid: Some(Money {
            amount: "9.99".into(),
            currency: "USD".into(),
        }),
        payment_ref: "psp-1".into(),
        ..Default::default()
    }
}

/// A free local port that nothing listens on: connecting to it is refused.
fn refused_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn follows_the_leader_hint_with_the_same_request_id() {
    let leader = scripted("leader", vec![]);
    let leader_addr = serve(leader.clone()).await;
    let mut follower = scripted("follower", vec![]);
    follower.forever = Some(Answer::Error(
        ErrorCode::NotLeader,
        Some(leader_addr.to_string()),
    ));
    let follower_addr = serve(follower.clone()).await;

    let client = client(&[follower_addr.to_string()], 5_000);
    let reply = client.purchase(purchase()).await.unwrap();
    assert_eq!(reply.tx_id, "tx-leader");
    let (asked, answered) = (follower.seen(), leader.seen());
    assert_eq!(asked.len(), 1);
    assert_eq!(answered, asked, "the leader saw the follower's request id");
    assert_eq!(asked[0].len(), coinledger_client::REQUEST_ID_LEN);
    assert!(client
        .endpoints()
        .contains(&format!("http://{leader_addr}")));

    // The next call starts at the endpoint that answered.
    client.purchase(purchase()).await.unwrap();
    assert_eq!(follower.seen().len(), 1);
    assert_eq!(leader.seen().len(), 2);
}

#[tokio::test]
async fn retries_unavailable_with_the_same_request_id() {
    let unavailable = Answer::Error(ErrorCode::Unavailable, None);
    let node = scripted("n1", vec![unavailable.clone(), unavailable]);
    let addr = serve(node.clone()).await;

    let client = client(&[addr.to_string()], 5_000);
    let mut req = purchase();
    req.request_id = "caller-chosen-1".into();
    client.purchase(req).await.unwrap();
    assert_eq!(node.seen(), vec!["caller-chosen-1"; 3]);
}

#[tokio::test]
async fn skips_a_dead_endpoint() {
    let node = scripted("n2", vec![]);
    let addr = serve(node.clone()).await;
    let client = client(&[refused_endpoint(), addr.to_string()], 5_000);
    assert_eq!(client.purchase(purchase()).await.unwrap().tx_id, "tx-n2");
    assert_eq!(node.seen().len(), 1);
}

#[tokio::test]
async fn a_definite_answer_is_not_retried() {
    let node = scripted(
        "n1",
        vec![Answer::Error(ErrorCode::InsufficientCoins, None)],
    );
    let addr = serve(node.clone()).await;
    let err = client(&[addr.to_string()], 5_000)
        .purchase(purchase())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InsufficientCoins);
    assert_eq!(err.endpoint, Some(format!("http://{addr}")));
    assert_eq!(node.seen().len(), 1);
}

#[tokio::test]
async fn known_failures_until_the_deadline_keep_their_code() {
    let mut node = scripted("n1", vec![]);
    node.forever = Some(Answer::Error(ErrorCode::Unavailable, None));
    let addr = serve(node.clone()).await;
    let err = client(&[addr.to_string(), refused_endpoint()], 400)
        .purchase(purchase())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    let seen = node.seen();
    assert!(seen.len() >= 2, "retried: {seen:?}");
    assert!(seen.iter().all(|id| *id == seen[0]));
}

#[tokio::test]
async fn an_unanswered_attempt_makes_the_outcome_unknown() {
    let mut node = scripted("n1", vec![Answer::Slow(Duration::from_millis(1_000))]);
    node.forever = Some(Answer::Error(ErrorCode::Unavailable, None));
    let addr = serve(node.clone()).await;
    let err = client(&[addr.to_string()], 800)
        .purchase(purchase())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout, "{err}");
    assert_eq!(err.code_name, "TIMEOUT");
    assert!(err
        .message
        .starts_with("outcome unknown: retry with the same request id"));
}
