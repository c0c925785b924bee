//! Command-line configuration of a node. With no arguments: a one-node cluster on
//! 127.0.0.1:7001 with its data in ./data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "coinledger-node",
    version,
    about = "coinledger node: a sharded, Raft-replicated ledger for coins, gifts, diamonds and cash-outs",
    long_about = "Serves the coinledger Ledger and Admin gRPC APIs. Every command is committed through \
                  the Raft group of its shard and fsynced before it is answered.\n\n\
                  With no arguments it starts a one-node cluster on 127.0.0.1:7001 with its data in ./data."
)]
pub struct NodeConfig {
    /// This node's id in the cluster (1..), as it appears in --peers.
    #[arg(long, default_value_t = 1, env = "COINLEDGER_NODE_ID")]
    pub id: u64,

    /// Address the gRPC server listens on (host:port).
    #[arg(long, default_value = "127.0.0.1:7001", env = "COINLEDGER_LISTEN")]
    pub listen: SocketAddr,

    /// Every node of the cluster as id=host:port, comma-separated, this one included
    /// (e.g. 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003). Empty: a one-node cluster
    /// of this node at --listen.
    #[arg(long, default_value = "", env = "COINLEDGER_PEERS")]
    pub peers: String,

    /// Directory of this node's database (created if missing).
    #[arg(long, default_value = "./data", env = "COINLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Replicas of each shard (Raft voters). Default: 3, or every node if fewer than 3.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=7), env = "COINLEDGER_REPLICATION")]
    pub replication: Option<u64>,

    /// Number of shards (Raft groups) wallets are hashed into. Fixed when the data directory
    /// is first created; a node refuses to start with another value.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096), env = "COINLEDGER_SHARDS")]
    pub shards: u32,

    /// Raft tick interval in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub tick_ms: u64,

    /// Group commit delay in microseconds: after an fsync round that covered at least
    /// --group-commit-min-writers shards' writes (concurrent load), the next round waits this
    /// long after its first request, so that the writes of shards still working share its
    /// fsync. A lone writer (one client, an idle cluster) is synced at once. 0 syncs every
    /// round at once. 16 unbatched clients, 16 shards, 2 cores: 800 us took 20,000 gifts from
    /// 12.8 to 10.6 s of node CPU and 2,302 to 2,569 gifts/s with --one-thread (medians of 3
    /// pairs), 18.45 to 16.75 s and 1,822 to 1,968 gifts/s by default; one client's p50 stayed
    /// at 1.4-1.5 ms and batched gifts' CPU did not move.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub group_commit_delay_us: u64,

    /// Writes (shard Readies) an fsync round must have covered for the next round to wait
    /// --group-commit-delay-us (like PostgreSQL's commit_siblings).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub group_commit_min_writers: u64,

    /// Election timeout in ticks (a follower campaigns after 1 to 2 times this without a leader).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub election_ticks: u64,

    /// Leader heartbeat interval in ticks (must be below --election-ticks).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub heartbeat_ticks: u64,

    /// Longest time a request may take before it is answered TIMEOUT (outcome unknown).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub request_timeout_ms: u64,

    /// Compact a shard's raft log once it holds more than this many applied entries; a
    /// replica that needs compacted entries (far behind, or wiped) is sent a snapshot.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=100_000_000))]
    pub compact_log_entries: u64,

    /// Also compact a shard's raft log once its applied entries hold more than this many MiB
    /// (batched entries are large: 10,000 of them can be gigabytes).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub compact_log_mb: u64,

    /// Size in MiB of the raft log's segment files (DATA_DIR/raftlog, shared by every shard of
    /// the node). A segment is deleted once every shard's log is compacted past it, and a
    /// shard whose oldest entry is 8 segments behind the newest is compacted then (a quiet
    /// shard would otherwise keep the whole log), so the raft log stays within about 9
    /// segments (576 MiB by default) plus what lagging followers hold back.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_024))]
    pub raft_log_segment_mb: u64,

    /// sled's page cache in MiB: the bulk of the node's resident memory. Pages beyond it are
    /// read back from disk when needed.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65_536))]
    pub cache_mb: u64,

    /// Actor threads hosting the shard replicas.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub shard_threads: u64,

    /// Serve gRPC and run every shard replica on one thread (fsync keeps its own thread).
    /// Every command crosses between the gRPC and the actor threads several times (request,
    /// raft messages in and out, forwarded effects, reply), and each crossing wakes a parked
    /// thread; on a small host shared with other nodes (the bench's 3 nodes on 2 cores) those
    /// wake-ups cost more than the second thread brings: 1,729 against 1,333 unbatched gifts/s
    /// at 16.6 against 24.0 s of node CPU. Off by default: raft work (a state flush, a
    /// snapshot) then holds up the node's gRPC serving while it runs.
    #[arg(long, env = "COINLEDGER_ONE_THREAD", conflicts_with_all = ["shard_threads", "grpc_threads"])]
    pub one_thread: bool,

    /// Threads of the tokio runtime serving gRPC (clients, forwarded commands, raft streams).
    /// The default suits a small host; 1 or 2 measured alike on 2 cores (1,220 and 1,119
    /// unbatched gifts/s, within run-to-run noise), so raise it only with more cores.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub grpc_threads: u64,

    /// Client commands the node works on at once (single calls and every command of a
    /// SubmitBatch); beyond it requests are answered UNAVAILABLE at once and clients retry
    /// with backoff. At least one full batch (8,192 commands).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(8_192..=16_777_216))]
    pub max_commands_in_flight: u32,

    /// Interval of the safety-net sweep that re-drives pending cross-shard effects.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub effect_sweep_ms: u64,
}

impl NodeConfig {
    /// The replication factor in force: --replication, or min(3, number of nodes).
    pub fn replication(&self) -> Result<usize, String> {
        let nodes = self.members()?.len();
        let r = self.replication.map_or(nodes.min(3), |r| r as usize);
        if r > nodes {
            return Err(format!("--replication {r} is more than the {nodes} nodes of --peers"));
        }
        Ok(r)
    }

    /// The cluster's members: node id → gRPC address.
    pub fn members(&self) -> Result<BTreeMap<u64, String>, String> {
        let mut members = BTreeMap::new();
        if self.peers.trim().is_empty() {
            members.insert(self.id, self.listen.to_string());
            return Ok(members);
        }
        for part in self.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("--peers entry {part:?} is not id=host:port"))?;
            let id: u64 = id.trim().parse().map_err(|_| format!("--peers entry {part:?}: {id:?} is not a node id"))?;
            if id == 0 {
                return Err(format!("--peers entry {part:?}: node ids start at 1"));
            }
            let addr = addr.trim();
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(format!("--peers entry {part:?}: {addr:?} is not host:port"));
            }
            if members.insert(id, addr.to_string()).is_some() {
                return Err(format!("--peers names node {id} twice"));
            }
        }
        if !members.contains_key(&self.id) {
            return Err(format!("--peers does not include this node (--id {})", self.id));
        }
        Ok(members)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ticks >= self.election_ticks {
            return Err(format!(
                "--heartbeat-ticks ({}) must be below --election-ticks ({})",
                self.heartbeat_ticks, self.election_ticks
            ));
        }
        self.replication().map(|_| ())
    }
}

/// A config from command-line arguments (without the program name), for tests.
#[cfg(test)]
pub(crate) fn parse(args: &[&str]) -> NodeConfig {
    NodeConfig::try_parse_from(std::iter::once("coinledger-node").chain(args.iter().copied())).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_one_node_cluster_on_7001() {
        let c = parse(&[]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(c.shards, 16);
        assert_eq!(c.members().unwrap().into_iter().collect::<Vec<_>>(), vec![(1, "127.0.0.1:7001".to_string())]);
        c.validate().unwrap();
    }

    #[test]
    fn peers_are_validated() {
        let ok = parse(&["--id", "2", "--peers", "1=127.0.0.1:7001, 2=127.0.0.1:7002"]);
        assert_eq!(ok.members().unwrap().len(), 2);
        for bad in ["1=127.0.0.1:7001", "x=1:2", "2=nohost", "2=a:1,2=b:2", "0=a:1"] {
            assert!(parse(&["--id", "2", "--peers", bad]).members().is_err(), "{bad}");
        }
        assert!(NodeConfig::try_parse_from(["n", "--shards", "0"]).is_err());
        assert_eq!(parse(&["--grpc-threads", "4"]).grpc_threads, 4);
        for bad in ["0", "65", "-1", "two"] {
            assert!(NodeConfig::try_parse_from(["n", "--grpc-threads", bad]).is_err(), "--grpc-threads {bad}");
        }
        assert!(!parse(&[]).one_thread);
        assert!(parse(&["--one-thread"]).one_thread);
        for clash in [["--one-thread", "--grpc-threads", "1"], ["--one-thread", "--shard-threads", "2"]] {
            assert!(NodeConfig::try_parse_from(std::iter::once("n").chain(clash)).is_err(), "{clash:?}");
        }
        assert!(parse(&["--heartbeat-ticks", "10"]).validate().is_err());
        assert_eq!(parse(&[]).max_commands_in_flight, 65_536);
        assert_eq!(parse(&["--max-commands-in-flight", "8192"]).max_commands_in_flight, 8_192);
        for bad in ["8191", "0", "16777217", "-5", "many"] {
            assert!(NodeConfig::try_parse_from(["n", "--max-commands-in-flight", bad]).is_err(), "--max-commands-in-flight {bad}");
        }
    }
}
