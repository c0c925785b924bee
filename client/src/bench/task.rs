//! One client task of a run: draws operations, sends them (single calls, or one SubmitBatch
//! of `batch` commands at a time) and records every command's latency and outcome.

use std::sync::{Arc, Mutex};

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::*;
use coinledger_client::{BatchOutcome, Client, ClientError};
use tokio::time::Instant;

use super::stats::Stats;
use coinledger_client::workload::{Generator, IdSequence, Names, Op};

/// What every task needs to turn operations into requests.
#[derive(Debug, Clone)]
pub struct Plan {
    pub names: Names,
    /// Catalog gift every gift sends.
    pub gift_id: String,
    /// Fiat amount (USD) of a mixed-workload purchase.
    pub purchase_usd: String,
    pub cashout_diamonds: u64,
    /// Commands per SubmitBatch; 1 means single calls.
    pub batch: usize,
}

/// Why a command was sent: what its answer means for the checks.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Gift { creator: usize },
    Purchase,
    CashOut { creator: usize, post: bool },
    Payout { creator: usize, post: bool },
}

/// A task's running state: its generator, the ids it hands out, and follow-ups (post or void
/// of a payout it opened) to send next.
pub struct Task {
    plan: Arc<Plan>,
    generator: Generator,
    ids: IdSequence,
    follow_ups: Vec<(Command, Purpose)>,
}

impl Task {
    pub fn new(plan: Arc<Plan>, generator: Generator, ids: IdSequence) -> Task {
        Task {
            plan,
            generator,
            ids,
            follow_ups: Vec::new(),
        }
    }

    /// Runs until `end`, or until the run's tasks together have `gifts_max` successful gifts,
    /// recording into `stats` (locked once per call or batch, and once more with a limit).
    pub async fn run(mut self, client: Client, stats: Arc<Mutex<Stats>>, end: Instant, gifts_max: Option<u64>) {
        let reached = |stats: &Mutex<Stats>| gifts_max.is_some_and(|max| lock(stats).gifts_ok >= max);
        while Instant::now() < end && !reached(&stats) {
            if self.plan.batch == 1 {
                self.step_single(&client, &stats).await;
            } else {
                self.step_batch(&client, &stats).await;
            }
        }
    }

    /// The command for `op`, or None for a read.
    fn command(&mut self, op: Op) -> Option<(Command, Purpose)> {
        let names = &self.plan.names;
        let (command, purpose) = match op {
            Op::Gift { sender, creator } => (
                Command::Gift(GiftRequest {
                    sender: names.user(sender),
                    recipient: names.creator(creator),
                    gift_id: self.plan.gift_id.clone(),
                    quantity: 1,
                    ..Default::default()
                }),
                Purpose::Gift { creator },
            ),
            Op::Purchase { account } => (
                Command::Purchase(PurchaseRequest {
                    account: names.user(account),
                    paid: Some(Money {
                        amount: self.plan.purchase_usd.clone(),
                        currency: "USD".into(),
                    }),
                    payment_ref: String::new(),
                    ..Default::default()
                }),
                Purpose::Purchase,
            ),
            Op::CashOut { creator, post } => (
                Command::CashOut(CashOutRequest {
                    account: names.creator(creator),
                    diamonds: self.plan.cashout_diamonds,
                    currency: "USD".into(),
                    ..Default::default()
                }),
                Purpose::CashOut { creator, post },
            ),
            Op::Read { .. } => return None,
        };
        Some(self.with_ids(command, purpose))
    }

    /// Gives the command a fresh request id (and a purchase its unique payment reference).
    fn with_ids(&mut self, mut command: Command, purpose: Purpose) -> (Command, Purpose) {
        let id = self.ids.next_id();
        match &mut command {
            Command::Purchase(r) => {
                r.payment_ref = format!("pay-{id}");
                r.request_id = id;
            }
            Command::Gift(r) => r.request_id = id,
            Command::CashOut(r) => r.request_id = id,
            Command::PostPayout(r) | Command::VoidPayout(r) => r.request_id = id,
            Command::Refund(r) => r.request_id = id,
        }
        (command, purpose)
    }

    async fn step_single(&mut self, client: &Client, stats: &Mutex<Stats>) {
        let (command, purpose) = match self.follow_ups.pop() {
            Some(next) => next,
            None => {
                let op = self.generator.next_op();
                match self.command(op) {
                    Some(c) => c,
                    None => return self.read(client, stats, op).await,
                }
            }
        };
        let started = Instant::now();
        let outcome = send_one(client, command).await;
        let latency = started.elapsed();
        let mut stats = lock(stats);
        stats.record_latency(latency, 1);
        self.record(&mut stats, purpose, outcome);
    }

    async fn step_batch(&mut self, client: &Client, stats: &Mutex<Stats>) {
        let mut commands = Vec::with_capacity(self.plan.batch);
        let mut purposes = Vec::with_capacity(self.plan.batch);
        let mut reads = Vec::new();
        let mut follow_ups = std::mem::take(&mut self.follow_ups);
        while commands.len() < self.plan.batch {
            let (command, purpose) = match follow_ups.pop() {
                Some(next) => next,
                None => {
                    let op = self.generator.next_op();
                    match self.command(op) {
                        Some(c) => c,
                        None => {
                            reads.push(op);
                            continue;
                        }
                    }
                }
            };
            commands.push(BatchCommand {
                command: Some(command),
            });
            purposes.push(purpose);
        }
        let started = Instant::now();
        let outcomes = client.submit_batch(commands).await;
        let latency = started.elapsed();
        {
            let mut stats = lock(stats);
            match outcomes {
                Ok(outcomes) => {
                    stats.record_latency(latency, outcomes.len() as u64);
                    for (purpose, outcome) in purposes.into_iter().zip(outcomes) {
                        self.record(&mut stats, purpose, outcome);
                    }
                }
                Err(e) => {
                    for _ in &purposes {
                        stats.error(&e.code_name);
                    }
                }
            }
        }
        for op in reads {
            self.read(client, stats, op).await;
        }
    }

    async fn read(&mut self, client: &Client, stats: &Mutex<Stats>, op: Op) {
        let Op::Read { account } = op else { return };
        let started = Instant::now();
        let result = client
            .balance(BalanceRequest {
                account: self.plan.names.user(account),
            })
            .await;
        let latency = started.elapsed();
        let mut stats = lock(stats);
        stats.record_latency(latency, 1);
        match result {
            Ok(_) => stats.ops_ok += 1,
            Err(e) => stats.error(&e.code_name),
        }
    }

    fn record(&mut self, stats: &mut Stats, purpose: Purpose, outcome: BatchOutcome) {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(e) => return stats.error(&e.code_name),
        };
        match (purpose, answer) {
            (Purpose::Gift { creator }, Answer::Gift(r)) => stats.gift_ok(creator, r.diamonds_credited),
            (Purpose::Purchase, Answer::Purchase(_)) => stats.ops_ok += 1,
            (Purpose::CashOut { creator, post }, Answer::CashOut(r)) => {
                stats.ops_ok += 1;
                let payout = PayoutRequest {
                    request_id: String::new(),
                    payout_id: r.payout_id,
                };
                let command = if post {
                    Command::PostPayout(payout)
                } else {
                    Command::VoidPayout(payout)
                };
                let next = self.with_ids(command, Purpose::Payout { creator, post });
                self.follow_ups.push(next);
            }
            (Purpose::Payout { creator, post: true }, Answer::Payout(r)) => {
                stats.posted(creator, r.diamonds)
            }
            (Purpose::Payout { post: false, .. }, Answer::Payout(_)) => stats.ops_ok += 1,
            (purpose, answer) => {
                panic!("a {purpose:?} command was answered {answer:?}: the node broke the API")
            }
        }
    }
}

/// One command as a single-command RPC, its answer in the shape of a batch result.
async fn send_one(client: &Client, command: Command) -> Result<Answer, ClientError> {
    Ok(match command {
        Command::Purchase(r) => Answer::Purchase(client.purchase(r).await?),
        Command::Gift(r) => Answer::Gift(client.gift(r).await?),
        Command::CashOut(r) => Answer::CashOut(client.cash_out(r).await?),
        Command::PostPayout(r) => Answer::Payout(client.post_payout(r).await?),
        Command::VoidPayout(r) => Answer::Payout(client.void_payout(r).await?),
        Command::Refund(r) => Answer::Refund(client.refund(r).await?),
    })
}

/// A panicked task poisons the lock; the figures it recorded are still sound to read.
pub fn lock(stats: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

