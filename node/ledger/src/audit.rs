//! Conservation audits: per shard (local invariants) and over all shards (the equations).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::book;
use crate::keys;
use crate::model::{Effect, Payout, PayoutState, ShardTotals};
use crate::read;
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAudit {
    pub shard: u32,
    pub totals: ShardTotals,
    pub accounts: u64,
    pub coins: u64,
    pub diamonds: u64,
    pub diamonds_held: u64,
    pub pending_payout_diamonds: u64,
    pub pending_effects: Vec<Effect>,
    /// Local violations: holds above balance, holds that differ from pending payouts.
    pub violations: Vec<String>,
}

fn add(sum: &mut u64, value: u64, what: &str, violations: &mut Vec<String>) {
    match sum.checked_add(value) {
        Some(total) => *sum = total,
        None => violations.push(format!("the sum of {what} overflows a u64")),
    }
}

/// Scans every account and payout of the shard: for audits and tests, not the hot path.
pub fn shard_audit(store: &dyn Store, shard: u32) -> ShardAudit {
    let mut violations = Vec::new();
    let (mut accounts, mut coins, mut diamonds, mut diamonds_held, mut pending_payout_diamonds) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut held_by_account: BTreeMap<String, u64> = BTreeMap::new();
    for (key, bytes) in store.scan(keys::ACCOUNT_PREFIX, usize::MAX) {
        let (account, _) = book::split_account_record(&key, &bytes);
        accounts += 1;
        add(&mut coins, account.coins, "coins", &mut violations);
        add(&mut diamonds, account.diamonds, "diamonds", &mut violations);
        add(&mut diamonds_held, account.diamonds_held, "held diamonds", &mut violations);
        if account.diamonds_held > account.diamonds {
            violations.push(format!("shard {shard}: account {} holds {} of {} diamonds", account.id, account.diamonds_held, account.diamonds));
        }
        held_by_account.insert(account.id, account.diamonds_held);
    }
    let mut pending_by_account: BTreeMap<String, u64> = BTreeMap::new();
    for (key, bytes) in store.scan(keys::PAYOUT_PREFIX, usize::MAX) {
        let payout: Payout = book::decode(&key, &bytes);
        if payout.state == PayoutState::Pending {
            add(&mut pending_payout_diamonds, payout.diamonds, "pending payouts", &mut violations);
            let sum = pending_by_account.entry(payout.account).or_default();
            *sum = sum.saturating_add(payout.diamonds);
        }
    }
    for (account, held) in &held_by_account {
        let pending = pending_by_account.get(account).copied().unwrap_or(0);
        if *held != pending {
            violations.push(format!("shard {shard}: account {account} holds {held} diamonds but its pending payouts hold {pending}"));
        }
    }
    ShardAudit {
        shard,
        totals: book::totals(store),
        accounts,
        coins,
        diamonds,
        diamonds_held,
        pending_payout_diamonds,
        pending_effects: read::pending_effects(store),
        violations,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalAudit {
    pub ok: bool,
    pub violations: Vec<String>,
    pub accounts: u64,
    pub coins_held: u64,
    pub diamonds_total: u64,
    pub diamonds_on_hold: u64,
    pub coins_issued: u64,
    pub coins_recovered: u64,
    pub coins_spent: u64,
    pub diamonds_promised: u64,
    pub diamonds_credited: u64,
    pub diamonds_paid_out: u64,
    pub platform_coins: u64,
    pub diamonds_in_flight: u64,
    pub coins_in_flight: u64,
    pub pending_effects: u64,
}

/// Checks the conservation equations over all shards:
/// Σcoins = issued − recovered − spent; spent = promised + platform;
/// promised = credited + diamonds in flight; Σdiamonds = credited − paid out;
/// Σheld = Σ pending payout diamonds; and every shard's local checks.
///
/// `effect_applied(effect)` tells whether the target shard already applied it (the node asks
/// the target); such effects are not counted in flight.
pub fn global_audit(shards: &[ShardAudit], effect_applied: &dyn Fn(&Effect) -> bool) -> GlobalAudit {
    let mut audit = GlobalAudit::default();
    let mut v = Vec::new();
    let mut pending_payouts = 0u64;
    for shard in shards {
        v.extend(shard.violations.iter().cloned());
        let t = &shard.totals;
        for (sum, value, what) in [
            (&mut audit.accounts, shard.accounts, "accounts"),
            (&mut audit.coins_held, shard.coins, "coins"),
            (&mut audit.diamonds_total, shard.diamonds, "diamonds"),
            (&mut audit.diamonds_on_hold, shard.diamonds_held, "held diamonds"),
            (&mut pending_payouts, shard.pending_payout_diamonds, "pending payouts"),
            (&mut audit.coins_issued, t.coins_issued, "coins issued"),
            (&mut audit.coins_recovered, t.coins_recovered, "coins recovered"),
            (&mut audit.coins_spent, t.coins_spent, "coins spent"),
            (&mut audit.diamonds_promised, t.diamonds_promised, "diamonds promised"),
            (&mut audit.diamonds_credited, t.diamonds_credited, "diamonds credited"),
            (&mut audit.diamonds_paid_out, t.diamonds_paid_out, "diamonds paid out"),
            (&mut audit.platform_coins, t.platform_coins, "platform coins"),
        ] {
            add(sum, value, what, &mut v);
        }
        for effect in &shard.pending_effects {
            audit.pending_effects += 1;
            if !effect_applied(effect) {
                let (coins, diamonds) = effect.kind.in_flight();
                add(&mut audit.coins_in_flight, coins, "coins in flight", &mut v);
                add(&mut audit.diamonds_in_flight, diamonds, "diamonds in flight", &mut v);
            }
        }
    }
    let a = &audit;
    let wide = i128::from;
    let mut check = |holds: bool, equation: String| {
        if !holds {
            v.push(equation);
        }
    };
    check(
        wide(a.coins_held) == wide(a.coins_issued) - wide(a.coins_recovered) - wide(a.coins_spent),
        format!("coins held {} != issued {} - recovered {} - spent {}", a.coins_held, a.coins_issued, a.coins_recovered, a.coins_spent),
    );
    check(
        wide(a.coins_spent) == wide(a.diamonds_promised) + wide(a.platform_coins),
        format!("coins spent {} != diamonds promised {} + platform coins {}", a.coins_spent, a.diamonds_promised, a.platform_coins),
    );
    check(
        wide(a.diamonds_promised) == wide(a.diamonds_credited) + wide(a.diamonds_in_flight),
        format!("diamonds promised {} != credited {} + in flight {}", a.diamonds_promised, a.diamonds_credited, a.diamonds_in_flight),
    );
    check(
        wide(a.diamonds_total) == wide(a.diamonds_credited) - wide(a.diamonds_paid_out),
        format!("diamonds held by accounts {} != credited {} - paid out {}", a.diamonds_total, a.diamonds_credited, a.diamonds_paid_out),
    );
    check(
        a.diamonds_on_hold == pending_payouts,
        format!("diamonds on hold {} != pending payouts {}", a.diamonds_on_hold, pending_payouts),
    );
    audit.ok = v.is_empty();
    audit.violations = v;
    audit
}
