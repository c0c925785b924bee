//! The whole money path through the client library against the real node, with exact numbers
//! from the default rate card (rate card v1):
//! USD 0.01/coin, EUR 0.0095/coin, bulk-1k +5% from 1000 base coins, bulk-10k +10% from 10000;
//! creator share 50%; cash-out USD 0.005/diamond, minimum 1000, fee 2.5% rounded up.

mod common;

use std::str::FromStr;
use std::time::Duration;

use coinledger_client::proto::{self, EntryKind, PayoutState};
use coinledger_client::Client;
use common::*;
use rust_decimal::Decimal;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

/// Fiat strings are compared as numbers ("5" and "5.00" are the same amount).
#[track_caller]
fn assert_fiat(got: &str, want: &str) {
    assert_eq!(dec(got), dec(want), "fiat {got:?} != {want:?}");
}

#[track_caller]
fn assert_money(got: &Option<proto::Money>, amount: &str, currency: &str) {
    let m = got.as_ref().unwrap_or_else(|| panic!("no money, want {amount} {currency}"));
    assert_fiat(&m.amount, amount);
    assert_eq!(m.currency, currency);
}

/// What the test itself expects the ledger-wide totals to be.
#[derive(Default, Debug)]
struct Totals {
    issued: u64,
    recovered: u64,
    spent: u64,
    diamonds: u64,
    platform: u64,
    paid_out: u64,
}

async fn buy(c: &Client, t: &mut Totals, rid: &str, account: &str, amount: &str, cur: &str, pref: &str) -> proto::PurchaseReply {
    let r = c
        .purchase(purchase_req(rid, account, amount, cur, pref))
        .await
        .unwrap_or_else(|e| panic!("purchase {rid}: {e}"));
    t.issued += r.coins_credited;
    r
}

async fn give(c: &Client, t: &mut Totals, rid: &str, from: &str, to: &str, gift: &str, q: u32) -> proto::GiftReply {
    let r = c
        .gift(gift_req(rid, from, to, gift, q))
        .await
        .unwrap_or_else(|e| panic!("gift {rid}: {e}"));
    t.spent += r.coins_debited;
    t.diamonds += r.diamonds_credited;
    t.platform += r.platform_coins;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_with_exact_numbers() {
    let node = TestNode::start().await;
    let c = node.client();
    let mut t = Totals::default();

    let fan = name_in_shard("fan", 0);
    let near = name_in_shard("creator-near", shard_of(&fan)); // same shard as the fan
    let far = name_not_in_shard("creator-far", shard_of(&fan)); // another shard
    assert_eq!(shard_of(&fan), shard_of(&near));
    assert_ne!(shard_of(&fan), shard_of(&far));

    // --- purchases: price, promotions, EUR
    let p1 = buy(&c, &mut t, "buy-1", &fan, "9.99", "USD", "pay-1").await;
    assert!(p1.tx_id.starts_with("tx-"), "{}", p1.tx_id);
    assert_eq!((p1.coins_credited, p1.base_coins, p1.bonus_coins), (999, 999, 0));
    assert_eq!((p1.promotion_id.as_str(), p1.rate_version, p1.coins_balance), ("", 1, 999));
    assert_money(&p1.coin_price, "0.01", "USD");
    assert!(p1.timestamp_ms > 1_600_000_000_000, "timestamp {}", p1.timestamp_ms);

    let p2 = buy(&c, &mut t, "buy-2", &fan, "10.00", "USD", "pay-2").await;
    assert_eq!((p2.coins_credited, p2.base_coins, p2.bonus_coins), (1050, 1000, 50));
    assert_eq!((p2.promotion_id.as_str(), p2.coins_balance), ("bulk-1k", 2049));

    let p3 = buy(&c, &mut t, "buy-3", &fan, "10.00", "EUR", "pay-3").await;
    // floor(10 / 0.0095) = 1052, bonus floor(1052 * 5%) = 52
    assert_eq!((p3.coins_credited, p3.base_coins, p3.bonus_coins), (1104, 1052, 52));
    assert_money(&p3.coin_price, "0.0095", "EUR");
    assert_eq!(p3.coins_balance, 3153);

    let p4 = buy(&c, &mut t, "buy-4", &fan, "100", "USD", "pay-4").await;
    assert_eq!((p4.coins_credited, p4.base_coins, p4.bonus_coins), (11_000, 10_000, 1_000));
    assert_eq!((p4.promotion_id.as_str(), p4.coins_balance), ("bulk-10k", 14_153));
    assert_eq!(balance(&c, &fan).await.coins, 14_153);

    // --- gifts: same shard, cross shard, a rose (all to the platform), a message and stream
    let g1 = give(&c, &mut t, "gift-1", &fan, &near, "doughnut", 2).await;
    assert!(g1.tx_id.starts_with("tx-"), "{}", g1.tx_id);
    assert_eq!((g1.coins_debited, g1.diamonds_credited, g1.platform_coins), (60, 30, 30));
    assert_eq!((g1.price_coins, g1.quantity, g1.creator_share_bps, g1.rate_version), (30, 2, 5000, 1));
    assert_eq!(g1.sender_coins_balance, 14_093);

    let g2 = give(&c, &mut t, "gift-2", &fan, &far, "galaxy", 4).await;
    assert_eq!((g2.coins_debited, g2.diamonds_credited, g2.platform_coins), (4000, 2000, 2000));
    assert_eq!(g2.sender_coins_balance, 10_093);
    // Answered only once the creator's credit is committed: visible at once.
    let b = balance(&c, &far).await;
    assert_eq!((b.coins, b.diamonds, b.diamonds_held, b.diamonds_available), (0, 2000, 0, 2000));

    let message: String = "🌹".repeat(280); // exactly max_message_chars scalar values
    let mut rose = gift_req("gift-3", &fan, &far, "rose", 1);
    rose.message = message.clone();
    rose.stream_id = "live-42".into();
    let g3 = c.gift(rose).await.expect("rose");
    t.spent += g3.coins_debited;
    t.platform += g3.platform_coins;
    assert_eq!((g3.coins_debited, g3.diamonds_credited, g3.platform_coins), (1, 0, 1));
    assert_eq!(g3.sender_coins_balance, 10_092);

    let b = balance(&c, &fan).await;
    assert_eq!((b.account.as_str(), b.coins, b.diamonds, b.diamonds_held), (fan.as_str(), 10_092, 0, 0));
    assert!(!b.frozen);
    let b = balance(&c, &near).await;
    assert_eq!((b.coins, b.diamonds), (0, 30));

    // --- cash-out then post
    let co = c.cash_out(cashout_req("co-1", &far, 1000)).await.expect("cash-out");
    assert!(co.payout_id.starts_with("po-"), "{}", co.payout_id);
    assert_eq!((co.diamonds_held, co.currency.as_str(), co.fee_bps, co.rate_version), (1000, "USD", 250, 1));
    assert_fiat(&co.gross_amount, "5.00");
    assert_fiat(&co.fee_amount, "0.13");
    assert_fiat(&co.fiat_amount, "4.87");
    assert_fiat(&co.fiat_per_diamond, "0.005");
    let b = balance(&c, &far).await;
    assert_eq!((b.diamonds, b.diamonds_held, b.diamonds_available), (2000, 1000, 1000));
    let audit_mid = audit(&c).await;
    assert_eq!(audit_mid.diamonds_on_hold_for_payout, 1000, "{audit_mid:?}");

    let posted = c.post_payout(payout_req("post-1", &co.payout_id)).await.expect("post");
    assert_eq!((posted.payout_id.as_str(), posted.account.as_str()), (co.payout_id.as_str(), far.as_str()));
    assert_eq!((posted.state(), posted.diamonds), (PayoutState::Posted, 1000));
    assert_fiat(&posted.fiat_amount, "4.87");
    assert_eq!(posted.currency, "USD");
    t.paid_out += 1000;
    let b = balance(&c, &far).await;
    assert_eq!((b.diamonds, b.diamonds_held, b.diamonds_available), (1000, 0, 1000));
    // Posting again (another request id) answers the posted payout and pays nothing twice.
    let again = c.post_payout(payout_req("post-1b", &co.payout_id)).await.expect("post again");
    assert_eq!(again.state(), PayoutState::Posted);
    assert_eq!(balance(&c, &far).await.diamonds, 1000);

    // --- cash-out then void: diamonds come back
    let co2 = c.cash_out(cashout_req("co-2", &far, 1000)).await.expect("cash-out 2");
    assert_ne!(co2.payout_id, co.payout_id);
    assert_eq!(balance(&c, &far).await.diamonds_available, 0);
    let voided = c.void_payout(payout_req("void-1", &co2.payout_id)).await.expect("void");
    assert_eq!((voided.state(), voided.diamonds), (PayoutState::Voided, 1000));
    let b = balance(&c, &far).await;
    assert_eq!((b.diamonds, b.diamonds_held, b.diamonds_available), (1000, 0, 1000));

    // --- refund of an unspent purchase: everything recovered
    let buyer = name_not_in_shard("buyer", 0);
    let pb = buy(&c, &mut t, "buy-5", &buyer, "5.00", "USD", "pay-5").await;
    assert_eq!(pb.coins_credited, 500);
    let r = c
        .refund(proto::RefundRequest { request_id: "refund-1".into(), payment_ref: "pay-5".into() })
        .await
        .expect("refund");
    assert_eq!((r.account.as_str(), r.coins_purchased, r.coins_recovered, r.coins_unrecovered), (buyer.as_str(), 500, 500, 0));
    assert!(!r.account_frozen);
    assert_money(&r.refunded, "5.00", "USD");
    assert!(r.tx_id.starts_with("tx-"), "{}", r.tx_id);
    t.recovered += 500;
    let b = balance(&c, &buyer).await;
    assert_eq!((b.coins, b.frozen), (0, false));

    // --- refund after spending: the rest is unrecovered and the account frozen
    let spender = name_in_shard("spender", 3);
    buy(&c, &mut t, "buy-6", &spender, "9.99", "USD", "pay-6").await;
    let gs = give(&c, &mut t, "gift-4", &spender, &near, "corgi", 3).await;
    assert_eq!((gs.coins_debited, gs.diamonds_credited, gs.sender_coins_balance), (897, 448, 102));
    let r = c
        .refund(proto::RefundRequest { request_id: "refund-2".into(), payment_ref: "pay-6".into() })
        .await
        .expect("refund 2");
    assert_eq!((r.coins_purchased, r.coins_recovered, r.coins_unrecovered, r.account_frozen), (999, 102, 897, true));
    t.recovered += 102;
    let b = balance(&c, &spender).await;
    assert_eq!((b.coins, b.frozen), (0, true));
    assert_eq!(balance(&c, &near).await.diamonds, 30 + 448, "the gifts stay delivered");

    // --- history: newest first, paginated with a cursor
    let mut pages = Vec::new();
    let mut entries: Vec<proto::HistoryEntry> = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let h = c
            .history(proto::HistoryRequest { account: fan.clone(), limit: 3, cursor: cursor.clone() })
            .await
            .expect("history");
        pages.push(h.entries.len());
        entries.extend(h.entries);
        cursor = h.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pages, vec![3, 3, 1], "page sizes");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![7, 6, 5, 4, 3, 2, 1], "newest first");
    let kinds: Vec<EntryKind> = entries.iter().map(|e| e.kind()).collect();
    use EntryKind::{GiftSent as S, Purchase as P};
    assert_eq!(kinds, vec![S, S, S, P, P, P, P]);
    let txs: Vec<&str> = entries.iter().map(|e| e.tx_id.as_str()).collect();
    assert_eq!(txs, vec![&g3.tx_id, &g2.tx_id, &g1.tx_id, &p4.tx_id, &p3.tx_id, &p2.tx_id, &p1.tx_id]);
    let deltas: Vec<i64> = entries.iter().map(|e| e.coins_delta).collect();
    assert_eq!(deltas, vec![-1, -4000, -60, 11_000, 1104, 1050, 999]);
    let after: Vec<u64> = entries.iter().map(|e| e.coins_after).collect();
    assert_eq!(after, vec![10_092, 10_093, 14_093, 14_153, 3153, 2049, 999]);
    let first = &entries[6];
    assert_eq!((first.base_coins, first.bonus_coins, first.reference.as_str(), first.rate_version), (999, 0, "pay-1", 1));
    assert_money(&first.fiat, "9.99", "USD");
    let eur = &entries[4];
    assert_eq!((eur.base_coins, eur.bonus_coins), (1052, 52));
    assert_money(&eur.fiat, "10.00", "EUR");
    let sent = &entries[1];
    assert_eq!((sent.counterparty.as_str(), sent.gift_id.as_str(), sent.quantity), (far.as_str(), "galaxy", 4));
    assert_eq!(sent.platform_coins, 2000);
    // The creator's side: the rose with its message, newest first after the payouts.
    let h = c
        .history(proto::HistoryRequest { account: far.clone(), limit: 0, cursor: String::new() })
        .await
        .expect("creator history");
    let kinds: Vec<EntryKind> = h.entries.iter().map(|e| e.kind()).collect();
    use EntryKind::{CashoutHeld as H, GiftReceived as R, PayoutPosted as Po, PayoutVoided as V};
    assert_eq!(kinds, vec![V, H, Po, H, R, R]);
    assert!(h.next_cursor.is_empty());
    let received = &h.entries[4];
    assert_eq!((received.counterparty.as_str(), received.gift_id.as_str()), (fan.as_str(), "rose"));
    assert_eq!((received.message.as_str(), received.stream_id.as_str()), (message.as_str(), "live-42"));
    assert_eq!((h.entries[5].diamonds_delta, h.entries[5].diamonds_after), (2000, 2000));
    assert_eq!((h.entries[3].diamonds_held_delta, h.entries[3].reference.as_str()), (1000, co.payout_id.as_str()));
    assert_money(&h.entries[3].fee, "0.13", "USD");
    assert_eq!((h.entries[2].diamonds_delta, h.entries[2].diamonds_after), (-1000, 1000));

    // --- rates and gifts
    let card = c.rates(proto::GetRatesRequest {}).await.expect("rates");
    assert_eq!(card.version, 1);
    assert_eq!((card.creator_share_bps, card.cashout_min_diamonds, card.cashout_fee_bps), (5000, 1000, 250));
    assert_eq!((card.max_gift_quantity, card.max_message_chars), (9999, 280));
    let price = |cur: &str| card.coin_prices.iter().find(|p| p.currency == cur).unwrap_or_else(|| panic!("no {cur}"));
    assert_fiat(&price("USD").price_per_coin, "0.01");
    assert_eq!(price("USD").minor_units, 2);
    assert_fiat(&price("EUR").price_per_coin, "0.0095");
    let usd_out = card.cashout_rates.iter().find(|r| r.currency == "USD").expect("USD cash-out rate");
    assert_fiat(&usd_out.fiat_per_diamond, "0.005");
    let promos: Vec<(&str, u64, u32)> = card.promotions.iter().map(|p| (p.id.as_str(), p.min_base_coins, p.bonus_bps)).collect();
    assert_eq!(promos, vec![("bulk-1k", 1000, 500), ("bulk-10k", 10_000, 1000)]);

    let gifts = c.gifts(proto::ListGiftsRequest {}).await.expect("gifts");
    assert_eq!(gifts.rate_version, 1);
    assert_eq!(gifts.gifts, card.gifts, "ListGifts is the card's catalog");
    let price_of = |id: &str| gifts.gifts.iter().find(|g| g.id == id).map(|g| g.price_coins);
    assert_eq!(price_of("rose"), Some(1));
    assert_eq!(price_of("finger-heart"), Some(5));
    assert_eq!(price_of("doughnut"), Some(30));
    assert_eq!(price_of("universe"), Some(44_999));

    // --- set-limit: a minor's daily cap
    let kid = name_in_shard("kid", 5);
    let l = c
        .set_limit(proto::SetLimitRequest {
            request_id: "limit-1".into(),
            account: kid.clone(),
            minor: true,
            daily_purchase_cap: money("20.00", "USD"),
        })
        .await
        .expect("set limit");
    let lim = l.limit.clone().expect("limit");
    assert!(lim.minor);
    assert_money(&lim.daily_purchase_cap, "20", "USD");
    assert_eq!(l.coins, 0, "set-limit opens the account");
    let k1 = buy(&c, &mut t, "kid-1", &kid, "15.00", "USD", "pay-kid-1").await;
    assert_eq!(k1.coins_credited, 1575);
    let over = c.purchase(purchase_req("kid-2", &kid, "5.01", "USD", "pay-kid-2")).await;
    expect_code(over, "LIMIT_EXCEEDED");
    let k3 = buy(&c, &mut t, "kid-3", &kid, "5.00", "USD", "pay-kid-3").await;
    assert_eq!(k3.coins_balance, 1575 + 500, "exactly the cap is allowed");
    let b = balance(&c, &kid).await;
    let lim = b.limit.expect("limit");
    assert_money(&lim.purchased_today, "20", "USD");
    assert_eq!(b.coins, 2075);

    // --- freeze / unfreeze
    let f = c
        .set_frozen(proto::SetFrozenRequest { request_id: "freeze-1".into(), account: fan.clone(), frozen: true })
        .await
        .expect("freeze");
    assert!(f.frozen);
    expect_code(c.gift(gift_req("gift-frozen", &fan, &far, "rose", 1)).await, "ACCOUNT_FROZEN");
    let u = c
        .set_frozen(proto::SetFrozenRequest { request_id: "unfreeze-1".into(), account: fan.clone(), frozen: false })
        .await
        .expect("unfreeze");
    assert!(!u.frozen);
    let g5 = give(&c, &mut t, "gift-5", &fan, &far, "finger-heart", 1).await;
    assert_eq!((g5.coins_debited, g5.diamonds_credited, g5.sender_coins_balance), (5, 2, 10_087));

    // --- status
    let s = c.status(proto::StatusRequest {}).await.expect("status");
    assert_eq!((s.node_id, s.shard_count, s.shards.len(), s.rate_version), (1, 8, 8, 1));
    assert_eq!(s.address, node.addr());
    assert_eq!(s.nodes.len(), 1);
    assert_eq!((s.nodes[0].id, s.nodes[0].address.as_str()), (1, node.addr().as_str()));
    for sh in &s.shards {
        assert_eq!((sh.role.as_str(), sh.leader_id), ("leader", 1), "{sh:?}");
        assert!(sh.applied_index <= sh.commit_index, "{sh:?}");
        assert_eq!(sh.voters, vec![1], "{sh:?}");
    }
    let shard_ids: Vec<u32> = s.shards.iter().map(|sh| sh.shard).collect();
    assert_eq!(shard_ids, (0..8).collect::<Vec<_>>());
    // The node's work counters: a lone node leads every shard, so it applies the entries it
    // proposed (a new leader's empty entry counts as neither) but for at most one in flight
    // per shard (a gift's completion may still be on its way), each fsynced by some group
    // commit, and it sends no raft message.
    let w = s.counters.expect("counters");
    assert!(w.entries_proposed >= 20, "{w:?}");
    assert!(w.entries_applied <= w.entries_proposed && w.entries_applied + 8 >= w.entries_proposed, "{w:?}");
    assert!(w.commands_applied >= w.entries_applied, "{w:?}");
    assert!(w.readies >= w.entries_applied, "{w:?}");
    assert!(w.group_commits >= 1 && w.group_commit_waiters >= w.group_commits, "{w:?}");
    assert_eq!((w.raft_messages_sent, w.raft_frames_sent, w.raft_messages_received), (0, 0, 0), "{w:?}");

    // --- audit: conservation, and the totals the test booked itself
    let a = settled_audit(&c, Duration::from_secs(15)).await;
    assert_eq!(a.coins_issued, t.issued, "{a:?} vs {t:?}");
    assert_eq!(a.coins_recovered_by_refunds, t.recovered, "{a:?}");
    assert_eq!(a.coins_spent_on_gifts, t.spent, "{a:?}");
    assert_eq!(a.diamonds_credited, t.diamonds, "{a:?}");
    assert_eq!(a.platform_coins, t.platform, "{a:?}");
    assert_eq!(a.diamonds_paid_out, t.paid_out, "{a:?}");
    assert_eq!(a.coins_held, t.issued - t.recovered - t.spent, "{a:?}");
    assert_eq!(a.diamonds_held_total, t.diamonds - t.paid_out, "{a:?}");
    assert_eq!(a.diamonds_on_hold_for_payout, 0);
    // fan, near, far, buyer, spender, kid
    assert_eq!(a.accounts, 6, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_make_every_mutation_idempotent() {
    let node = TestNode::start().await;
    let c = node.client();
    let fan = name_in_shard("idem-fan", 1);
    let creator = name_not_in_shard("idem-creator", 1);

    // Purchase: same id + same body → the first outcome, credited once.
    let req = purchase_req("idem-buy", &fan, "100", "USD", "idem-pay");
    let first = c.purchase(req.clone()).await.expect("purchase");
    let again = c.purchase(req.clone()).await.expect("purchase again");
    assert_eq!(again, first, "a retry returns the first outcome unchanged");
    assert_eq!(balance(&c, &fan).await.coins, 11_000);
    // Same id, another body (same payment reference, so the same routing shard).
    let mut other = req.clone();
    other.paid = money("50", "USD");
    expect_code(c.purchase(other).await, "REQUEST_ID_REUSED");
    assert_eq!(balance(&c, &fan).await.coins, 11_000);

    // Gift (cross-shard): same id + same body → same tx, debited and credited once.
    let g = gift_req("idem-gift", &fan, &creator, "galaxy", 2);
    let first = c.gift(g.clone()).await.expect("gift");
    let again = c.gift(g.clone()).await.expect("gift again");
    assert_eq!(again, first);
    assert_eq!(balance(&c, &fan).await.coins, 9_000);
    assert_eq!(balance(&c, &creator).await.diamonds, 1_000);
    let mut other = g.clone();
    other.quantity = 3;
    expect_code(c.gift(other).await, "REQUEST_ID_REUSED");
    let mut other = g.clone();
    other.message = "hi".into();
    expect_code(c.gift(other).await, "REQUEST_ID_REUSED");
    assert_eq!(balance(&c, &fan).await.coins, 9_000);
    assert_eq!(balance(&c, &creator).await.diamonds, 1_000);

    // Cash-out: held once.
    let co = cashout_req("idem-co", &creator, 1000);
    let first = c.cash_out(co.clone()).await.expect("cash-out");
    let again = c.cash_out(co.clone()).await.expect("cash-out again");
    assert_eq!(again, first);
    assert_eq!(balance(&c, &creator).await.diamonds_held, 1000);
    let mut other = co.clone();
    other.diamonds = 1001;
    expect_code(c.cash_out(other).await, "REQUEST_ID_REUSED");

    // Post: once.
    let p = payout_req("idem-post", &first.payout_id);
    let posted = c.post_payout(p.clone()).await.expect("post");
    assert_eq!(c.post_payout(p.clone()).await.expect("post again"), posted);
    let b = balance(&c, &creator).await;
    assert_eq!((b.diamonds, b.diamonds_held), (0, 0));

    // A business error is an outcome too: the retry gets the same error, not a new attempt.
    let poor = gift_req("idem-poor", &creator, &fan, "rose", 1);
    expect_code(c.gift(poor.clone()).await, "INSUFFICIENT_COINS");
    expect_code(c.gift(poor).await, "INSUFFICIENT_COINS");

    // Refund: once; the retry answers the same recovery.
    let r = proto::RefundRequest { request_id: "idem-refund".into(), payment_ref: "idem-pay".into() };
    let first = c.refund(r.clone()).await.expect("refund");
    assert_eq!((first.coins_recovered, first.coins_unrecovered, first.account_frozen), (9_000, 2_000, true));
    assert_eq!(c.refund(r).await.expect("refund again"), first);
    let b = balance(&c, &fan).await;
    assert_eq!((b.coins, b.frozen), (0, true));

    // Admin commands too.
    let f = proto::SetFrozenRequest { request_id: "idem-freeze".into(), account: creator.clone(), frozen: true };
    let first = c.set_frozen(f.clone()).await.expect("freeze");
    assert_eq!(c.set_frozen(f.clone()).await.expect("freeze again"), first);
    let mut other = f;
    other.frozen = false;
    expect_code(c.set_frozen(other).await, "REQUEST_ID_REUSED");
    assert!(balance(&c, &creator).await.frozen);

    let a = settled_audit(&c, Duration::from_secs(15)).await;
    assert_eq!((a.coins_issued, a.coins_spent_on_gifts, a.coins_recovered_by_refunds), (11_000, 2_000, 9_000), "{a:?}");
    assert_eq!((a.diamonds_credited, a.diamonds_paid_out), (1_000, 1_000), "{a:?}");
}
