//! Every node SIGKILLed under load, then all restarted: every acknowledged purchase is there,
//! unknown outcomes are resolved by retrying with the same request id, the audit holds.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use coinledger_cluster::launcher::Sig;
use coinledger_cluster::load::Load;
use common::{bounded, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_every_node_then_restart_loses_nothing_acknowledged() {
    bounded(Duration::from_secs(85), async {
        let mut t = TestCluster::start(17301, 3, 8, &[]).await;
        let load = Load::start(t.quick_client(), 4, 12, "ka-load", Duration::ZERO);
        let book = load.book.clone();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // As close to simultaneous as signals get: purchases are in flight on every node.
        for id in t.cluster.spec.ids() {
            t.cluster.signal(id, Sig::Kill).unwrap();
        }
        let acked_at_kill = book.acked_count.load(Ordering::Relaxed);
        for id in t.cluster.spec.ids() {
            t.cluster.wait_gone(id, Duration::from_secs(5)).unwrap();
        }
        // The buyers run into the dead cluster until their calls give up.
        let book = load.stop().await;
        println!(
            "{acked_at_kill} purchases acknowledged when all nodes were killed, {} in total, {} unknown outcomes",
            book.acked_count.load(Ordering::Relaxed),
            book.unknown_count()
        );
        assert!(acked_at_kill > 20, "the load ran before the kill");
        for id in t.cluster.spec.ids() {
            t.cluster.start(id).unwrap();
        }
        t.cluster
            .wait_ready(Duration::from_secs(30), true)
            .await
            .unwrap_or_else(|e| panic!("after restart: {e}\n{}", t.logs()));
        t.assert_nothing_lost(&book).await;
    })
    .await;
}
