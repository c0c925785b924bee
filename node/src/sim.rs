//! Deterministic simulation: the real shard replicas (raft-rs, raft storage, snapshots, the
//! ledger) of several nodes in one process, over a simulated network and clock, driven by a
//! seeded random generator. Faults: dropped and delayed messages, partitions, fsyncs that come
//! late, crashes that keep only what was synced plus a random prefix of later writes, restarts.
//!
//! After the faulty phase the world heals and quiesces, then the checkers run:
//! - every replica holds the same ledger state at the same applied index;
//! - every acknowledged command, proposed again with the same request id, answers exactly as
//!   before (nothing lost, nothing applied twice); commands whose outcome was unknown are
//!   resolved the same way;
//! - each account's balance equals what the final outcomes imply;
//! - the shard's audit (conservation, holds within balances) has no violation.
//!
//! A failing seed replays identically: `SIM_SEED=<n> cargo test --release -p coinledger-node sim`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raft::prelude::Message as RaftMessage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tokio::sync::oneshot;

use crate::error::NodeResult;
use crate::keys;
use crate::ledger::{self, Applied, Command, Layout, Outcome};
use crate::raftlog::{snapshot, sync_round, RaftWal};
use crate::shard::replica::{Clock, Output, RaftTiming, Replica, ReplicaConfig};
use crate::shard::ReadQuery;
use crate::storage::{MemEngine, SharedEngine, StorageError};

/// The one shard the simulation replicates (every account lives in it, so every command is
/// applied inline and raft is what is under test).
const SHARD: u32 = 0;
const TICK_MS: u64 = 10;
/// Simulated time is counted from here (2026-01-01T00:00:00Z), so timestamps look real.
const EPOCH_MS: u64 = 1_767_225_600_000;
/// Bound on the quiescence and resolution phases, in simulated milliseconds.
const SETTLE_MS_MAX: u64 = 30_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: u64,
    /// Simulated milliseconds of faulty, loaded operation.
    pub duration_ms: u64,
    pub accounts: usize,
    /// Probability, per simulated millisecond, that a client issues a command.
    pub command_per_mille: u32,
    /// Probability that a raft message is dropped.
    pub drop_per_mille: u32,
    /// Probability, per simulated second, of a crash, and of a partition.
    pub crash_per_mille: u32,
    pub partition_per_mille: u32,
    pub compact_log_entries: u64,
    pub compact_log_bytes: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            duration_ms: 4_000,
            accounts: 6,
            command_per_mille: 150,
            drop_per_mille: 20,
            crash_per_mille: 500,
            partition_per_mille: 400,
            compact_log_entries: 40,
            // Below 40 entries' worth: the byte bound triggers compaction too.
            compact_log_bytes: 3_000,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimReport {
    pub commands: u64,
    pub acknowledged: u64,
    pub unknown: u64,
    pub refused: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub messages_dropped: u64,
    pub snapshots_installed: u64,
    pub final_applied_index: u64,
}

/// A simulated node's storage: an in-memory engine and a raft log in a temporary directory.
/// A crash keeps what was synced (and possibly some engine batches written since): what a
/// node keeps when its process or machine dies.
pub struct SimDisk {
    pub engine: Arc<MemEngine>,
    pub wal: Arc<RaftWal>,
    dir: tempfile::TempDir,
}

impl SimDisk {
    pub fn new() -> Self {
        Self::with_segment_bytes(crate::raftlog::wal::SEGMENT_BYTES)
    }

    /// A disk whose raft log closes its segments at `bytes`.
    pub fn with_segment_bytes(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for a simulated raft log");
        let wal = RaftWal::open_for_simulation(dir.path()).expect("open simulated raft log").with_segment_bytes(bytes);
        Self { engine: Arc::new(MemEngine::new()), wal: Arc::new(wal), dir }
    }

    /// One group commit: the raft log and the engine made durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        sync_round(&self.wal, self.engine.as_ref())
    }

    /// The storage a crash leaves: everything synced, plus the first `engine_batches_kept`
    /// engine batches written since; none of the raft log's unsynced appends.
    pub fn crash(&self, engine_batches_kept: usize) -> SimDisk {
        let dir = tempfile::tempdir().expect("temporary directory for a simulated raft log");
        let wal = Arc::new(self.wal.crash_copy(dir.path()).expect("copy the durable raft log"));
        Self { engine: Arc::new(self.engine.crash_copy(engine_batches_kept)), wal, dir }
    }

    pub fn open_replica(&self, cfg: ReplicaConfig) -> Result<Replica, StorageError> {
        Replica::open(cfg, self.engine.clone() as SharedEngine, self.wal.clone())
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for SimDisk {
    type Target = MemEngine;
    fn deref(&self) -> &MemEngine {
        &self.engine
    }
}

struct Node {
    id: u64,
    engine: SimDisk,
    replica: Option<Replica>,
    /// Highest Ready number written and waiting for its fsync.
    sync_wanted: Option<u64>,
    /// When the fsync in progress completes (a disk's latency has a long tail).
    sync_done_at_ms: Option<u64>,
    down_until_ms: Option<u64>,
}

struct Packet {
    deliver_at_ms: u64,
    from: u64,
    msg: RaftMessage,
}

struct Issued {
    cmd: Command,
    rx: oneshot::Receiver<NodeResult<Applied>>,
}

struct World {
    cfg: SimConfig,
    rng: StdRng,
    clock: Arc<AtomicU64>,
    now_ms: u64,
    nodes: Vec<Node>,
    network: Vec<Packet>,
    isolated: BTreeMap<u64, u64>,
    issued: Vec<Issued>,
    /// Request id → the command and its first known answer (None: outcome unknown).
    outcomes: BTreeMap<String, (Command, Option<Applied>)>,
    next_payment: u64,
    report: SimReport,
}

fn replica_config(cfg: &SimConfig, id: u64, clock: &Arc<AtomicU64>) -> ReplicaConfig {
    ReplicaConfig {
        shard: SHARD,
        node_id: id,
        layout: Layout::new(1),
        voters: (1..=cfg.nodes).collect(),
        addresses: Arc::new((1..=cfg.nodes).map(|n| (n, format!("sim-node-{n}"))).collect()),
        timing: RaftTiming {
            tick_ms: TICK_MS,
            // Distinct per node, so elections settle without raft-rs's own randomness.
            election_ticks: 10 + 3 * id as usize,
            heartbeat_ticks: 2,
            fixed_election_timeout: true,
        },
        compact_log_entries: cfg.compact_log_entries,
        compact_log_bytes: cfg.compact_log_bytes,
        state_flush_ticks: crate::shard::replica::state_flush_ticks(1),
        entry_cache_bytes: crate::raftlog::entry_cache_bytes(1),
        clock: Clock::Manual(clock.clone()),
        stats: Arc::default(),
    }
}

impl World {
    fn new(seed: u64, cfg: SimConfig) -> Self {
        let clock = Arc::new(AtomicU64::new(EPOCH_MS));
        let nodes = (1..=cfg.nodes)
            .map(|id| {
                let engine = SimDisk::new();
                let replica = engine.open_replica(replica_config(&cfg, id, &clock)).expect("open replica");
                Node { id, engine, replica: Some(replica), sync_wanted: None, sync_done_at_ms: None, down_until_ms: None }
            })
            .collect();
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            clock,
            now_ms: 0,
            nodes,
            network: Vec::new(),
            isolated: BTreeMap::new(),
            issued: Vec::new(),
            outcomes: BTreeMap::new(),
            next_payment: 0,
            report: SimReport::default(),
        }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        !self.isolated.contains_key(&a) && !self.isolated.contains_key(&b)
    }

    /// Runs `f` on a live replica, then carries its outputs into the network and fsync queue.
    fn with_replica(&mut self, id: u64, f: impl FnOnce(&mut Replica, &mut Output)) {
        let mut out = Output::default();
        let node = self.node(id);
        let Some(replica) = node.replica.as_mut() else { return };
        f(replica, &mut out);
        replica.process(&mut out);
        if let Some(number) = out.sync {
            node.sync_wanted = Some(node.sync_wanted.map_or(number, |n| n.max(number)));
        }
        for msg in out.messages {
            if self.rng.gen_range(0..1000) < self.cfg.drop_per_mille {
                self.report.messages_dropped += 1;
                continue;
            }
            let delay_ms = self.rng.gen_range(1..=12);
            self.network.push(Packet { deliver_at_ms: self.now_ms + delay_ms, from: id, msg });
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.replica.as_ref().is_some_and(|r| r.status().role == "leader"))
            .filter(|n| !self.isolated.contains_key(&n.id))
            .map(|n| n.id)
            .max_by_key(|&id| self.nodes[(id - 1) as usize].replica.as_ref().map(|r| r.status().term))
    }

    fn step_time(&mut self, faults: bool, load: bool) {
        self.now_ms += 1;
        self.clock.store(EPOCH_MS + self.now_ms, Ordering::Relaxed);
        if self.now_ms.is_multiple_of(TICK_MS) {
            for id in 1..=self.cfg.nodes {
                self.with_replica(id, |r, _| r.tick());
            }
        }
        self.deliver();
        self.fsyncs();
        self.restarts();
        if faults && self.now_ms.is_multiple_of(1000) {
            self.inject_faults();
        }
        self.heal_partitions(faults);
        if load && self.rng.gen_range(0..1000) < self.cfg.command_per_mille {
            self.issue_command();
        }
        self.collect_answers();
    }

    fn deliver(&mut self) {
        let now = self.now_ms;
        let (due, later): (Vec<Packet>, Vec<Packet>) = std::mem::take(&mut self.network).into_iter().partition(|p| p.deliver_at_ms <= now);
        self.network = later;
        for packet in due {
            let to = packet.msg.to;
            if self.connected(packet.from, to) {
                self.with_replica(to, |r, _| r.step(packet.msg));
            }
        }
    }

    fn fsyncs(&mut self) {
        for id in 1..=self.cfg.nodes {
            if self.node(id).sync_wanted.is_none() {
                continue;
            }
            let now = self.now_ms;
            match self.node(id).sync_done_at_ms {
                None => {
                    // Mostly fast, sometimes slow, rarely a stall longer than an election
                    // timeout (a disk busy with another process's large write).
                    let latency_ms = match self.rng.gen_range(0..100) {
                        0 => self.rng.gen_range(150..=400),
                        1..=10 => self.rng.gen_range(20..=80),
                        _ => self.rng.gen_range(1..=4),
                    };
                    self.node(id).sync_done_at_ms = Some(now + latency_ms);
                    continue;
                }
                Some(at) if at > now => continue,
                Some(_) => self.node(id).sync_done_at_ms = None,
            }
            let number = self.node(id).sync_wanted.take().expect("checked above");
            self.node(id).engine.sync().expect("simulated sync");
            self.with_replica(id, |r, out| r.on_persisted(number, out));
        }
    }

    fn inject_faults(&mut self) {
        let alive: Vec<u64> = self.nodes.iter().filter(|n| n.replica.is_some()).map(|n| n.id).collect();
        let down = self.cfg.nodes as usize - alive.len();
        // Keep a majority alive most of the time, but not always: a minority-only phase must
        // not commit anything, and the checkers will notice if it did.
        if self.rng.gen_range(0..1000) < self.cfg.crash_per_mille && down < self.cfg.nodes as usize / 2 + 1 {
            let victim = alive[self.rng.gen_range(0..alive.len())];
            self.crash(victim);
            // Sometimes a second node goes down in the same instant (a shared power feed):
            // the case where writes acknowledged before their fsync would be lost.
            if down == 0 && alive.len() >= 3 && self.rng.gen_range(0..100) < 30 {
                let others: Vec<u64> = alive.iter().copied().filter(|&n| n != victim).collect();
                let second = others[self.rng.gen_range(0..others.len())];
                self.crash(second);
            }
        }
        if self.rng.gen_range(0..1000) < self.cfg.partition_per_mille && self.isolated.is_empty() {
            let victim = self.rng.gen_range(1..=self.cfg.nodes);
            let until = self.now_ms + self.rng.gen_range(200..1500);
            self.isolated.insert(victim, until);
            self.report.partitions += 1;
        }
    }

    fn heal_partitions(&mut self, faults: bool) {
        let now = self.now_ms;
        self.isolated.retain(|_, until| faults && *until > now);
    }

    /// Kills a node: its unsynced writes are lost except a random prefix, its waiters learn
    /// nothing (their outcome is unknown), its in-flight messages vanish.
    fn crash(&mut self, id: u64) {
        let kept = {
            let unsynced = self.node(id).engine.unsynced_batches();
            self.rng.gen_range(0..=unsynced)
        };
        let restart_at = self.now_ms + self.rng.gen_range(100..1200);
        let installed = self.node(id).replica.as_ref().map_or(0, |r| r.status().snapshots_installed);
        self.report.snapshots_installed += installed;
        let node = self.node(id);
        node.replica = None; // drops every waiter's sender: those answers never come
        node.engine = node.engine.crash(kept);
        node.sync_wanted = None;
        node.sync_done_at_ms = None;
        node.down_until_ms = Some(restart_at);
        self.network.retain(|p| p.msg.to != id && p.from != id);
        self.report.crashes += 1;
    }

    fn restarts(&mut self) {
        for id in 1..=self.cfg.nodes {
            let due = self.node(id).down_until_ms.is_some_and(|t| t <= self.now_ms);
            if due {
                let cfg = replica_config(&self.cfg, id, &self.clock);
                let node = self.node(id);
                node.down_until_ms = None;
                node.replica = Some(node.engine.open_replica(cfg).expect("reopen replica after crash"));
            }
        }
    }

    fn account(&mut self) -> String {
        format!("acct-{}", self.rng.gen_range(0..self.cfg.accounts))
    }

    fn new_command(&mut self) -> Command {
        let roll = self.rng.gen_range(0..100);
        if roll < 10 && !self.outcomes.is_empty() {
            // A client retrying an earlier request, same id and body.
            let pick = self.rng.gen_range(0..self.outcomes.len());
            return self.outcomes.values().nth(pick).expect("in range").0.clone();
        }
        let request_id = format!("req-{}", self.report.commands);
        if roll < 50 {
            self.next_payment += 1;
            Command::Purchase(ledger::Purchase {
                request_id,
                account: self.account(),
                amount: Decimal::new(self.rng.gen_range(1..=500), 2),
                currency: "USD".into(),
                payment_ref: format!("pay-{}", self.next_payment),
            })
        } else {
            let sender = self.account();
            let mut recipient = self.account();
            if recipient == sender {
                recipient = format!("creator-{}", self.rng.gen_range(0..2));
            }
            Command::Gift(ledger::Gift {
                request_id,
                sender,
                recipient,
                gift_id: if self.rng.gen_bool(0.5) { "rose".into() } else { "doughnut".into() },
                quantity: self.rng.gen_range(1..=3),
                message: String::new(),
                stream_id: String::new(),
            })
        }
    }

    fn issue_command(&mut self) {
        let Some(leader) = self.leader() else { return };
        let cmd = self.new_command();
        self.report.commands += 1;
        let request_id = cmd.request_id().expect("client commands carry ids").to_string();
        self.outcomes.entry(request_id).or_insert_with(|| (cmd.clone(), None));
        let (tx, rx) = oneshot::channel();
        let c = cmd.clone();
        self.with_replica(leader, |r, _| r.propose(c, tx));
        self.issued.push(Issued { cmd, rx });
    }

    /// Records answers that arrived; a dropped sender (crash, lost leadership) is "unknown".
    fn collect_answers(&mut self) {
        let mut still = Vec::with_capacity(self.issued.len());
        for mut issued in std::mem::take(&mut self.issued) {
            match issued.rx.try_recv() {
                Ok(Ok(applied)) => {
                    let id = issued.cmd.request_id().expect("id").to_string();
                    let slot = &mut self.outcomes.get_mut(&id).expect("issued commands are recorded").1;
                    match slot {
                        None => *slot = Some(applied),
                        Some(first) => assert_eq!(*first, applied, "request {id}: a retry answered differently"),
                    }
                    self.report.acknowledged += 1;
                }
                Ok(Err(_)) => self.report.refused += 1, // not leader / leadership changed: unknown
                Err(oneshot::error::TryRecvError::Empty) => still.push(issued),
                Err(oneshot::error::TryRecvError::Closed) => self.report.unknown += 1,
            }
        }
        self.issued = still;
    }

    fn applied_indexes(&self) -> Vec<u64> {
        self.nodes.iter().filter_map(|n| n.replica.as_ref().map(|r| r.status().applied_index)).collect()
    }

    /// Heals everything and runs until every replica applied the same index under one leader.
    fn quiesce(&mut self) -> Result<u64, String> {
        self.isolated.clear();
        for node in &mut self.nodes {
            if node.replica.is_none() {
                node.down_until_ms = Some(0);
            }
        }
        let saved_drop = std::mem::replace(&mut self.cfg.drop_per_mille, 0);
        let start = self.now_ms;
        let result = loop {
            self.step_time(false, false);
            let applied = self.applied_indexes();
            let commit = self.leader().and_then(|l| self.nodes[(l - 1) as usize].replica.as_ref()).map(|r| r.status().commit_index);
            if let Some(commit) = commit {
                if applied.len() == self.nodes.len() && applied.iter().all(|&a| a == commit) && self.issued.is_empty() {
                    break Ok(commit);
                }
            }
            if self.now_ms - start > SETTLE_MS_MAX {
                break Err(format!("no quiescence after {SETTLE_MS_MAX} ms: applied {applied:?}, leader {:?}", self.leader()));
            }
        };
        self.cfg.drop_per_mille = saved_drop;
        result
    }

    /// Proposes `cmd` again on the leader and runs until it is answered.
    fn resolve(&mut self, cmd: &Command) -> Result<Applied, String> {
        let start = self.now_ms;
        loop {
            if let Some(leader) = self.leader() {
                let (tx, mut rx) = oneshot::channel();
                let c = cmd.clone();
                self.with_replica(leader, |r, _| r.propose(c, tx));
                loop {
                    self.step_time(false, false);
                    match rx.try_recv() {
                        Ok(Ok(applied)) => return Ok(applied),
                        Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => break,
                        Err(oneshot::error::TryRecvError::Empty) => {}
                    }
                    if self.now_ms - start > SETTLE_MS_MAX {
                        return Err(format!("{cmd:?} not answered within {SETTLE_MS_MAX} ms"));
                    }
                }
            }
            self.step_time(false, false);
            if self.now_ms - start > SETTLE_MS_MAX {
                return Err(format!("no leader to resolve {cmd:?}"));
            }
        }
    }

    fn check(&mut self) -> Result<(), String> {
        let applied = self.quiesce()?;
        self.report.final_applied_index = applied;
        self.report.snapshots_installed +=
            self.nodes.iter().filter_map(|n| n.replica.as_ref()).map(|r| r.status().snapshots_installed).sum::<u64>();

        // 1. Replicas agree, byte for byte (their cached state written out first).
        for replica in self.nodes.iter_mut().filter_map(|n| n.replica.as_mut()) {
            replica.flush_state_now();
        }
        let states: Vec<_> = self
            .nodes
            .iter()
            .map(|n| snapshot::build(n.engine.engine.as_ref(), SHARD).map(|s| (s.applied_index, s.pairs)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for (i, state) in states.iter().enumerate().skip(1) {
            if state != &states[0] {
                return Err(format!("node {} state differs from node 1 at applied {}", i + 1, state.0));
            }
        }

        // 2. Acknowledged answers hold; unknown ones resolve; every request applied once.
        let requests: Vec<(String, Command, Option<Applied>)> =
            self.outcomes.iter().map(|(id, (c, a))| (id.clone(), c.clone(), a.clone())).collect();
        let mut finals = BTreeMap::new();
        for (id, cmd, first) in requests {
            let again = self.resolve(&cmd)?;
            if let Some(first) = first {
                if first != again {
                    return Err(format!("request {id}: acknowledged {first:?}, now {again:?}"));
                }
            }
            finals.insert(id, (cmd, again));
        }

        // 3. Balances are exactly what the final outcomes imply.
        // In commit order: a tx id names its raft index and position in the entry.
        let commit_order = |a: &Applied| match a {
            Applied::Done(Ok(Outcome::Purchase(r))) => ledger::parse_tx_id(&r.tx_id).ok(),
            Applied::Done(Ok(Outcome::Gift(r))) => ledger::parse_tx_id(&r.tx_id).ok(),
            _ => None,
        };
        let mut ordered: Vec<&(Command, Applied)> = finals.values().collect();
        ordered.sort_by_key(|(_, a)| commit_order(a).map(|(_, index, pos)| (index, pos)));
        let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (cmd, applied) in ordered {
            match (cmd, applied) {
                (Command::Purchase(p), Applied::Done(Ok(Outcome::Purchase(r)))) => {
                    expected.entry(p.account.clone()).or_default().0 += r.coins_credited;
                }
                (Command::Gift(g), Applied::Done(Ok(Outcome::Gift(r)))) => {
                    let sender = expected.entry(g.sender.clone()).or_default();
                    sender.0 = sender.0.checked_sub(r.coins_debited).ok_or(format!("gift {} overdrew {}", r.tx_id, g.sender))?;
                    expected.entry(g.recipient.clone()).or_default().1 += r.diamonds_credited;
                }
                (_, Applied::Done(Err(_))) => {}
                (cmd, other) => return Err(format!("{cmd:?} ended as {other:?}")),
            }
        }
        let leader = self.leader().ok_or("no leader at the end")?;
        for (account, (coins, diamonds)) in &expected {
            let answer = self.nodes[(leader - 1) as usize]
                .replica
                .as_ref()
                .expect("leader is alive")
                .query(&ReadQuery::Account(account.clone()));
            let (have_coins, have_diamonds) = match answer {
                crate::shard::ReadAnswer::Account(Some(a)) => (a.coins, a.diamonds),
                _ => (0, 0),
            };
            if (have_coins, have_diamonds) != (*coins, *diamonds) {
                return Err(format!("{account}: ledger has {have_coins} coins / {have_diamonds} diamonds, outcomes imply {coins} / {diamonds}"));
            }
        }

        // 4. Conservation on the shard.
        let prefix = keys::ledger_prefix(SHARD);
        let empty = crate::shard::store::StateCache::default();
        let store = crate::shard::store::EngineStore::read_only(self.nodes[(leader - 1) as usize].engine.engine.as_ref(), &prefix, &empty);
        let audit = ledger::audit::shard_audit(&store, SHARD);
        let global = ledger::audit::global_audit(&[audit], &|_| false);
        if !global.ok {
            return Err(format!("audit: {:?}", global.violations));
        }
        Ok(())
    }
}

/// Runs one seed; `Err` carries the first violated invariant and the partial report.
pub fn run(seed: u64, cfg: SimConfig) -> Result<SimReport, (String, SimReport)> {
    let mut world = World::new(seed, cfg);
    let duration_ms = world.cfg.duration_ms;
    while world.now_ms < duration_ms {
        world.step_time(true, true);
    }
    match world.check() {
        Ok(()) => Ok(world.report),
        Err(e) => Err((e, world.report)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Vec<u64> {
        if let Ok(seed) = std::env::var("SIM_SEED") {
            return vec![seed.parse().expect("SIM_SEED is a number")];
        }
        let count: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        (0..count).collect()
    }

    #[test]
    fn simulated_clusters_lose_nothing_and_apply_nothing_twice() {
        let mut totals = SimReport::default();
        for seed in seeds() {
            let outcome = std::panic::catch_unwind(|| run(seed, SimConfig::default()))
                .unwrap_or_else(|_| Err(("a replica panicked (see above)".to_string(), SimReport::default())));
            match outcome {
                Ok(r) => {
                    totals.commands += r.commands;
                    totals.acknowledged += r.acknowledged;
                    totals.unknown += r.unknown;
                    totals.crashes += r.crashes;
                    totals.partitions += r.partitions;
                    totals.messages_dropped += r.messages_dropped;
                    totals.snapshots_installed += r.snapshots_installed;
                }
                Err((e, r)) => panic!("seed {seed} failed: {e}\n{r:?}\nreplay: SIM_SEED={seed} cargo test --release -p coinledger-node sim"),
            }
        }
        println!("simulation totals: {totals:?}");
        assert!(
            totals.acknowledged > 0 && totals.crashes > 0 && totals.partitions > 0 && totals.snapshots_installed > 0,
            "the simulation must exercise load, crashes, partitions and snapshots: {totals:?}"
        );
    }

    #[test]
    fn a_seed_replays_identically() {
        let a = run(7, SimConfig::default()).map_err(|(e, _)| e).unwrap();
        let b = run(7, SimConfig::default()).map_err(|(e, _)| e).unwrap();
        assert_eq!(a, b);
    }
}
