//! SubmitBatch and SubmitStream against the real node, with the raw gRPC client (no
//! client-side retries): each command of a batch gets its own answer, in order, whatever the
//! others do; each call of a stream its own answer under its call id; duplicates inside one
//! batch, a resent batch and a resent stream call apply nothing twice; value is conserved.

mod common;

use std::time::Duration;

use coinledger_client::proto::batch_command::Command as C;
use coinledger_client::proto::batch_result::Result as R;
use coinledger_client::proto::ledger_client::LedgerClient;
use coinledger_client::proto::{BatchCommand, BatchResult, GiftReply, StreamCall, SubmitBatchRequest, SubmitStreamRequest};
use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

async fn raw(node: &TestNode) -> LedgerClient<Channel> {
    LedgerClient::connect(format!("http://{}", node.addr())).await.expect("connect")
}

async fn submit(raw: &mut LedgerClient<Channel>, commands: Vec<C>) -> Vec<BatchResult> {
    let commands: Vec<BatchCommand> = commands.into_iter().map(|c| BatchCommand { command: Some(c) }).collect();
    let count = commands.len();
    let reply = raw.submit_batch(SubmitBatchRequest { commands }).await.expect("SubmitBatch").into_inner();
    assert_eq!(reply.results.len(), count, "one result per command");
    reply.results
}

#[track_caller]
fn gift_of(result: &BatchResult) -> GiftReply {
    match &result.result {
        Some(R::Gift(g)) => g.clone(),
        other => panic!("expected a gift reply, got {other:?}"),
    }
}

#[track_caller]
fn error_of(result: &BatchResult) -> String {
    match &result.result {
        Some(R::Error(e)) => e.code_name.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn every_command_of_a_batch_is_answered_on_its_own_and_applied_once() {
    let node = TestNode::start_with(8).await;
    let client = node.client();
    let mut raw = raw(&node).await;
    let fan = name_where("batch-fan", |_| true);
    let poor = name_where("batch-poor", |_| true);
    let near = name_in_shard("batch-near", shard_of(&fan));
    let far = name_not_in_shard("batch-far", shard_of(&fan));

    let seeded = submit(
        &mut raw,
        vec![
            C::Purchase(purchase_req("b-seed-1", &fan, "9.99", "USD", "b-pay-1")),
            C::Purchase(purchase_req("b-seed-2", &poor, "0.05", "USD", "b-pay-2")),
        ],
    )
    .await;
    for r in &seeded {
        assert!(matches!(r.result, Some(R::Purchase(_))), "{r:?}");
    }

    let batch = vec![
        // 0: sender and creator in one shard; 1: across shards; 2: 1 again, same id and body.
        C::Gift(gift_req("b-g-1", &fan, &near, "doughnut", 1)),
        C::Gift(gift_req("b-g-2", &fan, &far, "doughnut", 2)),
        C::Gift(gift_req("b-g-2", &fan, &far, "doughnut", 2)),
        // 3: 1's id with another body.
        C::Gift(gift_req("b-g-2", &fan, &far, "doughnut", 3)),
        // 4: more than the sender has; 5: no such gift; 6: malformed account.
        C::Gift(gift_req("b-g-4", &poor, &far, "galaxy", 1)),
        C::Gift(gift_req("b-g-5", &fan, &far, "unicorn", 1)),
        C::Gift(gift_req("b-g-6", &fan, "not an/id", "rose", 1)),
        // 7: a refused one must not hold up a good one behind it.
        C::Gift(gift_req("b-g-7", &poor, &far, "rose", 5)),
    ];
    let mut results = submit(&mut raw, batch.clone()).await;
    // 8: a command with nothing set.
    let empty = raw
        .submit_batch(SubmitBatchRequest { commands: vec![BatchCommand { command: None }] })
        .await
        .expect("SubmitBatch")
        .into_inner();
    results.extend(empty.results);

    let near_gift = gift_of(&results[0]);
    assert_eq!((near_gift.coins_debited, near_gift.diamonds_credited), (30, 15));
    let far_gift = gift_of(&results[1]);
    assert_eq!((far_gift.coins_debited, far_gift.diamonds_credited, far_gift.platform_coins), (60, 30, 30));
    assert_eq!(gift_of(&results[2]), far_gift, "the duplicate gets the first outcome");
    assert_eq!(error_of(&results[3]), "REQUEST_ID_REUSED");
    assert_eq!(error_of(&results[4]), "INSUFFICIENT_COINS");
    assert_eq!(error_of(&results[5]), "UNKNOWN_GIFT");
    assert_eq!(error_of(&results[6]), "INVALID_ID");
    assert_eq!(gift_of(&results[7]).coins_debited, 5);
    assert_eq!(error_of(&results[8]), "INVALID_ARGUMENT");

    let settled = settled_audit(&client, Duration::from_secs(10)).await;
    assert_eq!(balance_opt(&client, &fan).await, Some((999 - 90, 0, 0)));
    assert_eq!(balance_opt(&client, &poor).await, Some((0, 0, 0)));
    assert_eq!(balance_opt(&client, &near).await, Some((0, 15, 0)));
    assert_eq!(balance_opt(&client, &far).await, Some((0, 32, 0)));

    // The whole batch again: the same answers, and nothing moves.
    let again = submit(&mut raw, batch).await;
    assert_eq!(again[..], results[..8], "a resent batch is answered from the first outcomes");
    let resettled = settled_audit(&client, Duration::from_secs(10)).await;
    assert_eq!(resettled, settled);
    assert_eq!(balance_opt(&client, &fan).await, Some((999 - 90, 0, 0)));
    assert_eq!(balance_opt(&client, &far).await, Some((0, 32, 0)));
}

#[tokio::test]
async fn a_batch_of_cross_shard_gifts_to_every_shard_conserves_value() {
    let node = TestNode::start_with(8).await;
    let client = node.client();
    let mut raw = raw(&node).await;
    let fans: Vec<String> = (0..8).map(|s| name_in_shard(&format!("bx-fan{s}"), s)).collect();
    let creators: Vec<String> = (0..8).map(|s| name_in_shard(&format!("bx-creator{s}"), s)).collect();
    let seed = fans.iter().enumerate().map(|(i, f)| C::Purchase(purchase_req(&format!("bx-seed{i}"), f, "10.00", "USD", &format!("bx-pay{i}")))).collect();
    for r in submit(&mut raw, seed).await {
        assert!(matches!(r.result, Some(R::Purchase(_))), "{r:?}");
    }
    // Every fan sends a confetti to every creator: 64 gifts, 56 of them across shards.
    let gifts: Vec<C> = fans
        .iter()
        .flat_map(|f| creators.iter().map(move |c| (f, c)))
        .enumerate()
        .map(|(i, (f, c))| C::Gift(gift_req(&format!("bx-g{i}"), f, c, "confetti", 1)))
        .collect();
    let results = submit(&mut raw, gifts).await;
    let tx_ids: std::collections::BTreeSet<String> = results.iter().map(|r| gift_of(r).tx_id).collect();
    assert_eq!(tx_ids.len(), 64, "every gift is its own transaction");
    let audit = settled_audit(&client, Duration::from_secs(10)).await;
    assert_eq!(audit.coins_spent_on_gifts, 6_400);
    assert_eq!(audit.diamonds_credited, 3_200);
    for f in &fans {
        assert_eq!(balance_opt(&client, f).await, Some((1050 - 800, 0, 0)), "{f}");
    }
    for c in &creators {
        assert_eq!(balance_opt(&client, c).await, Some((0, 400, 0)), "{c}");
    }
}

#[tokio::test]
async fn a_node_refuses_commands_beyond_its_bound_until_it_has_answered_earlier_ones() {
    let node = TestNode::start_with_args(8, &["--max-commands-in-flight", "8192"]).await;
    let client = node.client();
    let fan = name_where("bound-fan", |_| true);
    let creator = name_not_in_shard("bound-creator", shard_of(&fan));
    let mut raw = raw(&node).await;
    submit(&mut raw, vec![C::Purchase(purchase_req("bound-seed", &fan, "1000.00", "USD", "bound-pay"))]).await;
    let batch = |round: usize, call: usize| -> SubmitBatchRequest {
        let gifts = (0..8_192).map(|i| C::Gift(gift_req(&format!("bound-{round}-{call}-{i}"), &fan, &creator, "rose", 1)));
        SubmitBatchRequest { commands: gifts.map(|c| BatchCommand { command: Some(c) }).collect() }
    };
    // Two batches of the bound at once: unless the first is answered before the second
    // arrives (then try again), the second is refused whole, and applies nothing.
    let mut applied = 0u64;
    let mut refused = None;
    for round in 0..5 {
        let (mut a, mut b) = (raw.clone(), raw.clone());
        let (first, second) = tokio::join!(a.submit_batch(batch(round, 0)), b.submit_batch(batch(round, 1)));
        for reply in [first, second] {
            match reply {
                Ok(reply) => {
                    for r in &reply.into_inner().results {
                        assert_eq!(gift_of(r).coins_debited, 1);
                        applied += 1;
                    }
                }
                Err(status) => refused = Some(status),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("two batches of the bound at once: one is refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("--max-commands-in-flight"), "{}", refused.message());
    // Once answered, the slots are free again: a resend of a refused batch goes through.
    let again = submit(&mut raw, batch(99, 0).commands.into_iter().filter_map(|c| c.command).collect()).await;
    applied += again.len() as u64;
    let audit = settled_audit(&client, Duration::from_secs(20)).await;
    assert_eq!(audit.coins_spent_on_gifts, applied);
    assert_eq!(balance_opt(&client, &fan).await.map(|b| b.0), Some(110_000 - applied));
}

fn call(call_id: u64, command: Option<C>) -> StreamCall {
    StreamCall { call_id, command: Some(BatchCommand { command }), timeout_ms: 10_000 }
}

#[tokio::test]
async fn stream_calls_are_answered_each_under_its_own_id_and_applied_once() {
    let node = TestNode::start_with(8).await;
    let client = node.client();
    let mut raw = raw(&node).await;
    let fan = name_where("stream-fan", |_| true);
    let far = name_not_in_shard("stream-far", shard_of(&fan));
    submit(&mut raw, vec![C::Purchase(purchase_req("s-seed", &fan, "9.99", "USD", "s-pay"))]).await;

    let (frames, frames_rx) = mpsc::channel(8);
    let mut replies = raw.submit_stream(ReceiverStream::new(frames_rx)).await.expect("SubmitStream").into_inner();
    let mut answers = std::collections::BTreeMap::new();
    let mut take = async |count: usize, answers: &mut std::collections::BTreeMap<u64, BatchResult>| {
        while answers.len() < count {
            let reply = tokio::time::timeout(Duration::from_secs(10), replies.message()).await.expect("answered in time");
            for r in reply.expect("stream up").expect("a reply").results {
                assert!(answers.insert(r.call_id, r.result.expect("a result")).is_none(), "call {} answered twice", r.call_id);
            }
        }
    };
    // One frame: a cross-shard gift, the same request again, a call with no command, a call
    // whose command has nothing set, and one the sender cannot pay.
    let calls = vec![
        call(10, Some(C::Gift(gift_req("s-g-1", &fan, &far, "doughnut", 1)))),
        call(11, Some(C::Gift(gift_req("s-g-1", &fan, &far, "doughnut", 1)))),
        StreamCall { call_id: 12, command: None, timeout_ms: 0 },
        call(13, None),
        call(14, Some(C::Gift(gift_req("s-g-2", &fan, &far, "galaxy", 1)))),
    ];
    frames.send(SubmitStreamRequest { calls }).await.unwrap();
    take(5, &mut answers).await;
    let gift = gift_of(&answers[&10]);
    assert_eq!((gift.coins_debited, gift.diamonds_credited), (30, 15));
    assert_eq!(gift_of(&answers[&11]), gift, "the duplicate gets the first outcome");
    assert_eq!(error_of(&answers[&12]), "INVALID_ARGUMENT");
    assert_eq!(error_of(&answers[&13]), "INVALID_ARGUMENT");
    assert_eq!(error_of(&answers[&14]), "INSUFFICIENT_COINS");

    // A later frame on the same stream: the first gift resent, and a new one.
    frames
        .send(SubmitStreamRequest {
            calls: vec![call(20, Some(C::Gift(gift_req("s-g-1", &fan, &far, "doughnut", 1)))), call(21, Some(C::Gift(gift_req("s-g-3", &fan, &far, "rose", 2))))],
        })
        .await
        .unwrap();
    take(7, &mut answers).await;
    assert_eq!(gift_of(&answers[&20]), gift, "answered from the first outcome");
    assert_eq!(gift_of(&answers[&21]).coins_debited, 2);

    // An empty frame ends the stream with INVALID_ARGUMENT.
    frames.send(SubmitStreamRequest { calls: Vec::new() }).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), replies.message()).await.expect("ended in time");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("1 to 8192 calls, not 0"), "{}", status.message());

    settled_audit(&client, Duration::from_secs(10)).await;
    assert_eq!(balance_opt(&client, &fan).await, Some((999 - 32, 0, 0)));
    assert_eq!(balance_opt(&client, &far).await, Some((0, 16, 0)));
}
