//! A shard replica's logic: drives raft-rs, batches proposals, applies committed entries to
//! the ledger, answers waiters and linearizable reads. No actor or network types: the actor
//! calls in and carries the returned [`Output`] (fsync requests, raft messages) out.
//!
//! Ready handling follows raft-rs's asynchronous persistence contract:
//! 1. messages of a leader's Ready go out at once (replication runs while we persist);
//! 2. committed entries are applied (raft only hands out entries this replica persisted);
//! 3. entries are appended to the node's raft log (`RaftWal`), the hard state (its commit
//!    index only with a state flush) is written to the engine, then `advance_append_async`;
//! 4. persisted messages (votes, append responses) wait until an fsync covering their Ready
//!    completes: `on_persisted` then releases them in Ready order and calls
//!    `on_persist_ready`, which lets raft count our own log as durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft::prelude::{ConfChangeV2, Entry, EntryType, Message as RaftMessage, MessageType};
use raft::SnapshotStatus;
use raft::{RawNode, StateRole};
use protobuf::Message as _;

use super::entry::{command_bytes, EntryBatch, MAX_ENTRY_BYTES, MAX_ENTRY_COMMANDS};
use super::msg::{ProposeReply, ReadAnswer, ReadQuery, ReadReply, ShardStatus};
use super::store::{EngineStore, StateCache};
use crate::error::NodeError;
use crate::keys;
use crate::ledger::{self, Applied, Command, EntryContext, Layout};
use crate::raftlog::{raft_logger, LogBytes, RaftWal, ShardStorage};
use crate::stats::NodeStats;
use crate::storage::{SharedEngine, StorageError, WriteBatch, WriteOp};

/// Raft timing, in ticks of `tick_ms`.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Election timeout exactly `election_ticks` instead of raft-rs's random draw from
    /// `[election_ticks, 2 * election_ticks)`: the simulation varies it per node itself, so a
    /// seed replays identically.
    pub fixed_election_timeout: bool,
}

/// Where a replica's clock comes from: the system, or a simulation's manual clock.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            Clock::Manual(ms) => ms.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[derive(Clone)]
pub struct ReplicaConfig {
    pub shard: u32,
    pub node_id: u64,
    pub layout: Layout,
    pub voters: Vec<u64>,
    /// node id → gRPC address, for leader hints.
    pub addresses: Arc<BTreeMap<u64, String>>,
    pub timing: RaftTiming,
    /// Compact the raft log once it holds more than this many applied entries,
    pub compact_log_entries: u64,
    /// or more than this many bytes of them (counted since the process started).
    pub compact_log_bytes: u64,
    /// Ticks between state flushes when neither the entry nor the byte bound comes first;
    /// see [`state_flush_ticks`].
    pub state_flush_ticks: u64,
    /// Bytes of newest raft entries kept in memory; see [`crate::raftlog::entry_cache_bytes`].
    pub entry_cache_bytes: usize,
    /// Stamps proposed entries (the only clock the state machine ever sees).
    pub clock: Clock,
    /// The node's work counters, shared by its replicas.
    pub stats: Arc<NodeStats>,
}

/// What the caller must do after a call into the replica.
#[derive(Default)]
pub struct Output {
    /// Request a group-commit fsync, then call `on_persisted(number)`.
    pub sync: Option<u64>,
    /// Raft messages for peer replicas.
    pub messages: Vec<RaftMessage>,
    /// This replica just became the shard's leader.
    pub became_leader: bool,
    /// The shard's leader as raft now knows it (a node id), when that just changed.
    pub leader_changed: Option<u64>,
}

struct Proposal {
    index: u64,
    term: u64,
    replies: Vec<ProposeReply>,
    /// The batch as proposed, until it is applied: the entry committed at this index and
    /// term is this batch (raft's log matching), so the leader applies it from here instead
    /// of decompressing and decoding the bytes it encoded itself.
    batch: Option<EntryBatch>,
}

pub struct Replica {
    cfg: ReplicaConfig,
    engine: SharedEngine,
    raw: RawNode<ShardStorage>,
    /// Last entry applied to the state (in memory: the engine plus `state`).
    applied_index: u64,
    /// Ledger writes since the last flush; see `store.rs` for why this is safe.
    state: StateCache,
    /// The shard's key prefix in the engine.
    prefix: Vec<u8>,
    /// Applied index of the state in the engine: restart resumes here, and the raft log is
    /// never compacted past it.
    flushed_index: u64,
    /// `ticks` at which the next periodic state flush is due. The first one is offset by the
    /// shard number, so a node's replicas do not all flush in the same tick, and the later
    /// ones keep that offset (see [`next_flush_tick`]).
    next_flush_tick: u64,
    /// Bytes of the raft log, for compaction by size.
    log_bytes: LogBytes,
    /// The (first log index, flushed index) [`Replica::maybe_compact`] last found nothing to
    /// compact at. Its answer depends on nothing else (entries at or below the flushed index
    /// are committed, never replaced), and it runs after every Ready: the byte count's binary
    /// search over up to 10,000 samples per shard, cold in the cache, was 2.3% of a node's CPU
    /// samples under 16 unbatched clients.
    compaction_checked: Option<(u64, u64)>,
    /// Commands waiting to be proposed as one entry.
    batch: Vec<(Command, ProposeReply)>,
    /// CompleteEffects waiting to ride along with the next entry (see [`COMPLETION_WAIT_TICKS`]),
    /// and the tick the oldest of them arrived in.
    completions: Vec<(Command, ProposeReply)>,
    completions_since_tick: u64,
    /// Proposed entries awaiting apply, ascending by index.
    proposals: VecDeque<Proposal>,
    /// Readies written but not yet fsynced: (number, persisted messages to release).
    unsynced: VecDeque<(u64, Vec<RaftMessage>)>,
    read_seq: u64,
    /// Reads not yet in a ReadIndex round: they wait until this leader has committed an
    /// entry in its term (raft-rs silently drops a ReadIndex before that), then share a round.
    reads_waiting: Vec<(ReadQuery, ReadReply)>,
    /// ReadIndex rounds sent, by context, with the tick they were (re)sent at.
    reads_pending: HashMap<u64, (u64, Vec<(ReadQuery, ReadReply)>)>,
    /// Confirmed reads waiting for apply to reach their index.
    reads_ready: Vec<(u64, ReadQuery, ReadReply)>,
    last_timestamp_ms: u64,
    role: StateRole,
    failed: Option<String>,
    snapshots_installed: u64,
    ticks: u64,
    /// Consecutive rebalance checks in which the preferred leader was caught up.
    preferred_caught_up_checks: u32,
}

/// The state cache is flushed to the engine after `state_flush_ticks` ticks, after this many
/// applied entries, or once it holds this many bytes, whichever comes first. They bound the
/// memory it holds (the point values a flush wrote stay cached until the next one: at most
/// as much again) and the entries a restart re-applies.
const STATE_FLUSH_ENTRIES: u64 = 1_024;
const STATE_FLUSH_BYTES: usize = 32 << 20;
/// A state flush slower than this is logged as a warning: the replica's actor thread (and
/// every replica sharing it) handled no raft message meanwhile, and past an election timeout
/// its leaders lose their quorum.
const SLOW_STATE_FLUSH_WARN: Duration = Duration::from_millis(250);

/// A node's replicas together start one state flush every this many ticks, on average.
///
/// Every flush is one atomic sled batch, and sled charges each one a fixed cost on top of its
/// keys (it seals and writes out its log buffer, waking its whole thread pool). Measured with
/// 64 shards, 0.5 s per replica meant 110 flushes per second per node at 289 keys each, and
/// 64 shards ran at 0.79x the gifts/s of 16. Bounding the node's rate instead of the
/// replica's keeps 64 shards' flushes as large and as few as 16 shards' are. An atomic batch
/// also holds sled's process-wide write lock, stopping every other replica's sled reads and
/// writes on the node, so fewer flushes pay twice; a longer period also writes a busy
/// account, an open request page or a short-lived outbox record once for more commands.
///
/// Measured (batched gift-storm, 16 shards, 16 clients x 256): on 2026-12-02, 3 flushes per
/// tick 5,848 and 6,335 gifts/s, 1 per tick 8,180 and 8,209 (p99 0.75 s), 1 every 2 ticks
/// 8,374 and 9,411 (p99 1.2-1.4 s). On 2026-12-05 (800,000 gifts, back to back, node CPU of
/// the 3 nodes): 1 every 2 ticks with the shards taking turns evenly (`first_flush_tick`)
/// 82.9 / 80.4 s (18,430 / 18,680 gifts/s, p99 451 / 338 ms) against 92.7 / 94.2 s for 1
/// per tick (16,264 / 16,151 gifts/s, p99 403 / 390 ms); starting at `shard mod period`
/// instead, 16 flushes came in 16 consecutive ticks and none in the next 16 (p99 614-646
/// ms); 1 every 4 ticks saved another 2% of CPU for a p99 of 1.0-1.2 s. Unbatched, and at 64
/// shards (their period is at the ceiling below), it made no difference to the CPU.
const NODE_TICKS_PER_STATE_FLUSH: u64 = 2;
/// Bounds of the per-replica period: never more often than 0.5 s, never rarer than 5 s (at
/// the default 100 ms tick), which bounds what a restart re-applies.
const STATE_FLUSH_TICKS_MIN: u64 = 5;
const STATE_FLUSH_TICKS_MAX: u64 = 50;

/// The state flush period of each replica on a node hosting `replicas` of them.
pub fn state_flush_ticks(replicas: usize) -> u64 {
    (replicas as u64).saturating_mul(NODE_TICKS_PER_STATE_FLUSH).clamp(STATE_FLUSH_TICKS_MIN, STATE_FLUSH_TICKS_MAX)
}

/// The tick of a replica's first state flush: the shards spread evenly over one period, so
/// that a node's replicas take turns rather than flush in a burst and then idle.
fn first_flush_tick(shard: u32, shard_count: u32, period_ticks: u64) -> u64 {
    1 + u64::from(shard) * period_ticks / u64::from(shard_count.max(1))
}

/// The replica's next periodic flush after a flush at tick `now`: the first tick after `now`
/// on its own schedule (`scheduled`, its flush tick due or to come, plus whole periods).
///
/// Not `now + period`: an idle replica has nothing to flush, so its flush stays due, and the
/// first command after an idle spell makes every replica of the node flush at once; counted
/// from then, they stayed in step for good. A cluster benched 5 s after its start (every
/// shard's first flush due by then) ran 300,000 batched gifts at 6,000 gifts/s for one second
/// in three and 31,000-40,000 in the others (p99 961 ms); benched 2 s after it, 24,000-28,000
/// every second (p99 225 ms).
fn next_flush_tick(scheduled: u64, now: u64, period_ticks: u64) -> u64 {
    let period_ticks = period_ticks.max(1);
    if now < scheduled {
        scheduled
    } else {
        scheduled + ((now - scheduled) / period_ticks + 1) * period_ticks
    }
}

/// Ticks a CompleteEffect may wait for other commands to share its raft entry with.
///
/// Completing an effect at home only records the outcome the client was already given and
/// clears the outbox record, so nobody waits for it. Proposed at once, it costs a raft round of
/// its own: an unbatched cross-shard gift was three rounds (debit, credit, completion). Held
/// back, it joins the next entry the shard proposes anyway, or goes alone once a tick boundary
/// has passed (within one tick, 100 ms by default, when the shard is otherwise idle).
const COMPLETION_WAIT_TICKS: u64 = 1;
/// Held-back completions that are proposed at once rather than wait any longer.
const COMPLETIONS_WAITING_MAX: usize = 4_096;

/// Ticks between a preferred replica's campaigns while no leader is known in its first
/// election timeout. The nodes of a cluster come up one after another: the campaign a
/// preferred replica makes as it starts reaches nobody on the first node, and its shards went
/// to whichever replica's election timer fired first (a fresh 64-shard cluster started with 8
/// / 26 / 30 leaders per node, and the rebalance then moved about 20 of them under load).
/// Pre-vote keeps these campaigns from disturbing a leader the replica has not heard from yet.
const STARTUP_CAMPAIGN_TICKS: u64 = 2;

/// Ticks between checks whether leadership should go back to the shard's preferred replica.
const REBALANCE_CHECK_TICKS: u64 = 10;

/// Ticks between checks whether a replica's log keeps the node's old raft log segments on disk
/// (see `compact_if_keeping_old_segments`). On ticks, not on Readies: a quiet shard may have
/// no Ready (a one-node cluster sends no heartbeats), and a segment takes seconds to fill.
const COMPACT_CHECK_TICKS: u64 = 10;
/// Consecutive checks the preferred replica must be caught up before leadership moves to it,
/// so a flapping node does not drag leadership around.
const REBALANCE_STABLE_CHECKS: u32 = 3;

fn storage_fatal(shard: u32, e: StorageError) -> ! {
    panic!("shard {shard}: storage failure: {e}")
}

impl Replica {
    pub fn open(cfg: ReplicaConfig, engine: SharedEngine, wal: Arc<RaftWal>) -> Result<Self, StorageError> {
        let mut storage = ShardStorage::open(engine.clone(), wal, cfg.shard, &cfg.voters)?;
        storage.set_entry_cache_bytes(cfg.entry_cache_bytes);
        let applied_index = match engine.get(&keys::applied_index(cfg.shard))? {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                key: format!("applied index of shard {}", cfg.shard),
                reason: format!("{} bytes", b.len()),
            })?),
            None => 0,
        };
        if applied_index > storage.last_log_index() {
            // Entries are applied only once they are durable in the raft log (raft-rs hands
            // out no unpersisted entry), so the log reaches at least the applied index.
            return Err(StorageError::Corrupt {
                key: format!("raft log of shard {}", cfg.shard),
                reason: format!("it ends at entry {} but the state is applied through {applied_index}", storage.last_log_index()),
            });
        }
        if applied_index > storage.hard_state().commit {
            // Only committed entries are ever applied, so the commit index is at least the
            // applied index; an older build could persist them in separate writes.
            tracing::warn!(shard = cfg.shard, applied_index, commit = storage.hard_state().commit, "raising commit index to applied index");
            let mut batch = WriteBatch::default();
            storage.set_commit(applied_index, &mut batch);
            engine.write(batch)?;
        }
        let raft_cfg = raft::Config {
            id: cfg.node_id,
            election_tick: cfg.timing.election_ticks,
            heartbeat_tick: cfg.timing.heartbeat_ticks,
            max_election_tick: if cfg.timing.fixed_election_timeout { cfg.timing.election_ticks + 1 } else { 0 },
            min_election_tick: if cfg.timing.fixed_election_timeout { cfg.timing.election_ticks } else { 0 },
            applied: applied_index,
            max_size_per_msg: MAX_ENTRY_BYTES as u64,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            // Followers learn a new commit index from the next append or heartbeat (every
            // `heartbeat_ticks`) instead of from an append of its own: raft-rs's default sends
            // each follower a second, empty append per entry, with its Ready, engine write and
            // response. Only followers apply later; no answer waits for them. Unbatched
            // gift-storm, 16 shards, back to back: 24.2-24.9 s of node CPU for 15,000 gifts
            // (1,097-1,132 gifts/s) against 26.3-28.3 s (972-1,067).
            skip_bcast_commit: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| StorageError::Engine(format!("raft config: {e}")))?;
        let raw = RawNode::new(&raft_cfg, storage, &raft_logger(cfg.shard))
            .map_err(|e| StorageError::Engine(format!("raft node: {e}")))?;
        let prefix = keys::ledger_prefix(cfg.shard);
        let next_flush_tick = first_flush_tick(cfg.shard, cfg.layout.shard_count, cfg.state_flush_ticks);
        Ok(Self {
            cfg,
            prefix,
            engine,
            raw,
            applied_index,
            state: StateCache::default(),
            flushed_index: applied_index,
            next_flush_tick,
            log_bytes: LogBytes::default(),
            compaction_checked: None,
            batch: Vec::new(),
            completions: Vec::new(),
            completions_since_tick: 0,
            proposals: VecDeque::new(),
            unsynced: VecDeque::new(),
            read_seq: 0,
            reads_waiting: Vec::new(),
            reads_pending: HashMap::new(),
            reads_ready: Vec::new(),
            last_timestamp_ms: 0,
            role: StateRole::Follower,
            failed: None,
            snapshots_installed: 0,
            preferred_caught_up_checks: 0,
            ticks: 0,
        })
    }

    pub fn shard(&self) -> u32 {
        self.cfg.shard
    }

    fn leader_hint(&self) -> Option<String> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then(|| self.cfg.addresses.get(&leader).cloned()).flatten()
    }

    fn leader_id(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    fn not_leader(&self) -> NodeError {
        NodeError::NotLeader { shard: self.cfg.shard, leader_id: self.leader_id(), leader_hint: self.leader_hint() }
    }

    /// Campaigns at once if this node is the shard's preferred leader (the first of its
    /// replicas) and no leader is known: leaders start spread across nodes, and a one-node
    /// cluster does not wait an election timeout.
    pub fn campaign_if_preferred(&mut self) {
        if self.cfg.voters.first() == Some(&self.cfg.node_id)
            && self.raw.raft.state != StateRole::Leader
            && self.leader_id().is_none()
        {
            let _ = self.raw.campaign();
        }
    }

    pub fn propose(&mut self, cmd: Command, reply: ProposeReply) {
        if let Some(reason) = &self.failed {
            let _ = reply.send(Err(NodeError::Internal(reason.clone())));
        } else if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
        } else if matches!(cmd, Command::CompleteEffect(_)) {
            if self.completions.is_empty() {
                self.completions_since_tick = self.ticks;
            }
            self.completions.push((cmd, reply));
        } else {
            self.batch.push((cmd, reply));
        }
    }

    /// Moves the held-back completions into the batch if it goes out anyway, or if they have
    /// waited long enough (or are many).
    fn release_completions(&mut self) {
        let due = self.ticks >= self.completions_since_tick + COMPLETION_WAIT_TICKS
            || self.completions.len() >= COMPLETIONS_WAITING_MAX;
        if !self.completions.is_empty() && (!self.batch.is_empty() || due) {
            self.batch.append(&mut self.completions);
        }
    }

    pub fn read(&mut self, query: ReadQuery, reply: ReadReply) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        self.reads_waiting.push((query, reply));
    }

    /// Starts one ReadIndex round for every waiting read, once that can succeed.
    fn start_read_round(&mut self) {
        let raft = &self.raw.raft;
        let committed_in_term = raft.raft_log.term(raft.raft_log.committed).ok() == Some(raft.term);
        if self.reads_waiting.is_empty() || raft.state != StateRole::Leader || !committed_in_term {
            return;
        }
        self.read_seq += 1;
        let ctx = self.read_seq;
        self.reads_pending.insert(ctx, (self.ticks, std::mem::take(&mut self.reads_waiting)));
        self.raw.read_index(ctx.to_be_bytes().to_vec());
    }

    /// Re-sends ReadIndex rounds that got no answer within an election timeout (a lost
    /// heartbeat response leaves a round unanswered until another round completes).
    fn resend_stale_read_rounds(&mut self) {
        let stale_after = self.cfg.timing.election_ticks as u64;
        let now = self.ticks;
        let stale: Vec<u64> = self
            .reads_pending
            .iter()
            .filter(|(_, (sent, _))| now.saturating_sub(*sent) >= stale_after)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            if let Some(round) = self.reads_pending.get_mut(&ctx) {
                round.0 = now;
            }
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
    }

    pub fn step(&mut self, mut msg: RaftMessage) {
        if msg.get_msg_type() == MessageType::MsgTimeoutNow && self.snapshot_unpersisted() {
            // Same hazard as an election timeout (see `tick`); the leader's transfer times out.
            return;
        }
        let mut lost_data_at = None;
        if msg.get_msg_type() == MessageType::MsgHeartbeat {
            // A leader derives a heartbeat's commit from what it last knew of our log. If our
            // data directory was wiped, that is more than we hold, and raft-rs would panic.
            // Lowering a commit index is always safe; the leader then probes, finds our log
            // empty and sends a snapshot.
            let last = self.raw.raft.raft_log.last_index();
            if msg.commit > last {
                tracing::warn!(shard = self.cfg.shard, commit = msg.commit, last, "heartbeat commit beyond our log (wiped or lost data?): clamped");
                lost_data_at = Some((msg.from, msg.commit));
                msg.commit = last;
            }
        }
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(shard = self.cfg.shard, error = %e, "raft message dropped");
        }
        if let Some((leader, leader_commit)) = lost_data_at {
            // The leader believes we hold its log up to `leader_commit` (= min(its match for
            // us, its commit)) and will not notice otherwise on an idle shard. Ask it for a
            // snapshot. raft-rs's own request_snapshot refuses on an empty log, and a leader
            // drops rejections below its match as stale, so the request is built here, naming
            // that index.
            let mut m = RaftMessage::default();
            m.set_msg_type(MessageType::MsgAppendResponse);
            m.to = leader;
            m.from = self.cfg.node_id;
            m.term = self.raw.raft.term;
            m.index = leader_commit;
            m.reject = true;
            m.reject_hint = self.raw.raft.raft_log.last_index();
            m.request_snapshot = leader_commit;
            self.raw.raft.msgs.push(m);
        }
    }

    pub fn tick(&mut self) {
        // While a received snapshot is not yet persisted, raft's applied index lags behind its
        // commit index and the entries between are gone (the snapshot replaced them): an
        // election timeout now would make raft-rs read them and abort. Time stands still
        // until the fsync completes (milliseconds), as TiKV does while applying a snapshot.
        if self.snapshot_unpersisted() {
            return;
        }
        self.raw.tick();
        self.ticks += 1;
        if self.ticks <= self.cfg.timing.election_ticks as u64 && self.ticks.is_multiple_of(STARTUP_CAMPAIGN_TICKS) {
            self.campaign_if_preferred();
        }
        if self.ticks.is_multiple_of(REBALANCE_CHECK_TICKS) {
            self.rebalance();
        }
        if self.ticks.is_multiple_of(COMPACT_CHECK_TICKS) {
            self.compact_if_keeping_old_segments();
        }
        self.resend_stale_read_rounds();
    }

    /// Before a planned stop: if this replica leads, transfer leadership to a voter whose log
    /// is complete, so the shard does not wait out an election timeout. Returns whether a
    /// transfer started.
    pub fn hand_off_leadership(&mut self) -> bool {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || raft.lead_transferee.is_some() {
            return false;
        }
        let last = raft.raft_log.last_index();
        let me = self.cfg.node_id;
        let target = self.cfg.voters.iter().copied().filter(|&v| v != me).find(|&v| {
            raft.prs().get(v).is_some_and(|p| p.state == raft::ProgressState::Replicate && p.matched == last)
        });
        match target {
            Some(to) => {
                tracing::info!(shard = self.cfg.shard, to, "stopping: handing leadership over");
                self.raw.transfer_leader(to);
                true
            }
            None => false,
        }
    }

    /// True between installing a received snapshot and its fsync: raft's applied index is
    /// still below the snapshot, whose earlier entries are gone from the log. (raft-rs drops
    /// the unstable snapshot at `advance_append_async`, before persistence, so `snap()` cannot
    /// tell.)
    fn snapshot_unpersisted(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        log.applied < log.committed && log.applied + 1 < log.first_index()
    }

    /// Leaders start spread over the nodes (each shard's first replica campaigns first), but
    /// failovers pile them up on the survivors, and so does a start where the nodes come up
    /// one after another (the first node's campaigns reach nobody, and its shards go to
    /// whoever's election timer fires first). A leader that is not its shard's preferred
    /// replica hands leadership back once that replica has kept up for a while: it
    /// replicates and has every committed entry. Under load the leader almost always has an
    /// entry in flight, so "has the last entry" (the rule before) almost never held and the
    /// leaders stayed piled up: a 64-shard cluster ran whole benches with 8 / 26 / 30 leaders
    /// per node, which on machines of their own lets the busiest node set the pace.
    fn rebalance(&mut self) {
        let preferred = self.cfg.voters[0];
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader || preferred == self.cfg.node_id || raft.lead_transferee.is_some() {
            self.preferred_caught_up_checks = 0;
            return;
        }
        let caught_up = raft.prs().get(preferred).is_some_and(|p| {
            p.state == raft::ProgressState::Replicate && p.matched >= raft.raft_log.committed
        });
        self.preferred_caught_up_checks = if caught_up { self.preferred_caught_up_checks + 1 } else { 0 };
        if self.preferred_caught_up_checks >= REBALANCE_STABLE_CHECKS {
            tracing::info!(shard = self.cfg.shard, to = preferred, "handing leadership back to the preferred replica");
            self.preferred_caught_up_checks = 0;
            self.raw.transfer_leader(preferred);
        }
    }

    /// The fsync covering Ready `number` and all earlier ones completed.
    pub fn on_persisted(&mut self, number: u64, out: &mut Output) {
        while let Some((n, _)) = self.unsynced.front() {
            if *n > number {
                break;
            }
            let (_, msgs) = self.unsynced.pop_front().unwrap();
            out.messages.extend(msgs);
        }
        self.raw.on_persist_ready(number);
        self.advance_raft_applied();
    }

    /// The disk failed under us: stop serving writes; every waiter gets an answer.
    pub fn on_persist_failed(&mut self, error: String) {
        tracing::error!(shard = self.cfg.shard, %error, "fsync failed, shard stops accepting writes");
        self.failed = Some(error.clone());
        self.fail_waiters(|| NodeError::Internal(format!("fsync failed: {error}")));
    }

    fn fail_waiters(&mut self, err: impl Fn() -> NodeError) {
        for (_, reply) in self.batch.drain(..).chain(self.completions.drain(..)) {
            let _ = reply.send(Err(err()));
        }
        for p in self.proposals.drain(..) {
            for reply in p.replies {
                let _ = reply.send(Err(err()));
            }
        }
        for (_, reply) in self.reads_waiting.drain(..) {
            let _ = reply.send(Err(err()));
        }
        for (_, (_, reads)) in self.reads_pending.drain() {
            for (_, reply) in reads {
                let _ = reply.send(Err(err()));
            }
        }
        for (_, _, reply) in self.reads_ready.drain(..) {
            let _ = reply.send(Err(err()));
        }
    }

    /// Proposes the waiting batch (cut at the entry bounds) and handles raft's Ready.
    pub fn process(&mut self, out: &mut Output) {
        // While our own Ready awaits its fsync, or our last entry is not yet applied (its
        // replication round), commands keep batching: the next entry then carries everything
        // that arrived meanwhile, so the group grows with the load while an idle shard still
        // proposes at once. Waiting for the round, not only the fsync, matters with many
        // shards: at 64 shards, 150,000 batched gifts took 16,850 entries instead of 26,394
        // and 8% less node CPU (at 16 shards 5,085 instead of 9,343, CPU about the same).
        loop {
            if self.may_propose() {
                self.release_completions();
                if !self.batch.is_empty() {
                    self.propose_batch();
                }
            }
            self.start_read_round();
            self.handle_ready(out);
            // The Ready just handled may have applied our last entry, and what batched
            // meanwhile goes out now: left for the next call, it waited for whatever message
            // came next, up to a tick when none did.
            if !self.may_propose() || self.batch.is_empty() {
                break;
            }
        }
        if self.state_flush_due() {
            self.write_state_flush();
        }
    }

    /// Whether the batch may go out as an entry now: nothing of ours in flight (see
    /// [`Replica::process`]) and no leadership transfer under way. raft-rs drops proposals
    /// while it transfers; the batch waits instead, and is refused NOT_LEADER once the
    /// transfer completes (`propose_batch`; naming the new leader if it is known by then,
    /// never this node), or proposed if the transfer is aborted.
    fn may_propose(&self) -> bool {
        self.unsynced.is_empty() && self.proposals.is_empty() && self.raw.raft.lead_transferee.is_none()
    }

    fn state_flush_due(&self) -> bool {
        self.applied_index > self.flushed_index
            && (self.applied_index - self.flushed_index >= STATE_FLUSH_ENTRIES
                || self.state.bytes() >= STATE_FLUSH_BYTES
                || self.ticks >= self.next_flush_tick
                || self.raw.store().snapshot_wanted())
    }

    /// Moves the cached state, with the applied index it corresponds to, into `batch`.
    fn flush_state(&mut self, batch: &mut WriteBatch) {
        let ops_before = batch.ops.len();
        self.state.drain_into(self.engine.as_ref(), &self.prefix, batch);
        NodeStats::add(&self.cfg.stats.state_flushes, 1);
        NodeStats::add(&self.cfg.stats.state_flush_keys, (batch.ops.len() - ops_before) as u64);
        batch.put(keys::applied_index(self.cfg.shard), self.applied_index.to_be_bytes().to_vec());
        self.flushed_index = self.applied_index;
        self.next_flush_tick = next_flush_tick(self.next_flush_tick, self.ticks, self.cfg.state_flush_ticks);
        self.raw.store().clear_snapshot_wanted();
    }

    /// Puts the commit index into a batch that holds a state flush, once the hard state of
    /// the Ready that applied the flushed entries is known: a restart must never find the
    /// applied index above the commit index (raft-rs refuses to start so).
    fn write_commit_with_flush(&mut self, batch: &mut WriteBatch) {
        let commit = self.raw.store().hard_state().commit;
        assert!(commit >= self.applied_index, "shard {}: applied {} beyond commit {commit}", self.cfg.shard, self.applied_index);
        self.raw.mut_store().write_commit(batch);
    }

    /// The upgrade of storage format 7 (see `node.rs`), before the replica starts: records the
    /// outcome of the gifts pending in this shard's outbox, as the ledger now does at the
    /// debit, and writes it at the applied index the state is already at.
    pub fn record_pending_gift_outcomes(&mut self) -> Result<usize, StorageError> {
        assert_eq!(self.applied_index, self.flushed_index, "shard {}: upgraded before it applies anything", self.cfg.shard);
        let engine = self.engine.clone();
        let mut store = EngineStore::new(engine.as_ref(), &self.prefix, &mut self.state);
        let recorded = ledger::record_pending_gift_outcomes(&mut store);
        let mut batch = WriteBatch::default();
        self.state.drain_into(engine.as_ref(), &self.prefix, &mut batch);
        engine.write(batch)?;
        Ok(recorded)
    }

    /// Writes the cached state to the engine now (before a planned stop, or for a check that
    /// reads the engine directly). Only applying entries fills the cache, and it advances the
    /// applied index, so there is nothing to write while the two indexes agree.
    pub fn flush_state_now(&mut self) {
        if self.applied_index > self.flushed_index {
            self.write_state_flush();
        }
    }

    /// A state flush as an engine write of its own.
    fn write_state_flush(&mut self) {
        let mut batch = WriteBatch::default();
        let keys = self.state.keys();
        let started = std::time::Instant::now();
        self.flush_state(&mut batch);
        self.write_commit_with_flush(&mut batch);
        self.engine.write(batch).unwrap_or_else(|e| storage_fatal(self.cfg.shard, e));
        let took = started.elapsed();
        if took >= SLOW_STATE_FLUSH_WARN {
            tracing::warn!(shard = self.cfg.shard, keys, elapsed_ms = took.as_millis() as u64, "slow state flush: the replica's thread stood still meanwhile");
        }
        tracing::debug!(shard = self.cfg.shard, keys, elapsed_us = took.as_micros() as u64, "state flushed");
    }

    fn propose_batch(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            // Commands batch while we lead, but a message handled since (a new leader's
            // append or heartbeat, of a higher term) may have made us a follower before this
            // Ready could tell us. raft-rs would forward the proposal to that leader and
            // answer Ok: the entry would be appended there with nobody waiting for it.
            let err = self.not_leader();
            for (_, reply) in self.batch.drain(..) {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        while !self.batch.is_empty() {
            let mut bytes = 0;
            let mut take = 0;
            for (cmd, _) in &self.batch {
                let size = command_bytes(cmd);
                if take > 0 && (bytes + size > MAX_ENTRY_BYTES || take == MAX_ENTRY_COMMANDS) {
                    break;
                }
                bytes += size;
                take += 1;
            }
            let chunk: Vec<(Command, ProposeReply)> = self.batch.drain(..take).collect();
            self.last_timestamp_ms = self.last_timestamp_ms.max(self.cfg.clock.now_ms());
            let (commands, replies): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
            let batch = EntryBatch { timestamp_ms: self.last_timestamp_ms, commands };
            let data = batch.encode();
            let before = self.raw.raft.raft_log.last_index();
            match self.raw.propose(Vec::new(), data) {
                Ok(()) => {
                    let index = self.raw.raft.raft_log.last_index();
                    assert_eq!(index, before + 1, "one proposal, one entry");
                    let term = self.raw.raft.term;
                    if let Some(last) = self.proposals.back() {
                        assert!(index > last.index, "proposal indexes must increase");
                    }
                    self.proposals.push_back(Proposal { index, term, replies, batch: Some(batch) });
                    NodeStats::add(&self.cfg.stats.entries_proposed, 1);
                }
                Err(e) => {
                    let err = match e {
                        raft::Error::ProposalDropped => self.not_leader(),
                        other => NodeError::Unavailable(other.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    fn handle_ready(&mut self, out: &mut Output) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        NodeStats::add(&self.cfg.stats.readies, 1);
        out.messages.extend(rd.take_messages());

        if let Some(ss) = rd.ss() {
            self.on_role_change(ss.raft_state, out);
            if ss.leader_id != raft::INVALID_ID {
                out.leader_changed = Some(ss.leader_id);
            }
        }
        let mut batch = WriteBatch::default();
        // Whether this Ready's write must be atomic (see below).
        let mut atomic = false;
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone(), &mut batch);
            atomic = true;
        }
        for rs in rd.take_read_states() {
            let ctx = u64::from_be_bytes(rs.request_ctx.as_slice().try_into().unwrap_or([0; 8]));
            for (query, reply) in self.reads_pending.remove(&ctx).map(|(_, reads)| reads).unwrap_or_default() {
                self.reads_ready.push((rs.index, query, reply));
            }
        }

        // The new entries go to the raft log; one engine write per Ready carries the hard
        // state if its term or vote changed and, when a flush is due, the state cache with its
        // applied index and the commit index, so a crash can never keep an applied index above
        // the commit index it was derived from.
        let answers = self.apply_entries(rd.take_committed_entries(), &mut batch);
        let flushing = self.state_flush_due();
        if flushing {
            self.flush_state(&mut batch);
            atomic = true;
        }
        self.log_bytes.appended(rd.entries());
        self.raw.mut_store().append(rd.entries());
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().update_hard_state(hs, &mut batch);
        }
        if flushing {
            self.write_commit_with_flush(&mut batch);
        }
        // A snapshot or a state flush (state with its applied index) must land whole. Else
        // the batch is a hard state alone, which needs no atomic batch (sled writes out its
        // log buffer for every atomic batch).
        atomic |= batch.ops.iter().any(|op| !matches!(op, WriteOp::Put(..)));
        if atomic {
            self.engine.write(batch).unwrap_or_else(|e| storage_fatal(self.cfg.shard, e));
        } else if !batch.is_empty() {
            self.engine.write_ordered(batch).unwrap_or_else(|e| storage_fatal(self.cfg.shard, e));
        }
        self.raw.mut_store().announce_truncation();
        for (index, term, results) in answers {
            self.answer(index, term, results);
        }
        let snapshots_sent: Vec<u64> = out
            .messages
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        let (persisted, immediate): (Vec<RaftMessage>, Vec<RaftMessage>) = rd
            .take_persisted_messages()
            .into_iter()
            // A heartbeat response claims nothing about our log or vote, so it need not wait
            // for an fsync; holding it there lets a slow disk fail the leader's check-quorum.
            .partition(|m| m.get_msg_type() != MessageType::MsgHeartbeatResponse);
        out.messages.extend(immediate);
        let number = rd.number();
        // A Ready's persisted messages may rely on any earlier Ready being durable, so once
        // one Ready waits for an fsync, every later one waits behind it.
        if rd.must_sync() || !self.unsynced.is_empty() {
            self.unsynced.push_back((number, persisted));
            out.sync = Some(number);
        } else {
            out.messages.extend(persisted);
        }
        self.raw.advance_append_async(rd);
        self.advance_raft_applied();
        for to in snapshots_sent {
            // Optimistic: if the snapshot is lost, the follower's rejections bring it back.
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        self.maybe_compact();
        self.serve_reads();
    }

    /// Tells raft how far we applied, never beyond what raft itself counts as persisted and
    /// committed (after installing a snapshot, raft counts it persisted only after its fsync).
    fn advance_raft_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let safe = self.applied_index.min(log.persisted).min(log.committed);
        if safe > log.applied {
            self.raw.advance_apply_to(safe);
        }
    }

    fn install_snapshot(&mut self, snapshot: raft::prelude::Snapshot, batch: &mut WriteBatch) {
        let shard = self.cfg.shard;
        let meta = snapshot.get_metadata().clone();
        assert!(meta.index > self.applied_index, "shard {shard}: snapshot at {} does not move past applied {}", meta.index, self.applied_index);
        crate::raftlog::snapshot::install(&snapshot.data, shard, meta.index, batch)
            .unwrap_or_else(|e| storage_fatal(shard, e));
        self.raw.mut_store().apply_snapshot(&meta, batch);
        // The snapshot replaced the state the cached writes applied to, and the log.
        self.state.clear();
        self.log_bytes.reset();
        self.applied_index = meta.index;
        self.flushed_index = meta.index;
        self.next_flush_tick = next_flush_tick(self.next_flush_tick, self.ticks, self.cfg.state_flush_ticks);
        self.snapshots_installed += 1;
        tracing::info!(shard, index = meta.index, term = meta.term, bytes = snapshot.data.len(), "installed snapshot");
    }

    /// Keeps the raft log bounded: once it holds more than `compact_log_entries` entries or
    /// `compact_log_bytes` bytes whose state is flushed, drops the older half of them
    /// (followers that need them get a snapshot). Entries above the flushed index stay: a
    /// restart re-applies them.
    fn maybe_compact(&mut self) {
        let (limit_entries, limit_bytes) = (self.cfg.compact_log_entries, self.cfg.compact_log_bytes);
        let first = self.raw.store().first_log_index();
        let flushed = self.flushed_index;
        if flushed < first || self.compaction_checked == Some((first, flushed)) {
            return;
        }
        let mut to_index = 0;
        if flushed - first + 1 > limit_entries {
            to_index = flushed - limit_entries / 2;
        }
        if self.log_bytes.between(first - 1, flushed) > limit_bytes {
            to_index = to_index.max(self.log_bytes.compact_point(flushed, limit_bytes / 2).unwrap_or(flushed));
        }
        if to_index < first {
            self.compaction_checked = Some((first, flushed));
        }
        self.compact_to(to_index);
    }

    /// Drops every flushed entry once the oldest ones keep the node's old raft log segments
    /// (and every later one) on disk, though the log is within its bounds: typically a shard
    /// that has gone quiet.
    fn compact_if_keeping_old_segments(&mut self) {
        if self.raw.store().pins_old_segments() {
            self.compact_to(self.flushed_index);
        }
    }

    /// Compacts the log through `to_index` (at most the flushed index), if that drops anything.
    fn compact_to(&mut self, to_index: u64) {
        debug_assert!(to_index <= self.flushed_index, "shard {}: compaction to {to_index} past the flushed state", self.cfg.shard);
        if to_index < self.raw.store().first_log_index() {
            return;
        }
        let mut batch = WriteBatch::default();
        self.raw.mut_store().compact(to_index, &mut batch);
        self.engine.write(batch).unwrap_or_else(|e| storage_fatal(self.cfg.shard, e));
        self.raw.mut_store().announce_truncation();
        self.log_bytes.compacted(to_index);
        tracing::debug!(shard = self.cfg.shard, to_index, "compacted raft log");
    }

    fn on_role_change(&mut self, role: StateRole, out: &mut Output) {
        let was = self.role;
        self.role = role;
        if was == StateRole::Leader && role != StateRole::Leader {
            // Entries we proposed may still commit under the next leader; their clients learn
            // the outcome by retrying with the same request id.
            tracing::info!(shard = self.cfg.shard, "lost leadership");
            let err = self.not_leader();
            self.fail_waiters(|| err.clone());
        }
        if role == StateRole::Leader && was != StateRole::Leader {
            tracing::info!(shard = self.cfg.shard, term = self.raw.raft.term, "became leader");
            out.became_leader = true;
        }
    }

    /// Applies committed entries into `batch` (state and applied index); returns the results
    /// to answer once the batch is written.
    fn apply_entries(&mut self, entries: Vec<Entry>, batch: &mut WriteBatch) -> Vec<(u64, u64, Vec<Applied>)> {
        let mut answers: Vec<(u64, u64, Vec<Applied>)> = Vec::new();
        if entries.is_empty() {
            return answers;
        }
        let shard = self.cfg.shard;
        let engine = self.engine.clone();
        let mut store = EngineStore::new(engine.as_ref(), &self.prefix, &mut self.state);
        for entry in entries {
            assert_eq!(entry.index, self.applied_index + 1, "shard {shard}: entries apply in order");
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's no-op
                EntryType::EntryNormal => {
                    let proposed = self
                        .proposals
                        .iter_mut()
                        .take_while(|p| p.index <= entry.index)
                        .find(|p| p.index == entry.index && p.term == entry.term)
                        .and_then(|p| p.batch.take());
                    let decoded = match proposed {
                        Some(batch) => batch,
                        None => EntryBatch::decode(&entry.data)
                            .unwrap_or_else(|e| panic!("shard {shard}: undecodable entry {}: {e}", entry.index)),
                    };
                    let results = decoded
                        .commands
                        .iter()
                        .enumerate()
                        .map(|(position, cmd)| {
                            let ctx = EntryContext {
                                shard,
                                index: entry.index,
                                position: position as u32,
                                timestamp_ms: decoded.timestamp_ms,
                            };
                            ledger::apply(&mut store, &self.cfg.layout, &ctx, cmd)
                        })
                        .collect();
                    NodeStats::add(&self.cfg.stats.entries_applied, 1);
                    NodeStats::add(&self.cfg.stats.commands_applied, decoded.commands.len() as u64);
                    answers.push((entry.index, entry.term, results));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let cs = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
                        let cc = ConfChangeV2::parse_from_bytes(&entry.data).expect("decode conf change v2");
                        self.raw.apply_conf_change(&cc)
                    } else {
                        let cc = raft::prelude::ConfChange::parse_from_bytes(&entry.data).expect("decode conf change");
                        self.raw.apply_conf_change(&cc)
                    }
                    .expect("apply conf change");
                    self.raw.mut_store().set_conf_state(&cs, batch);
                }
            }
            self.applied_index = entry.index;
        }
        answers
    }

    /// What a delivery of this shard's effects may tell their targets: the oldest pending
    /// outbox index (see `ledger::EffectDelivery`). Loads the outbox index on first use.
    fn completed_below(&mut self) -> u64 {
        if !self.state.outbox_loaded() {
            let store = EngineStore::read_only(self.engine.as_ref(), &self.prefix, &self.state);
            let keys: Vec<Vec<u8>> = ledger::Store::scan(&store, ledger::keys::OUTBOX_PREFIX, usize::MAX).into_iter().map(|(key, _)| key).collect();
            self.state.load_outbox(keys);
        }
        self.state.completed_below(self.applied_index).expect("the outbox index was just loaded")
    }

    /// Answers the waiters of the entry at `index`, if this replica proposed it in `term`.
    /// A pending effect's answer says which of this shard's effects are completed.
    fn answer(&mut self, index: u64, term: u64, mut results: Vec<Applied>) {
        if !self.proposals.is_empty() && results.iter().any(|r| matches!(r, Applied::Pending(_))) {
            let completed_below = self.completed_below();
            for result in &mut results {
                if let Applied::Pending(pending) = result {
                    pending.completed_below = completed_below;
                }
            }
        }
        while let Some(front) = self.proposals.front() {
            if front.index > index {
                return;
            }
            let p = self.proposals.pop_front().unwrap();
            if p.index == index && p.term == term {
                assert_eq!(p.replies.len(), results.len(), "one result per proposed command");
                for (reply, result) in p.replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
                return;
            }
            // Our entry at that index was replaced by another leader's: it never applied.
            for reply in p.replies {
                let _ = reply.send(Err(NodeError::Unavailable(
                    "leadership changed before the command committed; retry with the same request id".into(),
                )));
            }
        }
    }

    fn serve_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.reads_ready.drain(..).partition(|(index, _, _)| *index <= applied);
        self.reads_ready = waiting;
        for (_, query, reply) in ready {
            let _ = reply.send(Ok(self.query(&query)));
        }
    }

    /// Answers a query from the applied state (callers guarantee linearizability).
    pub fn query(&self, query: &ReadQuery) -> ReadAnswer {
        let store = EngineStore::read_only(self.engine.as_ref(), &self.prefix, &self.state);
        match query {
            ReadQuery::Account(id) => ReadAnswer::Account(ledger::read::account(&store, id)),
            ReadQuery::History { account, limit, cursor } => {
                let (entries, next_cursor) = ledger::read::history(&store, account, *limit, *cursor);
                ReadAnswer::History { entries, next_cursor }
            }
            ReadQuery::Rates => ReadAnswer::Rates(ledger::read::rate_card(&store)),
            ReadQuery::Payout(id) => ReadAnswer::Payout(ledger::read::payout(&store, id)),
            ReadQuery::PendingEffects => ReadAnswer::PendingEffects(ledger::read::pending_effects(&store)),
            ReadQuery::EffectResult(id) => ReadAnswer::EffectResult(ledger::read::effect_result(&store, id)),
            ReadQuery::Audit => ReadAnswer::Audit(ledger::audit::shard_audit(&store, self.cfg.shard)),
        }
    }

    pub fn status(&self) -> ShardStatus {
        let st = self.raw.status();
        ShardStatus {
            shard: self.cfg.shard,
            leader_id: self.raw.raft.leader_id,
            term: st.hs.term,
            commit_index: st.hs.commit,
            applied_index: self.applied_index,
            role: match st.ss.raft_state {
                StateRole::Leader => "leader",
                StateRole::Follower => "follower",
                StateRole::Candidate => "candidate",
                StateRole::PreCandidate => "pre-candidate",
            }
            .to_string(),
            voters: self.raw.raft.prs().conf().voters().ids().iter().collect(),
            pending_proposals: self.batch.len()
                + self.completions.len()
                + self.proposals.iter().map(|p| p.replies.len()).sum::<usize>(),
            snapshots_installed: self.snapshots_installed,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::sync::oneshot;

    use super::*;
    use crate::error::NodeResult;
    use crate::ledger::{sim, CompleteEffect, EffectResult, Outcome};
    use crate::sim::SimDisk;
    use crate::storage::Engine;

    /// Node `node_id`'s replica of shard 0, replicated on nodes 1..=`nodes`.
    fn test_config(node_id: u64, nodes: u64) -> ReplicaConfig {
        ReplicaConfig {
            shard: 0,
            node_id,
            layout: Layout::new(1),
            voters: (1..=nodes).collect(),
            addresses: Arc::new((1..=nodes).map(|id| (id, format!("n{id}"))).collect()),
            timing: RaftTiming { tick_ms: 100, election_ticks: 10, heartbeat_ticks: 2, fixed_election_timeout: true },
            compact_log_entries: 10_000,
            compact_log_bytes: 32 << 20,
            state_flush_ticks: state_flush_ticks(1),
            entry_cache_bytes: crate::raftlog::entry_cache_bytes(1),
            clock: Clock::Manual(Arc::new(AtomicU64::new(1_700_000_000_000))),
            stats: Arc::default(),
        }
    }

    /// A one-node replica on an in-memory engine, elected and idle.
    pub(crate) fn lone_leader() -> (Replica, SimDisk) {
        let engine = SimDisk::new();
        let mut replica = engine.open_replica(test_config(1, 1)).unwrap();
        replica.campaign_if_preferred();
        settle(&mut replica, &engine);
        assert_eq!(replica.status().role, "leader");
        (replica, engine)
    }

    /// A three-replica shard on in-memory engines, none elected yet; index i is node i + 1.
    fn unelected_trio() -> Vec<(Replica, SimDisk)> {
        (1..=3)
            .map(|node_id| {
                let engine = SimDisk::new();
                (engine.open_replica(test_config(node_id, 3)).unwrap(), engine)
            })
            .collect()
    }

    /// A three-replica shard on in-memory engines, replica 1 elected; index i is node i + 1.
    fn trio() -> Vec<(Replica, SimDisk)> {
        let mut trio = unelected_trio();
        trio[0].0.campaign_if_preferred();
        exchange(&mut trio);
        assert_eq!(trio[0].0.status().role, "leader");
        trio
    }

    /// Processes `replica` once (syncing if asked) and returns the messages it sends, held
    /// back from their receivers.
    fn process_once(replica: &mut Replica, engine: &SimDisk) -> Vec<RaftMessage> {
        let mut out = Output::default();
        replica.process(&mut out);
        if let Some(number) = out.sync {
            engine.sync().unwrap();
            replica.on_persisted(number, &mut out);
        }
        out.messages
    }

    fn deliver(replicas: &mut [(Replica, SimDisk)], messages: Vec<RaftMessage>) {
        for m in messages {
            replicas[(m.to - 1) as usize].0.step(m);
        }
    }

    /// Runs the replicas, syncing whenever asked and delivering every message, until none is
    /// left; returns the messages delivered, as (type, from, to).
    fn exchange(replicas: &mut [(Replica, SimDisk)]) -> Vec<(MessageType, u64, u64)> {
        let mut delivered = Vec::new();
        for _ in 0..100 {
            let messages: Vec<RaftMessage> = replicas.iter_mut().flat_map(|(replica, engine)| process_once(replica, engine)).collect();
            if messages.is_empty() {
                return delivered;
            }
            delivered.extend(messages.iter().map(|m| (m.get_msg_type(), m.from, m.to)));
            deliver(replicas, messages);
        }
        panic!("the replicas never went quiet");
    }

    #[test]
    fn a_committed_entry_costs_each_follower_one_append_and_one_response() {
        let mut trio = trio();
        let mut bought = propose(&mut trio[0].0, sim::purchase_cmd("r1", "fan", "9.99", "USD", "pay-1"));
        let delivered = exchange(&mut trio);
        assert!(matches!(bought.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
        for follower in [2, 3] {
            let count = |kind, from, to| delivered.iter().filter(|d| **d == (kind, from, to)).count();
            // raft-rs's default would follow up with a second, empty append to carry the
            // commit index (and get a second response).
            assert_eq!(count(MessageType::MsgAppend, 1, follower), 1, "{delivered:?}");
            assert_eq!(count(MessageType::MsgAppendResponse, follower, 1), 1, "{delivered:?}");
        }
        assert_eq!(delivered.len(), 4, "{delivered:?}");
        // The followers apply once the next heartbeat brings them the commit index.
        let leader_applied = trio[0].0.status().applied_index;
        for _ in 0..2 {
            trio[0].0.tick();
        }
        exchange(&mut trio);
        for (replica, _) in &trio[1..] {
            assert_eq!(replica.status().applied_index, leader_applied);
        }
    }

    #[test]
    fn commands_batched_before_a_new_leader_took_over_are_refused_not_forwarded() {
        let mut trio = trio();
        let mut bought = propose(&mut trio[0].0, sim::purchase_cmd("r1", "fan", "9.99", "USD", "pay-1"));
        // In the same mailbox drain, before the replica runs: node 2 leads a later term.
        let mut heartbeat = RaftMessage::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.from = 2;
        heartbeat.to = 1;
        heartbeat.term = trio[0].0.raw.raft.term + 1;
        trio[0].0.step(heartbeat);
        let (replica, engine) = &mut trio[0];
        settle(replica, engine);
        match bought.try_recv() {
            Ok(Err(NodeError::NotLeader { leader_id, .. })) => assert_eq!(leader_id, Some(2)),
            other => panic!("expected NOT_LEADER naming node 2, got {other:?}"),
        }
        assert!(replica.raw.raft.msgs.iter().all(|m| m.get_msg_type() != MessageType::MsgPropose));
        assert_eq!(replica.status().pending_proposals, 0);
    }

    /// Processes, syncing whenever asked, until the replica has nothing left to do.
    fn settle(replica: &mut Replica, engine: &SimDisk) {
        for _ in 0..100 {
            let mut out = Output::default();
            replica.process(&mut out);
            let Some(number) = out.sync else { return };
            engine.sync().unwrap();
            replica.on_persisted(number, &mut Output::default());
        }
        panic!("the replica never settled");
    }

    /// Proposes purchase `i` (its own request id and payment) to a lone `replica`, settles it
    /// and checks it was applied.
    fn buy(replica: &mut Replica, disk: &SimDisk, i: usize) {
        let mut bought = propose(replica, sim::purchase_cmd(&format!("r{i}"), "fan", "9.99", "USD", &format!("pay-{i}")));
        settle(replica, disk);
        assert!(matches!(bought.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
    }

    fn completion(effect: &str) -> Command {
        let result = EffectResult::Credited { coins_balance: 1 };
        Command::CompleteEffect(CompleteEffect { effect_id: effect.into(), home_shard: 0, result })
    }

    fn propose(replica: &mut Replica, cmd: Command) -> oneshot::Receiver<NodeResult<Applied>> {
        let (reply, rx) = oneshot::channel();
        replica.propose(cmd, reply);
        rx
    }

    #[test]
    fn a_preferred_replica_whose_first_campaign_reached_nobody_campaigns_again_soon() {
        let mut trio = unelected_trio();
        // Node 1 starts first: its campaign goes out before the others listen.
        trio[0].0.campaign_if_preferred();
        let (first, engine) = &mut trio[0];
        assert!(!process_once(first, engine).is_empty(), "it campaigned");
        for tick in 1..=STARTUP_CAMPAIGN_TICKS {
            trio[0].0.tick();
            exchange(&mut trio);
            if tick < STARTUP_CAMPAIGN_TICKS {
                assert_ne!(trio[0].0.status().role, "leader");
            }
        }
        // Well before its election timeout (10 ticks).
        assert_eq!(trio[0].0.status().role, "leader");
        assert!(trio[1..].iter().all(|(r, _)| r.leader_id() == Some(1)));
    }

    #[test]
    fn leadership_goes_back_to_the_preferred_replica_while_entries_are_in_flight() {
        let mut trio = trio();
        trio[0].0.raw.transfer_leader(2);
        exchange(&mut trio);
        assert_eq!(trio[1].0.status().role, "leader");
        // A loaded leader: at every tick one of its entries is out, not yet acknowledged.
        let mut i = 0;
        let transfer_tick = loop {
            i += 1;
            assert!(i <= 10 * REBALANCE_CHECK_TICKS, "leadership never went back to the preferred replica");
            let _bought = propose(&mut trio[1].0, sim::purchase_cmd(&format!("r{i}"), "fan", "9.99", "USD", &format!("pay-{i}")));
            let (leader, engine) = &mut trio[1];
            let in_flight = process_once(leader, engine);
            assert!(leader.raw.raft.raft_log.last_index() > leader.raw.raft.raft_log.committed, "an entry is in flight");
            leader.tick();
            let transferring = leader.raw.raft.lead_transferee == Some(1);
            deliver(&mut trio, in_flight);
            if transferring {
                break i;
            }
            exchange(&mut trio);
        };
        assert_eq!(transfer_tick, REBALANCE_CHECK_TICKS * u64::from(REBALANCE_STABLE_CHECKS));
        // A command that arrives during the transfer waits for it, not refused by a leader
        // that is leaving...
        let mut late = propose(&mut trio[1].0, sim::purchase_cmd("late", "fan", "9.99", "USD", "pay-late"));
        let (leader, engine) = &mut trio[1];
        let sent = process_once(leader, engine);
        assert!(late.try_recv().is_err(), "held, not answered");
        assert!(sent.iter().all(|m| m.get_msg_type() != MessageType::MsgAppend || m.entries.iter().all(|e| e.data.is_empty())), "not proposed");
        deliver(&mut trio, sent);
        exchange(&mut trio);
        assert_eq!(trio[0].0.status().role, "leader");
        // ...and is then refused as the leadership moved: not naming the old leader, which
        // would send its caller back there. (Node 2 stepped down on node 1's vote request,
        // before it heard who won.)
        match late.try_recv() {
            Ok(Err(NodeError::NotLeader { leader_id, .. })) => assert_ne!(leader_id, Some(2)),
            other => panic!("expected NOT_LEADER, got {other:?}"),
        }
    }

    #[test]
    fn a_transfer_that_is_aborted_proposes_the_commands_it_held() {
        let mut trio = trio();
        // Node 3 never hears of it: the transfer cannot complete.
        trio[0].0.raw.transfer_leader(3);
        let mut bought = propose(&mut trio[0].0, sim::purchase_cmd("r1", "fan", "9.99", "USD", "pay-1"));
        let (leader, engine) = &mut trio[0];
        let _lost = process_once(leader, engine);
        assert!(bought.try_recv().is_err(), "held while transferring");
        // raft-rs gives the transfer up after an election timeout.
        for _ in 0..=test_config(1, 3).timing.election_ticks {
            trio[0].0.tick();
        }
        assert_eq!(trio[0].0.raw.raft.lead_transferee, None);
        exchange(&mut trio);
        assert!(matches!(bought.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
    }

    #[test]
    fn the_log_is_compacted_by_entries_and_by_bytes_once_the_state_is_flushed() {
        for (entries_max, bytes_max) in [(4, 32 << 20), (10_000, 400)] {
            let disk = SimDisk::new();
            let cfg = ReplicaConfig { compact_log_entries: entries_max, compact_log_bytes: bytes_max, ..test_config(1, 1) };
            let mut replica = disk.open_replica(cfg).unwrap();
            replica.campaign_if_preferred();
            settle(&mut replica, &disk);
            // Within both bounds when flushed: the Readies after it find nothing to compact
            // (and remember so); then the log outgrows the bound under test, all of it above
            // the flushed index, so nothing may be compacted yet.
            buy(&mut replica, &disk, 0);
            replica.flush_state_now();
            for i in 1..12 {
                buy(&mut replica, &disk, i);
            }
            assert_eq!(replica.raw.store().first_log_index(), 1, "limits {entries_max} entries, {bytes_max} bytes");
            // Once that is flushed too, the next Ready compacts.
            replica.flush_state_now();
            let flushed = replica.raw.raft.raft_log.last_index();
            buy(&mut replica, &disk, 12);
            let first = replica.raw.store().first_log_index();
            assert!(first > 1 && first <= flushed + 1, "limits {entries_max} entries, {bytes_max} bytes: first index {first}, flushed {flushed}");
            let kept = replica.log_bytes.between(first - 1, flushed);
            assert!(flushed + 1 - first <= entries_max && kept <= bytes_max, "kept {} entries, {kept} bytes", flushed + 1 - first);
        }
    }

    #[test]
    fn a_quiet_shard_compacts_once_its_log_keeps_old_raft_log_segments() {
        let disk = SimDisk::with_segment_bytes(4_096);
        let mut replica = disk.open_replica(test_config(1, 1)).unwrap();
        replica.campaign_if_preferred();
        settle(&mut replica, &disk);
        for i in 0..3 {
            buy(&mut replica, &disk, i);
        }
        replica.flush_state_now();
        let last = replica.raw.raft.raft_log.last_index();
        assert!(replica.raw.store().first_log_index() <= last, "the entries are still in the log");
        assert!(!replica.raw.store().pins_old_segments());

        // Other shards of the node fill its raft log; this one stays quiet, far within its
        // compaction bounds (10,000 entries or 32 MiB).
        let filler = vec![0u8; 4_000];
        for index in 1..=crate::raftlog::wal::RETAINED_SEGMENTS + 1 {
            disk.wal.append(99, 0, &[(index, 1, filler.as_slice())]);
        }
        disk.sync().unwrap();
        assert!(replica.raw.store().pins_old_segments());
        let segments = disk.wal.segment_count();

        // It has no Ready to compact in (a lone leader sends no heartbeats): its ticks check.
        for _ in 0..COMPACT_CHECK_TICKS {
            replica.tick();
        }
        settle(&mut replica, &disk);
        assert_eq!(replica.raw.store().first_log_index(), last + 1, "compacted up to its flushed state");
        // The truncation frees the segments once a sync has made it durable.
        disk.sync().unwrap();
        assert!(!replica.raw.store().pins_old_segments());
        assert!(disk.wal.segment_count() < segments, "its segment is deleted ({segments} before, {} after)", disk.wal.segment_count());

        // The compacted replica still serves and restarts: its next command commits, and the
        // state survives a crash of everything not synced.
        buy(&mut replica, &disk, 9);
        drop(replica);
        let crashed = disk.crash(0);
        let reopened = crashed.open_replica(test_config(1, 1)).unwrap();
        assert_eq!(reopened.raw.raft.raft_log.last_index(), last + 1);
    }

    #[test]
    fn a_completion_rides_with_the_next_entry_or_goes_alone_after_a_tick() {
        let (mut replica, engine) = lone_leader();
        let last = |r: &Replica| r.raw.raft.raft_log.last_index();
        let before = last(&replica);
        let mut done = propose(&mut replica, completion("tx-0-1-0"));
        settle(&mut replica, &engine);
        assert_eq!(last(&replica), before, "a lone completion waits");
        assert!(done.try_recv().is_err());
        assert_eq!(replica.status().pending_proposals, 1, "and it is counted as pending");

        let mut bought = propose(&mut replica, sim::purchase_cmd("r1", "fan", "9.99", "USD", "pay-1"));
        settle(&mut replica, &engine);
        assert_eq!(last(&replica), before + 1, "the purchase and the completion share one entry");
        assert!(matches!(bought.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
        assert!(matches!(done.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::EffectCompleted))))));

        let mut alone = propose(&mut replica, completion("tx-0-2-0"));
        settle(&mut replica, &engine);
        assert_eq!(last(&replica), before + 1);
        replica.tick();
        settle(&mut replica, &engine);
        assert_eq!(last(&replica), before + 2, "after a tick it is proposed by itself");
        assert!(matches!(alone.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::EffectCompleted))))));
    }

    #[test]
    fn what_batched_during_a_round_is_proposed_as_soon_as_the_round_applies() {
        let (mut replica, engine) = lone_leader();
        let last = |r: &Replica| r.raw.raft.raft_log.last_index();
        let before = last(&replica);
        let mut first = propose(&mut replica, sim::purchase_cmd("r1", "fan", "9.99", "USD", "pay-1"));
        let mut out = Output::default();
        replica.process(&mut out);
        let number = out.sync.expect("the entry waits for its fsync");
        let mut second = propose(&mut replica, sim::purchase_cmd("r2", "fan", "9.99", "USD", "pay-2"));
        replica.process(&mut Output::default());
        assert_eq!(last(&replica), before + 1, "it batches while the first entry is unsynced");
        engine.sync().unwrap();
        replica.on_persisted(number, &mut Output::default());
        let mut out = Output::default();
        replica.process(&mut out);
        assert!(matches!(first.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
        assert_eq!(last(&replica), before + 2, "proposed in the same call that applied the first, not at the next message");
        engine.sync().unwrap();
        replica.on_persisted(out.sync.expect("the second entry waits for its fsync"), &mut Output::default());
        settle(&mut replica, &engine);
        assert!(matches!(second.try_recv(), Ok(Ok(Applied::Done(Ok(Outcome::Purchase(_)))))));
    }

    #[test]
    fn held_back_completions_are_answered_when_leadership_is_lost() {
        let (mut replica, engine) = lone_leader();
        let mut done = propose(&mut replica, completion("tx-0-1-0"));
        settle(&mut replica, &engine);
        replica.on_persist_failed("disk gone".into());
        assert!(matches!(done.try_recv(), Ok(Err(NodeError::Internal(_)))), "never left hanging");
        assert_eq!(replica.status().pending_proposals, 0);
    }

    /// What a restart of shard 0 would read: its hard state and its applied index.
    fn stored_commit_and_applied(engine: &SimDisk) -> (raft::prelude::HardState, u64) {
        let hs = engine.get(&keys::hard_state(0)).unwrap().expect("a hard state is stored");
        let hs = raft::prelude::HardState::parse_from_bytes(&hs).unwrap();
        let applied = engine.get(&keys::applied_index(0)).unwrap().map_or(0, |b| u64::from_be_bytes(b.as_slice().try_into().unwrap()));
        (hs, applied)
    }

    #[test]
    fn the_commit_index_alone_is_written_only_with_a_state_flush() {
        let (mut replica, engine) = lone_leader();
        let (elected, _) = stored_commit_and_applied(&engine);
        assert_eq!(elected.term, replica.raw.raft.term, "a new term is written at once");
        for i in 0..5 {
            buy(&mut replica, &engine, i);
        }
        let commit = replica.status().commit_index;
        assert!(commit >= elected.commit + 5);
        assert_eq!(stored_commit_and_applied(&engine).0, elected, "five Readies moved only the commit index: nothing written");

        // A crash now: the restarted replica finds its entries, campaigns and commits them again.
        let crashed = engine.crash(0);
        let mut restarted = crashed.open_replica(test_config(1, 1)).unwrap();
        restarted.campaign_if_preferred();
        settle(&mut restarted, &crashed);
        assert!(restarted.status().commit_index > commit, "a new term's entry commits everything before it");
        let coins = |r: &Replica| match r.query(&ReadQuery::Account("fan".into())) {
            ReadAnswer::Account(Some(account)) => account.coins,
            other => panic!("fan's account: {other:?}"),
        };
        assert_eq!(coins(&restarted), coins(&replica));
        assert!(coins(&replica) > 0);

        // A state flush writes the commit index with the applied index, never below it.
        replica.flush_state_now();
        let (flushed, applied) = stored_commit_and_applied(&engine);
        assert_eq!((flushed.term, flushed.vote, flushed.commit), (elected.term, elected.vote, commit));
        assert_eq!(applied, replica.status().applied_index);
        assert!(flushed.commit >= applied);
        engine.sync().unwrap();
        let reopened = engine.crash(0).open_replica(test_config(1, 1)).unwrap();
        assert_eq!(reopened.status().applied_index, applied, "restarts from the flushed state, nothing to re-apply");
    }

    #[test]
    fn a_nodes_flush_rate_is_bounded_not_each_replicas() {
        // Few replicas: the 0.5 s floor.
        assert_eq!(state_flush_ticks(1), 5);
        assert_eq!(state_flush_ticks(2), 5);
        assert_eq!(state_flush_ticks(5), 10);
        // 16 shards on 3 nodes host 16 replicas each: one flush every 2 ticks in all.
        assert_eq!(state_flush_ticks(16), 32);
        // The 5 s ceiling bounds what a restart re-applies, whatever the count.
        assert_eq!(state_flush_ticks(64), 50);
        assert_eq!(state_flush_ticks(100_000), 50);
    }

    #[test]
    fn a_nodes_replicas_take_turns_to_flush() {
        for (shards, period) in [(16u32, state_flush_ticks(16)), (64, state_flush_ticks(64)), (8, state_flush_ticks(8)), (1, 5)] {
            let mut per_tick = vec![0u32; period as usize + 1];
            for shard in 0..shards {
                let first = first_flush_tick(shard, shards, period);
                assert!((1..=period).contains(&first), "{shards} shards: shard {shard} first flushes at tick {first}");
                per_tick[first as usize] += 1;
            }
            let most = u64::from(*per_tick.iter().max().unwrap());
            assert!(most <= u64::from(shards).div_ceil(period), "{shards} shards over {period} ticks: {most} flushes in one tick");
        }
    }

    #[test]
    fn replicas_keep_taking_turns_after_an_idle_spell() {
        let (shards, period) = (16u32, state_flush_ticks(16));
        // Idle for 500 ticks: every replica's first flush is overdue, and the first command
        // makes them all flush at tick 500; the next flushes are spread as the first ones were.
        let next: Vec<u64> = (0..shards).map(|shard| next_flush_tick(first_flush_tick(shard, shards, period), 500, period)).collect();
        let mut distinct = next.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), shards as usize, "one replica per tick at most: {next:?}");
        for (shard, &tick) in next.iter().enumerate() {
            assert!((501..=500 + period).contains(&tick), "shard {shard} next flushes at {tick}");
            assert_eq!((tick - first_flush_tick(shard as u32, shards, period)) % period, 0, "shard {shard} left its schedule");
        }
        // A flush before the scheduled tick (its byte or entry bound) keeps that tick.
        assert_eq!(next_flush_tick(40, 35, period), 40);
        // Flushed at the scheduled tick: one period later.
        assert_eq!(next_flush_tick(40, 40, period), 40 + period);
    }
}
