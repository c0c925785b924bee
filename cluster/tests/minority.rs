//! With 2 of 3 nodes down no write commits (it times out or is refused, never OK); with one
//! of them back, writes commit again; nothing acknowledged is lost.

mod common;

use std::time::Duration;

use coinledger_client::proto::ErrorCode;
use coinledger_cluster::load::{purchase, purchase_once, Book, RefsForShard};
use common::{bounded, TestCluster};

const SHARDS: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_a_majority_again_can() {
    bounded(Duration::from_secs(85), async {
        let mut t = TestCluster::start(17401, 3, SHARDS, &[]).await;
        let book = Book::new();
        let client = t.cluster.client();
        // Some acknowledged purchases on every shard first.
        let mut refs: Vec<RefsForShard> = (0..SHARDS).map(|s| RefsForShard::new(SHARDS, s, &format!("mi-s{s}"))).collect();
        for (s, r) in refs.iter_mut().enumerate() {
            for _ in 0..5 {
                let account = format!("mi-a{s}");
                purchase_once(&client, &book, purchase(&account, &r.next().unwrap())).await.expect("healthy cluster commits");
            }
        }

        t.cluster.kill9(2).unwrap();
        t.cluster.kill9(3).unwrap();
        // One write per shard, all at once, each given 3 s (the client's deadline).
        let quick = t.cluster.client_with(1_000, 3_000, 200);
        let mut calls = tokio::task::JoinSet::new();
        for (s, r) in refs.iter_mut().enumerate() {
            let (quick, book) = (quick.clone(), book.clone());
            let req = purchase(&format!("mi-a{s}"), &r.next().unwrap());
            calls.spawn(async move {
                let started = std::time::Instant::now();
                (s, purchase_once(&quick, &book, req).await, started.elapsed())
            });
        }
        while let Some(done) = calls.join_next().await {
            let (s, outcome, took) = done.unwrap();
            match outcome {
                Ok(r) => panic!("shard {s}: a write committed with 2 of 3 nodes down: {r:?}\n{}", t.logs()),
                Err(e) => {
                    println!("shard {s}: {} after {} ms", e.code_name, took.as_millis());
                    assert!(
                        matches!(e.code, ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::NotLeader),
                        "shard {s}: unexpected answer {e}"
                    );
                    assert!(took < Duration::from_secs(5), "shard {s}: the call took {took:?}");
                }
            }
        }

        t.cluster.start(2).unwrap();
        t.cluster.wait_nodes_ready(&[2], Duration::from_secs(20), false).await.unwrap();
        for (s, r) in refs.iter_mut().enumerate() {
            let started = std::time::Instant::now();
            purchase_once(&client, &book, purchase(&format!("mi-a{s}"), &r.next().unwrap()))
                .await
                .unwrap_or_else(|e| panic!("shard {s}: no commit with 2 of 3 nodes up: {e}\n{}", t.logs()));
            println!("shard {s}: commits again ({} ms)", started.elapsed().as_millis());
        }
        t.assert_nothing_lost(&book).await;
    })
    .await;
}
