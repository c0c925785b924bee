//! `coinledger-cluster up` as an operator runs it: a foreground process that starts the nodes;
//! `status`, `kill 2` and `restart 2` from "another shell"; SIGTERM to `up` stops every node,
//! the restarted one included.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coinledger_cluster::launcher::{is_node_process, live_pid, ClusterSpec};

const BASE_PORT: u16 = 17601;

fn cluster_bin() -> &'static str {
    env!("CARGO_BIN_EXE_coinledger-cluster")
}

fn run(args: &[&str], dir: &Path) -> Output {
    let out = Command::new(cluster_bin()).args(args).arg("--data-dir").arg(dir).output().expect("run coinledger-cluster");
    println!(
        "$ coinledger-cluster {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Kills `up` and any node of the directory still running, whatever happened in the test.
struct Guard {
    up: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            let _ = up.kill();
            let _ = up.wait();
        }
        if let Ok(spec) = ClusterSpec::load(self.dir.path()) {
            for n in &spec.nodes {
                let _ = coinledger_cluster::launcher::signal_node(n, coinledger_cluster::launcher::Sig::Kill);
            }
        }
    }
}

#[test]
fn up_status_kill_restart_then_sigterm_stops_every_node() {
    let node_bin = common::node_bin();
    let dir = tempfile::Builder::new().prefix("coinledger-up-test-").tempdir().unwrap();
    let data = dir.path().join("cluster");
    let mut up = Command::new(cluster_bin())
        .args(["up", "--nodes", "3", "--shards", "8", "--base-port", &BASE_PORT.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .arg("--node-bin")
        .arg(&node_bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn coinledger-cluster up");
    let stdout = up.stdout.take().unwrap();
    let mut guard = Guard { up: Some(up), dir };

    // `up`'s output, line by line, on a channel.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("[up] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |want: &str, limit: Duration| -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(want);
                    seen.push(line);
                    if hit {
                        return seen;
                    }
                }
                Err(e) => panic!("no line containing {want:?} from `up` within {limit:?} ({e:?}); got:\n{}", seen.join("\n")),
            }
        }
    };
    let started = Instant::now();
    let lines = wait_line("cluster up", Duration::from_secs(40));
    println!("up ready in {} ms", started.elapsed().as_millis());
    let endpoints = format!("127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", BASE_PORT, BASE_PORT + 1, BASE_PORT + 2);
    assert!(lines.iter().any(|l| l.contains(&format!("coinctl --endpoints {endpoints}"))), "no coinctl hint in {lines:?}");
    let spec = ClusterSpec::load(&data).expect("cluster.json written");
    assert_eq!(spec.nodes.len(), 3);

    // status: three nodes up, eight shards each with a leader.
    let out = run(&["status"], &data);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let node_rows: Vec<&str> = text.lines().filter(|l| l.contains("127.0.0.1:")).collect();
    assert_eq!(node_rows.len(), 3, "{text}");
    assert!(node_rows.iter().all(|l| l.contains(" up ")), "{text}");
    let shard_rows = text.lines().skip_while(|l| !l.starts_with("SHARD")).skip(1).count();
    assert_eq!(shard_rows, 8, "{text}");

    // kill 2: the process goes, `up` reports it, status says down.
    let old_pid = live_pid(spec.node(2).unwrap()).expect("node 2 runs");
    assert!(run(&["kill", "2"], &data).status.success());
    wait_line("node 2", Duration::from_secs(10));
    let out = run(&["status"], &data);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row2 = text.lines().find(|l| l.contains(&format!("127.0.0.1:{}", BASE_PORT + 1))).unwrap().to_string();
    assert!(row2.contains("down"), "{text}");

    // restart 2: a new process that answers.
    assert!(run(&["restart", "2"], &data).status.success());
    let new_pid = live_pid(spec.node(2).unwrap()).expect("node 2 runs again");
    assert_ne!(new_pid, old_pid);
    let pids: Vec<(u64, u32)> = spec.nodes.iter().map(|n| (n.id, live_pid(n).expect("every node runs"))).collect();

    // SIGTERM to up: every node stops, the detached node 2 too.
    let mut up = guard.up.take().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(20) {
            let _ = up.kill();
            panic!("`up` did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("up exited with {status} after {} ms", stopped.elapsed().as_millis());
    assert!(status.success(), "up exited with {status}");
    for (id, pid) in pids {
        let node = spec.node(id).unwrap();
        assert!(!is_node_process(pid, node), "node {id} (pid {pid}) still runs after `up` stopped");
    }
}
