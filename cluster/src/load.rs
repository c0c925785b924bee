//! Steady purchase load with a book of what was acknowledged, and the end-of-run checks:
//! unknown outcomes resolved by retrying with the SAME request id, cross-shard credits
//! drained, every account's coins equal to the acknowledged sum, Admin.Audit ok.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coinledger_client::proto::{AuditReply, AuditRequest, BalanceRequest, ErrorCode, Money, PurchaseReply, PurchaseRequest};
use coinledger_client::{Client, ClientError};
use coinledger_ledger::Layout;

use crate::launcher::Result;

/// What each load purchase pays.
pub const PRICE: &str = "5.00";
pub const CURRENCY: &str = "USD";

/// Acknowledged coins per account, and the requests whose outcome is unknown.
#[derive(Debug, Default)]
pub struct Book {
    acked: Mutex<BTreeMap<String, u64>>,
    unknown: Mutex<Vec<PurchaseRequest>>,
    definite_errors: Mutex<Vec<String>>,
    anomalies: Mutex<Vec<String>>,
    pub acked_count: AtomicU64,
}

impl Book {
    pub fn new() -> Arc<Book> {
        Arc::new(Book::default())
    }

    /// Records the outcome of `req`. Returns true if it was acknowledged.
    pub fn record(&self, req: &PurchaseRequest, outcome: &std::result::Result<PurchaseReply, ClientError>) -> bool {
        match outcome {
            Ok(reply) => {
                *lock(&self.acked).entry(req.account.clone()).or_default() += reply.coins_credited;
                self.acked_count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) if e.is_retryable() => {
                lock(&self.unknown).push(req.clone());
                false
            }
            // INTERNAL is no proof that nothing was applied (a node answered INTERNAL for a
            // purchase it had applied): resolve it like an unknown outcome, and report it.
            Err(e) if e.code == ErrorCode::Internal => {
                lock(&self.anomalies).push(format!("{} ({}): {e}", req.payment_ref, req.request_id));
                lock(&self.unknown).push(req.clone());
                false
            }
            Err(e) => {
                lock(&self.definite_errors).push(format!("{} ({}): {e}", req.payment_ref, req.request_id));
                false
            }
        }
    }

    /// Makes sure `account` is checked even if nothing was acknowledged for it.
    pub fn track(&self, account: &str) {
        lock(&self.acked).entry(account.to_string()).or_default();
    }

    pub fn acked(&self) -> BTreeMap<String, u64> {
        lock(&self.acked).clone()
    }

    pub fn unknown_count(&self) -> usize {
        lock(&self.unknown).len()
    }

    pub fn definite_errors(&self) -> Vec<String> {
        lock(&self.definite_errors).clone()
    }

    /// INTERNAL answers seen (each then resolved like an unknown outcome).
    pub fn anomalies(&self) -> Vec<String> {
        lock(&self.anomalies).clone()
    }

    /// Retries every unknown outcome with its own request id and body until it gets a
    /// definite answer (or `limit` passes). Returns how many were in fact applied.
    pub async fn resolve_unknown(&self, client: &Client, limit: Duration) -> Result<usize> {
        let pending = std::mem::take(&mut *lock(&self.unknown));
        let started = Instant::now();
        let mut applied = 0;
        for req in pending {
            loop {
                let outcome = client.purchase(req.clone()).await;
                match &outcome {
                    Err(e) if e.is_retryable() || e.code == ErrorCode::Internal => {
                        if started.elapsed() > limit {
                            lock(&self.unknown).push(req.clone());
                            return Err(format!("outcome of {} still unknown after {limit:?}: {e}", req.request_id));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        if self.record(&req, &outcome) {
                            applied += 1;
                        }
                        break;
                    }
                }
            }
        }
        Ok(applied)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A purchase request of the load's shape.
pub fn purchase(account: &str, payment_ref: &str) -> PurchaseRequest {
    PurchaseRequest {
        request_id: Client::new_request_id(),
        account: account.to_string(),
        paid: Some(Money { amount: PRICE.into(), currency: CURRENCY.into() }),
        payment_ref: payment_ref.to_string(),
    }
}

/// Sends one purchase and records it.
pub async fn purchase_once(client: &Client, book: &Book, req: PurchaseRequest) -> std::result::Result<PurchaseReply, ClientError> {
    let outcome = client.purchase(req.clone()).await;
    book.record(&req, &outcome);
    outcome
}

/// Payment references that route to `shard`: "{prefix}-{n}" for the n that hash there.
pub struct RefsForShard {
    layout: Layout,
    shard: u32,
    prefix: String,
    next: u64,
}

impl RefsForShard {
    pub fn new(shards: u32, shard: u32, prefix: &str) -> RefsForShard {
        RefsForShard { layout: Layout::new(shards), shard, prefix: prefix.to_string(), next: 0 }
    }
}

impl Iterator for RefsForShard {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            let candidate = format!("{}-{}", self.prefix, self.next);
            self.next += 1;
            if self.layout.shard_of(&candidate) == self.shard {
                return Some(candidate);
            }
        }
    }
}

/// Client tasks buying coins in a loop, each purchase with a fresh payment reference.
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    pub book: Arc<Book>,
    pub accounts: Vec<String>,
}

impl Load {
    /// `tasks` concurrent buyers over `accounts` accounts named "{prefix}-a{i}", pausing
    /// `pause` between purchases.
    pub fn start(client: Client, tasks: usize, accounts: usize, prefix: &str, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let book = Book::new();
        let names: Vec<String> = (0..accounts.max(1)).map(|i| format!("{prefix}-a{i}")).collect();
        for a in &names {
            book.track(a);
        }
        let handles = (0..tasks)
            .map(|t| {
                let (client, stop, book, names) = (client.clone(), stop.clone(), book.clone(), names.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let account = &names[(n as usize * 7 + t) % names.len()];
                        let req = purchase(account, &format!("{prefix}-t{t}-{n}"));
                        n += 1;
                        let _ = purchase_once(&client, &book, req).await;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load { stop, handles, book, accounts: names }
    }

    /// Stops the buyers (each finishes its call in flight) and returns the book.
    pub async fn stop(self) -> Arc<Book> {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.await;
        }
        self.book
    }
}

/// Waits until no cross-shard effect is pending and no coins are in flight; returns the audit.
pub async fn drained_audit(client: &Client, limit: Duration) -> Result<AuditReply> {
    let started = Instant::now();
    loop {
        let last = match client.audit(AuditRequest {}).await {
            Ok(a) if a.pending_effects == 0 && a.coins_in_flight == 0 && a.diamonds_in_flight == 0 => return Ok(a),
            Ok(a) => format!("{} effects pending, {} coins in flight", a.pending_effects, a.coins_in_flight),
            Err(e) => format!("audit failed: {e}"),
        };
        if started.elapsed() > limit {
            return Err(format!("not drained after {limit:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The end-of-run verdict.
#[derive(Debug)]
pub struct Verdict {
    pub acked_purchases: u64,
    pub accounts: usize,
    pub coins_acked: u64,
    pub audit: AuditReply,
    /// One line per account whose balance differs from the acknowledged sum, audit
    /// violations, definite errors of the load.
    pub problems: Vec<String>,
    /// INTERNAL answers during the run (node bugs, not losses: resolved by retrying).
    pub anomalies: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} acknowledged purchases, {} coins over {} accounts; audit ok={} (coins issued {}, held {}); {}",
            self.acked_purchases,
            self.coins_acked,
            self.accounts,
            self.audit.ok,
            self.audit.coins_issued,
            self.audit.coins_held,
            if self.problems.is_empty() { "nothing lost".to_string() } else { format!("{} PROBLEMS:\n  {}", self.problems.len(), self.problems.join("\n  ")) }
        ) + &if self.anomalies.is_empty() {
            String::new()
        } else {
            format!("\n{} INTERNAL answers (node bug; resolved by retrying with the same request id):\n  {}", self.anomalies.len(), self.anomalies.join("\n  "))
        }
    }
}

/// Resolves unknown outcomes, drains cross-shard credits, compares every account's coins to
/// the acknowledged sum and runs the audit. `exclusive`: this book saw every purchase the
/// cluster ever had, so the audit's coins issued must equal the acknowledged total.
pub async fn verify(client: &Client, book: &Book, exclusive: bool, limit: Duration) -> Result<Verdict> {
    let started = Instant::now();
    book.resolve_unknown(client, limit).await?;
    let audit = drained_audit(client, limit.saturating_sub(started.elapsed()).max(Duration::from_secs(5))).await?;
    let mut problems: Vec<String> = book.definite_errors().into_iter().map(|e| format!("purchase refused: {e}")).collect();
    let acked = book.acked();
    for (account, want) in &acked {
        let have = match client.balance(BalanceRequest { account: account.clone() }).await {
            Ok(b) => b.coins,
            Err(e) if e.code == ErrorCode::AccountNotFound => 0,
            Err(e) => return Err(format!("balance of {account}: {e}")),
        };
        if have != *want {
            problems.push(format!("account {account}: {have} coins, acknowledged {want}"));
        }
    }
    let coins_acked: u64 = acked.values().sum();
    if !audit.ok {
        problems.extend(audit.violations.iter().map(|v| format!("audit: {v}")));
    }
    if exclusive && audit.coins_issued != coins_acked {
        problems.push(format!("audit: {} coins issued, {} acknowledged", audit.coins_issued, coins_acked));
    }
    Ok(Verdict {
        acked_purchases: book.acked_count.load(Ordering::Relaxed),
        accounts: acked.len(),
        coins_acked,
        audit,
        problems,
        anomalies: book.anomalies(),
    })
}
