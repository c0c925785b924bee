//! CI-sized chaos run, in-process through the library: 3 real nodes, 60 s, every fault kind,
//! seed 1; the checker's verdict must pass. Without usable iptables (not root, not installed)
//! partition faults are left out with a printed note.

mod common;

use std::time::{Duration, Instant};

use coinledger_cluster::chaos::{self, faults::FaultKind, net, ChaosOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short_passes() {
    let mut faults = FaultKind::parse_list("kill,pause,partition,restart,wipe").unwrap();
    if let Err(e) = net::available() {
        eprintln!("note: iptables unusable ({e}): partition faults skipped in this test");
        faults.retain(|k| *k != FaultKind::Partition);
    }
    let out = tempfile::Builder::new().prefix("coinledger-chaos-short-").tempdir().expect("tempdir");
    let opts = ChaosOptions {
        nodes: 3,
        duration: Duration::from_secs(60),
        faults,
        faults_explicit: true,
        seed: 1,
        clients: 16,
        out: out.path().to_path_buf(),
        shards: 8,
        base_port: 17_901,
        node_bin: common::node_bin(),
        extra_args: Vec::new(),
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
