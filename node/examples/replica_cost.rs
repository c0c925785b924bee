//! Replica cost: what a node's shard replicas spend per gift, without the network, the actors
//! and the threads around them.
//!
//! Three nodes live in one process, each with its own sled database in a temporary directory
//! (real writes, real fsyncs) and a replica of every shard, as the cluster places them. Raft
//! messages go from replica to replica in memory; each node's pending Readies share one
//! `sync` per round (the group commit); the role of the router is played here: a gift whose
//! creator lives in another shard is answered Pending by its home shard, its effect is then
//! proposed to the target shard and its completion to the home shard, as `router.rs` does.
//! The clock is simulated (one 100 ms tick per `--gifts-per-tick` gifts), so the entries, the
//! state flushes and the records written are the same from one run to the next.
//!
//! Why it exists: on this machine the same build runs 7,000 to 10,400 batched gifts/s from one
//! hour to the next, so a change worth 5% cannot be seen with the cluster bench. Under
//! callgrind this program's instruction count per gift is repeatable, whatever else the
//! machine does (`cluster/bench/replica_cost.sh` runs it so and prints the figure).
//! What it leaves out (gRPC, the peer streams, the actors' mailboxes, thread hand-offs) is
//! measured by `coinctl bench` against a real cluster.
//!
//! `cargo run --release -p coinledger-node --example replica_cost -- --gifts 20000`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use coinledger_node::ledger::{self, Applied, Command, CompleteEffect, Layout, Outcome};
use coinledger_node::raftlog::{sync_round, RaftWal};
use coinledger_node::shard::replica::{Clock, Output, RaftTiming, Replica, ReplicaConfig};
use coinledger_node::storage::{SharedEngine, SledEngine};
use coinledger_client::workload::{Generator, IdSequence, Names, Op, Shape, Workload};
use raft::prelude::Message as RaftMessage;
use tokio::sync::oneshot;

/// The node's allocator (`src/main.rs`): with glibc's malloc the profile would be another one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const NODES: u64 = 3;
const TICK_MS: u64 = 100;
/// Simulated time starts here (2026-01-01T00:00:00Z), so timestamps look real.
const EPOCH_MS: u64 = 1_767_225_600_000;
/// The cheapest catalog gift that credits a diamond (what `coinctl bench` sends).
const GIFT_ID: &str = "finger-heart";
/// Rounds of raft messages and fsyncs one stage may take before the harness gives up.
const PUMP_ROUNDS_MAX: usize = 10_000;

#[derive(Parser, Debug)]
#[command(about = "Per-gift cost of the shard replicas (raft, log, ledger, state flushes) on 3 in-process nodes")]
struct Args {
    /// Gifts to send after seeding.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    gifts: u64,
    /// Shards (each with a replica on every node).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    /// Sender accounts, seeded by purchases first.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    accounts: u64,
    /// Creators (gift-storm draws them by zipf(--zipf) popularity).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    creators: u64,
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Gift workload of `coinctl bench` (mixed is not a gift workload, and is refused).
    #[arg(long, value_enum, default_value_t = Workload::GiftStorm)]
    workload: Workload,
    /// Client tasks whose gifts interleave, each with its own generator and request id
    /// sequence, as `coinctl bench --clients` (16 sequences: every shard takes new request
    /// ids at 16 places of its index).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4_096))]
    tasks: u64,
    /// Gifts proposed between two rounds of replication. 512 over 16 shards makes entries of
    /// 32 commands, about what the cluster makes under 16 clients of 256 (150,000 batched
    /// gifts took 4,600-4,800 entries there).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    round_gifts: u64,
    /// Gifts per 100 ms raft tick of simulated time (1,000: 10,000 gifts/s).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    gifts_per_tick: u64,
    /// sled page cache per node, MiB (the node's default).
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct SimNode {
    engine: Arc<SledEngine>,
    wal: Arc<RaftWal>,
    /// Indexed by shard.
    replicas: Vec<Replica>,
    /// Per shard: the highest Ready number written and waiting for the node's next sync.
    sync_wanted: BTreeMap<u32, u64>,
}

type Answer = oneshot::Receiver<coinledger_node::error::NodeResult<Applied>>;

struct Harness {
    layout: Layout,
    clock: Arc<AtomicU64>,
    nodes: Vec<SimNode>,
    /// (shard, message) on their way.
    network: Vec<(u32, RaftMessage)>,
    /// Completions proposed and not yet answered.
    completions: Vec<Answer>,
    syncs: u64,
    ticks: u64,
    dirs: Vec<tempfile::TempDir>,
}

impl Harness {
    fn open(args: &Args) -> Harness {
        let layout = Layout::new(args.shards);
        let clock = Arc::new(AtomicU64::new(EPOCH_MS));
        let addresses = Arc::new((1..=NODES).map(|n| (n, format!("node-{n}"))).collect::<BTreeMap<_, _>>());
        let mut dirs = Vec::new();
        let nodes = (1..=NODES)
            .map(|node_id| {
                let dir = tempfile::tempdir().expect("temporary directory");
                let engine = Arc::new(SledEngine::open(dir.path(), args.cache_mb << 20).expect("open sled"));
                let wal = Arc::new(RaftWal::open(&dir.path().join("raftlog")).expect("open raft log"));
                dirs.push(dir);
                let replicas = (0..args.shards)
                    .map(|shard| {
                        let cfg = ReplicaConfig {
                            shard,
                            node_id,
                            layout,
                            voters: (1..=NODES).collect(),
                            addresses: addresses.clone(),
                            timing: RaftTiming { tick_ms: TICK_MS, election_ticks: 10, heartbeat_ticks: 2, fixed_election_timeout: true },
                            compact_log_entries: 10_000,
                            compact_log_bytes: 32 << 20,
                            state_flush_ticks: coinledger_node::shard::replica::state_flush_ticks(args.shards as usize),
                            entry_cache_bytes: coinledger_node::raftlog::entry_cache_bytes(args.shards as usize),
                            clock: Clock::Manual(clock.clone()),
                            stats: Arc::default(),
                        };
                        Replica::open(cfg, engine.clone() as SharedEngine, wal.clone()).expect("open replica")
                    })
                    .collect();
                SimNode { engine, wal, replicas, sync_wanted: BTreeMap::new() }
            })
            .collect();
        Harness { layout, clock, nodes, network: Vec::new(), completions: Vec::new(), syncs: 0, ticks: 0, dirs }
    }

    fn collect(&mut self, node: usize, shard: u32, out: Output) {
        if let Some(number) = out.sync {
            let wanted = self.nodes[node].sync_wanted.entry(shard).or_insert(number);
            *wanted = (*wanted).max(number);
        }
        self.network.extend(out.messages.into_iter().map(|m| (shard, m)));
    }

    /// Drives every replica until no message, Ready or fsync is left.
    fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS_MAX {
            for node in 0..self.nodes.len() {
                for shard in 0..self.layout.shard_count {
                    let mut out = Output::default();
                    self.nodes[node].replicas[shard as usize].process(&mut out);
                    self.collect(node, shard, out);
                }
            }
            let messages = std::mem::take(&mut self.network);
            let mut progressed = !messages.is_empty();
            for (shard, msg) in messages {
                let to = (msg.to - 1) as usize;
                self.nodes[to].replicas[shard as usize].step(msg);
            }
            for node in 0..self.nodes.len() {
                if self.nodes[node].sync_wanted.is_empty() {
                    continue;
                }
                progressed = true;
                sync_round(&self.nodes[node].wal, self.nodes[node].engine.as_ref()).expect("fsync");
                self.syncs += 1;
                for (shard, number) in std::mem::take(&mut self.nodes[node].sync_wanted) {
                    let mut out = Output::default();
                    self.nodes[node].replicas[shard as usize].on_persisted(number, &mut out);
                    self.collect(node, shard, out);
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("the replicas did not settle in {PUMP_ROUNDS_MAX} rounds");
    }

    fn tick(&mut self) {
        self.ticks += 1;
        self.clock.fetch_add(TICK_MS, Ordering::Relaxed);
        for node in &mut self.nodes {
            node.replicas.iter_mut().for_each(Replica::tick);
        }
    }

    fn elect(&mut self) {
        for shard in 0..self.layout.shard_count {
            self.nodes[0].replicas[shard as usize].campaign_if_preferred();
        }
        self.pump();
        for replica in &self.nodes[0].replicas {
            assert_eq!(replica.status().role, "leader", "node 1 leads shard {}", replica.shard());
        }
    }

    fn propose(&mut self, shard: u32, cmd: Command) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.nodes[0].replicas[shard as usize].propose(cmd, tx);
        rx
    }

    /// Proposes each command on node 1 (every shard's leader), replicates, and returns the answers.
    fn run(&mut self, cmds: Vec<(u32, Command)>) -> Vec<Applied> {
        let answers: Vec<Answer> = cmds.into_iter().map(|(shard, cmd)| self.propose(shard, cmd)).collect();
        self.pump();
        self.check_completions();
        answers
            .into_iter()
            .map(|mut rx| match rx.try_recv() {
                Ok(Ok(applied)) => applied,
                other => panic!("a proposal was not answered after replication: {other:?}"),
            })
            .collect()
    }

    /// One round of client commands, as the router handles them: the home shard answers a
    /// cross-shard gift Pending, its effect goes to the target shard, and its completion is
    /// proposed at home, where (as in the node) it waits to share the entry of the next
    /// round's commands. Returns the refusals.
    fn submit(&mut self, cmds: Vec<Command>) -> u64 {
        let routed = cmds.into_iter().map(|cmd| (self.home_of(&cmd), cmd)).collect();
        let mut pending = Vec::new();
        let mut refused = 0;
        for applied in self.run(routed) {
            match applied {
                Applied::Done(Ok(_)) => {}
                Applied::Done(Err(e)) => {
                    refused += 1;
                    eprintln!("refused: {e:?}");
                }
                Applied::Pending(p) => pending.push(p),
            }
        }
        let deliveries = pending
            .iter()
            .map(|p| (self.layout.shard_of(&p.effect.target_account), Command::ApplyEffect(p.delivery())))
            .collect();
        let results = self.run(deliveries);
        for (p, applied) in pending.iter().zip(results) {
            let Applied::Done(Ok(Outcome::EffectApplied(result))) = applied else {
                panic!("effect {} answered {applied:?}", p.effect.id);
            };
            let complete = CompleteEffect { effect_id: p.effect.id.clone(), home_shard: p.effect.home_shard, result };
            let rx = self.propose(p.effect.home_shard, Command::CompleteEffect(complete));
            self.completions.push(rx);
        }
        refused
    }

    /// Forgets the completions answered so far; any other answer than success is a bug.
    fn check_completions(&mut self) {
        self.completions.retain_mut(|rx| match rx.try_recv() {
            Ok(Ok(Applied::Done(Ok(_)))) => false,
            Err(oneshot::error::TryRecvError::Empty) => true,
            other => panic!("a completion answered {other:?}"),
        });
    }

    /// Lets the held-back completions go out on their own (they wait at most a tick).
    fn finish(&mut self) {
        for _ in 0..10 {
            if self.completions.is_empty() {
                return;
            }
            self.tick();
            self.pump();
            self.check_completions();
        }
        panic!("{} completions were never answered", self.completions.len());
    }

    fn home_of(&self, cmd: &Command) -> u32 {
        match cmd.route().expect("a valid command routes") {
            ledger::Route::Key(key) => self.layout.shard_of(key),
            other => panic!("client command routed {other:?}"),
        }
    }

    /// Entries applied by node 1 over all its shards (the leader of each).
    fn applied_entries(&self) -> u64 {
        self.nodes[0].replicas.iter().map(|r| r.status().applied_index).sum()
    }
}

fn main() {
    let args = Args::parse();
    if args.workload == Workload::Mixed {
        eprintln!("replica_cost: --workload mixed is not a gift workload (use gift-storm, hot-one or uniform)");
        std::process::exit(2);
    }
    let mut h = Harness::open(&args);
    h.elect();

    // The bench's names: a run prefix, `u<i>` senders and `c<j>` creators.
    let names = Names { prefix: "b19a2f3c4d5e-".into() };
    let seeding: Vec<Command> = (0..args.accounts)
        .map(|i| {
            let id = format!("{}seed-{i}", names.prefix);
            ledger::sim::purchase_cmd(&id, &names.user(i as usize), "50", "USD", &id)
        })
        .collect();
    for chunk in seeding.chunks(args.round_gifts as usize) {
        assert_eq!(h.submit(chunk.to_vec()), 0, "seeding purchases are accepted");
    }
    h.finish();
    // The seeding's state reaches sled before the measured phase (as it has, long before, on
    // a cluster that has run a while): left in the state caches, the first flushes of the
    // measured phase wrote 10,000 new accounts, payment records and request records, whose
    // leaf splits were 9% of the count.
    for node in &mut h.nodes {
        node.replicas.iter_mut().for_each(Replica::flush_state_now);
    }
    let entries_before = h.applied_entries();
    let syncs_before = h.syncs;

    let started = Instant::now();
    let refused = measure_gifts(&mut h, &args, &names);
    let elapsed_s = started.elapsed().as_secs_f64();
    let entries = h.applied_entries() - entries_before;
    let syncs = h.syncs - syncs_before;
    println!(
        "replica_cost gifts={} refused={refused} shards={} workload={:?} tasks={} entries={entries} syncs={syncs} ticks={} wall_s={elapsed_s:.2} us_per_gift={:.1}",
        args.gifts,
        args.shards,
        args.workload,
        args.tasks,
        h.ticks,
        elapsed_s * 1e6 / args.gifts as f64,
    );
    assert_eq!(refused, 0, "every gift is funded: none may be refused");
    // Exit without dropping the databases (their shutdown is not part of the cost; under
    // callgrind the count runs from `measure_gifts` to here), removing their files first.
    for dir in &h.dirs {
        let _ = std::fs::remove_dir_all(dir.path());
    }
    std::process::exit(0);
}

/// The measured phase: `--gifts` gifts, their effects and completions. Not inlined, so that
/// callgrind can count from its start (`--zero-before=*measure_gifts*`).
#[inline(never)]
fn measure_gifts(h: &mut Harness, args: &Args, names: &Names) -> u64 {
    let shape = Shape {
        workload: args.workload,
        accounts: args.accounts as usize,
        creators: args.creators as usize,
        zipf_s: args.zipf,
    };
    let mut tasks: Vec<(Generator, IdSequence)> = (0..args.tasks)
        .map(|t| (Generator::new(shape, args.seed, t), IdSequence::for_task(&names.prefix, t)))
        .collect();
    let (mut sent, mut refused, mut since_tick) = (0u64, 0u64, 0u64);
    while sent < args.gifts {
        let n = args.round_gifts.min(args.gifts - sent);
        let gifts: Vec<Command> = (0..n)
            .map(|k| {
                let (generator, ids) = &mut tasks[((sent + k) % args.tasks) as usize];
                let Op::Gift { sender, creator } = generator.next_op() else {
                    unreachable!("gift workloads draw gifts only")
                };
                ledger::sim::gift_cmd(&ids.next_id(), &names.user(sender), &names.creator(creator), GIFT_ID, 1)
            })
            .collect();
        refused += h.submit(gifts);
        sent += n;
        since_tick += n;
        while since_tick >= args.gifts_per_tick {
            since_tick -= args.gifts_per_tick;
            h.tick();
            h.pump();
        }
    }
    h.finish();
    refused
}
