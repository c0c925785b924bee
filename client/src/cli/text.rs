//! Human output: one line for a mutation, aligned tables for lists.

use std::time::{Duration, UNIX_EPOCH};

use coinledger_client::proto::*;

use super::output::enum_name;

pub fn money(m: &Option<Money>) -> String {
    match m {
        Some(m) if !m.amount.is_empty() => format!("{} {}", m.amount, m.currency),
        _ => "none".into(),
    }
}

/// Milliseconds since the epoch as UTC RFC 3339, to the second.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Columns padded to their widest cell; the last column is left ragged.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

pub fn purchase(r: &PurchaseReply) -> String {
    let bonus = if r.bonus_coins == 0 {
        String::new()
    } else {
        format!(
            " ({} + {} bonus {})",
            r.base_coins, r.bonus_coins, r.promotion_id
        )
    };
    let price = r.coin_price.clone().unwrap_or_default();
    format!(
        "purchase {}: +{} coins{bonus} at {} {}/coin, rate v{}; balance {}",
        r.tx_id, r.coins_credited, price.amount, price.currency, r.rate_version, r.coins_balance
    )
}

pub fn gift(r: &GiftReply, req: &GiftRequest) -> String {
    format!(
        "gift {}: {} x {} = {} coins from {}; {} +{} diamonds ({} bps), platform {} coins, \
         rate v{}; sender balance {}",
        r.tx_id,
        r.quantity,
        req.gift_id,
        r.coins_debited,
        req.sender,
        req.recipient,
        r.diamonds_credited,
        r.creator_share_bps,
        r.platform_coins,
        r.rate_version,
        r.sender_coins_balance
    )
}

pub fn cashout(r: &CashOutReply) -> String {
    format!(
        "cashout {}: {} diamonds held for {} {} (gross {} - fee {} at {} bps; {} {}/diamond), \
         rate v{}; finish with `coinctl payout post|void {}`",
        r.payout_id,
        r.diamonds_held,
        r.fiat_amount,
        r.currency,
        r.gross_amount,
        r.fee_amount,
        r.fee_bps,
        r.fiat_per_diamond,
        r.currency,
        r.rate_version,
        r.payout_id
    )
}

pub fn payout(r: &PayoutReply) -> String {
    format!(
        "payout {}: {}, {} diamonds of {} for {} {}",
        r.payout_id,
        enum_name(r.state().as_str_name()),
        r.diamonds,
        r.account,
        r.fiat_amount,
        r.currency
    )
}

pub fn refund(r: &RefundReply) -> String {
    let frozen = if r.account_frozen {
        "; account frozen"
    } else {
        ""
    };
    format!(
        "refund {}: {} refunded to {}'s payer; coins purchased {}, recovered {}, unrecovered {}{frozen}",
        r.tx_id, money(&r.refunded), r.account, r.coins_purchased, r.coins_recovered,
        r.coins_unrecovered
    )
}

pub fn balance(r: &BalanceReply) -> String {
    let limit = r.limit.clone().unwrap_or_default();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let rows = [
        ("account", r.account.clone()),
        ("coins", r.coins.to_string()),
        (
            "diamonds",
            format!(
                "{} (held {}, available {})",
                r.diamonds, r.diamonds_held, r.diamonds_available
            ),
        ),
        ("frozen", yes_no(r.frozen).into()),
        ("minor", yes_no(limit.minor).into()),
        ("daily cap", money(&limit.daily_purchase_cap)),
        ("bought today", money(&limit.purchased_today)),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<13}{v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn history(r: &HistoryReply) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                time(e.timestamp_ms),
                enum_name(e.kind().as_str_name()),
                e.tx_id.clone(),
                format!("{:+}", e.coins_delta),
                format!("{:+}", e.diamonds_delta),
                format!("{}/{}", e.coins_after, e.diamonds_after),
                entry_detail(e),
            ]
        })
        .collect();
    let header = [
        "SEQ",
        "TIME",
        "KIND",
        "TX",
        "COINS",
        "DIAMONDS",
        "AFTER C/D",
        "DETAIL",
    ];
    let mut out = table(&header, &rows);
    if !r.next_cursor.is_empty() {
        out.push_str(&format!("\nmore: --cursor {}", r.next_cursor));
    }
    out
}

/// The fields that matter for the entry's kind, e.g. "rose x3 to bob" or "9.99 USD ref p1".
fn entry_detail(e: &HistoryEntry) -> String {
    let mut parts = Vec::new();
    if !e.gift_id.is_empty() {
        parts.push(format!("{} x{}", e.gift_id, e.quantity));
    }
    if !e.counterparty.is_empty() {
        parts.push(format!("with {}", e.counterparty));
    }
    if e.fiat.as_ref().is_some_and(|m| !m.amount.is_empty()) {
        parts.push(money(&e.fiat));
    }
    if !e.reference.is_empty() {
        parts.push(format!("ref {}", e.reference));
    }
    if e.bonus_coins > 0 {
        parts.push(format!("bonus {}", e.bonus_coins));
    }
    if e.rate_version > 0 {
        parts.push(format!("rate v{}", e.rate_version));
    }
    parts.join(", ")
}

pub fn gifts(gifts: &[CatalogGift]) -> String {
    let rows: Vec<Vec<String>> = gifts
        .iter()
        .map(|g| vec![g.id.clone(), g.price_coins.to_string(), g.name.clone()])
        .collect();
    table(&["ID", "COINS", "NAME"], &rows)
}

pub fn rates(c: &RateCard) -> String {
    let mut out = vec![format!(
        "rate card v{} since {}",
        c.version,
        time(c.effective_ms)
    )];
    let prices: Vec<Vec<String>> = c
        .coin_prices
        .iter()
        .map(|p| {
            vec![
                p.currency.clone(),
                p.price_per_coin.clone(),
                p.max_purchase.clone(),
            ]
        })
        .collect();
    out.push(table(&["CURRENCY", "PER COIN", "MAX PURCHASE"], &prices));
    for p in &c.promotions {
        out.push(format!(
            "promotion {}: +{} bps from {} base coins",
            p.id, p.bonus_bps, p.min_base_coins
        ));
    }
    out.push(format!("creator share {} bps", c.creator_share_bps));
    for r in &c.cashout_rates {
        out.push(format!(
            "cash-out {} {}/diamond",
            r.fiat_per_diamond, r.currency
        ));
    }
    out.push(format!(
        "cash-out minimum {} diamonds, fee {} bps; gifts up to x{}, messages up to {} chars",
        c.cashout_min_diamonds, c.cashout_fee_bps, c.max_gift_quantity, c.max_message_chars
    ));
    out.push(gifts(&c.gifts));
    out.join("\n")
}

pub fn status(s: &StatusReply) -> String {
    let mut out = vec![format!(
        "node {} at {}, {} shards, rate v{}, up {}, raft log {:.1} MiB in {} segment file{}",
        s.node_id,
        s.address,
        s.shard_count,
        s.rate_version,
        humantime::format_duration(Duration::from_secs(s.uptime_ms / 1000)),
        s.raft_log_bytes as f64 / f64::from(1u32 << 20),
        s.raft_log_segments,
        if s.raft_log_segments == 1 { "" } else { "s" }
    )];
    if let Some(c) = &s.counters {
        out.push(counters(c));
    }
    for n in &s.nodes {
        out.push(format!("  node {} {}", n.id, n.address));
    }
    let rows: Vec<Vec<String>> = s
        .shards
        .iter()
        .map(|h| {
            let leader = if h.leader_id == 0 {
                "-".to_string()
            } else {
                h.leader_id.to_string()
            };
            vec![
                h.shard.to_string(),
                h.role.clone(),
                leader,
                h.term.to_string(),
                h.commit_index.to_string(),
                h.applied_index.to_string(),
                h.pending_effects.to_string(),
            ]
        })
        .collect();
    out.push(table(
        &[
            "SHARD", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "PENDING",
        ],
        &rows,
    ));
    out.join("\n")
}

/// The node's work since it started, in one line.
fn counters(c: &NodeCounters) -> String {
    let fsync_avg_us = c.group_commit_us.checked_div(c.group_commits).unwrap_or(0);
    format!(
        "  since start: {} entries proposed, {} applied ({} commands), {} readies, {} group commits \
         (average {fsync_avg_us} us), {} state flushes ({} keys), raft messages {} sent in {} frames \
         ({} dropped), {} received in {} frames",
        c.entries_proposed,
        c.entries_applied,
        c.commands_applied,
        c.readies,
        c.group_commits,
        c.state_flushes,
        c.state_flush_keys,
        c.raft_messages_sent,
        c.raft_frames_sent,
        c.raft_messages_dropped,
        c.raft_messages_received,
        c.raft_frames_received
    )
}

pub fn audit(a: &AuditReply) -> String {
    let verdict = if a.ok { "ok" } else { "VIOLATED" };
    let mut out =
        vec![
            format!(
                "audit {verdict}: {} accounts, {} pending effects",
                a.accounts, a.pending_effects
            ),
            format!(
            "coins: issued {}, recovered by refunds {}, spent on gifts {}, held {}, in flight {}",
            a.coins_issued, a.coins_recovered_by_refunds, a.coins_spent_on_gifts, a.coins_held,
            a.coins_in_flight
        ),
            format!(
                "diamonds: credited {}, held {}, on hold for payout {}, paid out {}, in flight {}",
                a.diamonds_credited,
                a.diamonds_held_total,
                a.diamonds_on_hold_for_payout,
                a.diamonds_paid_out,
                a.diamonds_in_flight
            ),
            format!("platform share: {} coins", a.platform_coins),
        ];
    out.extend(a.violations.iter().map(|v| format!("violation: {v}")));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchase_line() {
        let r = PurchaseReply {
            tx_id: "tx-3-1042-0".into(),
            coins_credited: 1050,
            base_coins: 1000,
            bonus_coins: 50,
            promotion_id: "bulk-1k".into(),
            coin_price: Some(Money {
                amount: "0.01".into(),
                currency: "USD".into(),
            }),
            rate_version: 1,
            coins_balance: 1050,
            timestamp_ms: 0,
        };
        assert_eq!(
            purchase(&r),
            "purchase tx-3-1042-0: +1050 coins (1000 + 50 bonus bulk-1k) at 0.01 USD/coin, rate v1; balance 1050"
        );
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "B"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A     B\nlong  x\ns     y");
        assert_eq!(time(1_000), "1970-01-01T00:00:01Z");
    }
}
