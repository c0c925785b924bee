//! Property tests over a simulated 4-shard world: random sequences of every command, replays
//! with the same request id, reuses with another body, effects and completions delivered in
//! random order and duplicated, leaders re-driving outboxes. After every step the global audit
//! must hold; at the end, after draining, nothing is in flight and conservation is exact.

use std::collections::BTreeMap;

use proptest::prelude::*;

use coinledger_ledger::sim::{cash_out_cmd, dec, gift_cmd, payout_cmd, purchase_cmd, World};
use coinledger_ledger::{
    read, Applied, Command, ErrorCode, MemStore, Money, Outcome, RateCard, Refund, SetFrozen, SetLimit, SetRates, DAY_MS,
};

const SHARDS: u32 = 4;
const ACCOUNTS: u8 = 4;
const PAYMENT_REFS: u8 = 12;
const AMOUNTS: [&str; 12] = ["0.01", "9.99", "10.00", "100", "5000", "5000", "5000", "1000", "1000", "5000.01", "0.001", "0"];
const CURRENCIES: [&str; 8] = ["USD", "USD", "EUR", "EUR", "JPY", "GBP", "usd", "CHF"];
const GIFTS: [&str; 6] = ["rose", "doughnut", "galaxy", "galaxy", "corgi", "unicorn"];
const CASHOUT_CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];

#[derive(Clone, Debug)]
enum Op {
    Purchase { account: u8, amount: usize, currency: usize, payment_ref: u8 },
    Gift { sender: u8, recipient: u8, gift: usize, quantity: u32 },
    CashOut { account: u8, diamonds: u64, currency: usize },
    Post { payout: usize },
    Void { payout: usize },
    Refund { payment_ref: u8 },
    SetLimit { account: u8, cap: usize },
    SetFrozen { account: u8, frozen: bool },
    SetRates { next_version: bool, share_bps: u32 },
    Replay { which: usize },
    Reuse { which: usize },
    DeliverEffect { which: usize, duplicate: bool },
    DeliverCompletion { which: usize, duplicate: bool },
    Redrive,
    /// Deliver everything queued, oldest first.
    Drain,
    NextDay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ACCOUNTS, 0..AMOUNTS.len(), 0..CURRENCIES.len(), 0..PAYMENT_REFS)
            .prop_map(|(account, amount, currency, payment_ref)| Op::Purchase { account, amount, currency, payment_ref }),
        6 => (0..ACCOUNTS, 0..ACCOUNTS, 0..GIFTS.len(), 0u32..60).prop_map(|(sender, recipient, gift, quantity)| Op::Gift { sender, recipient, gift, quantity }),
        4 => (0..ACCOUNTS, 800u64..3000, 0..CASHOUT_CURRENCIES.len()).prop_map(|(account, diamonds, currency)| Op::CashOut { account, diamonds, currency }),
        3 => any::<usize>().prop_map(|payout| Op::Post { payout }),
        3 => any::<usize>().prop_map(|payout| Op::Void { payout }),
        2 => (0..PAYMENT_REFS).prop_map(|payment_ref| Op::Refund { payment_ref }),
        1 => (0..ACCOUNTS, 0usize..3).prop_map(|(account, cap)| Op::SetLimit { account, cap }),
        1 => (0..ACCOUNTS, any::<bool>()).prop_map(|(account, frozen)| Op::SetFrozen { account, frozen }),
        1 => (any::<bool>(), 0u32..=10_000).prop_map(|(next_version, share_bps)| Op::SetRates { next_version, share_bps }),
        4 => any::<usize>().prop_map(|which| Op::Replay { which }),
        2 => any::<usize>().prop_map(|which| Op::Reuse { which }),
        6 => (any::<usize>(), any::<bool>()).prop_map(|(which, duplicate)| Op::DeliverEffect { which, duplicate }),
        6 => (any::<usize>(), any::<bool>()).prop_map(|(which, duplicate)| Op::DeliverCompletion { which, duplicate }),
        1 => Just(Op::Redrive),
        1 => Just(Op::Drain),
        1 => Just(Op::NextDay),
    ]
}

/// One client request and the outcome its retry must see now.
struct Sent {
    cmd: Command,
    expected: Applied,
}

struct Harness {
    world: World,
    sent: Vec<Sent>,
    payouts: Vec<String>,
    rate_version: u64,
}

fn account(i: u8) -> String {
    format!("acct-{i}")
}

fn is_remembered(cmd: &Command, expected: &Applied) -> bool {
    match expected {
        Applied::Done(Err(e)) => cmd.validate().is_ok() && e.code.is_recorded(),
        _ => true,
    }
}

impl Harness {
    fn new() -> Self {
        Harness { world: World::new(SHARDS), sent: Vec::new(), payouts: Vec::new(), rate_version: 1 }
    }

    fn send(&mut self, cmd: Command) {
        let applied = self.world.submit_only(&cmd);
        match &applied {
            Applied::Done(Ok(Outcome::CashOut(payout))) => self.payouts.push(payout.payout_id.clone()),
            Applied::Done(Ok(Outcome::Rates(card))) => self.rate_version = card.version,
            _ => {}
        }
        self.sent.push(Sent { cmd, expected: applied });
    }

    fn request_id(&self) -> String {
        format!("rq-{}", self.sent.len())
    }

    /// Completed effects turn the Pending expectations of their commands into final outcomes.
    fn learn_finished(&mut self) {
        for sent in &mut self.sent {
            if let Applied::Pending(pending) = &sent.expected {
                if let Some(result) = self.world.finished.get(&pending.effect.id) {
                    sent.expected = Applied::Done(result.clone());
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        let rid = self.request_id();
        match op.clone() {
            Op::Purchase { account: a, amount, currency, payment_ref } => {
                self.send(purchase_cmd(&rid, &account(a), AMOUNTS[amount], CURRENCIES[currency], &format!("pay-{payment_ref}")))
            }
            Op::Gift { sender, recipient, gift, quantity } => self.send(gift_cmd(&rid, &account(sender), &account(recipient), GIFTS[gift], quantity)),
            Op::CashOut { account: a, diamonds, currency } => self.send(cash_out_cmd(&rid, &account(a), diamonds, CASHOUT_CURRENCIES[currency])),
            Op::Post { payout } | Op::Void { payout } => {
                let id = if self.payouts.is_empty() { "po-0-1-0".to_string() } else { self.payouts[payout % self.payouts.len()].clone() };
                let cmd = payout_cmd(&rid, &id);
                self.send(if matches!(op, Op::Post { .. }) { Command::PostPayout(cmd) } else { Command::VoidPayout(cmd) })
            }
            Op::Refund { payment_ref } => self.send(Command::Refund(Refund { request_id: rid, payment_ref: format!("pay-{payment_ref}") })),
            Op::SetLimit { account: a, cap } => {
                let cap = [None, Some(Money::new(dec("20"), "EUR")), Some(Money::new(dec("50"), "USD"))][cap].clone();
                self.send(Command::SetLimit(SetLimit { request_id: rid, account: account(a), minor: cap.is_some(), daily_purchase_cap: cap }))
            }
            Op::SetFrozen { account: a, frozen } => self.send(Command::SetFrozen(SetFrozen { request_id: rid, account: account(a), frozen })),
            Op::SetRates { next_version, share_bps } => {
                let mut card = RateCard::default_card();
                card.version = if next_version { self.rate_version + 1 } else { self.rate_version + 2 };
                card.creator_share_bps = share_bps;
                self.send(Command::SetRates(SetRates { request_id: rid, card }))
            }
            Op::Replay { which } if !self.sent.is_empty() => self.replay(which % self.sent.len()),
            Op::Reuse { which } if !self.sent.is_empty() => self.reuse(which % self.sent.len()),
            Op::DeliverEffect { which, duplicate } if !self.world.effects.is_empty() => {
                let i = which % self.world.effects.len();
                if duplicate {
                    self.world.effects.push(self.world.effects[i].clone());
                }
                self.world.deliver_effect(i);
            }
            Op::DeliverCompletion { which, duplicate } if !self.world.completions.is_empty() => {
                let i = which % self.world.completions.len();
                if duplicate {
                    self.world.completions.push(self.world.completions[i].clone());
                }
                self.world.deliver_completion(i);
            }
            Op::Redrive => self.world.redrive(),
            Op::Drain => self.world.drain(),
            Op::NextDay => self.world.clock_ms += DAY_MS,
            _ => {}
        }
        self.learn_finished();
    }

    /// The same request again: the outcome it is expected to have, and no change.
    fn replay(&mut self, i: usize) {
        let cmd = self.sent[i].cmd.clone();
        let before = self.world.shards.clone();
        let again = self.world.submit_only(&cmd);
        if is_remembered(&cmd, &self.sent[i].expected) || cmd.validate().is_err() {
            assert_eq!(again, self.sent[i].expected, "replay of {cmd:?}");
            assert_eq!(self.world.shards, before, "replay of {cmd:?} changed the state");
        } else {
            self.sent[i].expected = again; // a transient refusal is retried for real
        }
    }

    /// The same request id with another body: REQUEST_ID_REUSED, no change.
    fn reuse(&mut self, i: usize) {
        let Sent { cmd, expected } = &self.sent[i];
        if !is_remembered(cmd, expected) {
            return;
        }
        let other = match cmd.clone() {
            Command::Purchase(mut c) => {
                c.amount += dec("1");
                Command::Purchase(c)
            }
            Command::Gift(mut c) => {
                c.quantity += 1;
                Command::Gift(c)
            }
            Command::CashOut(mut c) => {
                c.diamonds += 1;
                Command::CashOut(c)
            }
            _ => return,
        };
        let before = self.world.shards.clone();
        let Applied::Done(Err(e)) = self.world.submit_only(&other) else { panic!("reuse of {cmd:?} was accepted") };
        assert_eq!(e.code, ErrorCode::RequestIdReused);
        assert_eq!(self.world.shards, before);
    }

    fn check(&self) {
        let audit = self.world.audit();
        assert!(audit.ok, "{:#?}", audit);
    }

    fn finish(&mut self) {
        self.world.redrive();
        self.world.drain();
        self.learn_finished();
        for store in &self.world.shards {
            assert!(read::pending_effects(store).is_empty());
        }
        let audit = self.world.audit();
        assert!(audit.ok, "{:#?}", audit);
        assert_eq!((audit.pending_effects, audit.coins_in_flight, audit.diamonds_in_flight), (0, 0, 0));
        assert_eq!(audit.diamonds_promised, audit.diamonds_credited);
        assert_eq!(audit.coins_held, audit.coins_issued - audit.coins_recovered - audit.coins_spent);
        for sent in &self.sent {
            assert!(!matches!(sent.expected, Applied::Pending(_)), "{:?} never finished", sent.cmd);
        }
        // Every final outcome is what a retry now answers (a transient refusal is retried for
        // real, and its effects are drained too).
        for i in 0..self.sent.len() {
            self.replay(i);
        }
        self.world.drain();
        self.learn_finished();
        self.check();
        assert_eq!(self.world.audit().pending_effects, 0);
    }
}

fn run(ops: &[Op]) -> Vec<MemStore> {
    let mut harness = Harness::new();
    for op in ops {
        harness.step(op);
        harness.check();
    }
    harness.finish();
    harness.world.shards
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn conservation_idempotency_and_determinism(ops in prop::collection::vec(op(), 1..160)) {
        let first = run(&ops);
        let second = run(&ops);
        prop_assert!(first == second, "two runs of the same commands differ");
    }
}

/// A fixed scenario, so the property's building blocks are known to produce real traffic.
#[test]
fn the_simulation_moves_value() {
    let mut harness = Harness::new();
    let mut ops = vec![];
    for i in 0..ACCOUNTS {
        ops.push(Op::Purchase { account: i, amount: 4, currency: 0, payment_ref: i });
    }
    ops.push(Op::Drain);
    for i in 0..ACCOUNTS {
        ops.push(Op::Gift { sender: i, recipient: (i + 1) % ACCOUNTS, gift: 2, quantity: 30 });
        ops.push(Op::DeliverEffect { which: 0, duplicate: true });
        ops.push(Op::Replay { which: 2 * i as usize + 1 });
    }
    ops.extend([Op::Redrive, Op::Drain, Op::CashOut { account: 1, diamonds: 2000, currency: 0 }, Op::Refund { payment_ref: 0 }]);
    for op in &ops {
        harness.step(op);
        harness.check();
    }
    harness.finish();
    let audit = harness.world.audit();
    assert_eq!(audit.coins_spent, u64::from(ACCOUNTS) * 30_000, "{audit:?}");
    assert!(audit.diamonds_credited > 0 && audit.coins_recovered > 0 && audit.diamonds_on_hold == 2000, "{audit:?}");
    let counts: BTreeMap<bool, usize> = harness.sent.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(matches!(s.expected, Applied::Done(Ok(_)))).or_default() += 1;
        m
    });
    assert!(counts.get(&true).copied().unwrap_or(0) >= ACCOUNTS as usize * 2, "{counts:?}");
}
