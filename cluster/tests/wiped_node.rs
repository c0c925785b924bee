//! A node whose data dir is wiped rejoins by snapshot (the leaders compacted their logs past
//! what it needs: --compact-log-entries 50), catches up to the leaders' applied indexes, and is
//! then needed for a majority: with node 1 down, reads and writes work and balances are intact.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coinledger_cluster::launcher::{log_tail, node_status};
use coinledger_cluster::load::{purchase, purchase_once, Load, RefsForShard};
use coinledger_cluster::ops::{leader_from, statuses, wait_leader};
use common::{bounded, TestCluster};

const SHARDS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_catches_up_by_snapshot_and_serves_a_majority() {
    scenario(17501, true).await;
}

/// The same with no write at all after the wipe: idle shards must catch the replica up too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shards_catch_a_wiped_node_up() {
    scenario(17511, false).await;
}

/// `nudge`: one write per shard right after the wiped node restarts (traffic, as in production).
async fn scenario(base_port: u16, nudge: bool) {
    bounded(Duration::from_secs(85), async {
        let mut t = TestCluster::start(base_port, 3, SHARDS, &["--compact-log-entries", "50"]).await;
        let spec = t.cluster.spec.clone();
        let load = Load::start(t.cluster.client(), 6, 16, "wn-load", Duration::ZERO);
        let book = load.book.clone();
        let started = Instant::now();
        // ~500 purchases, and every shard's log well past the compaction threshold.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let all = statuses(&spec, 500).await;
            let min_applied = (0..SHARDS)
                .map(|s| {
                    leader_from(&all, s)
                        .and_then(|(l, _)| all[&l].as_ref().unwrap().shards.iter().find(|sh| sh.shard == s).map(|sh| sh.applied_index))
                        .unwrap_or(0)
                })
                .min()
                .unwrap_or(0);
            if book.acked_count.load(Ordering::Relaxed) >= 500 && min_applied > 200 {
                println!("{} purchases acknowledged, every shard applied > 200", book.acked_count.load(Ordering::Relaxed));
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "load too slow: {} acked, min applied {min_applied}", book.acked_count.load(Ordering::Relaxed));
        }
        let book = load.stop().await;

        t.cluster.kill9(3).unwrap();
        coinledger_cluster::launcher::wipe_data(spec.node(3).unwrap()).unwrap();
        t.cluster.start(3).unwrap();
        t.cluster.wait_nodes_ready(&[3], Duration::from_secs(20), false).await.unwrap();

        if nudge {
            let client = t.cluster.client();
            for s in 0..SHARDS {
                let mut refs = RefsForShard::new(SHARDS, s, &format!("wn-first-s{s}"));
                purchase_once(&client, &book, purchase("wn-load-a2", &refs.next().unwrap())).await.expect("write with node 3 catching up");
            }
        }
        // Node 3's replicas reach the leaders' applied indexes (no load now). If they do not,
        // one write per shard tells the node engineers whether traffic unsticks them.
        let idle = catch_up(&t, Duration::from_secs(15)).await;
        if let Err(behind) = idle {
            let client = t.cluster.client();
            for s in 0..SHARDS {
                let mut refs = RefsForShard::new(SHARDS, s, &format!("wn-nudge-s{s}"));
                let _ = purchase_once(&client, &book, purchase("wn-load-a1", &refs.next().unwrap())).await;
            }
            let after_write = catch_up(&t, Duration::from_secs(10)).await;
            panic!(
                "wiped node 3 not caught up after 15 s (nudged: {nudge}): {behind}\nafter one write per shard: {}\n{}",
                match after_write {
                    Ok(d) => format!("caught up {} ms later", d.as_millis()),
                    Err(e) => format!("still behind: {e}"),
                },
                t.logs()
            );
        }
        let caught = idle.unwrap();
        let snapshots = std::fs::read_to_string(&spec.node(3).unwrap().log).unwrap_or_default().matches("installed snapshot").count();
        println!("node 3 caught up in {} ms ({snapshots} snapshot installs in its log)", caught.as_millis());
        assert!(snapshots > 0, "node 3 caught up without a snapshot although the logs were compacted:\n{}", log_tail(spec.node(3).unwrap(), 30));

        // Node 3 is now needed for every majority.
        t.cluster.kill9(1).unwrap();
        for s in 0..SHARDS {
            let (leader, _) = wait_leader(&spec, s, Duration::from_secs(15)).await.unwrap_or_else(|e| panic!("{e}\n{}", t.logs()));
            assert_ne!(leader, 1);
        }
        assert!(node_status(&spec.node(3).unwrap().addr, 500).await.is_some());
        let client = t.cluster.client();
        for s in 0..SHARDS {
            let mut refs = RefsForShard::new(SHARDS, s, &format!("wn-after-s{s}"));
            purchase_once(&client, &book, purchase("wn-load-a0", &refs.next().unwrap()))
                .await
                .unwrap_or_else(|e| panic!("shard {s}: write with nodes 2 and 3: {e}\n{}", t.logs()));
        }
        t.assert_nothing_lost(&book).await;
    })
    .await;
}

/// Waits until node 3's replicas have applied what each shard's leader applied; Err lists the
/// shards behind, with every node's view of them.
async fn catch_up(t: &TestCluster, limit: Duration) -> Result<Duration, String> {
    let spec = &t.cluster.spec;
    let started = Instant::now();
    loop {
        let all = statuses(spec, 500).await;
        let mut behind = Vec::new();
        for s in 0..SHARDS {
            let Some((leader, _)) = leader_from(&all, s) else {
                behind.push(format!("shard {s}: no leader"));
                continue;
            };
            let want = all[&leader].as_ref().unwrap().shards.iter().find(|sh| sh.shard == s).unwrap().applied_index;
            let n3 = all[&3].as_ref().and_then(|n3| n3.shards.iter().find(|sh| sh.shard == s));
            let have = n3.map_or(0, |sh| sh.applied_index);
            if have != want {
                behind.push(format!("shard {s}: node 3 applied {have} (its view: {n3:?}), leader {leader} applied {want}"));
            }
        }
        if behind.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(behind.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
