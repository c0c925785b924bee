//! The leader of a shard is SIGKILLed during load: the shard commits again within a few
//! election timeouts, and after the node's restart nothing acknowledged is missing.

mod common;

use std::time::{Duration, Instant};

use coinledger_cluster::failover::first_commit_on_shard;
use coinledger_cluster::launcher::Sig;
use coinledger_cluster::load::{Load, RefsForShard};
use coinledger_cluster::ops::{find_leader, wait_caught_up, wait_leader};
use common::{bounded, TestCluster};

const SHARDS: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_load_fails_over_within_5s_and_loses_nothing() {
    bounded(Duration::from_secs(85), async {
        let mut t = TestCluster::start(17201, 3, SHARDS, &[]).await;
        let load = Load::start(t.cluster.client(), 3, 8, "lf-load", Duration::from_millis(5));
        let book = load.book.clone();
        let probe = t.cluster.client_with(1_000, 20_000, 50);
        let shard = 3;
        let mut refs = RefsForShard::new(SHARDS, shard, "lf-probe");
        book.track("lf-probe");
        first_commit_on_shard(&probe, &book, &mut refs, "lf-probe", Duration::from_millis(50), Duration::from_secs(10))
            .await
            .expect("shard serves before the kill");

        let (leader, term) = wait_leader(&t.cluster.spec, shard, Duration::from_secs(10)).await.unwrap();
        let before = book.acked_count.load(std::sync::atomic::Ordering::Relaxed);
        t.cluster.signal(leader, Sig::Kill).unwrap();
        let killed_at = Instant::now();
        let at = first_commit_on_shard(&probe, &book, &mut refs, "lf-probe", Duration::from_millis(20), Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("shard {shard} did not recover: {e}\n{}", t.logs()));
        let failover = at.saturating_duration_since(killed_at);
        let new_leader = find_leader(&t.cluster.spec, shard, 500).await;
        println!(
            "shard {shard}: leader node {leader} (term {term}) killed; first commit after {} ms; new leader {new_leader:?}; {before} purchases acknowledged before the kill",
            failover.as_millis()
        );
        assert!(failover < Duration::from_secs(5), "failover took {failover:?}");
        if let Some((id, new_term)) = new_leader {
            assert_ne!(id, leader, "the killed node cannot lead");
            assert!(new_term > term, "new term {new_term} <= {term}");
            // The Topology that routing clients follow names the new leader soon after.
            let topology_at = Instant::now();
            loop {
                let topology = probe.topology(Default::default()).await.expect("topology");
                assert_eq!(topology.shard_count, SHARDS);
                assert_eq!(topology.nodes.len(), 3);
                assert_eq!(topology.shard_leaders.len(), SHARDS as usize);
                if topology.shard_leaders[shard as usize] == id {
                    break;
                }
                assert!(
                    topology_at.elapsed() < Duration::from_secs(5),
                    "topology from node {} still names {} as shard {shard}'s leader, not {id}",
                    topology.node_id,
                    topology.shard_leaders[shard as usize]
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        t.cluster.wait_gone(leader, Duration::from_secs(5)).unwrap();
        t.cluster.start(leader).unwrap();
        t.cluster.wait_nodes_ready(&[leader], Duration::from_secs(20), false).await.unwrap();
        let took = wait_caught_up(&t.cluster.spec, leader, Duration::from_secs(30)).await.unwrap();
        println!("node {leader} restarted and caught up in {} ms", took.as_millis());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let book = load.stop().await;
        let v = t.assert_nothing_lost(&book).await;
        assert!(v.acked_purchases > before, "load made progress across the failover");
    })
    .await;
}
