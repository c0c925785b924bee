//! `coinledger-cluster chaos --docker`: the same workload, faults and checker against the
//! three containers of `cluster/docker-compose.yml` instead of node processes.
//!
//! The compose file fixes the container names (coinledger-node1..3), the network addresses
//! (172.28.0.11-13) and the published client ports (127.0.0.1:7001-7003), so a run refuses to
//! start if any of those containers exists already; everything else (network, volumes) lives
//! under its own compose project. An override file written into --out adds the shard count and
//! log compaction to the node arguments.
//! `docker-compose down -v` runs at the end, also on errors and Ctrl-C (drop guard).
//!
//! Faults: kill = `docker kill` + `docker start` after the downtime; pause = `docker pause` /
//! `unpause`; partition = `docker network disconnect` / `connect --ip <same ip>` (one node cut
//! off; one-way losses and larger splits are skipped with a note); restart = `docker restart`;
//! wipe = `docker rm -f`, `docker volume rm` of that node's volume, `docker-compose up -d` of
//! that service after the downtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coinledger_client::{Client, ClientConfig};

use super::faults::{self, Action, FaultKind};
use super::history::History;
use super::monitor::Monitor;
use super::report::Report;
use super::workload::{Workload, WorkloadOptions};
use super::{check_and_report, ChaosOptions, OP_DEADLINE};
use crate::launcher::{ClusterSpec, NodeSpec, Result};
use crate::ops::{leader_from, statuses, wait_caught_up};

/// Compose project of a chaos run: its network and volumes are `<project>_…`.
pub const PROJECT: &str = "coinledgerchaos";
/// Nodes in the compose file.
pub const NODES: u64 = 3;
/// Bound on the containers answering Admin.Status with a leader for every shard.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// The compose file: `--compose-file`, else cluster/docker-compose.yml under the working
/// directory, else the one next to this crate's sources.
pub fn default_compose_file() -> PathBuf {
    let here = PathBuf::from("cluster/docker-compose.yml");
    if here.is_file() {
        return here;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
}

fn container(node: u64) -> String {
    format!("coinledger-node{node}")
}

fn service(node: u64) -> String {
    format!("node{node}")
}

fn node_ip(node: u64) -> String {
    format!("172.28.0.{}", 10 + node)
}

fn network() -> String {
    format!("{PROJECT}_coinledger")
}

fn volume(node: u64) -> String {
    format!("{PROJECT}_node{node}-data")
}

/// Runs `program args`, Ok(stdout) if it exits 0, Err with its stderr otherwise.
fn run_cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn docker(args: &[&str]) -> Result<String> {
    run_cmd("docker", args)
}

/// `docker-compose -f FILE -f OVERRIDE -p PROJECT ARGS`.
pub struct Compose {
    file: PathBuf,
    override_file: PathBuf,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Result<String> {
        let (f, o) = (self.file.display().to_string(), self.override_file.display().to_string());
        let mut all = vec!["-f", f.as_str(), "-f", o.as_str(), "-p", PROJECT];
        all.extend_from_slice(args);
        run_cmd("docker-compose", &all)
    }
}

/// Tears the project down (containers, network, volumes) when dropped.
struct Down<'a> {
    compose: &'a Compose,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.compose.run(&["down", "-v", "--timeout", "5"]) {
            eprintln!("chaos --docker: cleanup: {e}");
        }
    }
}

/// Checks that Docker, docker-compose and the image are there and that no container of the
/// compose file exists (they are someone else's: never touched).
pub fn preflight() -> Result<()> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map_err(|e| format!("docker is not usable: {e}"))?;
    run_cmd("docker-compose", &["version", "--short"]).map_err(|e| format!("docker-compose is not usable: {e}"))?;
    docker(&["image", "inspect", "coinledger-node:latest", "--format", "{{.Id}}"])
        .map_err(|_| "image coinledger-node:latest not found (build it with cluster/docker/build-image.sh)".to_string())?;
    let mut taken = Vec::new();
    for n in 1..=NODES {
        let name = container(n);
        let found = docker(&["ps", "-a", "--filter", &format!("name=^/{name}$"), "--format", "{{.Names}}"])?;
        if !found.trim().is_empty() {
            taken.push(name);
        }
    }
    if !taken.is_empty() {
        return Err(format!(
            "containers {} already exist (another compose project?); not touching them: remove them first (e.g. docker-compose -f cluster/docker-compose.yml down -v)",
            taken.join(", ")
        ));
    }
    let net = docker(&["network", "ls", "--filter", &format!("name=^{}$", network()), "--format", "{{.Name}}"])?;
    if !net.trim().is_empty() {
        return Err(format!("network {} already exists (a previous run?); remove it first: docker network rm {}", network(), network()));
    }
    Ok(())
}

/// The cluster as the status/quiescence code sees it: node i at 127.0.0.1:700i.
fn docker_spec(dir: &Path, shards: u32) -> ClusterSpec {
    let nodes = (1..=NODES)
        .map(|i| NodeSpec {
            id: i,
            addr: format!("127.0.0.1:{}", 7000 + i),
            data_dir: dir.join(format!("node-{i}")),
            log: dir.join(format!("node-{i}.log")),
            pid_file: dir.join(format!("node-{i}.pid")),
            args: Vec::new(),
        })
        .collect();
    ClusterSpec { dir: dir.to_path_buf(), node_bin: PathBuf::from("/coinledger-node"), shards, base_port: 7001, nodes }
}

fn client_config(spec: &ClusterSpec) -> ClientConfig {
    let mut config = ClientConfig::from_endpoints(&spec.endpoints()).expect("endpoints");
    config.attempt_timeout_ms = 1_000;
    config.deadline_ms = 5_000;
    config.backoff_ms_initial = 10;
    config.backoff_ms_max = 200;
    config
}

/// Every node answers Admin.Status and every shard has a leader.
async fn wait_ready(spec: &ClusterSpec, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let all = statuses(spec, 500).await;
        let down: Vec<u64> = all.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| *id).collect();
        let unled = (0..spec.shards).filter(|sh| leader_from(&all, *sh).is_none()).count();
        if down.is_empty() && unled == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            let mut logs = String::new();
            for id in &down {
                let tail = Command::new("docker").args(["logs", "--tail", "20", &container(*id)]).output();
                if let Ok(o) = tail {
                    logs.push_str(&format!("\n--- {} ---\n{}{}", container(*id), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
                }
            }
            return Err(format!("after {limit:?}: nodes {down:?} do not answer Admin.Status, {unled} shards without a leader{logs}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Faults as Docker operations; remembers what it left broken so `heal_all` can undo it.
struct DockerInjector<'a> {
    compose: &'a Compose,
    spec: ClusterSpec,
    paused: BTreeSet<u64>,
    disconnected: BTreeSet<u64>,
    stopped: BTreeSet<u64>,
}

impl faults::FaultRunner for DockerInjector<'_> {
    fn skip_reason(&self, action: &Action) -> Option<&'static str> {
        (!Self::supports(action)).then_some("no docker form")
    }

    fn describe(&self, action: &Action) -> String {
        Self::describe(action)
    }

    async fn inject(&mut self, action: &Action, now_ms: &dyn Fn() -> u64) -> Result<(u64, u64)> {
        self.run(action, now_ms).await
    }

    fn heal(&mut self) -> Vec<String> {
        self.heal_all()
    }
}

impl DockerInjector<'_> {
    /// False if the action has no Docker form (it is then skipped with a printed note).
    fn supports(action: &Action) -> bool {
        match action {
            Action::Isolate { minority, .. } => minority.len() == 1,
            Action::OneWay { .. } => false,
            _ => true,
        }
    }

    fn describe(action: &Action) -> String {
        match action {
            Action::Kill { node, down_ms } => format!("docker kill {}, start after {down_ms} ms", container(*node)),
            Action::Pause { node, pause_ms } => format!("docker pause {} for {pause_ms} ms", container(*node)),
            Action::Isolate { minority, cut_ms } => {
                format!("docker network disconnect {} for {cut_ms} ms", minority.iter().map(|n| container(*n)).collect::<Vec<_>>().join(","))
            }
            Action::Restart { node } => format!("docker restart {}", container(*node)),
            Action::Wipe { node, down_ms } => format!("docker rm -f {} + volume rm {}, up again after {down_ms} ms", container(*node), volume(*node)),
            other => other.describe(),
        }
    }

    fn connect(&mut self, node: u64) -> Result<()> {
        docker(&["network", "connect", "--ip", &node_ip(node), &network(), &container(node)])?;
        self.disconnected.remove(&node);
        Ok(())
    }

    fn start(&mut self, node: u64) -> Result<()> {
        docker(&["start", &container(node)])?;
        self.stopped.remove(&node);
        Ok(())
    }

    async fn run(&mut self, action: &Action, now_ms: &dyn Fn() -> u64) -> Result<(u64, u64)> {
        let ms = Duration::from_millis;
        match action {
            Action::Kill { node, down_ms } => {
                let started = now_ms();
                docker(&["kill", &container(*node)])?;
                self.stopped.insert(*node);
                tokio::time::sleep(ms(*down_ms)).await;
                self.start(*node)?;
                Ok((started, now_ms()))
            }
            Action::Pause { node, pause_ms } => {
                let started = now_ms();
                docker(&["pause", &container(*node)])?;
                self.paused.insert(*node);
                tokio::time::sleep(ms(*pause_ms)).await;
                docker(&["unpause", &container(*node)])?;
                self.paused.remove(node);
                Ok((started, now_ms()))
            }
            Action::Isolate { minority, cut_ms } if minority.len() == 1 => {
                let node = minority[0];
                let started = now_ms();
                docker(&["network", "disconnect", &network(), &container(node)])?;
                self.disconnected.insert(node);
                tokio::time::sleep(ms(*cut_ms)).await;
                self.connect(node)?;
                Ok((started, now_ms()))
            }
            Action::Restart { node } => {
                let started = now_ms();
                docker(&["restart", "--time", "10", &container(*node)])?;
                Ok((started, now_ms()))
            }
            Action::Wipe { node, down_ms } => {
                for id in self.spec.ids().into_iter().filter(|i| i != node) {
                    wait_caught_up(&self.spec, id, Duration::from_secs(15)).await.map_err(|e| format!("not wiping node {node}: {e}"))?;
                }
                let started = now_ms();
                self.stopped.insert(*node);
                docker(&["rm", "-f", &container(*node)])?;
                docker(&["volume", "rm", &volume(*node)])?;
                tokio::time::sleep(ms(*down_ms)).await;
                self.compose.run(&["up", "-d", "--no-deps", &service(*node)])?;
                self.stopped.remove(node);
                Ok((started, now_ms()))
            }
            other => Err(format!("no docker form of {}", other.describe())),
        }
    }

    /// Ends every fault: unpause, reconnect, start (or recreate) whatever is left broken.
    fn heal_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for node in std::mem::take(&mut self.paused) {
            if let Err(e) = docker(&["unpause", &container(node)]) {
                errors.push(e);
            }
        }
        for node in self.disconnected.clone() {
            if let Err(e) = self.connect(node) {
                errors.push(e);
            }
        }
        for node in self.stopped.clone() {
            if self.start(node).is_err() {
                // Removed by a wipe that failed halfway: create it again.
                match self.compose.run(&["up", "-d", "--no-deps", &service(node)]) {
                    Ok(_) => {
                        self.stopped.remove(&node);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        errors
    }
}

/// Runs the whole thing against containers; like [`super::run`]. `compose_file` is the
/// shared compose file (not modified). `opts.nodes` must be 3; `opts.base_port`,
/// `opts.node_bin` and `opts.extra_args` do not apply.
pub async fn run(opts: ChaosOptions, compose_file: &Path, say: &mut (dyn FnMut(String) + Send)) -> Result<Report> {
    if opts.nodes != NODES {
        return Err(format!("--docker runs the {NODES} nodes of the compose file; --nodes {} is not possible", opts.nodes));
    }
    if !opts.extra_args.is_empty() {
        return Err("--node-arg does not apply with --docker (the compose file gives the node arguments)".into());
    }
    if !compose_file.is_file() {
        return Err(format!("compose file {} not found", compose_file.display()));
    }
    preflight()?;
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let out = std::fs::canonicalize(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let override_file = out.join("docker-compose.chaos.yml");
    // The compose file's node arguments plus what the process mode passes too: the shard
    // count, and log compaction so a wiped node catches up by snapshot.
    let mut text = String::from("# written by coinledger-cluster chaos --docker\nversion: \"2.4\"\nservices:\n");
    for n in 1..=NODES {
        text.push_str(&format!(
            "  {}:\n    command: [\"--id\", \"{n}\", \"--listen\", \"{}:7001\", \"--shards\", \"{}\", \"--compact-log-entries\", \"{}\"]\n",
            service(n),
            node_ip(n),
            opts.shards,
            super::COMPACT_LOG_ENTRIES
        ));
    }
    std::fs::write(&override_file, text).map_err(|e| format!("cannot write {}: {e}", override_file.display()))?;
    let compose = Compose { file: compose_file.to_path_buf(), override_file };
    let docker_dir = out.join("docker");
    std::fs::create_dir_all(&docker_dir).map_err(|e| format!("cannot create {}: {e}", docker_dir.display()))?;
    let spec = docker_spec(&docker_dir, opts.shards);

    let _down = Down { compose: &compose };
    let result = tokio::select! {
        r = run_inner(&opts, &compose, spec, say) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C): docker-compose down -v".into()),
    };
    if result.is_err() {
        save_logs(&docker_dir, say);
    }
    result
}

/// Keeps each container's log (docker logs) in DIR/node-N.log before the teardown.
fn save_logs(dir: &Path, say: &mut (dyn FnMut(String) + Send)) {
    for n in 1..=NODES {
        if let Ok(o) = Command::new("docker").args(["logs", &container(n)]).output() {
            let mut text = o.stdout;
            text.extend_from_slice(&o.stderr);
            let path = dir.join(format!("node-{n}.log"));
            if std::fs::write(&path, text).is_ok() {
                say(format!("log of {} kept in {}", container(n), path.display()));
            }
        }
    }
}

async fn run_inner(opts: &ChaosOptions, compose: &Compose, spec: ClusterSpec, say: &mut (dyn FnMut(String) + Send)) -> Result<Report> {
    let mut warnings = Vec::new();
    let faults = opts.faults.clone();
    let duration_ms = opts.duration.as_millis() as u64;
    let plan = faults::schedule(opts.seed, NODES, duration_ms, &faults);
    if faults.contains(&FaultKind::Partition) {
        let w = "note: --docker: partitions cut one node off its network (docker network disconnect); one-way losses and splits are skipped".to_string();
        say(w.clone());
        warnings.push(w);
    }
    say(format!(
        "chaos --docker: project {PROJECT}, {} containers ({}), {} shards, {} s, faults {:?}, seed {}, {} clients, {} faults planned",
        NODES,
        spec.endpoints(),
        opts.shards,
        opts.duration.as_secs(),
        faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        opts.seed,
        opts.clients,
        plan.len()
    ));
    compose.run(&["up", "-d"])?;
    let took = wait_ready(&spec, READY_LIMIT).await?;
    say(format!("all {NODES} containers answer Admin.Status with leaders after {} ms", took.as_millis()));
    let config = client_config(&spec);
    let client = Client::connect(config.clone()).map_err(|e| format!("client: {e}"))?;
    let workload_client = super::workload_client(&client, config, opts.auto_batch)?;
    let mut injector = DockerInjector {
        compose,
        spec: spec.clone(),
        paused: BTreeSet::new(),
        disconnected: BTreeSet::new(),
        stopped: BTreeSet::new(),
    };

    let history = Arc::new(History::new());
    let monitor = Monitor::start(spec.clone(), history.started, Duration::from_millis(250));
    let workload = Workload::start(
        workload_client,
        history.clone(),
        &WorkloadOptions { clients: opts.clients, seed: opts.seed, op_deadline: OP_DEADLINE },
    );
    let injected = faults::run_schedule(&mut injector, &plan, &history, duration_ms, &mut warnings, say).await;
    let internal_answers = workload.stop().await;
    let failovers = monitor.stop().await;
    let run_ms = history.now_ms();
    say(format!("workload stopped at {run_ms} ms; {} operations; healing and waiting for quiescence", history.snapshot().len()));
    wait_ready(&spec, READY_LIMIT).await?;
    check_and_report(opts, faults, warnings, &spec, &client, &history, injected, failovers, internal_answers, run_ms, say).await
}
