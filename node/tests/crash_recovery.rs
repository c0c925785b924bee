//! Durability: kill -9 in the middle of a concurrent load, restart on the same data directory,
//! and check that no acknowledged command was lost, none was applied twice, and value is
//! conserved. Also a graceful (SIGTERM) restart.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coinledger_client::proto::{self, GiftReply, GiftRequest, PayoutState, PurchaseReply, PurchaseRequest};
use coinledger_client::{Client, ClientConfig, ClientError};
use common::*;

const TASKS: usize = 8;
const CREATORS: usize = 4;

#[derive(Clone, Debug)]
enum Cmd {
    Purchase(PurchaseRequest),
    Gift(GiftRequest),
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Purchase(PurchaseReply),
    Gift(GiftReply),
    /// A definite refusal (not applied).
    Refused(String),
    /// Timeout / unavailable: maybe applied, maybe not.
    Unknown(String),
}

#[derive(Clone, Debug)]
struct Record {
    cmd: Cmd,
    outcome: Outcome,
}

async fn send(client: &Client, cmd: &Cmd) -> Outcome {
    let classify = |e: ClientError| {
        if e.is_retryable() {
            Outcome::Unknown(e.to_string())
        } else {
            Outcome::Refused(e.code_name)
        }
    };
    match cmd {
        Cmd::Purchase(r) => client.purchase(r.clone()).await.map_or_else(classify, Outcome::Purchase),
        Cmd::Gift(r) => client.gift(r.clone()).await.map_or_else(classify, Outcome::Gift),
    }
}

fn sender(t: usize) -> String {
    format!("crash-fan-{t}")
}

fn creator(i: usize) -> String {
    format!("crash-creator-{i}")
}

/// One load task: purchase, gift, purchase, gift... until the first error or `stop`.
/// Every command has a fresh request id chosen before it is sent.
async fn load(client: Client, t: usize, stop: Arc<AtomicBool>) -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let cmd = if i % 2 == 0 {
            Cmd::Purchase(purchase_req(
                &format!("crash-buy-{t}-{i}"),
                &sender(t),
                "1.00",
                "USD",
                &format!("crash-pay-{t}-{i}"),
            ))
        } else {
            let quantity = 1 + (i as u32 / 2) % 3; // 5, 10 or 15 coins of the 100 just bought
            Cmd::Gift(gift_req(
                &format!("crash-gift-{t}-{i}"),
                &sender(t),
                &creator((t + i) % CREATORS),
                "finger-heart",
                quantity,
            ))
        };
        let outcome = send(&client, &cmd).await;
        let failed = matches!(outcome, Outcome::Refused(_) | Outcome::Unknown(_));
        records.push(Record { cmd, outcome });
        if failed {
            break;
        }
    }
    records
}

#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
struct Expected {
    coins: u64,
    diamonds: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_loses_nothing_and_applies_nothing_twice() {
    let mut node = TestNode::start().await;
    // Short deadlines for the load, so calls cut by the kill end quickly as unknown outcomes.
    let mut config = ClientConfig::from_endpoints(&node.addr()).expect("endpoint");
    config.deadline_ms = 3_000;
    config.attempt_timeout_ms = 1_000;
    let load_client = Client::connect(config).expect("client");

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(load(load_client.clone(), t, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    node.kill_9();
    stop.store(true, Ordering::Relaxed);
    let mut per_task: Vec<Vec<Record>> = Vec::new();
    for task in tasks {
        let records = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("load task ends after the kill")
            .expect("load task panicked");
        per_task.push(records);
    }
    let all: Vec<&Record> = per_task.iter().flatten().collect();
    let acked = all.iter().filter(|r| matches!(r.outcome, Outcome::Purchase(_) | Outcome::Gift(_))).count();
    let unknown = all.iter().filter(|r| matches!(r.outcome, Outcome::Unknown(_))).count();
    let refused: Vec<_> = all.iter().filter(|r| matches!(r.outcome, Outcome::Refused(_))).collect();
    eprintln!("load: {} commands sent, {acked} acknowledged, {unknown} unknown at the kill", all.len());
    assert!(refused.is_empty(), "no command of the load may be refused: {refused:?}");
    assert!(acked >= TASKS, "the load acknowledged only {acked} commands before the kill");

    let restarted = Instant::now();
    node.restart().await;
    eprintln!("restarted in {:?}", restarted.elapsed());
    let client = node.client();

    // Resolve every command: acknowledged ones must answer exactly their first outcome (they
    // were not lost), unknown ones get their final outcome by the same request id.
    let mut resolvers = Vec::new();
    for records in per_task.clone() {
        let client = client.clone();
        resolvers.push(tokio::spawn(async move {
            let mut finals = Vec::new();
            for r in records {
                let again = send(&client, &r.cmd).await;
                match &r.outcome {
                    Outcome::Unknown(_) => {
                        assert!(
                            !matches!(again, Outcome::Unknown(_)),
                            "{:?} is still unknown after the restart: {again:?}",
                            r.cmd
                        );
                        // Asking once more answers the same outcome (applied once at most).
                        assert_eq!(send(&client, &r.cmd).await, again, "{:?}", r.cmd);
                    }
                    acked => assert_eq!(&again, acked, "acknowledged {:?} answers differently after kill -9", r.cmd),
                }
                finals.push(Record { cmd: r.cmd, outcome: again });
            }
            finals
        }));
    }
    let mut finals = Vec::new();
    for r in resolvers {
        let f = tokio::time::timeout(Duration::from_secs(60), r).await.expect("resolving in time").expect("resolver");
        finals.extend(f);
    }

    // Expected balances from the final outcomes, and the audit totals.
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let (mut issued, mut spent, mut diamonds) = (0u64, 0u64, 0u64);
    for r in &finals {
        match (&r.cmd, &r.outcome) {
            (Cmd::Purchase(req), Outcome::Purchase(rep)) => {
                assert_eq!(rep.coins_credited, 100);
                expected.entry(req.account.clone()).or_default().coins += rep.coins_credited;
                issued += rep.coins_credited;
            }
            (Cmd::Gift(req), Outcome::Gift(rep)) => {
                let s = expected.entry(req.sender.clone()).or_default();
                s.coins = s.coins.checked_sub(rep.coins_debited).expect("a gift never overdraws");
                expected.entry(req.recipient.clone()).or_default().diamonds += rep.diamonds_credited;
                spent += rep.coins_debited;
                diamonds += rep.diamonds_credited;
            }
            (_, Outcome::Refused(_)) => {}
            other => panic!("mismatched outcome {other:?}"),
        }
    }
    for t in 0..TASKS {
        expected.entry(sender(t)).or_default();
    }
    for i in 0..CREATORS {
        expected.entry(creator(i)).or_default();
    }
    for (account, want) in &expected {
        let got = balance_opt(&client, account).await.map(|(coins, diamonds, held)| {
            assert_eq!(held, 0);
            Expected { coins, diamonds }
        });
        let got = got.unwrap_or_default();
        assert_eq!(got, *want, "balance of {account} after kill -9 and restart");
    }
    let a = settled_audit(&client, Duration::from_secs(15)).await;
    assert_eq!((a.coins_issued, a.coins_spent_on_gifts, a.diamonds_credited), (issued, spent, diamonds), "{a:?}");
    assert_eq!(a.coins_held, issued - spent, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let mut node = TestNode::start().await;
    let c = node.client();
    let fan = name_in_shard("calm-fan", 1);
    let star = name_not_in_shard("calm-star", 1);

    c.set_limit(proto::SetLimitRequest {
        request_id: "calm-4".into(),
        account: fan.clone(),
        minor: true,
        daily_purchase_cap: money("150.00", "USD"),
    })
    .await
    .expect("limit");
    let p = c.purchase(purchase_req("calm-1", &fan, "100", "USD", "calm-pay-1")).await.expect("purchase");
    let g = c.gift(gift_req("calm-2", &fan, &star, "galaxy", 3)).await.expect("gift");
    let co = c.cash_out(cashout_req("calm-3", &star, 1000)).await.expect("cash-out");
    let history_before = c
        .history(proto::HistoryRequest { account: fan.clone(), limit: 0, cursor: String::new() })
        .await
        .expect("history");
    let fan_before = balance(&c, &fan).await;
    let star_before = balance(&c, &star).await;
    let audit_before = settled_audit(&c, Duration::from_secs(15)).await;

    assert!(node.terminate(), "the node did not exit within 10 s of SIGTERM");
    node.restart().await;
    let c = node.client();

    assert_eq!(balance(&c, &fan).await, fan_before);
    assert_eq!(balance(&c, &star).await, star_before);
    let b = &star_before;
    assert_eq!((b.diamonds, b.diamonds_held, b.diamonds_available), (1500, 1000, 500));
    let history_after = c
        .history(proto::HistoryRequest { account: fan.clone(), limit: 0, cursor: String::new() })
        .await
        .expect("history");
    assert_eq!(history_after, history_before);
    assert_eq!(settled_audit(&c, Duration::from_secs(15)).await, audit_before);

    // Request ids and payment references survive: replays answer the first outcome.
    assert_eq!(c.purchase(purchase_req("calm-1", &fan, "100", "USD", "calm-pay-1")).await.expect("replay"), p);
    assert_eq!(c.gift(gift_req("calm-2", &fan, &star, "galaxy", 3)).await.expect("replay"), g);
    expect_code(c.purchase(purchase_req("calm-5", &fan, "1.00", "USD", "calm-pay-1")).await, "DUPLICATE_PAYMENT_REF");
    // The minor's cap survives: 100 bought today, 50.01 more is over 150.
    expect_code(c.purchase(purchase_req("calm-6", &fan, "50.01", "USD", "calm-pay-6")).await, "LIMIT_EXCEEDED");
    // The pending payout survives and can be posted.
    let posted = c.post_payout(payout_req("calm-7", &co.payout_id)).await.expect("post after restart");
    assert_eq!((posted.state(), posted.diamonds), (PayoutState::Posted, 1000));
    let b = balance(&c, &star).await;
    assert_eq!((b.diamonds, b.diamonds_held), (500, 0));
    // New commands after the restart get new ids, not reused ones.
    let g2 = c.gift(gift_req("calm-8", &fan, &star, "rose", 1)).await.expect("gift after restart");
    assert_ne!(g2.tx_id, g.tx_id);
    assert_eq!(g2.sender_coins_balance, 11_000 - 3_000 - 1);

    // A second kill -9 right after, with nothing in flight, changes nothing either.
    let fan_now = balance(&c, &fan).await;
    node.kill_9();
    node.restart().await;
    assert_eq!(balance(&node.client(), &fan).await, fan_now);
    settled_audit(&node.client(), Duration::from_secs(15)).await;
}
