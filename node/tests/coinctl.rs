//! The `coinctl` binary against the real node: every user-facing command with `--json`, the
//! documented JSON field names, exit codes, and error codes on failure.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs coinctl against `node` (at most 30 s) and returns its output.
async fn coinctl(node: &TestNode, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(coinctl_bin());
    cmd.arg("--endpoints")
        .arg(node.addr())
        .args(args)
        .env_remove("COINLEDGER_ENDPOINTS")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("coinctl {args:?} ran over 30 s"))
        .unwrap_or_else(|e| panic!("cannot run coinctl: {e}"))
}

/// Runs `coinctl --json ARGS`, asserts exit 0 and returns the parsed stdout.
async fn ok_json(node: &TestNode, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = coinctl(node, &all).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coinctl {args:?} exited {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("coinctl {args:?}: stdout is not JSON ({e}): {stdout}"))
}

#[track_caller]
fn u(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer {field:?} in {v}"))
}

#[track_caller]
fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {field:?} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinctl_drives_the_money_path() {
    let node = TestNode::start().await;
    let alice = name_in_shard("ctl-alice", 0);
    let bob = name_not_in_shard("ctl-bob", 0);

    // purchase
    let p = ok_json(&node, &["purchase", &alice, "--amount", "10.00", "--currency", "USD", "--payment-ref", "ctl-pay-1", "--request-id", "ctl-r1"]).await;
    assert!(s(&p, "tx_id").starts_with("tx-"), "{p}");
    assert_eq!((u(&p, "coins_credited"), u(&p, "base_coins"), u(&p, "bonus_coins")), (1050, 1000, 50));
    assert_eq!(s(&p, "request_id"), "ctl-r1");
    // the same request id again: the same transaction, not a second credit
    let again = ok_json(&node, &["purchase", &alice, "--amount", "10.00", "--currency", "USD", "--payment-ref", "ctl-pay-1", "--request-id", "ctl-r1"]).await;
    assert_eq!(s(&again, "tx_id"), s(&p, "tx_id"));
    let p2 = ok_json(&node, &["purchase", &alice, "--amount", "100", "--payment-ref", "ctl-pay-2"]).await;
    assert_eq!(u(&p2, "coins_credited"), 11_000);
    assert_eq!(u(&p2, "coins_balance"), 12_050);

    // gift
    let g = ok_json(&node, &["gift", &alice, &bob, "--gift", "doughnut", "--quantity", "2", "--message", "great stream!", "--stream", "live-1"]).await;
    assert!(s(&g, "tx_id").starts_with("tx-"), "{g}");
    assert_eq!((u(&g, "coins_debited"), u(&g, "diamonds_credited"), u(&g, "platform_coins")), (60, 30, 30));
    let g2 = ok_json(&node, &["gift", &alice, &bob, "--gift", "galaxy", "--quantity", "2"]).await;
    assert_eq!((u(&g2, "coins_debited"), u(&g2, "diamonds_credited")), (2000, 1000));

    // balance
    let b = ok_json(&node, &["balance", &bob]).await;
    assert_eq!(s(&b, "account"), bob);
    assert_eq!((u(&b, "coins"), u(&b, "diamonds"), u(&b, "diamonds_held")), (0, 1030, 0));
    let b = ok_json(&node, &["balance", &alice]).await;
    assert_eq!((u(&b, "coins"), u(&b, "diamonds"), u(&b, "diamonds_held")), (12_050 - 2060, 0, 0));

    // cashout, payout post
    let co = ok_json(&node, &["cashout", &bob, "--diamonds", "1000"]).await;
    let payout_id = s(&co, "payout_id").to_string();
    assert!(payout_id.starts_with("po-"), "{co}");
    assert_eq!(u(&co, "diamonds_held"), 1000);
    assert_eq!(s(&co, "currency"), "USD");
    assert_eq!(s(&co, "fiat_amount").parse::<f64>().ok(), Some(4.87), "{co}");
    let b = ok_json(&node, &["balance", &bob]).await;
    assert_eq!((u(&b, "diamonds"), u(&b, "diamonds_held")), (1030, 1000));
    let post = ok_json(&node, &["payout", "post", &payout_id]).await;
    assert_eq!(s(&post, "state"), "posted");
    assert_eq!(u(&post, "diamonds"), 1000);
    let b = ok_json(&node, &["balance", &bob]).await;
    assert_eq!((u(&b, "diamonds"), u(&b, "diamonds_held")), (30, 0));

    // history: newest first, one page at a time
    let h = ok_json(&node, &["history", &alice, "--limit", "2"]).await;
    let entries = h["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{h}");
    assert_eq!((u(&entries[0], "seq"), s(&entries[0], "kind")), (4, "gift_sent"));
    assert_eq!((u(&entries[1], "seq"), s(&entries[1], "kind")), (3, "gift_sent"));
    let cursor = s(&h, "next_cursor").to_string();
    let h2 = ok_json(&node, &["history", &alice, "--limit", "2", "--cursor", &cursor]).await;
    let older = h2["entries"].as_array().expect("entries");
    let kinds: Vec<(u64, &str)> = older.iter().map(|e| (u(e, "seq"), s(e, "kind"))).collect();
    assert_eq!(kinds, vec![(2, "purchase"), (1, "purchase")]);
    assert!(h2["next_cursor"].is_null(), "last page: {h2}");

    // gifts and rates
    let gifts = ok_json(&node, &["gifts"]).await;
    let list = gifts.as_array().expect("gifts is a list");
    assert!(list.len() >= 5, "{gifts}");
    for gift in list {
        assert!(!s(gift, "id").is_empty());
        assert!(u(gift, "price_coins") >= 1);
    }
    let price = |id: &str| list.iter().find(|g| s(g, "id") == id).map(|g| u(g, "price_coins"));
    assert_eq!((price("rose"), price("doughnut"), price("universe")), (Some(1), Some(30), Some(44_999)));
    let rates = ok_json(&node, &["rates"]).await;
    assert_eq!((u(&rates, "version"), u(&rates, "creator_share_bps"), u(&rates, "cashout_min_diamonds")), (1, 5000, 1000));
    assert!(rates["coin_prices"].as_array().expect("coin_prices").iter().any(|p| s(p, "currency") == "EUR"));

    // status and audit
    let st = ok_json(&node, &["status"]).await;
    assert_eq!((u(&st, "node_id"), u(&st, "shard_count")), (1, 8));
    assert_eq!(st["shards"].as_array().expect("shards").len(), 8);
    // The commands above went through the raft log: one segment so far, with their entries.
    assert_eq!(u(&st, "raft_log_segments"), 1, "{st}");
    assert!(u(&st, "raft_log_bytes") > 1_000, "{st}");
    let audit = ok_json(&node, &["audit"]).await;
    assert_eq!(audit["ok"], Value::Bool(true), "{audit}");
    assert_eq!(u(&audit, "diamonds_paid_out"), 1000);

    // admin: freeze, then the frozen sender fails with its code
    let f = ok_json(&node, &["account", "freeze", &alice]).await;
    assert_eq!(f["frozen"], Value::Bool(true), "{f}");
    let out = coinctl(&node, &["--json", "gift", &alice, &bob, "--gift", "rose"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(err["error"]["code"], "ACCOUNT_FROZEN", "{err}");
    let f = ok_json(&node, &["account", "unfreeze", &alice]).await;
    assert_eq!(f["frozen"], Value::Bool(false), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinctl_failures_exit_non_zero_with_the_error_code() {
    let node = TestNode::start().await;
    ok_json(&node, &["purchase", "ctl-carol", "--amount", "9.99", "--payment-ref", "ctl-fail-1"]).await;

    let cases: &[(&[&str], &str)] = &[
        (&["gift", "ctl-carol", "ctl-dave", "--gift", "unicorn"], "UNKNOWN_GIFT"),
        (&["gift", "ctl-carol", "ctl-dave", "--gift", "universe"], "INSUFFICIENT_COINS"),
        (&["gift", "ctl-carol", "ctl-dave", "--gift", "rose", "--quantity", "10000"], "INVALID_QUANTITY"),
        (&["purchase", "ctl-carol", "--amount", "9.99", "--payment-ref", "ctl-fail-1"], "DUPLICATE_PAYMENT_REF"),
        (&["purchase", "ctl-carol", "--amount", "1.001", "--payment-ref", "ctl-fail-2"], "INVALID_AMOUNT"),
        (&["purchase", "ctl-carol", "--amount", "1.00", "--currency", "XYZ", "--payment-ref", "ctl-fail-3"], "UNKNOWN_CURRENCY"),
        (&["cashout", "ctl-carol", "--diamonds", "999"], "BELOW_MINIMUM"),
        (&["balance", "ctl-nobody"], "ACCOUNT_NOT_FOUND"),
        (&["payout", "post", "po-0-99999-0"], "UNKNOWN_PAYOUT"),
        (&["refund", "ctl-no-such-payment"], "UNKNOWN_PAYMENT_REF"),
        (&["history", "ctl-carol", "--cursor", "xyz"], "INVALID_CURSOR"),
    ];
    for (args, code) in cases {
        // --json: the error object on stdout
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        let out = coinctl(&node, &json_args).await;
        assert_eq!(out.status.code(), Some(1), "coinctl {args:?} should fail");
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(v["error"]["code"], *code, "{args:?}: {v}");
        assert!(!s(&v["error"], "message").is_empty(), "{v}");
        // text: the code on stderr
        let out = coinctl(&node, args).await;
        assert_eq!(out.status.code(), Some(1), "coinctl {args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(code), "{args:?}: stderr {stderr:?} lacks {code}");
    }
    // Usage errors are caught before any call (clap's exit code 2).
    let out = coinctl(&node, &["purchase", "ctl-carol", "--amount", "-1", "--payment-ref", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    // Nothing above changed the balance.
    let b = ok_json(&node, &["balance", "ctl-carol"]).await;
    assert_eq!(u(&b, "coins"), 999);
}
