//! The workload: `clients` concurrent tasks, each acting as a stream of buyers (purchases,
//! gifts, refunds, reads) and, now and then, as a creator cashing out (hold, then post or
//! void). Every mutation has a fresh request id; a retryable answer (or INTERNAL) is retried
//! with the SAME request id until the task's deadline, after which the outcome is recorded as
//! unknown (resolved after the heal).
//!
//! Per-account histories stay small by construction, so the linearizability search is cheap:
//! a buyer belongs to one task and is replaced after `BUYER_OPS_MAX` operations or a refund;
//! creators are zipf-hot but renamed every `CREATOR_EPOCH_MS` ("c3-e4": rank 3, epoch 4).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coinledger_client::proto::{
    BalanceRequest, CashOutRequest, ErrorCode, GiftRequest, HistoryRequest, Money, PayoutRequest, PurchaseRequest,
    RefundRequest,
};
use coinledger_client::Client;

use super::history::{definite, History, Outcome, Reply, Request};
use super::rng::{Rng, Zipf};

/// Operations on one buyer before the task opens a new one.
pub const BUYER_OPS_MAX: u32 = 24;
/// Creators are renamed this often, bounding each creator's history.
pub const CREATOR_EPOCH_MS: u64 = 10_000;
/// Creators per epoch (zipf ranks).
pub const CREATORS: usize = 16;
/// Diamonds of each cash-out (the rate card's minimum).
pub const CASHOUT_DIAMONDS: u64 = 1_000;

/// How long a task keeps retrying one operation with the same request id.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub clients: usize,
    pub seed: u64,
    pub op_deadline: Duration,
}

/// Running client tasks.
pub struct Workload {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    pub internal_answers: Arc<AtomicU64>,
}

struct Task {
    id: usize,
    client: Client,
    history: Arc<History>,
    rng: Rng,
    zipf: Zipf,
    op_deadline: Duration,
    buyer_n: u64,
    buyer_ops: u32,
    /// Acknowledged payment refs of the current buyer (refund candidates).
    paid_refs: Vec<String>,
    payments: u64,
    internal_answers: Arc<AtomicU64>,
}

impl Workload {
    pub fn start(client: Client, history: Arc<History>, opts: &WorkloadOptions) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let internal_answers = Arc::new(AtomicU64::new(0));
        let handles = (0..opts.clients.max(1))
            .map(|t| {
                let mut task = Task {
                    id: t,
                    client: client.clone(),
                    history: history.clone(),
                    rng: Rng::fork(opts.seed, 1_000 + t as u64),
                    zipf: Zipf::new(CREATORS, 1.1),
                    op_deadline: opts.op_deadline,
                    buyer_n: 0,
                    buyer_ops: 0,
                    paid_refs: Vec::new(),
                    payments: 0,
                    internal_answers: internal_answers.clone(),
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        task.step().await;
                    }
                })
            })
            .collect();
        Workload { stop, handles, internal_answers }
    }

    /// Asks the tasks to stop and waits until each finished its operation in flight.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.await;
        }
        self.internal_answers.load(Ordering::Relaxed)
    }
}

impl Task {
    fn buyer(&self) -> String {
        format!("b{}-{}", self.id, self.buyer_n)
    }

    fn next_buyer(&mut self) {
        self.buyer_n += 1;
        self.buyer_ops = 0;
        self.paid_refs.clear();
    }

    fn creator(&mut self) -> String {
        let epoch = self.history.now_ms() / CREATOR_EPOCH_MS;
        format!("c{}-e{epoch}", self.zipf.sample(&mut self.rng))
    }

    async fn step(&mut self) {
        if self.buyer_ops >= BUYER_OPS_MAX {
            self.next_buyer();
        }
        let first = self.buyer_ops == 0;
        self.buyer_ops += 1;
        let roll = self.rng.range(0, 99);
        match roll {
            _ if first => self.purchase().await,
            0..=19 => self.purchase().await,
            20..=54 => self.gift().await,
            55..=62 => self.cash_out().await,
            63..=65 => self.refund().await,
            66..=89 => {
                let account = if self.rng.chance(50) { self.buyer() } else { self.creator() };
                self.run(Request::Balance(BalanceRequest { account })).await;
            }
            _ => {
                let account = if self.rng.chance(50) { self.buyer() } else { self.creator() };
                self.run(Request::History(HistoryRequest { account, limit: 20, cursor: String::new() })).await;
            }
        }
    }

    async fn purchase(&mut self) {
        let amount = *self.rng.pick(&["5.00", "20.00", "0.50", "12.34"]);
        let payment_ref = format!("pay-{}-{}", self.id, self.payments);
        self.payments += 1;
        let req = PurchaseRequest {
            request_id: Client::new_request_id(),
            account: self.buyer(),
            paid: Some(Money { amount: amount.into(), currency: "USD".into() }),
            payment_ref: payment_ref.clone(),
        };
        if let Outcome::Ok(_) = self.run(Request::Purchase(req)).await {
            self.paid_refs.push(payment_ref);
        }
    }

    async fn gift(&mut self) {
        let (gift_id, quantity) = *self.rng.pick(&[("rose", 3), ("doughnut", 1), ("confetti", 2), ("galaxy", 1), ("corgi", 1)]);
        let recipient = self.creator();
        let req = GiftRequest {
            request_id: Client::new_request_id(),
            sender: self.buyer(),
            recipient,
            gift_id: gift_id.into(),
            quantity,
            message: String::new(),
            stream_id: format!("live-{}", self.id % 4),
        };
        if let Outcome::Failed { code: ErrorCode::AccountFrozen, .. } = self.run(Request::Gift(req)).await {
            self.next_buyer();
        }
    }

    async fn cash_out(&mut self) {
        let account = self.creator();
        let req = CashOutRequest {
            request_id: Client::new_request_id(),
            account,
            diamonds: CASHOUT_DIAMONDS,
            currency: "USD".into(),
        };
        let Outcome::Ok(Reply::CashOut(reply)) = self.run(Request::CashOut(req)).await else { return };
        let payout = PayoutRequest { request_id: Client::new_request_id(), payout_id: reply.payout_id };
        if self.rng.chance(60) {
            self.run(Request::Post(payout)).await;
        } else {
            self.run(Request::Void(payout)).await;
        }
    }

    async fn refund(&mut self) {
        if self.paid_refs.is_empty() {
            return;
        }
        let payment_ref = self.rng.pick(&self.paid_refs).clone();
        self.run(Request::Refund(RefundRequest { request_id: Client::new_request_id(), payment_ref })).await;
        // The buyer may now be frozen (coins already spent): start a new one.
        self.next_buyer();
    }

    /// Sends `req` (retrying with the same request id) until a definite answer or the deadline.
    async fn run(&mut self, req: Request) -> Outcome {
        let id = self.history.invoke(self.id, req.clone());
        let deadline = Instant::now() + self.op_deadline;
        let outcome = loop {
            match definite(req.send(&self.client).await) {
                Ok(o) => break o,
                Err(e) => {
                    if e.code == ErrorCode::Internal {
                        self.internal_answers.fetch_add(1, Ordering::Relaxed);
                    }
                    if Instant::now() >= deadline {
                        break Outcome::Unknown { last_error: e.to_string() };
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.history.complete(id, outcome.clone());
        outcome
    }
}
