//! Watches the cluster while the run lasts: who leads each shard (a change of leader is a
//! failover) and, after the heal, whether the cluster is quiescent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coinledger_client::proto::{AuditReply, AuditRequest};
use coinledger_client::Client;
use serde::Serialize;

use super::history::lock;
use crate::launcher::{ClusterSpec, Result};
use crate::ops::{leader_from, statuses};

/// A shard's leadership moved from one node to another.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub at_ms: u64,
    pub shard: u32,
    pub from: u64,
    pub to: u64,
    pub term: u64,
}

/// Polls Admin.Status of every node every `every` until stopped.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
    failovers: Arc<Mutex<Vec<Failover>>>,
}

impl Monitor {
    pub fn start(spec: ClusterSpec, started: Instant, every: Duration) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let failovers = Arc::new(Mutex::new(Vec::new()));
        let (s, f) = (stop.clone(), failovers.clone());
        let handle = tokio::spawn(async move {
            let mut leaders: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                let all = statuses(&spec, 300).await;
                for shard in 0..spec.shards {
                    let Some((leader, term)) = leader_from(&all, shard) else { continue };
                    match leaders.insert(shard, (leader, term)) {
                        Some((before, _)) if before != leader => lock(&f).push(Failover {
                            at_ms: started.elapsed().as_millis() as u64,
                            shard,
                            from: before,
                            to: leader,
                            term,
                        }),
                        _ => {}
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        Monitor { stop, handle, failovers }
    }

    pub async fn stop(self) -> Vec<Failover> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.await;
        let f = lock(&self.failovers).clone();
        f
    }
}

/// Waits until no cross-shard effect is pending or in flight (Admin.Audit) and, in every
/// shard, every voter has applied exactly the leader's commit index (Admin.Status of every
/// node). Returns the final audit and how long it took.
pub async fn wait_quiescent(spec: &ClusterSpec, client: &Client, limit: Duration) -> Result<(AuditReply, Duration)> {
    let started = Instant::now();
    let mut last;
    loop {
        last = match client.audit(AuditRequest {}).await {
            Ok(a) if a.pending_effects == 0 && a.coins_in_flight == 0 && a.diamonds_in_flight == 0 => {
                match lagging(spec).await {
                    None => return Ok((a, started.elapsed())),
                    Some(why) => why,
                }
            }
            Ok(a) => format!("{} effects pending, {} coins and {} diamonds in flight", a.pending_effects, a.coins_in_flight, a.diamonds_in_flight),
            Err(e) => format!("audit: {e}"),
        };
        if started.elapsed() > limit {
            return Err(format!("not quiescent after {limit:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why the replicas are not all at the leader's commit index, None if they are.
async fn lagging(spec: &ClusterSpec) -> Option<String> {
    let all = statuses(spec, 1_000).await;
    if let Some((id, _)) = all.iter().find(|(_, s)| s.is_none()) {
        return Some(format!("node {id} does not answer Admin.Status"));
    }
    for shard in 0..spec.shards {
        let Some((leader, _)) = leader_from(&all, shard) else { return Some(format!("shard {shard} has no leader")) };
        let ls = all[&leader].as_ref()?.shards.iter().find(|s| s.shard == shard)?.clone();
        if ls.applied_index != ls.commit_index {
            return Some(format!("shard {shard}: leader node {leader} applied {} < commit {}", ls.applied_index, ls.commit_index));
        }
        for (id, s) in &all {
            let voter = ls.voters.is_empty() || ls.voters.contains(id);
            if !voter {
                continue;
            }
            let applied = s.as_ref()?.shards.iter().find(|x| x.shard == shard).map_or(0, |x| x.applied_index);
            if applied != ls.commit_index {
                return Some(format!("shard {shard}: node {id} applied {applied}, leader node {leader} committed {}", ls.commit_index));
            }
        }
    }
    None
}
