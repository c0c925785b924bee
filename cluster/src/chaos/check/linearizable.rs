//! Invariant 5: per account, the Balance reads are consistent with a linearization of that
//! account's mutations. Each operation's effect on the account happened at one instant inside
//! [invoke, completion] (for an unknown outcome resolved after the heal: [invoke, resolution]);
//! the search looks for an order of all of them that respects real time, in which every
//! mutation is possible (no overdraft, no frozen spender, each reply's balance-after matches)
//! and every read sees exactly the state so far. The final balances, read after quiescence,
//! close every account's history.
//!
//! The search is Wing & Gong's, with Lowe's memo of (linearized set, state) as in Porcupine:
//! walk the call/return entries, linearize a pending call when its effect applies, backtrack
//! at a return whose call is not linearized yet. It is bounded by `STEPS_MAX` per account; an
//! account that exceeds it is reported as undecided, not as a violation.

use std::collections::{BTreeMap, HashSet};

use super::model::{per_account, Effect, Event, State};
use super::Check;
use crate::chaos::history::Op;

/// Search steps per account before it is declared undecided.
pub const STEPS_MAX: u64 = 2_000_000;

/// Outcome of one account's search.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists; the longest prefix of entries that could be linearized.
    Violation { stuck_at_op: usize },
    Undecided,
}

/// Checks every account; `finals` are the balances read after quiescence (None: never opened).
pub fn check(ops: &[Op], finals: &BTreeMap<String, Option<State>>, end_ms: u64) -> Check {
    let mut c = Check::new("linearizable");
    let mut accounts = per_account(ops);
    for (account, fin) in finals {
        accounts.entry(account.clone()).or_default().push(Event {
            op: usize::MAX,
            effect: Effect::Read(*fin),
            invoke_ms: end_ms,
            deadline_ms: end_ms,
        });
    }
    let mut widest = 0;
    for (account, events) in &accounts {
        c.checked += 1;
        widest = widest.max(events.len());
        match search(events, STEPS_MAX) {
            Verdict::Linearizable => {}
            Verdict::Undecided => c.notes.push(format!("account {account}: undecided after {STEPS_MAX} steps ({} events)", events.len())),
            Verdict::Violation { stuck_at_op } => c.violation(format!(
                "account {account}: no linearization of its {} events (search backtracked to op {}); events: {}",
                events.len(),
                if stuck_at_op == usize::MAX { "final-read".to_string() } else { stuck_at_op.to_string() },
                describe(events)
            )),
        }
    }
    c.notes.push(format!("{} accounts, at most {widest} events on one account", accounts.len()));
    c
}

fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            let end = if e.deadline_ms == u64::MAX { "inf".to_string() } else { e.deadline_ms.to_string() };
            let op = if e.op == usize::MAX { "final".to_string() } else { format!("#{}", e.op) };
            format!("{op} [{}, {end}] {:?}", e.invoke_ms, e.effect)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A call or return entry of the doubly linked list.
#[derive(Debug, Clone)]
struct Entry {
    /// Index in `events`.
    ev: usize,
    is_call: bool,
    /// For a call: index of its return entry.
    matching: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// Wing–Gong–Lowe search over one account's events.
pub fn search(events: &[Event], steps_max: u64) -> Verdict {
    // Entries sorted by time; at equal times calls first (overlap is the permissive reading).
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(events.len() * 2);
    for (i, e) in events.iter().enumerate() {
        order.push((e.invoke_ms, 0, i));
        order.push((e.deadline_ms, 1, i));
    }
    order.sort();
    // Entry 0 is a sentinel head.
    let mut entries = vec![Entry { ev: NIL, is_call: false, matching: NIL, prev: NIL, next: NIL }];
    let mut call_of = vec![NIL; events.len()];
    for (_, kind, ev) in &order {
        let idx = entries.len();
        entries.push(Entry { ev: *ev, is_call: *kind == 0, matching: NIL, prev: idx - 1, next: NIL });
        entries[idx - 1].next = idx;
        if *kind == 0 {
            call_of[*ev] = idx;
        } else {
            entries[call_of[*ev]].matching = idx;
        }
    }
    let words = events.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = State::default();
    let mut entry = entries[0].next;
    let mut steps = 0u64;
    let mut deepest = 0usize;
    while entries[0].next != NIL {
        steps += 1;
        if steps > steps_max {
            return Verdict::Undecided;
        }
        let e = entries[entry].clone();
        if e.is_call {
            let next_state = events[e.ev].effect.step(&state);
            let mut placed = false;
            if let Some(ns) = next_state {
                let mut lin = linearized.clone();
                lin[e.ev / 64] |= 1 << (e.ev % 64);
                if cache.insert((lin.clone(), ns)) {
                    stack.push((entry, state));
                    state = ns;
                    linearized = lin;
                    lift(&mut entries, entry);
                    deepest = deepest.max(stack.len());
                    entry = entries[0].next;
                    placed = true;
                }
            }
            if !placed {
                entry = e.next;
            }
        } else {
            // A return whose call is not linearized: undo the last choice.
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation { stuck_at_op: stuck(events, &entries) };
            };
            state = before;
            let ev = entries[call].ev;
            linearized[ev / 64] &= !(1 << (ev % 64));
            unlift(&mut entries, call);
            entry = entries[call].next;
        }
        if entries[0].next == NIL {
            break;
        }
        if entry == NIL {
            // Unreachable: the list always ends with a return entry.
            return Verdict::Violation { stuck_at_op: stuck(events, &entries) };
        }
    }
    Verdict::Linearizable
}

/// The op of the first entry left in the list (where the search could not get past).
fn stuck(events: &[Event], entries: &[Entry]) -> usize {
    let first = entries[0].next;
    if first == NIL {
        return NIL;
    }
    events[entries[first].ev].op
}

fn lift(entries: &mut [Entry], call: usize) {
    let (p, n) = (entries[call].prev, entries[call].next);
    entries[p].next = n;
    if n != NIL {
        entries[n].prev = p;
    }
    let ret = entries[call].matching;
    let (p, n) = (entries[ret].prev, entries[ret].next);
    entries[p].next = n;
    if n != NIL {
        entries[n].prev = p;
    }
}

fn unlift(entries: &mut [Entry], call: usize) {
    let ret = entries[call].matching;
    let (p, n) = (entries[ret].prev, entries[ret].next);
    entries[p].next = ret;
    if n != NIL {
        entries[n].prev = ret;
    }
    let (p, n) = (entries[call].prev, entries[call].next);
    entries[p].next = call;
    if n != NIL {
        entries[n].prev = call;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: usize, effect: Effect, invoke_ms: u64, deadline_ms: u64) -> Event {
        Event { op, effect, invoke_ms, deadline_ms }
    }

    fn read(coins: u64) -> Effect {
        Effect::Read(Some(State { coins, ..State::default() }))
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            ev(0, Effect::Credit { coins: 500, after: 500 }, 0, 10),
            ev(1, read(500), 11, 12),
            ev(2, Effect::Debit { coins: 100, after: 400 }, 13, 20),
            ev(3, read(400), 21, 22),
        ];
        assert_eq!(search(&h, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_reads_may_see_either_side() {
        let h = vec![
            ev(0, Effect::Credit { coins: 500, after: 500 }, 0, 100),
            ev(1, read(0), 10, 20),
            ev(2, read(500), 30, 40),
            ev(3, read(500), 101, 102),
        ];
        assert_eq!(search(&h, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_ack_is_a_violation() {
        let h = vec![ev(0, Effect::Credit { coins: 500, after: 500 }, 0, 10), ev(1, read(0), 11, 12)];
        assert!(matches!(search(&h, 10_000), Verdict::Violation { .. }));
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        let h = vec![
            ev(0, Effect::Credit { coins: 500, after: 500 }, 0, 100),
            ev(1, read(500), 10, 20),
            ev(2, read(0), 30, 40),
        ];
        assert!(matches!(search(&h, 10_000), Verdict::Violation { .. }));
    }

    #[test]
    fn unknown_outcome_may_land_late_but_once() {
        let h = vec![
            ev(0, Effect::Credit { coins: 500, after: 500 }, 0, u64::MAX),
            ev(1, read(0), 10, 20),
            ev(2, read(500), 30, 40),
        ];
        assert_eq!(search(&h, 10_000), Verdict::Linearizable);
        let doubled = vec![ev(0, Effect::Credit { coins: 500, after: 500 }, 0, u64::MAX), ev(1, read(1000), 10, 20)];
        assert!(matches!(search(&doubled, 10_000), Verdict::Violation { .. }));
    }

    #[test]
    fn many_concurrent_increments_stay_cheap() {
        let mut h: Vec<Event> = (0..40).map(|i| ev(i, Effect::Receive { diamonds: 1 + i as u64 }, 0, 1_000)).collect();
        let total: u64 = (1..=40).sum();
        h.push(ev(40, Effect::Read(Some(State { diamonds: total, ..State::default() })), 1_001, 1_002));
        assert_eq!(search(&h, 100_000), Verdict::Linearizable);
    }
}
