//! Invariant 4: conservation per asset over all shards. Admin.Audit checks its equations
//! (balances against issued, spent, credited and paid-out totals, in-flight value counted);
//! the history checks the totals themselves: the run had the cluster to itself, so the coins
//! issued are exactly what its successful purchases credited, and so on for each total.

use coinledger_client::proto::{AuditReply, PayoutState};

use super::Check;
use crate::chaos::history::{Op, Reply};

/// Sums of the history's successful operations, as the audit books them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub coins_issued: u64,
    pub coins_spent_on_gifts: u64,
    pub platform_coins: u64,
    pub diamonds_credited: u64,
    pub diamonds_paid_out: u64,
    pub diamonds_on_hold: u64,
    pub coins_recovered: u64,
}

pub fn totals(ops: &[Op]) -> Totals {
    let mut t = Totals::default();
    for op in ops {
        match op.final_reply() {
            Some(Reply::Purchase(p)) => t.coins_issued += p.coins_credited,
            Some(Reply::Gift(g)) => {
                t.coins_spent_on_gifts += g.coins_debited;
                t.platform_coins += g.platform_coins;
                t.diamonds_credited += g.diamonds_credited;
            }
            Some(Reply::CashOut(c)) => t.diamonds_on_hold += c.diamonds_held,
            Some(Reply::Payout(p)) if p.state == PayoutState::Posted as i32 => {
                t.diamonds_paid_out += p.diamonds;
                t.diamonds_on_hold -= p.diamonds.min(t.diamonds_on_hold);
            }
            Some(Reply::Payout(p)) if p.state == PayoutState::Voided as i32 => {
                t.diamonds_on_hold -= p.diamonds.min(t.diamonds_on_hold);
            }
            Some(Reply::Refund(r)) => t.coins_recovered += r.coins_recovered,
            _ => {}
        }
    }
    t
}

pub fn check(ops: &[Op], audit: &AuditReply) -> Check {
    let mut c = Check::new("conservation");
    c.checked += 1;
    if !audit.ok {
        for v in &audit.violations {
            c.violation(format!("Admin.Audit: {v}"));
        }
    }
    for (what, n) in [
        ("coins in flight", audit.coins_in_flight),
        ("diamonds in flight", audit.diamonds_in_flight),
        ("pending effects", audit.pending_effects),
    ] {
        c.checked += 1;
        if n != 0 {
            c.violation(format!("after quiescence: {what} = {n}"));
        }
    }
    let t = totals(ops);
    for (what, audit_says, history_says) in [
        ("coins issued", audit.coins_issued, t.coins_issued),
        ("coins spent on gifts", audit.coins_spent_on_gifts, t.coins_spent_on_gifts),
        ("platform coins", audit.platform_coins, t.platform_coins),
        ("diamonds credited", audit.diamonds_credited, t.diamonds_credited),
        ("diamonds paid out", audit.diamonds_paid_out, t.diamonds_paid_out),
        ("diamonds on hold for payout", audit.diamonds_on_hold_for_payout, t.diamonds_on_hold),
        ("coins recovered by refunds", audit.coins_recovered_by_refunds, t.coins_recovered),
    ] {
        c.checked += 1;
        if audit_says != history_says {
            c.violation(format!("{what}: audit says {audit_says}, the history's successful operations {history_says}"));
        }
    }
    c
}
