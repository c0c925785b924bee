//! Invariant 3: balances never negative, holds never above diamonds. Checked on every read of
//! the run (Balance and every History entry's balances-after), on every reply that carries a
//! balance, and on the final balances. Amounts travel as uint64, so a negative balance would
//! show as a huge number: anything at or above 2^62 counts as negative.

use super::model::State;
use super::Check;
use crate::chaos::history::{Op, Reply};

/// Above any balance the workload can make; a wrapped negative lands above it.
pub const PLAUSIBLE_MAX: u64 = 1 << 62;

pub fn check(ops: &[Op], finals: &[(String, Option<State>)]) -> Check {
    let mut c = Check::new("non_negative");
    let bad = |c: &mut Check, what: String, coins: u64, diamonds: u64, held: u64| {
        c.checked += 1;
        if coins >= PLAUSIBLE_MAX || diamonds >= PLAUSIBLE_MAX || held >= PLAUSIBLE_MAX {
            c.violation(format!("{what}: negative balance (coins {coins}, diamonds {diamonds}, held {held})"));
        } else if held > diamonds {
            c.violation(format!("{what}: held {held} > diamonds {diamonds}"));
        }
    };
    for op in ops {
        let Some(reply) = op.final_reply() else { continue };
        let what = format!("op #{} {}", op.id, op.req.kind());
        match reply {
            Reply::Balance(b) => {
                bad(&mut c, what.clone(), b.coins, b.diamonds, b.diamonds_held);
                if b.diamonds_available != b.diamonds.wrapping_sub(b.diamonds_held) {
                    c.violation(format!("{what}: available {} != diamonds {} - held {}", b.diamonds_available, b.diamonds, b.diamonds_held));
                }
            }
            Reply::History(h) => {
                for e in &h.entries {
                    bad(&mut c, format!("{what} entry seq {}", e.seq), e.coins_after, e.diamonds_after, e.diamonds_held_after);
                }
            }
            Reply::Purchase(p) => bad(&mut c, what, p.coins_balance, 0, 0),
            Reply::Gift(g) => bad(&mut c, what, g.sender_coins_balance, 0, 0),
            _ => {}
        }
    }
    for (account, s) in finals {
        if let Some(s) = s {
            bad(&mut c, format!("final balance of {account}"), s.coins, s.diamonds, s.held);
        }
    }
    c
}
