//! Invariant 2 (and 6): nothing applied twice. Request ids, tx ids and payout ids are unique
//! in the history; a payment reference, a refund or a payout decision sent again under a NEW
//! request id is refused (or, for a payout, answered as it stands) and changes nothing; and
//! every account's final balance equals exactly what the final outcomes imply, so an unknown
//! outcome resolved by retrying its request id was applied at most once.

use std::collections::{BTreeMap, BTreeSet};

use coinledger_client::proto::{ErrorCode, PayoutRequest, PayoutState, RefundRequest};
use coinledger_client::Client;

use super::model::{implied, per_account, State};
use super::Check;
use crate::chaos::history::{definite, Op, Outcome, Reply, Request};

/// Probes of each kind (payment refs, refunds, payouts) sent under new request ids.
pub const PROBES_PER_KIND_MAX: usize = 64;

/// Uniqueness in the history, and the probes under new request ids. Run before the final
/// balances are read, so a probe that wrongly applied something shows there too.
pub async fn check_ids_and_probe(client: &Client, ops: &[Op]) -> Check {
    let mut c = Check::new("once");
    let mut request_ids = BTreeSet::new();
    let mut tx_ids = BTreeMap::new();
    let mut payout_ids = BTreeMap::new();
    for op in ops {
        if let Some(id) = op.req.request_id() {
            c.checked += 1;
            if !request_ids.insert(id.to_string()) {
                c.violation(format!("request id {id} used twice by the workload (harness bug)"));
            }
        }
        let tx = match op.final_reply() {
            Some(Reply::Purchase(p)) => Some(p.tx_id.clone()),
            Some(Reply::Gift(g)) => Some(g.tx_id.clone()),
            Some(Reply::Refund(r)) => Some(r.tx_id.clone()),
            _ => None,
        };
        if let Some(tx) = tx {
            if let Some(other) = tx_ids.insert(tx.clone(), op.id) {
                c.violation(format!("tx id {tx} answered to op #{other} and op #{}", op.id));
            }
        }
        if let Some(Reply::CashOut(co)) = op.final_reply() {
            if let Some(other) = payout_ids.insert(co.payout_id.clone(), op.id) {
                c.violation(format!("payout id {} answered to op #{other} and op #{}", co.payout_id, op.id));
            }
        }
    }
    let mut probes = 0;
    for op in ops {
        let (req, want): (Request, &[ErrorCode]) = match (&op.req, op.final_reply()) {
            (Request::Purchase(p), Some(_)) => {
                let mut again = p.clone();
                again.request_id = Client::new_request_id();
                (Request::Purchase(again), &[ErrorCode::DuplicatePaymentRef])
            }
            (Request::Refund(r), Some(_)) => (
                Request::Refund(RefundRequest { request_id: Client::new_request_id(), payment_ref: r.payment_ref.clone() }),
                &[ErrorCode::AlreadyRefunded],
            ),
            (Request::Post(p), Some(Reply::Payout(_))) => (
                Request::Void(PayoutRequest { request_id: Client::new_request_id(), payout_id: p.payout_id.clone() }),
                &[ErrorCode::PayoutAlreadyPosted],
            ),
            (Request::Void(p), Some(Reply::Payout(_))) => (
                Request::Post(PayoutRequest { request_id: Client::new_request_id(), payout_id: p.payout_id.clone() }),
                &[ErrorCode::PayoutAlreadyVoided],
            ),
            _ => continue,
        };
        if probes >= PROBES_PER_KIND_MAX * 4 {
            break;
        }
        probes += 1;
        c.checked += 1;
        let mut answer = None;
        for _ in 0..20 {
            match definite(req.send(client).await) {
                Ok(o) => {
                    answer = Some(o);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
        match answer {
            Some(Outcome::Failed { code, .. }) if want.contains(&code) => {}
            Some(Outcome::Ok(Reply::Payout(p))) if p.state != PayoutState::Pending as i32 && matches!(req, Request::Post(_) | Request::Void(_)) => {
                c.violation(format!("op #{} payout {}: the opposite decision under a new request id answered {:?}", op.id, p.payout_id, p.state));
            }
            other => c.violation(format!(
                "op #{} {}: sent again under a new request id ({}), expected {:?}, got {}",
                op.id,
                op.req.kind(),
                req.to_json(),
                want,
                other.map_or("no definite answer".to_string(), |o| o.to_json().to_string())
            )),
        }
    }
    c.notes.push(format!("{probes} probes under new request ids"));
    c
}

/// Final balances against the sums of the final outcomes, for every account named.
pub fn check_balances(c: &mut Check, ops: &[Op], finals: &BTreeMap<String, Option<State>>) {
    let events = per_account(ops);
    for (account, fin) in finals {
        c.checked += 1;
        let want = events.get(account).map(|e| implied(e)).unwrap_or_default();
        let have = fin.unwrap_or_default();
        if want != have {
            c.violation(format!(
                "account {account}: final balance {have:?}, the final outcomes imply {want:?} (ops: {})",
                ops_on(ops, account)
            ));
        }
    }
}

fn ops_on(ops: &[Op], account: &str) -> String {
    per_account(ops)
        .get(account)
        .map(|evs| evs.iter().filter(|e| !e.effect.is_read()).map(|e| format!("#{} {:?}", e.op, e.effect)).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
