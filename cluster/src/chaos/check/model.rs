//! The per-account model both `once` and `linearizable` use: what each finally successful
//! operation does to each account it touches, and the account state it implies.

use std::collections::BTreeMap;

use coinledger_client::proto::{BalanceReply, ErrorCode, PayoutState};
use serde::Serialize;

use crate::chaos::history::{Op, Outcome, Reply, Request};

/// One account's balances as a read shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct State {
    pub coins: u64,
    pub diamonds: u64,
    pub held: u64,
    pub frozen: bool,
}

impl State {
    pub fn of(b: &BalanceReply) -> State {
        State { coins: b.coins, diamonds: b.diamonds, held: b.diamonds_held, frozen: b.frozen }
    }
}

/// What an operation does to (or sees of) one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Purchase credit; `after` is the reply's coins_balance.
    Credit { coins: u64, after: u64 },
    /// Gift debit of the sender; `after` is the reply's sender_coins_balance.
    Debit { coins: u64, after: u64 },
    /// Gift credit of the recipient.
    Receive { diamonds: u64 },
    Hold { diamonds: u64 },
    Post { diamonds: u64 },
    Void { diamonds: u64 },
    Refund { purchased: u64, recovered: u64, unrecovered: u64 },
    /// A Balance read (None: ACCOUNT_NOT_FOUND, the account was never opened).
    Read(Option<State>),
}

impl Effect {
    /// Applies the effect to `s`; None if it could not have happened in state `s` (or a
    /// read saw something else).
    pub fn step(&self, s: &State) -> Option<State> {
        let mut n = *s;
        match *self {
            Effect::Credit { coins, after } => {
                n.coins = s.coins.checked_add(coins)?;
                (!s.frozen && n.coins == after).then_some(n)
            }
            Effect::Debit { coins, after } => {
                n.coins = s.coins.checked_sub(coins)?;
                (!s.frozen && n.coins == after).then_some(n)
            }
            Effect::Receive { diamonds } => {
                n.diamonds = s.diamonds.checked_add(diamonds)?;
                Some(n)
            }
            Effect::Hold { diamonds } => {
                n.held = s.held.checked_add(diamonds)?;
                (!s.frozen && n.held <= s.diamonds).then_some(n)
            }
            Effect::Post { diamonds } => {
                n.held = s.held.checked_sub(diamonds)?;
                n.diamonds = s.diamonds.checked_sub(diamonds)?;
                Some(n)
            }
            Effect::Void { diamonds } => {
                n.held = s.held.checked_sub(diamonds)?;
                Some(n)
            }
            Effect::Refund { purchased, recovered, unrecovered } => {
                if recovered != s.coins.min(purchased) || recovered + unrecovered != purchased {
                    return None;
                }
                n.coins = s.coins - recovered;
                n.frozen = s.frozen || unrecovered > 0;
                Some(n)
            }
            Effect::Read(None) => (*s == State::default()).then_some(n),
            Effect::Read(Some(seen)) => (seen == *s).then_some(n),
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, Effect::Read(_))
    }
}

/// An effect on one account with the window in which it happened.
#[derive(Debug, Clone)]
pub struct Event {
    pub op: usize,
    pub effect: Effect,
    pub invoke_ms: u64,
    /// u64::MAX if it may still happen.
    pub deadline_ms: u64,
}

/// The effects of one operation, per account, if it finally succeeded (a definite refusal
/// changes nothing, an unresolved unknown is not counted). Reads are included.
pub fn effects(op: &Op) -> Vec<(String, Effect)> {
    let Some(reply) = op.final_reply() else {
        return match (&op.req, op.final_outcome()) {
            (Request::Balance(b), Outcome::Failed { code: ErrorCode::AccountNotFound, .. }) => {
                vec![(b.account.clone(), Effect::Read(None))]
            }
            _ => Vec::new(),
        };
    };
    match (&op.req, reply) {
        (Request::Purchase(r), Reply::Purchase(p)) => {
            vec![(r.account.clone(), Effect::Credit { coins: p.coins_credited, after: p.coins_balance })]
        }
        (Request::Gift(r), Reply::Gift(g)) => vec![
            (r.sender.clone(), Effect::Debit { coins: g.coins_debited, after: g.sender_coins_balance }),
            (r.recipient.clone(), Effect::Receive { diamonds: g.diamonds_credited }),
        ],
        (Request::CashOut(r), Reply::CashOut(c)) => vec![(r.account.clone(), Effect::Hold { diamonds: c.diamonds_held })],
        (Request::Post(_), Reply::Payout(p)) if p.state == PayoutState::Posted as i32 => {
            vec![(p.account.clone(), Effect::Post { diamonds: p.diamonds })]
        }
        (Request::Void(_), Reply::Payout(p)) if p.state == PayoutState::Voided as i32 => {
            vec![(p.account.clone(), Effect::Void { diamonds: p.diamonds })]
        }
        (Request::Refund(_), Reply::Refund(r)) => vec![(
            r.account.clone(),
            Effect::Refund { purchased: r.coins_purchased, recovered: r.coins_recovered, unrecovered: r.coins_unrecovered },
        )],
        (Request::Balance(b), Reply::Balance(reply)) => vec![(b.account.clone(), Effect::Read(Some(State::of(reply))))],
        _ => Vec::new(),
    }
}

/// Every account's events, in invocation order.
pub fn per_account(ops: &[Op]) -> BTreeMap<String, Vec<Event>> {
    let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for op in ops {
        for (account, effect) in effects(op) {
            let deadline_ms = op.effect_deadline_ms();
            out.entry(account).or_default().push(Event { op: op.id, effect, invoke_ms: op.invoke_ms, deadline_ms });
        }
    }
    out
}

/// Every account any operation named (also ones only refused or read).
pub fn accounts_named(ops: &[Op]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for op in ops {
        match &op.req {
            Request::Purchase(r) => drop(names.insert(r.account.clone())),
            Request::Gift(r) => {
                names.insert(r.sender.clone());
                names.insert(r.recipient.clone());
            }
            Request::CashOut(r) => drop(names.insert(r.account.clone())),
            Request::Balance(r) => drop(names.insert(r.account.clone())),
            Request::History(r) => drop(names.insert(r.account.clone())),
            Request::Post(_) | Request::Void(_) | Request::Refund(_) => {}
        }
    }
    names.into_iter().collect()
}

/// The state the final outcomes imply, ignoring order (sums), with refunds' recovered coins
/// as the node answered them.
pub fn implied(events: &[Event]) -> State {
    let mut s = State::default();
    for e in events {
        match e.effect {
            Effect::Credit { coins, .. } => s.coins = s.coins.wrapping_add(coins),
            Effect::Debit { coins, .. } => s.coins = s.coins.wrapping_sub(coins),
            Effect::Receive { diamonds } => s.diamonds = s.diamonds.wrapping_add(diamonds),
            Effect::Hold { diamonds } => s.held = s.held.wrapping_add(diamonds),
            Effect::Post { diamonds } => {
                s.held = s.held.wrapping_sub(diamonds);
                s.diamonds = s.diamonds.wrapping_sub(diamonds);
            }
            Effect::Void { diamonds } => s.held = s.held.wrapping_sub(diamonds),
            Effect::Refund { recovered, unrecovered, .. } => {
                s.coins = s.coins.wrapping_sub(recovered);
                s.frozen |= unrecovered > 0;
            }
            Effect::Read(_) => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        let s = State::default();
        let s = Effect::Credit { coins: 500, after: 500 }.step(&s).unwrap();
        assert!(Effect::Debit { coins: 600, after: 0 }.step(&s).is_none());
        let s = Effect::Debit { coins: 100, after: 400 }.step(&s).unwrap();
        assert!(Effect::Refund { purchased: 500, recovered: 500, unrecovered: 0 }.step(&s).is_none());
        let s = Effect::Refund { purchased: 500, recovered: 400, unrecovered: 100 }.step(&s).unwrap();
        assert_eq!(s, State { coins: 0, diamonds: 0, held: 0, frozen: true });
        assert!(Effect::Credit { coins: 1, after: 1 }.step(&s).is_none(), "a frozen account is not credited");
        assert!(Effect::Hold { diamonds: 1 }.step(&State::default()).is_none());
    }
}
