//! The `--json` shapes, written by hand so field names are stable no matter how the proto
//! evolves: snake_case, counts as JSON numbers, fiat amounts as decimal strings, absent money
//! as null, enums as lowercase names. One function per reply type.

use coinledger_client::proto::*;
use coinledger_client::ClientError;
use serde_json::{json, Value};

/// `{amount, currency}`, or null when absent or empty (e.g. "no cap").
pub fn money(m: &Option<Money>) -> Value {
    match m {
        Some(m) if !m.amount.is_empty() => json!({"amount": m.amount, "currency": m.currency}),
        _ => Value::Null,
    }
}

/// Empty strings the proto uses for "none" (promotion, cursor) become null.
fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

/// "GIFT_SENT" → "gift_sent"; the UNSPECIFIED zero values → "unspecified".
pub fn enum_name(name: &str) -> String {
    if name.ends_with("UNSPECIFIED") {
        "unspecified".into()
    } else {
        name.to_lowercase()
    }
}

pub fn error(e: &ClientError) -> Value {
    json!({"error": {"code": e.code_name, "message": e.message, "leader_hint": e.leader_hint}})
}

pub fn purchase(r: &PurchaseReply, request_id: &str) -> Value {
    json!({
        "tx_id": r.tx_id, "coins_credited": r.coins_credited, "base_coins": r.base_coins,
        "bonus_coins": r.bonus_coins, "promotion_id": opt_str(&r.promotion_id),
        "coin_price": money(&r.coin_price), "rate_version": r.rate_version,
        "coins_balance": r.coins_balance, "timestamp_ms": r.timestamp_ms, "request_id": request_id,
    })
}

pub fn gift(r: &GiftReply, request_id: &str) -> Value {
    json!({
        "tx_id": r.tx_id, "coins_debited": r.coins_debited, "diamonds_credited": r.diamonds_credited,
        "platform_coins": r.platform_coins, "price_coins": r.price_coins, "quantity": r.quantity,
        "creator_share_bps": r.creator_share_bps, "rate_version": r.rate_version,
        "sender_coins_balance": r.sender_coins_balance, "timestamp_ms": r.timestamp_ms,
        "request_id": request_id,
    })
}

pub fn cashout(r: &CashOutReply, request_id: &str) -> Value {
    json!({
        "payout_id": r.payout_id, "diamonds_held": r.diamonds_held, "fiat_amount": r.fiat_amount,
        "currency": r.currency, "gross_amount": r.gross_amount, "fee_amount": r.fee_amount,
        "fiat_per_diamond": r.fiat_per_diamond, "fee_bps": r.fee_bps,
        "rate_version": r.rate_version, "timestamp_ms": r.timestamp_ms, "request_id": request_id,
    })
}

pub fn payout(r: &PayoutReply, request_id: &str) -> Value {
    json!({
        "payout_id": r.payout_id, "account": r.account, "state": enum_name(r.state().as_str_name()),
        "diamonds": r.diamonds, "fiat_amount": r.fiat_amount, "currency": r.currency,
        "timestamp_ms": r.timestamp_ms, "request_id": request_id,
    })
}

pub fn refund(r: &RefundReply, request_id: &str) -> Value {
    json!({
        "tx_id": r.tx_id, "account": r.account, "coins_purchased": r.coins_purchased,
        "coins_recovered": r.coins_recovered, "coins_unrecovered": r.coins_unrecovered,
        "account_frozen": r.account_frozen, "refunded": money(&r.refunded),
        "timestamp_ms": r.timestamp_ms, "request_id": request_id,
    })
}

pub fn balance(r: &BalanceReply) -> Value {
    let limit = r.limit.clone().unwrap_or_default();
    json!({
        "account": r.account, "coins": r.coins, "diamonds": r.diamonds,
        "diamonds_held": r.diamonds_held, "diamonds_available": r.diamonds_available,
        "frozen": r.frozen,
        "limit": {
            "minor": limit.minor, "daily_purchase_cap": money(&limit.daily_purchase_cap),
            "purchased_today": money(&limit.purchased_today), "day": limit.day,
        },
    })
}

pub fn history(r: &HistoryReply) -> Value {
    let entries: Vec<Value> = r.entries.iter().map(history_entry).collect();
    json!({"entries": entries, "next_cursor": opt_str(&r.next_cursor)})
}

fn history_entry(e: &HistoryEntry) -> Value {
    json!({
        "seq": e.seq, "tx_id": e.tx_id, "kind": enum_name(e.kind().as_str_name()),
        "timestamp_ms": e.timestamp_ms, "coins_delta": e.coins_delta,
        "diamonds_delta": e.diamonds_delta, "diamonds_held_delta": e.diamonds_held_delta,
        "coins_after": e.coins_after, "diamonds_after": e.diamonds_after,
        "diamonds_held_after": e.diamonds_held_after, "counterparty": opt_str(&e.counterparty),
        "fiat": money(&e.fiat), "rate_version": e.rate_version, "gift_id": opt_str(&e.gift_id),
        "quantity": e.quantity, "message": opt_str(&e.message), "stream_id": opt_str(&e.stream_id),
        "base_coins": e.base_coins, "bonus_coins": e.bonus_coins,
        "platform_coins": e.platform_coins, "fee": money(&e.fee), "reference": opt_str(&e.reference),
    })
}

pub fn gifts(gifts: &[CatalogGift]) -> Value {
    let list: Vec<Value> = gifts
        .iter()
        .map(|g| json!({"id": g.id, "name": g.name, "price_coins": g.price_coins}))
        .collect();
    Value::Array(list)
}

/// The full card; `rates set` reads this same shape back (see rates.rs).
pub fn rates(c: &RateCard) -> Value {
    let prices: Vec<Value> = c
        .coin_prices
        .iter()
        .map(|p| {
            json!({"currency": p.currency, "price_per_coin": p.price_per_coin,
                   "minor_units": p.minor_units, "max_purchase": p.max_purchase})
        })
        .collect();
    let promotions: Vec<Value> = c
        .promotions
        .iter()
        .map(|p| json!({"id": p.id, "min_base_coins": p.min_base_coins, "bonus_bps": p.bonus_bps}))
        .collect();
    let cashout_rates: Vec<Value> = c
        .cashout_rates
        .iter()
        .map(|r| json!({"currency": r.currency, "fiat_per_diamond": r.fiat_per_diamond}))
        .collect();
    json!({
        "version": c.version, "effective_ms": c.effective_ms, "coin_prices": prices,
        "promotions": promotions, "creator_share_bps": c.creator_share_bps,
        "cashout_rates": cashout_rates, "cashout_min_diamonds": c.cashout_min_diamonds,
        "cashout_fee_bps": c.cashout_fee_bps, "max_gift_quantity": c.max_gift_quantity,
        "max_message_chars": c.max_message_chars, "gifts": gifts(&c.gifts),
    })
}

pub fn status(s: &StatusReply) -> Value {
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|n| json!({"id": n.id, "address": n.address}))
        .collect();
    let shards: Vec<Value> = s
        .shards
        .iter()
        .map(|h| {
            json!({"shard": h.shard, "role": h.role, "leader_id": h.leader_id, "term": h.term,
                   "commit_index": h.commit_index, "applied_index": h.applied_index,
                   "pending_effects": h.pending_effects, "voters": h.voters})
        })
        .collect();
    json!({
        "node_id": s.node_id, "address": s.address, "shard_count": s.shard_count,
        "nodes": nodes, "shards": shards, "rate_version": s.rate_version, "uptime_ms": s.uptime_ms,
        "raft_log_segments": s.raft_log_segments, "raft_log_bytes": s.raft_log_bytes,
        "counters": s.counters.as_ref().map(counters),
    })
}

pub fn counters(c: &NodeCounters) -> Value {
    json!({
        "entries_proposed": c.entries_proposed, "entries_applied": c.entries_applied,
        "commands_applied": c.commands_applied, "readies": c.readies,
        "group_commits": c.group_commits, "group_commit_us": c.group_commit_us,
        "group_commit_waiters": c.group_commit_waiters,
        "state_flushes": c.state_flushes, "state_flush_keys": c.state_flush_keys,
        "raft_messages_sent": c.raft_messages_sent, "raft_frames_sent": c.raft_frames_sent,
        "raft_messages_dropped": c.raft_messages_dropped,
        "raft_messages_received": c.raft_messages_received, "raft_frames_received": c.raft_frames_received,
    })
}

pub fn audit(a: &AuditReply) -> Value {
    json!({
        "ok": a.ok, "violations": a.violations, "accounts": a.accounts,
        "coins_held": a.coins_held, "diamonds_held_total": a.diamonds_held_total,
        "diamonds_on_hold_for_payout": a.diamonds_on_hold_for_payout,
        "coins_issued": a.coins_issued, "coins_recovered_by_refunds": a.coins_recovered_by_refunds,
        "coins_spent_on_gifts": a.coins_spent_on_gifts, "diamonds_credited": a.diamonds_credited,
        "diamonds_paid_out": a.diamonds_paid_out, "platform_coins": a.platform_coins,
        "diamonds_in_flight": a.diamonds_in_flight, "coins_in_flight": a.coins_in_flight,
        "pending_effects": a.pending_effects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn has(v: &Value, fields: &[&str]) {
        for f in fields {
            assert!(v.get(f).is_some(), "missing {f} in {v}");
        }
    }

    #[test]
    fn balance_fields() {
        let v = balance(&BalanceReply {
            account: "a".into(),
            coins: 5,
            ..Default::default()
        });
        has(
            &v,
            &[
                "account",
                "coins",
                "diamonds",
                "diamonds_held",
                "diamonds_available",
                "frozen",
            ],
        );
        assert_eq!(v["coins"], json!(5));
        assert_eq!(
            keys(&v["limit"]),
            ["daily_purchase_cap", "day", "minor", "purchased_today"]
        );
        assert_eq!(v["limit"]["daily_purchase_cap"], Value::Null);
    }

    #[test]
    fn purchase_fields_and_money_as_strings() {
        let r = PurchaseReply {
            coin_price: Some(Money {
                amount: "0.01".into(),
                currency: "USD".into(),
            }),
            ..Default::default()
        };
        let v = purchase(&r, "rid");
        assert_eq!(
            keys(&v),
            [
                "base_coins",
                "bonus_coins",
                "coin_price",
                "coins_balance",
                "coins_credited",
                "promotion_id",
                "rate_version",
                "request_id",
                "timestamp_ms",
                "tx_id"
            ]
        );
        assert_eq!(
            v["coin_price"],
            json!({"amount": "0.01", "currency": "USD"})
        );
        assert_eq!(v["request_id"], json!("rid"));
    }

    #[test]
    fn mutation_fields() {
        has(
            &gift(&GiftReply::default(), "r"),
            &[
                "tx_id",
                "coins_debited",
                "diamonds_credited",
                "platform_coins",
                "price_coins",
                "quantity",
                "creator_share_bps",
                "rate_version",
                "sender_coins_balance",
                "timestamp_ms",
                "request_id",
            ],
        );
        has(
            &cashout(&CashOutReply::default(), "r"),
            &[
                "payout_id",
                "diamonds_held",
                "fiat_amount",
                "currency",
                "gross_amount",
                "fee_amount",
                "fiat_per_diamond",
                "fee_bps",
                "rate_version",
                "timestamp_ms",
                "request_id",
            ],
        );
        let p = PayoutReply {
            state: PayoutState::Posted as i32,
            ..Default::default()
        };
        let v = payout(&p, "r");
        has(
            &v,
            &[
                "payout_id",
                "account",
                "state",
                "diamonds",
                "fiat_amount",
                "currency",
                "timestamp_ms",
            ],
        );
        assert_eq!(v["state"], json!("posted"));
        has(
            &refund(&RefundReply::default(), "r"),
            &[
                "tx_id",
                "account",
                "coins_purchased",
                "coins_recovered",
                "coins_unrecovered",
                "account_frozen",
                "refunded",
            ],
        );
    }

    #[test]
    fn history_entries_carry_every_field() {
        let e = HistoryEntry {
            kind: EntryKind::GiftSent as i32,
            coins_delta: -30,
            ..Default::default()
        };
        let v = history(&HistoryReply {
            entries: vec![e],
            next_cursor: "c2".into(),
        });
        assert_eq!(v["next_cursor"], json!("c2"));
        let entry = &v["entries"][0];
        assert_eq!(entry["kind"], json!("gift_sent"));
        assert_eq!(entry["coins_delta"], json!(-30));
        assert_eq!(keys(entry).len(), 22, "one key per HistoryEntry field");
    }

    #[test]
    fn catalog_cluster_and_errors() {
        let g = CatalogGift {
            id: "rose".into(),
            name: "Rose".into(),
            price_coins: 10,
        };
        assert_eq!(
            gifts(std::slice::from_ref(&g)),
            json!([{"id": "rose", "name": "Rose", "price_coins": 10}])
        );
        let card = rates(&RateCard {
            gifts: vec![g],
            ..Default::default()
        });
        assert_eq!(keys(&card).len(), 11, "one key per RateCard field");
        assert_eq!(keys(&status(&StatusReply::default())).len(), 10, "one key per StatusReply field");
        assert_eq!(keys(&counters(&NodeCounters::default())).len(), 14, "one key per NodeCounters field");
        assert_eq!(keys(&audit(&AuditReply::default())).len(), 15);
        let mut e = ClientError::local(ErrorCode::NotLeader, "elsewhere");
        e.leader_hint = Some("n2:7002".into());
        assert_eq!(
            error(&e),
            json!({"error": {"code": "NOT_LEADER", "message": "elsewhere", "leader_hint": "n2:7002"}})
        );
    }
}
