//! Command line of `coinledger-cluster`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use coinledger_cluster::launcher::Sig;

#[derive(Debug, Parser)]
#[command(
    name = "coinledger-cluster",
    version,
    about = "Runs a local coinledger cluster of real coinledger-node processes on loopback",
    long_about = "Runs a local coinledger cluster of real coinledger-node processes on loopback.\n\n\
                  `up` starts it in the foreground (Ctrl-C stops every node); from another shell, \
                  `status`, `kill NODE` and `restart NODE` act on the cluster in the same --data-dir. \
                  `failover` measures leader failover times on a fresh cluster."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start N nodes on 127.0.0.1:(base-port..) and stay in the foreground; Ctrl-C or SIGTERM
    /// stops every node (also ones restarted by `restart`).
    Up {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
        nodes: u64,
        #[arg(long, default_value_t = 7001)]
        base_port: u16,
        #[arg(long, default_value = "./cluster-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
        shards: u32,
        /// Replicas per shard (default: min(3, nodes)).
        #[arg(long)]
        replication: Option<u64>,
        /// The coinledger-node binary (default: next to this executable, else on PATH); the file
        /// must be named coinledger-node.
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Extra argument passed to every node, repeatable (e.g. --node-arg=--tick-ms=50).
        #[arg(long = "node-arg", allow_hyphen_values = true)]
        node_args: Vec<String>,
    },
    /// Each node up or down, and every shard's leader, term, commit and applied index per node.
    Status {
        #[arg(long, default_value = "./cluster-data")]
        data_dir: PathBuf,
    },
    /// Send a signal to a node's process (default SIGKILL).
    Kill {
        node: u64,
        #[arg(long, value_enum, default_value_t = SignalArg::Kill)]
        signal: SignalArg,
        #[arg(long, default_value = "./cluster-data")]
        data_dir: PathBuf,
    },
    /// (Re)start a node with its original arguments, detached; kills it first if it runs.
    Restart {
        node: u64,
        #[arg(long, default_value = "./cluster-data")]
        data_dir: PathBuf,
        /// Delete the node's data dir before starting it (it then catches up from its peers).
        #[arg(long)]
        wipe: bool,
        /// Do not wait until the node answers Admin.Status.
        #[arg(long)]
        no_wait: bool,
    },
    /// Start a fresh cluster under load, SIGKILL shard leaders one after another and report
    /// the failover times (kill -> first commit on that shard); exit 1 if anything
    /// acknowledged was lost.
    Failover {
        #[arg(long, default_value_t = 10)]
        kills: u32,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=64))]
        nodes: u64,
        #[arg(long, default_value_t = 7101)]
        base_port: u16,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
        shards: u32,
        /// Cluster directory; deleted first if it holds a previous cluster.
        #[arg(long, default_value = "./failover-data")]
        data_dir: PathBuf,
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Concurrent buyers of the steady load.
        #[arg(long, default_value_t = 4)]
        load_tasks: usize,
        #[arg(long = "node-arg", allow_hyphen_values = true)]
        node_args: Vec<String>,
    },
    /// Start a fresh cluster on 127.0.0.11.., run a workload from concurrent clients while
    /// injecting faults drawn from --seed (SIGKILL, SIGSTOP pauses, iptables partitions,
    /// restarts, wiped data dirs), heal, wait for quiescence and check the whole history.
    /// Prints a verdict and tables, writes history.jsonl, report.md and report.json into
    /// --out; exits 1 on any violation.
    Chaos {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=9))]
        nodes: u64,
        /// Length of the faulty phase, e.g. 60s, 2m, 90 (seconds).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Comma-separated subset of kill,pause,partition,restart,wipe (default: all; without
        /// usable iptables, partition is then skipped with a warning).
        #[arg(long)]
        faults: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// The clients' mutating calls go through the client library's automatic batching
        /// (frames of one SubmitStream per node), so the checks cover that path: exactly
        /// once when a stream breaks under a call, linearizability, conservation.
        #[arg(long)]
        auto_batch: bool,
        /// Where the cluster, history.jsonl, report.md and report.json go (a previous run's
        /// cluster there is deleted).
        #[arg(long, default_value = "./chaos-out")]
        out: PathBuf,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
        shards: u32,
        #[arg(long, default_value_t = 7301)]
        base_port: u16,
        #[arg(long)]
        node_bin: Option<PathBuf>,
        #[arg(long = "node-arg", allow_hyphen_values = true)]
        node_args: Vec<String>,
        /// Run against the 3 containers of cluster/docker-compose.yml (image
        /// coinledger-node:latest, compose project coinledgerchaos, endpoints
        /// 127.0.0.1:7001-7003) instead of node processes; faults become docker
        /// kill/start, pause/unpause, network disconnect/connect, restart, and rm + volume rm
        /// for a wipe. `docker-compose down -v` at the end, also on errors and Ctrl-C.
        #[arg(long)]
        docker: bool,
        /// With --docker: the compose file (default cluster/docker-compose.yml).
        #[arg(long, requires = "docker")]
        compose_file: Option<PathBuf>,
    },
}

/// "60s", "2m", "500ms", "90" (seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?} (e.g. 60s, 2m, 500ms)"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" | "min" => Ok(std::time::Duration::from_secs(n * 60)),
        "h" => Ok(std::time::Duration::from_secs(n * 3600)),
        _ => Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignalArg {
    Kill,
    Term,
    Stop,
    Cont,
}

impl From<SignalArg> for Sig {
    fn from(s: SignalArg) -> Sig {
        match s {
            SignalArg::Kill => Sig::Kill,
            SignalArg::Term => Sig::Term,
            SignalArg::Stop => Sig::Stop,
            SignalArg::Cont => Sig::Cont,
        }
    }
}
