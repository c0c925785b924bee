//! `coinledger-cluster`: see `coinledger-cluster --help`.

mod cli;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use coinledger_cluster::failover::{self, FailoverOptions};
use coinledger_cluster::launcher::{
    build_workspace_node_bin, exit_finished, live_pid, locate_node_bin, log_tail, node_status, signal_node, spawn_node, wipe_data, Attach, Cluster,
    ClusterOptions, ClusterSpec, Result, Sig,
};
use coinledger_cluster::chaos::{self, faults::FaultKind, ChaosOptions};
use coinledger_cluster::ops;

use cli::{Cli, Cmd};

/// Time `up` gives the nodes to stop after SIGTERM before it SIGKILLs them.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Time a node has to answer Admin.Status after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let needs_node_bin = match &cli.command {
        Cmd::Up { node_bin, .. } | Cmd::Failover { node_bin, .. } => node_bin.is_none(),
        Cmd::Chaos { node_bin, docker, .. } => node_bin.is_none() && !docker,
        _ => false,
    };
    if needs_node_bin {
        if let Err(e) = build_workspace_node_bin() {
            eprintln!("coinledger-cluster: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Cmd::Up { nodes, base_port, data_dir, shards, replication, node_bin, node_args } => {
            match locate_node_bin(node_bin.as_deref()) {
                Ok(node_bin) => {
                    let opts = ClusterOptions { nodes, base_port, data_dir, shards, replication, node_bin, extra_args: node_args };
                    up(opts).await
                }
                Err(e) => Err(e),
            }
        }
        Cmd::Status { data_dir } => status(&data_dir).await,
        Cmd::Kill { node, signal, data_dir } => kill(&data_dir, node, signal.into()),
        Cmd::Restart { node, data_dir, wipe, no_wait } => restart(&data_dir, node, wipe, !no_wait).await,
        Cmd::Failover { kills, nodes, base_port, shards, data_dir, node_bin, load_tasks, node_args } => {
            match locate_node_bin(node_bin.as_deref()) {
                Ok(node_bin) => {
                    let opts = FailoverOptions {
                        kills,
                        cluster: ClusterOptions { nodes, base_port, data_dir, shards, replication: None, node_bin, extra_args: node_args },
                        load_tasks: load_tasks.max(1),
                    };
                    match failover::run(opts, &mut |line| println!("{line}")).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("acknowledged purchases were lost or the audit failed (see above)".into()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Cmd::Chaos { nodes, duration, faults, seed, clients, auto_batch, out, shards, base_port, node_bin, node_args, docker, compose_file } => {
            let docker = docker.then(|| compose_file.unwrap_or_else(chaos::docker::default_compose_file));
            chaos(nodes, duration, faults, seed, clients, auto_batch, out, shards, base_port, node_bin, node_args, docker).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coinledger-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(opts: ClusterOptions) -> Result<()> {
    let spec = ClusterSpec::new(&opts)?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    println!(
        "starting {} coinledger-node processes ({}), data in {}",
        spec.nodes.len(),
        spec.node_bin.display(),
        spec.dir.display()
    );
    let mut cluster = Cluster::launch(spec)?;
    let ready = tokio::select! {
        r = cluster.wait_ready(START_TIMEOUT, false) => r,
        _ = term.recv() => Err("interrupted by SIGTERM".into()),
        _ = int.recv() => Err("interrupted".into()),
    };
    if let Err(e) = ready {
        cluster.stop_all(STOP_GRACE);
        return Err(format!("{e}\nnode logs: {}/node-N.log", cluster.spec.dir.display()));
    }
    // Leaders: a short wait, so the first coinctl call does not meet an election.
    if let Err(e) = cluster.wait_ready(Duration::from_secs(10), true).await {
        println!("warning: {e}");
    }
    for n in &cluster.spec.nodes {
        println!(
            "node {} serving on {} (pid {}, data {}, log {})",
            n.id,
            n.addr,
            live_pid(n).map_or("?".into(), |p| p.to_string()),
            n.data_dir.display(),
            n.log.display()
        );
    }
    let dir = cluster.spec.dir.display().to_string();
    println!("endpoints: {}", cluster.endpoints());
    println!("try: coinctl --endpoints {} status", cluster.endpoints());
    println!("operate from another shell: coinledger-cluster status|kill N|restart N --data-dir {dir}");
    println!("cluster up; Ctrl-C stops every node");

    // Watch the nodes until told to stop: report exits and restarts, never restart by itself.
    let mut known: BTreeMap<u64, Option<u32>> = cluster.spec.nodes.iter().map(|n| (n.id, live_pid(n))).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let why = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "Ctrl-C",
            _ = tick.tick() => {
                let mut exits: BTreeMap<u64, String> = cluster.reap().into_iter().collect();
                for n in &cluster.spec.nodes {
                    let now = live_pid(n);
                    let before = known.get(&n.id).copied().flatten();
                    if now != before {
                        match (before, now) {
                            (Some(old), None) => {
                                let how = exits.remove(&n.id).unwrap_or_else(|| "exited".into());
                                println!("node {} (pid {old}) stopped unexpectedly: {how}; not restarting it (use `coinledger-cluster restart {} --data-dir {dir}`)", n.id, n.id);
                            }
                            (_, Some(new)) => println!("node {} is running (pid {new})", n.id),
                            (None, None) => {}
                        }
                        known.insert(n.id, now);
                    }
                }
            }
        }
    };
    println!("{why}: stopping {} nodes (SIGTERM, SIGKILL after {}s)", cluster.spec.nodes.len(), STOP_GRACE.as_secs());
    let started = Instant::now();
    let killed = cluster.stop_all(STOP_GRACE);
    if killed.is_empty() {
        println!("all nodes stopped in {} ms", started.elapsed().as_millis());
    } else {
        println!("nodes {killed:?} did not stop within {}s and were SIGKILLed", STOP_GRACE.as_secs());
    }
    for n in &cluster.spec.nodes {
        let _ = std::fs::remove_file(&n.pid_file);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn chaos(
    nodes: u64,
    duration: Duration,
    faults: Option<String>,
    seed: u64,
    clients: usize,
    auto_batch: bool,
    out: std::path::PathBuf,
    shards: u32,
    base_port: u16,
    node_bin: Option<std::path::PathBuf>,
    node_args: Vec<String>,
    docker: Option<std::path::PathBuf>,
) -> Result<()> {
    let node_bin = match docker {
        Some(_) => "/coinledger-node".into(),
        None => locate_node_bin(node_bin.as_deref())?,
    };
    let kinds = match &faults {
        Some(list) => FaultKind::parse_list(list)?,
        None => FaultKind::ALL.to_vec(),
    };
    let opts = ChaosOptions {
        nodes,
        duration,
        faults: kinds,
        faults_explicit: faults.is_some(),
        seed,
        clients: clients.max(1),
        auto_batch,
        out: out.clone(),
        shards,
        base_port,
        node_bin,
        extra_args: node_args,
    };
    let report = match docker {
        Some(compose_file) => chaos::docker::run(opts, &compose_file, &mut |line| println!("{line}")).await?,
        None => chaos::run(opts, &mut |line| println!("{line}")).await?,
    };
    println!("{}", report.render());
    println!("history, report.md and report.json in {}", out.display());
    if report.passed() {
        Ok(())
    } else {
        Err("the checker found violations (see above)".into())
    }
}

async fn status(dir: &Path) -> Result<()> {
    let spec = ClusterSpec::load(dir)?;
    println!("{}", ops::status_report(&spec).await);
    Ok(())
}

fn kill(dir: &Path, id: u64, sig: Sig) -> Result<()> {
    let spec = ClusterSpec::load(dir)?;
    let node = spec.node(id)?;
    let pid = signal_node(node, sig)?;
    println!("sent {} to node {id} (pid {pid})", sig.name());
    Ok(())
}

async fn restart(dir: &Path, id: u64, wipe: bool, wait: bool) -> Result<()> {
    let spec = ClusterSpec::load(dir)?;
    let node = spec.node(id)?.clone();
    if let Some(pid) = live_pid(&node) {
        signal_node(&node, Sig::Kill)?;
        let started = Instant::now();
        while live_pid(&node).is_some() || !exit_finished(pid) {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(format!("node {id} (pid {pid}) still runs 5 s after SIGKILL"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("killed node {id} (pid {pid})");
    }
    if wipe {
        wipe_data(&node)?;
        println!("wiped {}", node.data_dir.display());
    }
    let child = spawn_node(&spec, &node, Attach::Detached)?;
    println!("started node {id} on {} (pid {}), log {}", node.addr, child.id(), node.log.display());
    drop(child); // detached: it outlives this command
    if wait {
        let started = Instant::now();
        loop {
            if live_pid(&node).is_none() {
                return Err(format!("node {id} exited; its log ends with:\n{}", log_tail(&node, 30)));
            }
            if node_status(&node.addr, 500).await.is_some() {
                println!("node {id} answers on {} after {} ms", node.addr, started.elapsed().as_millis());
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("node {id} does not answer after {START_TIMEOUT:?}; see {}", node.log.display()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
