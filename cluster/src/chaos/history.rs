//! The history of a chaos run: every operation a client task invoked, with its request, its
//! invocation and completion times (ms since the run began) and its outcome. The checkers
//! read it; `history.jsonl` keeps it, one operation per line.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use coinledger_client::proto::{
    BalanceReply, BalanceRequest, CashOutReply, CashOutRequest, ErrorCode, GiftReply, GiftRequest, HistoryReply,
    HistoryRequest, PayoutReply, PayoutRequest, PurchaseReply, PurchaseRequest, RefundReply, RefundRequest,
};
use coinledger_client::{Client, ClientError};
use serde_json::{json, Value};

/// A request of the workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Purchase(PurchaseRequest),
    Gift(GiftRequest),
    CashOut(CashOutRequest),
    Post(PayoutRequest),
    Void(PayoutRequest),
    Refund(RefundRequest),
    Balance(BalanceRequest),
    History(HistoryRequest),
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Purchase(PurchaseReply),
    Gift(GiftReply),
    CashOut(CashOutReply),
    Payout(PayoutReply),
    Refund(RefundReply),
    Balance(BalanceReply),
    History(HistoryReply),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Reply),
    /// A definite answer: the command was refused (nothing changed) with this code.
    Failed { code: ErrorCode, message: String },
    /// No definite answer before the task's deadline: it may or may not have happened.
    Unknown { last_error: String },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed { .. } => "failed",
            Outcome::Unknown { .. } => "unknown",
        }
    }
}

/// Kinds, for tables.
pub const KINDS: [&str; 8] = ["purchase", "gift", "cash_out", "post_payout", "void_payout", "refund", "balance", "history"];

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Purchase(_) => "purchase",
            Request::Gift(_) => "gift",
            Request::CashOut(_) => "cash_out",
            Request::Post(_) => "post_payout",
            Request::Void(_) => "void_payout",
            Request::Refund(_) => "refund",
            Request::Balance(_) => "balance",
            Request::History(_) => "history",
        }
    }

    pub fn is_mutation(&self) -> bool {
        !matches!(self, Request::Balance(_) | Request::History(_))
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Request::Purchase(r) => Some(&r.request_id),
            Request::Gift(r) => Some(&r.request_id),
            Request::CashOut(r) => Some(&r.request_id),
            Request::Post(r) | Request::Void(r) => Some(&r.request_id),
            Request::Refund(r) => Some(&r.request_id),
            Request::Balance(_) | Request::History(_) => None,
        }
    }

    /// One attempt of the client library (which itself retries with the same request id
    /// until its own deadline).
    pub async fn send(&self, client: &Client) -> Result<Reply, ClientError> {
        Ok(match self {
            Request::Purchase(r) => Reply::Purchase(client.purchase(r.clone()).await?),
            Request::Gift(r) => Reply::Gift(client.gift(r.clone()).await?),
            Request::CashOut(r) => Reply::CashOut(client.cash_out(r.clone()).await?),
            Request::Post(r) => Reply::Payout(client.post_payout(r.clone()).await?),
            Request::Void(r) => Reply::Payout(client.void_payout(r.clone()).await?),
            Request::Refund(r) => Reply::Refund(client.refund(r.clone()).await?),
            Request::Balance(r) => Reply::Balance(client.balance(r.clone()).await?),
            Request::History(r) => Reply::History(client.history(r.clone()).await?),
        })
    }

    pub fn to_json(&self) -> Value {
        match self {
            Request::Purchase(r) => json!({
                "request_id": r.request_id, "account": r.account, "payment_ref": r.payment_ref,
                "amount": r.paid.as_ref().map(|m| format!("{} {}", m.amount, m.currency)),
            }),
            Request::Gift(r) => json!({
                "request_id": r.request_id, "sender": r.sender, "recipient": r.recipient,
                "gift_id": r.gift_id, "quantity": r.quantity,
            }),
            Request::CashOut(r) => json!({"request_id": r.request_id, "account": r.account, "diamonds": r.diamonds}),
            Request::Post(r) | Request::Void(r) => json!({"request_id": r.request_id, "payout_id": r.payout_id}),
            Request::Refund(r) => json!({"request_id": r.request_id, "payment_ref": r.payment_ref}),
            Request::Balance(r) => json!({"account": r.account}),
            Request::History(r) => json!({"account": r.account, "limit": r.limit}),
        }
    }
}

impl Reply {
    pub fn to_json(&self) -> Value {
        match self {
            Reply::Purchase(r) => json!({"tx_id": r.tx_id, "coins_credited": r.coins_credited, "coins_balance": r.coins_balance}),
            Reply::Gift(r) => json!({
                "tx_id": r.tx_id, "coins_debited": r.coins_debited, "diamonds_credited": r.diamonds_credited,
                "sender_coins_balance": r.sender_coins_balance,
            }),
            Reply::CashOut(r) => json!({"payout_id": r.payout_id, "diamonds_held": r.diamonds_held}),
            Reply::Payout(r) => json!({"payout_id": r.payout_id, "account": r.account, "state": r.state, "diamonds": r.diamonds}),
            Reply::Refund(r) => json!({
                "tx_id": r.tx_id, "account": r.account, "coins_purchased": r.coins_purchased,
                "coins_recovered": r.coins_recovered, "coins_unrecovered": r.coins_unrecovered, "frozen": r.account_frozen,
            }),
            Reply::Balance(r) => json!({
                "coins": r.coins, "diamonds": r.diamonds, "diamonds_held": r.diamonds_held,
                "diamonds_available": r.diamonds_available, "frozen": r.frozen,
            }),
            Reply::History(r) => json!({"entries": r.entries.len()}),
        }
    }
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Ok(r) => json!({"outcome": "ok", "reply": r.to_json()}),
            Outcome::Failed { code, message } => json!({"outcome": "failed", "code": code.as_str_name(), "message": message}),
            Outcome::Unknown { last_error } => json!({"outcome": "unknown", "last_error": last_error}),
        }
    }
}

/// One operation of the history.
#[derive(Debug, Clone)]
pub struct Op {
    /// Position in the history (order of invocation).
    pub id: usize,
    pub task: usize,
    pub req: Request,
    pub invoke_ms: u64,
    /// None while in flight; for an unknown outcome, when the task gave up.
    pub complete_ms: Option<u64>,
    pub outcome: Outcome,
    /// For an unknown outcome: the definite answer to the same request id after the heal,
    /// and when it came.
    pub resolved: Option<(Outcome, u64)>,
}

impl Op {
    /// The outcome that counts: the resolution of an unknown one, else the outcome.
    pub fn final_outcome(&self) -> &Outcome {
        match &self.resolved {
            Some((o, _)) => o,
            None => &self.outcome,
        }
    }

    /// The reply if the operation (finally) succeeded.
    pub fn final_reply(&self) -> Option<&Reply> {
        match self.final_outcome() {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    /// The last moment the operation may have taken effect: its completion, or for an
    /// unknown outcome the completion of its resolution.
    pub fn effect_deadline_ms(&self) -> u64 {
        match (&self.outcome, &self.resolved) {
            (Outcome::Unknown { .. }, Some((_, at))) => *at,
            (Outcome::Unknown { .. }, None) => u64::MAX,
            _ => self.complete_ms.unwrap_or(u64::MAX),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "task": self.task, "kind": self.req.kind(), "request": self.req.to_json(),
            "invoke_ms": self.invoke_ms, "complete_ms": self.complete_ms,
        });
        let obj = v.as_object_mut().expect("object");
        if let Value::Object(o) = self.outcome.to_json() {
            obj.extend(o);
        }
        if let Some((o, at)) = &self.resolved {
            obj.insert("resolved".into(), json!({"at_ms": at, "answer": o.to_json()}));
        }
        v
    }
}

/// The shared, append-only history of a run.
#[derive(Debug)]
pub struct History {
    pub started: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new() -> History {
        History { started: Instant::now(), ops: Mutex::new(Vec::new()) }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records an invocation; returns its id.
    pub fn invoke(&self, task: usize, req: Request) -> usize {
        let invoke_ms = self.now_ms();
        let mut ops = lock(&self.ops);
        let id = ops.len();
        ops.push(Op {
            id,
            task,
            req,
            invoke_ms,
            complete_ms: None,
            outcome: Outcome::Unknown { last_error: "in flight".into() },
            resolved: None,
        });
        id
    }

    pub fn complete(&self, id: usize, outcome: Outcome) {
        let now = self.now_ms();
        let mut ops = lock(&self.ops);
        ops[id].complete_ms = Some(now);
        ops[id].outcome = outcome;
    }

    pub fn resolve(&self, id: usize, outcome: Outcome) {
        let now = self.now_ms();
        lock(&self.ops)[id].resolved = Some((outcome, now));
    }

    pub fn snapshot(&self) -> Vec<Op> {
        lock(&self.ops).clone()
    }

    /// history.jsonl
    pub fn write_jsonl(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in lock(&self.ops).iter() {
            writeln!(out, "{}", op.to_json())?;
        }
        out.flush()
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The outcome of one answer: a definite one, or None if it is "try again" (retryable, or
/// INTERNAL, which is no proof that nothing was applied).
pub fn definite(answer: Result<Reply, ClientError>) -> std::result::Result<Outcome, ClientError> {
    match answer {
        Ok(r) => Ok(Outcome::Ok(r)),
        Err(e) if e.is_retryable() || e.code == ErrorCode::Internal => Err(e),
        Err(e) => Ok(Outcome::Failed { code: e.code, message: e.message }),
    }
}
