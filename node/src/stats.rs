//! Work counters of one node since it started, reported by Admin `Status`.
//!
//! Throughput here is decided by how much work each command drags along: raft entries,
//! group-commit rounds, peer frames, state flushes. Two runs with the same gifts/s can differ
//! in all of them (shard count, batch size, load shape), and gifts/s on these machines moves
//! by 30% from one hour to the next while these counts do not. SREs poll them for rates
//! (fsyncs per second, dropped peer messages), and `coinctl bench` prints them per 1,000
//! gifts over the cluster.
//!
//! One instance per node, shared by its syncer, replicas and peer transport (never a global:
//! tests and the simulation run several nodes in one process). Relaxed atomics: each counter
//! is a monotonic tally read for reporting, never used to order anything.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::NodeCounters;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct NodeStats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl NodeStats {
            /// Every counter as read now, as Admin `Status` reports them (the proto message
            /// has a field of the same name for each: a counter added here without one, or
            /// one there without a counter, does not compile).
            pub fn snapshot(&self) -> NodeCounters {
                NodeCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Raft entries this node proposed as a shard leader (one per batch of commands).
    entries_proposed,
    /// Raft entries with commands this node's replicas applied, as leaders or followers.
    entries_applied,
    /// Commands those entries carried (client commands, cross-shard effects, completions).
    commands_applied,
    /// raft-rs Readies the replicas handled.
    readies,
    /// Group commits: rounds of the sync thread, each one raft log write and fdatasync (and
    /// one of sled when a Ready of the round wrote to it).
    group_commits,
    /// Wall time of those rounds, in microseconds.
    group_commit_us,
    /// Ready persistences the group commits covered (one per replica Ready that wrote).
    group_commit_waiters,
    /// State flushes: a replica's cached ledger state written to sled with its applied index.
    state_flushes,
    /// Keys those flushes wrote or deleted.
    state_flush_keys,
    /// Raft messages queued for peers, and the frames (one gRPC stream message each) they
    /// travelled in.
    raft_messages_sent,
    raft_frames_sent,
    /// Raft messages dropped because a peer's queue was full (raft resends what matters).
    raft_messages_dropped,
    /// Raft messages and frames received from peers.
    raft_messages_received,
    raft_frames_received,
}

impl NodeStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_what_was_added() {
        let stats = NodeStats::default();
        NodeStats::add(&stats.entries_applied, 3);
        NodeStats::add(&stats.entries_applied, 2);
        NodeStats::add(&stats.raft_frames_received, 1);
        let s = stats.snapshot();
        assert_eq!((s.entries_applied, s.raft_frames_received, s.group_commits), (5, 1, 0));
    }
}
