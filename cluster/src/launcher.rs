//! Spawning and stopping `coinledger-node` processes of a local cluster.
//!
//! A cluster lives in one directory:
//!
//! ```text
//! DIR/cluster.json   the spec: node ids, addresses, data dirs, logs, full argument lists
//! DIR/node-N/        node N's data (--data-dir)
//! DIR/node-N.log     node N's stdout and stderr, appended across restarts
//! DIR/node-N.pid     pid of node N's current process
//! ```
//!
//! Any process may signal or restart a node (the pid files say where it is), so the `up`
//! process, `kill`/`restart` run from another shell, the failover driver and the tests all
//! share this one implementation. Before a pid from a pid file is signalled, its command line
//! is checked to be a coinledger-node with this node's data dir: a stale pid file never makes
//! us signal an unrelated process that reused the pid.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use coinledger_client::proto::{StatusReply, StatusRequest};
use coinledger_client::{Client, ClientConfig};
use serde::{Deserialize, Serialize};

/// Name of the node binary.
pub const NODE_BIN_NAME: &str = "coinledger-node";
/// File name of the spec inside the cluster directory.
pub const SPEC_FILE: &str = "cluster.json";

pub type Error = String;
pub type Result<T> = std::result::Result<T, Error>;

/// What `up` was asked for.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u64,
    pub base_port: u16,
    pub data_dir: PathBuf,
    pub shards: u32,
    pub replication: Option<u64>,
    pub node_bin: PathBuf,
    /// Further arguments given to every node (e.g. "--tick-ms", "50").
    pub extra_args: Vec<String>,
}

/// One node of the spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: u64,
    /// "HOST:PORT" (127.0.0.1 unless the spec was made with per-node hosts)
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// The complete argument list the node is started with (also on restart).
    pub args: Vec<String>,
}

/// DIR/cluster.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterSpec {
    pub dir: PathBuf,
    pub node_bin: PathBuf,
    pub shards: u32,
    pub base_port: u16,
    pub nodes: Vec<NodeSpec>,
}

impl ClusterSpec {
    /// The spec for `opts`; `opts.data_dir` is made absolute so pid checks and restarts from
    /// another working directory see the same paths.
    pub fn new(opts: &ClusterOptions) -> Result<ClusterSpec> {
        ClusterSpec::new_on_hosts(opts, |_| "127.0.0.1".to_string())
    }

    /// Like [`ClusterSpec::new`], with node i listening on `host_of(i)` (e.g. its own loopback
    /// address 127.0.0.(10+i), so firewall rules between node addresses cut node pairs: peer
    /// connections leave from the node's listen IP).
    pub fn new_on_hosts(opts: &ClusterOptions, host_of: impl Fn(u64) -> String) -> Result<ClusterSpec> {
        if opts.nodes == 0 || opts.nodes > 64 {
            return Err(format!("--nodes {} is outside 1..=64", opts.nodes));
        }
        let last = u32::from(opts.base_port) + opts.nodes as u32 - 1;
        if opts.base_port == 0 || last > u32::from(u16::MAX) {
            return Err(format!("ports {}..={last} are not valid ports", opts.base_port));
        }
        let dir = absolute(&opts.data_dir)?;
        let addr = |i: u64| format!("{}:{}", host_of(i), opts.base_port as u64 + i - 1);
        let peers = (1..=opts.nodes).map(|i| format!("{i}={}", addr(i))).collect::<Vec<_>>().join(",");
        let nodes = (1..=opts.nodes)
            .map(|i| {
                let data_dir = dir.join(format!("node-{i}"));
                let mut args = vec![
                    "--id".to_string(),
                    i.to_string(),
                    "--listen".into(),
                    addr(i),
                    "--peers".into(),
                    peers.clone(),
                    "--data-dir".into(),
                    data_dir.display().to_string(),
                    "--shards".into(),
                    opts.shards.to_string(),
                ];
                if let Some(r) = opts.replication {
                    args.push("--replication".into());
                    args.push(r.to_string());
                }
                args.extend(opts.extra_args.iter().cloned());
                NodeSpec {
                    id: i,
                    addr: addr(i),
                    data_dir,
                    log: dir.join(format!("node-{i}.log")),
                    pid_file: dir.join(format!("node-{i}.pid")),
                    args,
                }
            })
            .collect();
        Ok(ClusterSpec {
            dir,
            node_bin: absolute(&opts.node_bin)?,
            shards: opts.shards,
            base_port: opts.base_port,
            nodes,
        })
    }

    pub fn load(dir: &Path) -> Result<ClusterSpec> {
        let path = dir.join(SPEC_FILE);
        let text = fs::read_to_string(&path).map_err(|e| {
            format!("cannot read {}: {e} (start a cluster there with `coinledger-cluster up --data-dir {}`)", path.display(), dir.display())
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.dir.join(SPEC_FILE);
        let tmp = self.dir.join(format!("{SPEC_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("spec serializes");
        fs::write(&tmp, text + "\n").map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn node(&self, id: u64) -> Result<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            format!("no node {id} in {} (nodes are 1..={})", self.dir.join(SPEC_FILE).display(), self.nodes.len())
        })
    }

    /// "127.0.0.1:7001,127.0.0.1:7002,..." — coinctl's --endpoints.
    pub fn endpoints(&self) -> String {
        self.nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    Ok(cwd.join(p))
}

/// When this binary runs from its own workspace's target directory (`cargo run -p
/// coinledger-cluster -- up`), builds `coinledger-node` next to it first: cargo builds only
/// the package it runs, so the node binary could be missing (a fresh clone) or stale (code
/// changed since). A no-op rebuild takes a fraction of a second.
pub fn build_workspace_node_bin() -> Result<()> {
    let Some(workspace) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() else { return Ok(()) };
    let Ok(exe) = std::env::current_exe() else { return Ok(()) };
    if !exe.starts_with(workspace.join("target")) {
        return Ok(());
    }
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q", "-p", NODE_BIN_NAME, "--manifest-path"]).arg(workspace.join("Cargo.toml"));
    if release {
        cmd.arg("--release");
    }
    eprintln!("building {NODE_BIN_NAME} (cargo build{} -p {NODE_BIN_NAME}) ...", if release { " --release" } else { "" });
    let status = cmd.status().map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("building {NODE_BIN_NAME} failed ({status})"));
    }
    Ok(())
}

/// --node-bin, else `coinledger-node` next to the current executable (or one directory up,
/// for test binaries in target/release/deps), else on PATH.
pub fn locate_node_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    let name = format!("{NODE_BIN_NAME}{}", std::env::consts::EXE_SUFFIX);
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(format!("--node-bin {}: no such file", p.display()));
        }
        // Node processes are recognized by their program name (`is_node_process`): under
        // another name a started node would look dead and be left running unmanaged.
        if p.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
            return Err(format!(
                "--node-bin {}: the file must be named {name} (the launcher recognizes its nodes' processes by that name); \
                 copy or link it under that name, e.g. into a directory of its own",
                p.display()
            ));
        }
        return Ok(p.to_path_buf());
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let candidate = d.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    tried.push("$PATH".into());
    Err(format!(
        "cannot find the {NODE_BIN_NAME} binary (looked in {}); build it with \
         `cargo build --release -p coinledger-node` or pass --node-bin PATH",
        tried.join(", ")
    ))
}

/// Fails with a clear message if any node's port cannot be bound on 127.0.0.1.
pub fn check_ports_free(spec: &ClusterSpec) -> Result<()> {
    let mut taken = Vec::new();
    for n in &spec.nodes {
        if TcpListener::bind(&n.addr).is_err() {
            taken.push(n.addr.clone());
        }
    }
    if taken.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "port(s) already in use: {} (a cluster already running? try `coinledger-cluster status`, or choose --base-port)",
            taken.join(", ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Signals the launcher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Kill,
    Term,
    Stop,
    Cont,
}

impl Sig {
    pub fn raw(self) -> libc::c_int {
        match self {
            Sig::Kill => libc::SIGKILL,
            Sig::Term => libc::SIGTERM,
            Sig::Stop => libc::SIGSTOP,
            Sig::Cont => libc::SIGCONT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sig::Kill => "SIGKILL",
            Sig::Term => "SIGTERM",
            Sig::Stop => "SIGSTOP",
            Sig::Cont => "SIGCONT",
        }
    }
}

/// The pid in the node's pid file, if any.
pub fn read_pid(node: &NodeSpec) -> Option<u32> {
    fs::read_to_string(&node.pid_file).ok()?.trim().parse().ok()
}

/// Whether a `/proc/.../stat` line is of a zombie or dead task (or unreadable as one).
fn is_dead_stat(stat: &str) -> bool {
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z') | Some('X') | None)
}

/// True if `pid` is a live (not zombie) coinledger-node process started with this node's
/// data dir.
pub fn is_node_process(pid: u32, node: &NodeSpec) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    if is_dead_stat(&stat) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let data_dir = node.data_dir.display().to_string();
    let is_node = args.first().is_some_and(|a| String::from_utf8_lossy(a).ends_with(NODE_BIN_NAME));
    is_node && args.windows(2).any(|w| w[0] == b"--data-dir" && w[1] == data_dir.as_bytes())
}

/// Whether process `pid`, signalled to stop, has finished exiting: every one of its threads
/// is gone or a zombie. Until the last thread has exited, the process keeps its files open,
/// its data directory's lock among them, and a node started on that directory fails to open
/// it ("could not acquire lock on .../db"). The main thread alone is no guide: it turns
/// zombie (and its cmdline reads empty) while threads blocked in I/O are still exiting; seen
/// on every restart of a node of 660 MiB resident over 15 GB of data.
pub fn exit_finished(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("stat")).map_or(true, |stat| is_dead_stat(&stat))
    })
}

/// The pid of the node's running process, if it runs.
pub fn live_pid(node: &NodeSpec) -> Option<u32> {
    read_pid(node).filter(|pid| is_node_process(*pid, node))
}

/// Sends `sig` to the node's process. Err if it does not run.
pub fn signal_node(node: &NodeSpec, sig: Sig) -> Result<u32> {
    let pid = live_pid(node).ok_or_else(|| format!("node {} is not running", node.id))?;
    // SAFETY: kill(2) on a pid just checked to be this node's process.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig.raw()) };
    if rc != 0 {
        return Err(format!("kill({pid}, {}): {}", sig.name(), std::io::Error::last_os_error()));
    }
    Ok(pid)
}

/// How a node process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Our child, killed by the kernel if the spawning thread dies (tests, `up`, failover).
    Child,
    /// In its own session, outliving us (`restart` from a shell).
    Detached,
}

/// Starts node `node` with its spec's arguments; stdout and stderr go to its log (appended);
/// writes its pid file. The node is always in a session of its own, so a Ctrl-C in the
/// terminal reaches only the launcher, which then stops the nodes in order.
pub fn spawn_node(spec: &ClusterSpec, node: &NodeSpec, attach: Attach) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    fs::create_dir_all(&spec.dir).map_err(|e| format!("cannot create {}: {e}", spec.dir.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(|e| format!("cannot open {}: {e}", node.log.display()))?;
    let mut banner = log.try_clone().map_err(|e| e.to_string())?;
    let _ = writeln!(banner, "==== coinledger-cluster: starting node {} ({}) ====", node.id, unix_ms());
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&spec.node_bin);
    cmd.args(&node.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .env("RUST_LOG", std::env::var("COINLEDGER_NODE_LOG").unwrap_or_else(|_| "info,raft=warn".into()));
    let die_with_parent = attach == Attach::Child;
    // SAFETY: setsid and prctl are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            #[cfg(target_os = "linux")]
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", spec.node_bin.display()))?;
    let tmp = node.pid_file.with_extension("pid.tmp");
    File::create(&tmp)
        .and_then(|mut f| writeln!(f, "{}", child.id()))
        .and_then(|_| fs::rename(&tmp, &node.pid_file))
        .map_err(|e| format!("cannot write {}: {e}", node.pid_file.display()))?;
    Ok(child)
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// The last `lines` lines of the node's log.
pub fn log_tail(node: &NodeSpec, lines: usize) -> String {
    let text = fs::read_to_string(&node.log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A client that talks to one node only, with short limits: for Admin.Status probes.
pub fn probe_client(addr: &str, limit_ms: u64) -> Client {
    let mut config = ClientConfig::from_endpoints(addr).expect("valid endpoint");
    config.attempt_timeout_ms = limit_ms;
    config.deadline_ms = limit_ms;
    config.backoff_ms_initial = limit_ms.min(20);
    config.backoff_ms_max = limit_ms.min(50);
    Client::connect(config).expect("client")
}

/// Admin.Status of one node, None if it does not answer within `limit_ms`.
pub async fn node_status(addr: &str, limit_ms: u64) -> Option<StatusReply> {
    probe_client(addr, limit_ms).status(StatusRequest {}).await.ok()
}

// ---------------------------------------------------------------------------------------------
// A cluster driven by this process

/// A running cluster. Nodes started through it are its children (reaped here, so a killed
/// node never lingers as a zombie); nodes restarted by another process are found through
/// their pid files. Dropping a `Cluster` SIGKILLs every node unless [`Cluster::detach`] was
/// called (tests rely on this for cleanup, also when they panic).
pub struct Cluster {
    pub spec: ClusterSpec,
    children: Mutex<BTreeMap<u64, Child>>,
    owned: bool,
}

impl Cluster {
    /// Checks the ports, writes cluster.json and starts every node (not waiting for them).
    pub fn launch(spec: ClusterSpec) -> Result<Cluster> {
        if !spec.node_bin.is_file() {
            return Err(format!("node binary {} does not exist", spec.node_bin.display()));
        }
        for n in &spec.nodes {
            if let Some(pid) = live_pid(n) {
                return Err(format!("node {} of {} is already running (pid {pid})", n.id, spec.dir.display()));
            }
        }
        check_ports_free(&spec)?;
        spec.save()?;
        let mut cluster = Cluster { spec, children: Mutex::new(BTreeMap::new()), owned: true };
        for id in cluster.spec.ids() {
            cluster.start(id)?;
        }
        Ok(cluster)
    }

    /// A cluster started elsewhere (by `up` in another shell). Dropping it does nothing.
    pub fn attach(dir: &Path) -> Result<Cluster> {
        let spec = ClusterSpec::load(dir)?;
        Ok(Cluster { spec, children: Mutex::new(BTreeMap::new()), owned: false })
    }

    /// Leave the nodes running when this handle is dropped.
    pub fn detach(mut self) {
        self.owned = false;
        self.children.get_mut().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn endpoints(&self) -> String {
        self.spec.endpoints()
    }

    pub fn addr(&self, id: u64) -> String {
        self.spec.node(id).map(|n| n.addr.clone()).unwrap_or_default()
    }

    /// A client over every node's endpoint with the library's default timings.
    pub fn client(&self) -> Client {
        Client::connect(ClientConfig::from_endpoints(&self.endpoints()).expect("endpoints")).expect("client")
    }

    /// A client with the given per-attempt limit, overall deadline and backoff ceiling.
    pub fn client_with(&self, attempt_ms: u64, deadline_ms: u64, backoff_max_ms: u64) -> Client {
        Client::connect(self.client_config(attempt_ms, deadline_ms, backoff_max_ms)).expect("client")
    }

    /// The configuration of [`Cluster::client_with`].
    pub fn client_config(&self, attempt_ms: u64, deadline_ms: u64, backoff_max_ms: u64) -> ClientConfig {
        let mut config = ClientConfig::from_endpoints(&self.endpoints()).expect("endpoints");
        config.attempt_timeout_ms = attempt_ms;
        config.deadline_ms = deadline_ms;
        config.backoff_ms_initial = backoff_max_ms.min(10);
        config.backoff_ms_max = backoff_max_ms;
        config
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.reap();
        live_pid(self.spec.node(id).ok()?)
    }

    /// True while the node's process exists. A child of ours counts until it is reaped: its
    /// main thread can show as a zombie while other threads (one in fsync, say) still hold the
    /// data dir's lock, and a node started then fails with "could not acquire lock".
    pub fn is_running(&self, id: u64) -> bool {
        let running = self.pid(id).is_some();
        running || self.children.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id)
    }

    /// Reaps children that exited; returns (node, exit description) for each.
    pub fn reap(&self) -> Vec<(u64, String)> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let mut exited = Vec::new();
        children.retain(|id, child| match child.try_wait() {
            Ok(Some(status)) => {
                exited.push((*id, status.to_string()));
                false
            }
            _ => true,
        });
        exited
    }

    /// Starts node `id` (it must not be running).
    pub fn start(&mut self, id: u64) -> Result<()> {
        let node = self.spec.node(id)?.clone();
        if let Some(pid) = live_pid(&node) {
            return Err(format!("node {id} is already running (pid {pid})"));
        }
        let child = spawn_node(&self.spec, &node, Attach::Child)?;
        self.children.get_mut().unwrap_or_else(|p| p.into_inner()).insert(id, child);
        Ok(())
    }

    /// Sends `sig` to node `id`.
    pub fn signal(&self, id: u64, sig: Sig) -> Result<u32> {
        signal_node(self.spec.node(id)?, sig)
    }

    /// SIGKILL and wait until the process is gone (reaped if it is our child).
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let node = self.spec.node(id)?.clone();
        if live_pid(&node).is_some() {
            signal_node(&node, Sig::Kill)?;
        }
        self.wait_gone(id, Duration::from_secs(5))
    }

    /// Waits until node `id`'s process is gone, its files (and so its lock) closed.
    pub fn wait_gone(&mut self, id: u64, limit: Duration) -> Result<()> {
        let node = self.spec.node(id)?.clone();
        let pid = read_pid(&node);
        let started = Instant::now();
        loop {
            self.reap();
            if live_pid(&node).is_none() && pid.is_none_or(exit_finished) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("node {id} still running {limit:?} after it was signalled"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills node `id` if it runs, optionally wipes its data dir, starts it again.
    pub fn restart(&mut self, id: u64, wipe: bool) -> Result<()> {
        self.kill9(id)?;
        if wipe {
            wipe_data(self.spec.node(id)?)?;
        }
        self.start(id)
    }

    /// Stops every running node: SIGTERM, then SIGKILL for those still running after
    /// `grace`. Returns the ids of the nodes that needed SIGKILL.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<u64> {
        let running: Vec<u64> = self.spec.ids().into_iter().filter(|id| self.is_running(*id)).collect();
        for id in &running {
            let _ = self.signal(*id, Sig::Cont); // a SIGSTOPped node cannot act on SIGTERM
            let _ = self.signal(*id, Sig::Term);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && running.iter().any(|id| self.is_running(*id)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut killed = Vec::new();
        for id in running {
            if self.is_running(id) {
                killed.push(id);
                let _ = self.kill9(id);
            }
        }
        let children = std::mem::take(self.children.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (_, mut child) in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        killed
    }

    /// Waits until every running node answers Admin.Status and, if `led`, until every shard
    /// has a leader in the view of each of them.
    pub async fn wait_ready(&self, limit: Duration, led: bool) -> Result<()> {
        let ids = self.spec.ids();
        self.wait_nodes_ready(&ids, limit, led).await
    }

    /// Like [`Cluster::wait_ready`] for some nodes. A node that exits meanwhile is an error.
    pub async fn wait_nodes_ready(&self, ids: &[u64], limit: Duration, led: bool) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        loop {
            let mut all = true;
            for id in ids {
                let node = self.spec.node(*id)?;
                if live_pid(node).is_none() {
                    self.reap();
                    return Err(format!("node {id} exited during startup; its log ends with:\n{}", log_tail(node, 30)));
                }
                match node_status(&node.addr, 500).await {
                    None => {
                        all = false;
                        last = format!("node {id} does not answer Admin.Status");
                    }
                    Some(s) if led => {
                        let unled = s.shards.iter().filter(|sh| sh.leader_id == 0).count();
                        if unled > 0 || (s.shards.is_empty() && self.spec.shards > 0) {
                            all = false;
                            last = format!("node {id}: {unled} of {} shards without a leader", s.shards.len());
                        }
                    }
                    Some(_) => {}
                }
            }
            if all {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("cluster not ready after {limit:?}: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            self.stop_all(Duration::ZERO);
        }
    }
}

/// Deletes a node's data dir (the node must be stopped).
pub fn wipe_data(node: &NodeSpec) -> Result<()> {
    if let Some(pid) = live_pid(node) {
        return Err(format!("node {} is running (pid {pid}): not wiping its data", node.id));
    }
    match fs::remove_dir_all(&node.data_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot delete {}: {e}", node.data_dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_has_exited_only_once_all_its_threads_have() {
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert!(!exit_finished(sleeper.id()), "a live process");
        sleeper.kill().unwrap();
        let started = Instant::now();
        while !exit_finished(sleeper.id()) {
            assert!(started.elapsed() < Duration::from_secs(5), "a killed process ends (as a zombie until reaped)");
            std::thread::sleep(Duration::from_millis(5));
        }
        sleeper.wait().unwrap();
        assert!(exit_finished(sleeper.id()), "reaped");

        // The main thread exits (a zombie) while another thread still runs: not finished.
        let script = "import ctypes, threading, time\n\
                      threading.Thread(target=time.sleep, args=(4.0,)).start()\n\
                      time.sleep(0.2)\n\
                      ctypes.CDLL(None).pthread_exit(None)\n";
        let Ok(mut py) = std::process::Command::new("python3").args(["-c", script]).spawn() else {
            eprintln!("no python3 here: the zombie-main-thread case is not checked");
            return;
        };
        // Polled, not slept for: python's start-up alone can take most of a second on a
        // loaded machine (a fixed 0.7 s wait saw the main thread still sleeping).
        let started = Instant::now();
        let leader = loop {
            let leader = fs::read_to_string(format!("/proc/{}/stat", py.id())).unwrap();
            if leader.rsplit_once(')').unwrap().1.trim_start().starts_with('Z') {
                break leader;
            }
            assert!(started.elapsed() < Duration::from_secs(3), "the main thread never became a zombie: {leader}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(is_dead_stat(&leader));
        assert!(!exit_finished(py.id()), "a thread still runs, holding the process's files");
        py.wait().unwrap();
        assert!(exit_finished(py.id()));
    }

    #[test]
    fn an_explicit_node_bin_must_exist_and_carry_the_node_program_name() {
        let dir = std::env::temp_dir().join(format!("coinledger-node-bin-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let renamed = dir.join("my-node-build");
        let named = dir.join(format!("{NODE_BIN_NAME}{}", std::env::consts::EXE_SUFFIX));
        fs::write(&renamed, b"").unwrap();
        fs::write(&named, b"").unwrap();
        assert!(locate_node_bin(Some(&renamed)).unwrap_err().contains("must be named coinledger-node"));
        assert!(locate_node_bin(Some(&dir.join("absent"))).unwrap_err().contains("no such file"));
        assert_eq!(locate_node_bin(Some(&named)).unwrap(), named);
        fs::remove_dir_all(&dir).unwrap();
    }
}
