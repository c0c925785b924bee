//! Every bad input gets its own error code (and the gRPC status the contract gives it) and
//! changes nothing: balances, statements and the audit totals are compared before and after.

mod common;

use std::time::Duration;

use coinledger_client::proto::{self, AuditReply, BalanceReply};
use coinledger_client::{Client, ClientError};
use common::*;

/// Everything a bad input must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    balances: Vec<(String, Option<BalanceReply>)>,
    newest_seq: Vec<(String, Option<u64>)>,
    audit: AuditReply,
}

struct World {
    c: Client,
    accounts: Vec<String>,
    before: Option<Snapshot>,
    n: u32,
}

impl World {
    /// The ledger once no cross-shard effect is in flight: a refused cross-shard command (a
    /// purchase over a minor's cap is refused at the account's shard) leaves its home's
    /// completion to follow the answer, and that must change nothing either.
    async fn snapshot(&self) -> Snapshot {
        let audit = settled_audit(&self.c, Duration::from_secs(10)).await;
        let mut balances = Vec::new();
        let mut newest_seq = Vec::new();
        for a in &self.accounts {
            let b = match self.c.balance(proto::BalanceRequest { account: a.clone() }).await {
                Ok(b) => Some(b),
                Err(e) if e.code_name == "ACCOUNT_NOT_FOUND" => None,
                Err(e) => panic!("balance {a}: {e}"),
            };
            balances.push((a.clone(), b));
            let h = self
                .c
                .history(proto::HistoryRequest { account: a.clone(), limit: 1, cursor: String::new() })
                .await;
            let seq = match h {
                Ok(h) => h.entries.first().map(|e| e.seq),
                Err(e) if e.code_name == "ACCOUNT_NOT_FOUND" => None,
                Err(e) => panic!("history {a}: {e}"),
            };
            newest_seq.push((a.clone(), seq));
        }
        Snapshot { balances, newest_seq, audit }
    }

    /// Takes the reference snapshot (after a setup step that legitimately changed state).
    async fn settle(&mut self) {
        settled_audit(&self.c, Duration::from_secs(15)).await;
        self.before = Some(self.snapshot().await);
    }

    /// A fresh request id.
    fn rid(&mut self) -> String {
        self.n += 1;
        format!("bad-{}", self.n)
    }

    /// Asserts the error code (and its gRPC status), then that nothing changed.
    async fn refused<T: std::fmt::Debug>(&mut self, what: &str, result: Result<T, ClientError>, code: &str) {
        let e = match result {
            Ok(v) => panic!("{what}: expected {code}, got success {v:?}"),
            Err(e) => e,
        };
        assert_eq!(e.code_name, code, "{what}: wrong error {e}");
        assert!(!e.message.is_empty(), "{what}: {code} without a message");
        if let Some(grpc) = grpc_code_of(code) {
            assert_eq!(e.grpc_code, grpc, "{what}: gRPC status of {code}");
        }
        let now = self.snapshot().await;
        assert_eq!(Some(&now), self.before.as_ref(), "{what} ({code}) changed the ledger");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_has_its_code_and_changes_nothing() {
    let node = TestNode::start().await;
    let c = node.client();
    let fan = name_in_shard("bad-fan", 2);
    let creator = name_not_in_shard("bad-creator", 2);
    let kid = name_in_shard("bad-kid", 6);
    let icy = name_in_shard("bad-icy", 4);
    let ghost = "never-opened".to_string();
    let mut w = World {
        c: c.clone(),
        accounts: vec![fan.clone(), creator.clone(), kid.clone(), icy.clone(), ghost.clone()],
        before: None,
        n: 0,
    };

    // Setup: the fan has 11000 - 3000 coins, the creator 1500 diamonds.
    c.purchase(purchase_req("setup-1", &fan, "100.00", "USD", "bad-pay-1")).await.expect("setup purchase");
    c.gift(gift_req("setup-2", &fan, &creator, "galaxy", 3)).await.expect("setup gift");
    w.settle().await;
    assert_eq!(balance(&c, &fan).await.coins, 8000);
    assert_eq!(balance(&c, &creator).await.diamonds, 1500);

    // --- purchase amounts and currencies
    let buy = |w: &mut World, amount: &str, cur: &str| {
        let rid = w.rid();
        purchase_req(&rid, &fan, amount, cur, &format!("pay-{rid}"))
    };
    for (amount, cur, code) in [
        ("0", "USD", "INVALID_AMOUNT"),
        ("0.00", "USD", "INVALID_AMOUNT"),
        ("-5", "USD", "INVALID_AMOUNT"),
        ("-0.01", "USD", "INVALID_AMOUNT"),
        ("123456789012345678901234567890", "USD", "INVALID_AMOUNT"), // 30 digits
        ("1.001", "USD", "INVALID_AMOUNT"),                        // USD has 2 minor units
        ("1.5", "JPY", "INVALID_AMOUNT"),                          // JPY has none
        ("1e3", "USD", "INVALID_AMOUNT"),
        ("", "USD", "INVALID_AMOUNT"),
        ("abc", "USD", "INVALID_AMOUNT"),
        ("0.001", "EUR", "INVALID_AMOUNT"),
        ("0.009", "USD", "INVALID_AMOUNT"),  // 3 decimals
        ("1000000", "USD", "AMOUNT_TOO_LARGE"), // above the published per-purchase maximum
        ("5000.01", "USD", "AMOUNT_TOO_LARGE"),
        ("9999999999999999999999999999", "USD", "AMOUNT_TOO_LARGE"), // 28 digits: valid, huge
        ("10.00", "XYZ", "UNKNOWN_CURRENCY"),
        ("10.00", "usd", "UNKNOWN_CURRENCY"),
        ("10.00", "", "UNKNOWN_CURRENCY"),
        ("10.00", "USDT", "UNKNOWN_CURRENCY"),
    ] {
        let req = buy(&mut w, amount, cur);
        w.refused(&format!("purchase {amount:?} {cur:?}"), c.purchase(req).await, code).await;
    }
    let mut no_money = buy(&mut w, "1", "USD");
    no_money.paid = None;
    w.refused("purchase without an amount", c.purchase(no_money).await, "INVALID_AMOUNT").await;
    // Too small to buy a single coin.
    let req = buy(&mut w, "1", "JPY");
    w.refused("purchase of 1 JPY (less than a coin)", c.purchase(req).await, "INVALID_AMOUNT").await;

    // --- ids
    let long_account = "a".repeat(65);
    for (account, what) in [
        (long_account.as_str(), "65-char account"),
        ("bob smith", "account with a space"),
        ("bob/1", "account with a slash"),
        ("émile", "account with a non-ASCII letter"),
        ("", "empty account"),
    ] {
        let rid = w.rid();
        let req = purchase_req(&rid, account, "1.00", "USD", &format!("pay-{rid}"));
        w.refused(what, c.purchase(req).await, "INVALID_ID").await;
    }
    let rid = w.rid();
    w.refused("129-char payment ref", c.purchase(purchase_req(&rid, &fan, "1.00", "USD", &"p".repeat(129))).await, "INVALID_ID").await;
    w.refused("request id with a space", c.purchase(purchase_req("bad id", &fan, "1.00", "USD", "pay-x1")).await, "INVALID_ID").await;
    w.refused("65-char request id", c.purchase(purchase_req(&"r".repeat(65), &fan, "1.00", "USD", "pay-x2")).await, "INVALID_ID").await;
    let rid = w.rid();
    w.refused("gift to a 65-char recipient", c.gift(gift_req(&rid, &fan, &long_account, "rose", 1)).await, "INVALID_ID").await;
    let rid = w.rid();
    let mut g = gift_req(&rid, &fan, &creator, "rose", 1);
    g.stream_id = "live 42".into();
    w.refused("stream id with a space", c.gift(g).await, "INVALID_ID").await;

    // --- duplicate payment reference, request id reused
    let rid = w.rid();
    w.refused("same payment ref, new request id", c.purchase(purchase_req(&rid, &fan, "100.00", "USD", "bad-pay-1")).await, "DUPLICATE_PAYMENT_REF").await;
    let rid = w.rid();
    w.refused("same payment ref, another account", c.purchase(purchase_req(&rid, &creator, "1.00", "USD", "bad-pay-1")).await, "DUPLICATE_PAYMENT_REF").await;
    w.refused("request id reused, other amount", c.purchase(purchase_req("setup-1", &fan, "99.00", "USD", "bad-pay-1")).await, "REQUEST_ID_REUSED").await;
    w.refused("request id reused, other gift", c.gift(gift_req("setup-2", &fan, &creator, "galaxy", 4)).await, "REQUEST_ID_REUSED").await;

    // --- gifts
    let rid = w.rid();
    w.refused("unknown gift", c.gift(gift_req(&rid, &fan, &creator, "unicorn", 1)).await, "UNKNOWN_GIFT").await;
    let rid = w.rid();
    w.refused("quantity 10000", c.gift(gift_req(&rid, &fan, &creator, "rose", 10_000)).await, "INVALID_QUANTITY").await;
    let rid = w.rid();
    let mut g = gift_req(&rid, &fan, &creator, "rose", 1);
    g.message = "x".repeat(281);
    w.refused("281-char message", c.gift(g).await, "MESSAGE_TOO_LONG").await;
    let rid = w.rid();
    let mut g = gift_req(&rid, &fan, &creator, "rose", 1);
    g.message = "ring\u{7}ring".into();
    w.refused("message with a control character", c.gift(g).await, "MESSAGE_TOO_LONG").await;
    let rid = w.rid();
    w.refused("gift to oneself", c.gift(gift_req(&rid, &fan, &fan, "rose", 1)).await, "SELF_GIFT").await;
    let rid = w.rid();
    w.refused("gift above the balance", c.gift(gift_req(&rid, &fan, &creator, "universe", 9999)).await, "INSUFFICIENT_COINS").await;
    let rid = w.rid();
    w.refused("gift costing 8001 of 8000 coins", c.gift(gift_req(&rid, &fan, &creator, "rose", 8001)).await, "INSUFFICIENT_COINS").await;
    let rid = w.rid();
    w.refused("gift from a never-opened account", c.gift(gift_req(&rid, &ghost, &creator, "rose", 1)).await, "ACCOUNT_NOT_FOUND").await;

    // --- cash-outs and payouts
    let rid = w.rid();
    w.refused("cash-out under the minimum", c.cash_out(cashout_req(&rid, &creator, 999)).await, "BELOW_MINIMUM").await;
    let rid = w.rid();
    w.refused("cash-out over the balance", c.cash_out(cashout_req(&rid, &creator, 1501)).await, "INSUFFICIENT_DIAMONDS").await;
    let rid = w.rid();
    w.refused("cash-out of 0 diamonds", c.cash_out(cashout_req(&rid, &creator, 0)).await, "INVALID_ARGUMENT").await;
    let rid = w.rid();
    let mut co = cashout_req(&rid, &creator, 1000);
    co.currency = "XYZ".into();
    w.refused("cash-out in an unpublished currency", c.cash_out(co).await, "UNKNOWN_CURRENCY").await;
    let rid = w.rid();
    w.refused("cash-out of a never-opened account", c.cash_out(cashout_req(&rid, &ghost, 1000)).await, "ACCOUNT_NOT_FOUND").await;
    let rid = w.rid();
    w.refused("post of an unknown payout", c.post_payout(payout_req(&rid, "po-0-999999-0")).await, "UNKNOWN_PAYOUT").await;
    let rid = w.rid();
    w.refused("void of an unknown payout", c.void_payout(payout_req(&rid, "po-3-999999-0")).await, "UNKNOWN_PAYOUT").await;
    let rid = w.rid();
    w.refused("post of a malformed payout id", c.post_payout(payout_req(&rid, "payout-1")).await, "INVALID_ID").await;

    // A voided payout cannot be posted.
    let held = c.cash_out(cashout_req("setup-3", &creator, 1000)).await.expect("cash-out");
    c.void_payout(payout_req("setup-4", &held.payout_id)).await.expect("void");
    w.settle().await;
    let rid = w.rid();
    w.refused("post of a voided payout", c.post_payout(payout_req(&rid, &held.payout_id)).await, "PAYOUT_ALREADY_VOIDED").await;
    // Held diamonds cannot be cashed out twice.
    let held2 = c.cash_out(cashout_req("setup-5", &creator, 1000)).await.expect("cash-out 2");
    w.settle().await;
    let rid = w.rid();
    w.refused("cash-out of held diamonds", c.cash_out(cashout_req(&rid, &creator, 1000)).await, "INSUFFICIENT_DIAMONDS").await;
    // A posted payout cannot be voided.
    c.post_payout(payout_req("setup-6", &held2.payout_id)).await.expect("post");
    w.settle().await;
    assert_eq!(balance(&c, &creator).await.diamonds, 500);
    let rid = w.rid();
    w.refused("void of a posted payout", c.void_payout(payout_req(&rid, &held2.payout_id)).await, "PAYOUT_ALREADY_POSTED").await;

    // --- refunds
    let rid = w.rid();
    w.refused("refund of an unknown payment", c.refund(proto::RefundRequest { request_id: rid, payment_ref: "nope".into() }).await, "UNKNOWN_PAYMENT_REF").await;

    // --- a minor's daily cap
    c.set_limit(proto::SetLimitRequest {
        request_id: "setup-7".into(),
        account: kid.clone(),
        minor: true,
        daily_purchase_cap: money("10.00", "USD"),
    })
    .await
    .expect("set limit");
    c.purchase(purchase_req("setup-8", &kid, "4.00", "USD", "bad-kid-pay-1")).await.expect("kid buys 4.00");
    w.settle().await;
    let rid = w.rid();
    w.refused("purchase over the daily cap", c.purchase(purchase_req(&rid, &kid, "6.01", "USD", "bad-kid-pay-2")).await, "LIMIT_EXCEEDED").await;
    let rid = w.rid();
    w.refused("minor buying in another currency", c.purchase(purchase_req(&rid, &kid, "1.00", "EUR", "bad-kid-pay-3")).await, "LIMIT_EXCEEDED").await;
    // The refused purchase credited nothing, so there is nothing to refund.
    let rid = w.rid();
    w.refused("refund of a refused purchase", c.refund(proto::RefundRequest { request_id: rid, payment_ref: "bad-kid-pay-2".into() }).await, "PURCHASE_NOT_CREDITED").await;
    let b = balance(&c, &kid).await;
    assert_eq!(b.coins, 400);

    // --- a frozen account
    c.purchase(purchase_req("setup-9", &icy, "1.00", "USD", "bad-icy-pay-1")).await.expect("icy buys");
    c.set_frozen(proto::SetFrozenRequest { request_id: "setup-10".into(), account: icy.clone(), frozen: true })
        .await
        .expect("freeze");
    w.settle().await;
    let rid = w.rid();
    w.refused("frozen account sending a gift", c.gift(gift_req(&rid, &icy, &creator, "rose", 1)).await, "ACCOUNT_FROZEN").await;
    let rid = w.rid();
    w.refused("frozen account buying", c.purchase(purchase_req(&rid, &icy, "1.00", "USD", "bad-icy-pay-2")).await, "ACCOUNT_FROZEN").await;
    let rid = w.rid();
    w.refused("frozen account cashing out", c.cash_out(cashout_req(&rid, &icy, 1000)).await, "ACCOUNT_FROZEN").await;

    // A refund twice.
    c.refund(proto::RefundRequest { request_id: "setup-11".into(), payment_ref: "bad-icy-pay-1".into() }).await.expect("refund");
    w.settle().await;
    let rid = w.rid();
    w.refused("refund twice", c.refund(proto::RefundRequest { request_id: rid, payment_ref: "bad-icy-pay-1".into() }).await, "ALREADY_REFUNDED").await;

    // --- reads
    for cursor in ["abc", "0", "-1", "1.x", "1.", ".5", "2.3.4", "1.5e3"] {
        let r = c.history(proto::HistoryRequest { account: fan.clone(), limit: 10, cursor: cursor.into() }).await;
        w.refused(&format!("history cursor {cursor:?}"), r, "INVALID_CURSOR").await;
    }
    let r = c.history(proto::HistoryRequest { account: fan.clone(), limit: 501, cursor: String::new() }).await;
    w.refused("history limit 501", r, "INVALID_CURSOR").await;
    w.refused("balance of a never-opened account", c.balance(proto::BalanceRequest { account: ghost.clone() }).await, "ACCOUNT_NOT_FOUND").await;
    w.refused("balance with a bad id", c.balance(proto::BalanceRequest { account: "a b".into() }).await, "INVALID_ID").await;

    // --- admin
    let r = c
        .set_limit(proto::SetLimitRequest { request_id: w.rid(), account: kid.clone(), minor: true, daily_purchase_cap: money("10.00", "XYZ") })
        .await;
    w.refused("daily cap in an unknown currency", r, "UNKNOWN_CURRENCY").await;
    let mut card = c.rates(proto::GetRatesRequest {}).await.expect("rates");
    card.version = 5;
    let r = c.set_rates(proto::SetRatesRequest { request_id: w.rid(), card: Some(card) }).await;
    w.refused("rate card skipping versions", r, "INVALID_RATE_CARD").await;

    let end = settled_audit(&c, Duration::from_secs(15)).await;
    assert_eq!(end.coins_issued, 11_000 + 400 + 100, "{end:?}");
}
