//! Shared by the cluster tests: the node binary, a launched cluster in a temp dir, bounded
//! waits. Every node is SIGKILLed when the `TestCluster` is dropped (also on panic), and the
//! kernel kills the nodes if the test process dies (PR_SET_PDEATHSIG).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coinledger_client::Client;
use coinledger_cluster::chaos::{self, faults::FaultKind, net, ChaosOptions};
use coinledger_cluster::launcher::{Cluster, ClusterOptions, ClusterSpec};
use coinledger_cluster::load::{verify, Book, Verdict};
use tempfile::TempDir;

/// target/release/coinledger-node, next to the deps dir this test binary lives in.
pub fn node_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let release = exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps");
    let bin = release.join(format!("coinledger-node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "coinledger-node not found at {}: build the workspace first (cargo build --release --workspace)",
        bin.display()
    );
    bin
}

pub struct TestCluster {
    pub cluster: Cluster,
    /// Kept for the nodes' logs while the test runs; removed on drop unless the test failed.
    pub dir: Option<TempDir>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.cluster.stop_all(Duration::ZERO);
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("test failed: cluster directory kept for inspection: {}", dir.keep().display());
            }
        }
    }
}

impl TestCluster {
    /// `nodes` nodes on base_port.. with `shards` shards and extra node args; waits until
    /// every shard has a leader.
    pub async fn start(base_port: u16, nodes: u64, shards: u32, extra: &[&str]) -> TestCluster {
        let dir = tempfile::Builder::new().prefix("coinledger-cluster-test-").tempdir().expect("tempdir");
        let opts = ClusterOptions {
            nodes,
            base_port,
            data_dir: dir.path().to_path_buf(),
            shards,
            replication: None,
            node_bin: node_bin(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        let spec = ClusterSpec::new(&opts).expect("spec");
        let cluster = Cluster::launch(spec).unwrap_or_else(|e| panic!("launch: {e}"));
        let t = TestCluster { cluster, dir: Some(dir) };
        t.cluster
            .wait_ready(Duration::from_secs(30), true)
            .await
            .unwrap_or_else(|e| panic!("cluster not ready: {e}\n{}", t.logs()));
        t
    }

    /// A client with short limits, so calls against a dead cluster end quickly.
    pub fn quick_client(&self) -> Client {
        self.cluster.client_with(1_000, 3_000, 200)
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.cluster
            .spec
            .nodes
            .iter()
            .map(|n| format!("---- node {} log tail ----\n{}", n.id, coinledger_cluster::launcher::log_tail(n, 25)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs the no-loss checks; panics with the details and the logs if anything is off.
    pub async fn assert_nothing_lost(&self, book: &Book) -> Verdict {
        let client = self.cluster.client();
        let verdict = verify(&client, book, true, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("verification did not finish: {e}\n{}", self.logs()));
        println!("{}", verdict.summary());
        assert!(verdict.ok(), "{}\n{}", verdict.summary(), self.logs());
        assert!(verdict.audit.ok, "audit: {:?}", verdict.audit.violations);
        verdict
    }
}

/// Bounds a whole test body.
pub async fn bounded<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("test took longer than {limit:?}"))
}

/// A chaos run of 3 nodes of 8 shards with every fault kind (partitions only where iptables
/// is usable), whose checker must pass. Two runs must not overlap: they would share the
/// nodes' loopback addresses and, in one process, the firewall chain.
pub async fn chaos_passes(seed: u64, duration: Duration, base_port: u16, extra_args: Vec<String>, auto_batch: bool) {
    let mut faults = FaultKind::parse_list("kill,pause,partition,restart,wipe").unwrap();
    if let Err(e) = net::available() {
        eprintln!("note: iptables unusable ({e}): partition faults skipped in this test");
        faults.retain(|k| *k != FaultKind::Partition);
    }
    let out = tempfile::Builder::new().prefix("coinledger-chaos-short-").tempdir().expect("tempdir");
    let opts = ChaosOptions {
        nodes: 3,
        duration,
        faults,
        faults_explicit: true,
        seed,
        clients: 16,
        auto_batch,
        out: out.path().to_path_buf(),
        shards: 8,
        base_port,
        node_bin: node_bin(),
        extra_args,
    };
    let started = Instant::now();
    let report = match chaos::run(opts, &mut |line| eprintln!("{line}")).await {
        Ok(r) => r,
        Err(e) => panic!("chaos run failed: {e}\n(run directory kept: {})", out.keep().display()),
    };
    eprintln!("{}\n(chaos run took {} ms)", report.render(), started.elapsed().as_millis());
    if !report.passed() {
        let kept = out.keep();
        panic!("the checker found violations; history and report kept in {}", kept.display());
    }
    assert!(!report.injected.is_empty(), "no fault was injected");
    assert!(report.ops.iter().any(|o| o.final_reply().is_some()), "nothing succeeded");
}
