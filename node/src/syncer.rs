//! Group commit: one thread owns the fsync, and one fsync covers every shard's writes that
//! were waiting when it started.
//!
//! A shard appends its Ready's entries to the node's raft log (a memory buffer) and writes
//! its hard state to the engine, which costs microseconds, and then asks the syncer to make
//! them durable. While one fsync runs (milliseconds), requests from
//! all shards pile up in the channel; the next round drains them all and syncs once. So the
//! number of fsyncs per second is bounded by the disk, not by the number of shards or commands.
//!
//! Under concurrent load a round may also wait a little before it starts ([`GroupCommit`]),
//! as PostgreSQL's `commit_delay` does when `commit_siblings` transactions are active.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::raftlog::{sync_round, RaftWal};
use crate::stats::NodeStats;
use crate::storage::{SharedEngine, StorageError};

/// Called once the writes made before the request are durable (or the sync failed).
pub type SyncDone = Box<dyn FnOnce(Result<(), Arc<StorageError>>) + Send>;

/// Outstanding requests the channel holds before `request` blocks. Each shard has at most a
/// handful outstanding, so this bound is only reached if the disk has stopped.
const QUEUE_CAPACITY: usize = 65_536;

/// Requests served by one fsync at most, so a flood cannot starve the first waiters.
const MAX_REQUESTS_PER_SYNC: usize = 16_384;
/// A group commit slower than this is logged as a warning: every write of the node waited
/// for it, and past an election timeout (1 s by default) the followers' acknowledgements
/// come too late and leaders step down ("quorum is not active"). The log line is what ties
/// such a leader change to the disk.
const SLOW_SYNC_WARN: Duration = Duration::from_millis(250);

/// When a group commit starts.
///
/// A round normally starts as soon as a request arrives, so it covers the Readies written by
/// then; a shard that writes a moment later waits for the next round. Each round costs a
/// `pwrite`, an `fdatasync` (about 95 us of CPU on this machine's virtual disk, counted in the
/// cluster) and a sleep and wake of the sync thread; with 16 unbatched clients a node ran
/// about 0.7 rounds per gift, a quarter of its CPU. So after a round that covered at least
/// `min_writers` requests (shards writing concurrently), the next one waits `delay` after its
/// first request before it writes and syncs, and takes what arrived meanwhile. A round that
/// follows a lone request starts at once: a single client's commands (or an idle cluster's)
/// are not delayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    pub delay: Duration,
    pub min_writers: usize,
}

impl GroupCommit {
    /// Every round starts at once.
    pub const IMMEDIATE: GroupCommit = GroupCommit { delay: Duration::ZERO, min_writers: usize::MAX };

    /// Whether a round after one that served `last_waiters` requests waits.
    fn waits_after(&self, last_waiters: usize) -> bool {
        !self.delay.is_zero() && last_waiters >= self.min_writers
    }
}

#[derive(Clone)]
pub struct Syncer {
    tx: SyncSender<SyncDone>,
}

impl Syncer {
    pub fn start(engine: SharedEngine, wal: Arc<RaftWal>, group_commit: GroupCommit, stats: Arc<NodeStats>) -> (Syncer, JoinHandle<()>) {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("coinledger-sync".into())
            .spawn(move || run(engine, wal, group_commit, &stats, rx))
            .expect("spawn sync thread");
        (Syncer { tx }, handle)
    }

    /// Asks for every write made so far to become durable; `done` runs on the sync thread.
    pub fn request(&self, done: SyncDone) {
        match self.tx.try_send(done) {
            Ok(()) => {}
            Err(TrySendError::Full(done)) => {
                // Back-pressure: the disk is behind. Blocking the caller is the right answer.
                if self.tx.send(done).is_err() {
                    tracing::error!("sync thread has stopped");
                }
            }
            Err(TrySendError::Disconnected(_)) => tracing::error!("sync thread has stopped"),
        }
    }
}

fn run(engine: SharedEngine, wal: Arc<RaftWal>, group_commit: GroupCommit, stats: &NodeStats, rx: Receiver<SyncDone>) {
    let mut waiters: Vec<SyncDone> = Vec::new();
    let mut rounds: u64 = 0;
    let mut last_waiters = 0;
    while let Ok(first) = rx.recv() {
        waiters.push(first);
        if group_commit.waits_after(last_waiters) {
            std::thread::sleep(group_commit.delay);
        }
        while waiters.len() < MAX_REQUESTS_PER_SYNC {
            match rx.try_recv() {
                Ok(more) => waiters.push(more),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = sync_round(&wal, engine.as_ref()).map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, "fsync failed: the node can no longer acknowledge writes");
        }
        rounds += 1;
        last_waiters = waiters.len();
        let took = started.elapsed();
        NodeStats::add(&stats.group_commits, 1);
        NodeStats::add(&stats.group_commit_us, took.as_micros() as u64);
        NodeStats::add(&stats.group_commit_waiters, waiters.len() as u64);
        if took >= SLOW_SYNC_WARN {
            tracing::warn!(round = rounds, waiters = waiters.len(), sync_ms = took.as_millis() as u64, "slow group commit: the disk held every write of this node");
        }
        tracing::trace!(round = rounds, waiters = waiters.len(), sync_us = took.as_micros() as u64, "group commit");
        for done in waiters.drain(..) {
            done(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;

    use super::*;
    use crate::storage::{Engine, MemEngine, WriteBatch};

    #[test]
    fn every_request_is_answered_after_its_writes_are_durable() {
        let engine = Arc::new(MemEngine::new());
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(RaftWal::open(dir.path()).unwrap());
        let (syncer, _thread) = Syncer::start(engine.clone(), wal.clone(), GroupCommit::IMMEDIATE, Arc::default());
        let (tx, rx) = channel();
        let answered = Arc::new(AtomicUsize::new(0));
        for i in 0..100u32 {
            let mut b = WriteBatch::default();
            b.put(i.to_be_bytes().to_vec(), vec![1]);
            engine.write(b).unwrap();
            let entry = i.to_le_bytes();
            wal.append(7, 0, &[(u64::from(i) + 1, 1, entry.as_slice())]);
            let (tx, engine, wal, answered) = (tx.clone(), engine.clone(), wal.clone(), answered.clone());
            syncer.request(Box::new(move |r| {
                r.unwrap();
                // What a crash would keep now includes this request's writes, in both files.
                let durable = engine.durable_copy();
                assert!(durable.get(&i.to_be_bytes()).unwrap().is_some());
                let crashed = tempfile::tempdir().unwrap();
                let log = wal.crash_copy(crashed.path()).unwrap().take_replayed(7);
                assert!(log.iter().flat_map(|r| &r.entries).any(|e| e.index == u64::from(i) + 1));
                answered.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            }));
        }
        for _ in 0..100 {
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        }
        assert_eq!(answered.load(Ordering::SeqCst), 100);
    }

    /// Sends a request; the receiver gets the time it was answered.
    fn timed_request(syncer: &Syncer) -> std::sync::mpsc::Receiver<std::time::Instant> {
        let (tx, rx) = channel();
        syncer.request(Box::new(move |r| {
            r.unwrap();
            tx.send(std::time::Instant::now()).unwrap();
        }));
        rx
    }

    #[test]
    fn a_round_waits_only_after_a_round_of_concurrent_requests() {
        let delay = Duration::from_millis(400);
        let engine = Arc::new(MemEngine::new());
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(RaftWal::open(dir.path()).unwrap());
        let (syncer, _thread) = Syncer::start(engine, wal, GroupCommit { delay, min_writers: 2 }, Arc::default());
        let answered_within = |rx: std::sync::mpsc::Receiver<std::time::Instant>, sent: std::time::Instant| {
            rx.recv_timeout(Duration::from_secs(10)).expect("answered").duration_since(sent)
        };
        // A lone request after lone requests: at once.
        for _ in 0..3 {
            let sent = std::time::Instant::now();
            assert!(answered_within(timed_request(&syncer), sent) < delay / 2);
        }
        // Hold the sync thread inside a round's answers while two requests queue up: the
        // next round takes both.
        let (release_tx, release_rx) = channel::<()>();
        let (held_tx, held_rx) = channel();
        syncer.request(Box::new(move |_| {
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        }));
        held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (a, b) = (timed_request(&syncer), timed_request(&syncer));
        let queued = std::time::Instant::now();
        release_tx.send(()).unwrap();
        assert!(answered_within(a, queued) < delay / 2, "the round after a lone one starts at once");
        answered_within(b, queued);
        // The round after that one (2 requests) waits for the delay, then starts.
        let sent = std::time::Instant::now();
        assert!(answered_within(timed_request(&syncer), sent) >= delay, "a round after concurrent requests waits");
        // ...and the one after it (1 request) does not.
        let sent = std::time::Instant::now();
        assert!(answered_within(timed_request(&syncer), sent) < delay / 2);
    }
}
