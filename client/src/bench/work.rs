//! The cluster's work per gift: every node's `Status` counters read before and after the
//! workload, summed over the nodes, per 1,000 gifts.
//!
//! gifts/s on these machines moves by 30% from one hour to the next; what a gift costs in
//! raft entries, group commits, peer frames and state flush keys does not, and it is what
//! separates two configurations (16 shards against 64, batched against not) with the same
//! gifts/s.

use std::collections::BTreeMap;
use std::time::Instant;

use coinledger_client::proto::{NodeCounters, StatusRequest};
use coinledger_client::{Client, ClientConfig};
use serde_json::{json, Value};

use crate::cli::output;

/// How long one node may take to answer `Status`: a node that is down costs the bench
/// this, not the whole `--timeout-ms`.
const STATUS_TIMEOUT_MS: u64 = 2_000;
/// Slack between a node's uptime and the wall time between two readings, beyond which the
/// node is taken to have restarted in between.
const RESTART_SLACK_MS: u64 = 1_000;

/// One node's answer: its uptime and its counters.
type NodeReading = (u64, NodeCounters);

/// Every node's counters, in endpoint order (`None` for a node that did not answer), and
/// when they were read.
pub struct Reading {
    nodes: Vec<Option<NodeReading>>,
    at: Instant,
}

/// Reads the counters of every endpoint, one plain call each (no routing, no retries to
/// other nodes: each figure must come from the node asked).
pub async fn read(config: &ClientConfig) -> Reading {
    let mut nodes = Vec::with_capacity(config.endpoints.len());
    for endpoint in &config.endpoints {
        let mut one = config.clone();
        one.endpoints = vec![endpoint.clone()];
        one.routing = false;
        one.deadline_ms = one.deadline_ms.min(STATUS_TIMEOUT_MS);
        one.attempt_timeout_ms = one.attempt_timeout_ms.min(STATUS_TIMEOUT_MS);
        let reading = match Client::connect(one) {
            Ok(client) => client.status(StatusRequest {}).await.ok().and_then(|s| s.counters.map(|c| (s.uptime_ms, c))),
            Err(_) => None,
        };
        nodes.push(reading);
    }
    Reading { nodes, at: Instant::now() }
}

/// The work done between two readings, summed over the nodes that answered both times and
/// did not restart in between (a restart zeroes a node's counters: its uptime then falls
/// short of the time between the readings). Counters by the names `coinctl --json status`
/// gives them.
#[derive(Debug, Default, PartialEq)]
pub struct Work {
    pub nodes: usize,
    pub nodes_missing: usize,
    pub total: BTreeMap<String, u64>,
}

impl Work {
    fn get(&self, counter: &str) -> u64 {
        self.total.get(counter).copied().unwrap_or(0)
    }
}

pub fn between(before: &Reading, after: &Reading) -> Work {
    let elapsed_ms = after.at.saturating_duration_since(before.at).as_millis() as u64;
    let mut work = Work::default();
    for (b, a) in before.nodes.iter().zip(&after.nodes) {
        match (b, a) {
            (Some((b_up_ms, b)), Some((a_up_ms, a))) if a_up_ms + RESTART_SLACK_MS >= b_up_ms + elapsed_ms => {
                work.nodes += 1;
                let (b, a) = (output::counters(b), output::counters(a));
                for (name, value) in a.as_object().into_iter().flatten() {
                    let done = value.as_u64().unwrap_or(0).saturating_sub(b[name].as_u64().unwrap_or(0));
                    *work.total.entry(name.clone()).or_default() += done;
                }
            }
            _ => work.nodes_missing += 1,
        }
    }
    work
}

/// Per 1,000 gifts, one decimal.
fn per_k(n: u64, gifts: u64) -> f64 {
    (n as f64 * 1_000.0 / gifts.max(1) as f64 * 10.0).round() / 10.0
}

/// `cluster work per 1,000 gifts (3 nodes): ...`, or why there is none.
pub fn line(work: &Work, gifts: u64) -> String {
    if work.nodes == 0 || gifts == 0 {
        return "cluster work: not measured (no node answered Status before and after the run)".to_string();
    }
    let missing = if work.nodes_missing > 0 {
        format!(", {} node(s) left out: no answer or restarted", work.nodes_missing)
    } else {
        String::new()
    };
    let k = |counter: &str| per_k(work.get(counter), gifts);
    format!(
        "cluster work per 1,000 gifts ({} nodes{missing}): {} raft entries proposed, {} applied \
         ({} commands), {} readies, {} group commits ({:.1} ms of fsync rounds), {} state flush \
         keys, {} raft messages in {} frames ({} dropped)",
        work.nodes,
        k("entries_proposed"),
        k("entries_applied"),
        k("commands_applied"),
        k("readies"),
        k("group_commits"),
        work.get("group_commit_us") as f64 / gifts.max(1) as f64,
        k("state_flush_keys"),
        k("raft_messages_sent"),
        k("raft_frames_sent"),
        k("raft_messages_dropped"),
    )
}

/// The totals and the per-1,000-gift figures, for `--json FILE`.
pub fn to_json(work: &Work, gifts: u64) -> Value {
    let per_1000: BTreeMap<&String, f64> = work.total.iter().map(|(name, n)| (name, per_k(*n, gifts))).collect();
    json!({
        "nodes": work.nodes,
        "nodes_missing": work.nodes_missing,
        "totals": work.total,
        "per_1000_gifts": per_1000,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn node(uptime_ms: u64, entries: u64, readies: u64) -> Option<NodeReading> {
        Some((uptime_ms, NodeCounters { entries_proposed: entries, readies, ..Default::default() }))
    }

    #[test]
    fn work_sums_the_nodes_that_answered_twice_without_restarting() {
        let at = Instant::now();
        let before = Reading { nodes: vec![node(5_000, 10, 100), node(5_000, 20, 200), None, node(5_000, 5, 900)], at };
        let after = Reading {
            nodes: vec![
                node(65_000, 30, 160),
                node(64_500, 50, 260),
                node(65_000, 1, 1),
                // Restarted 20 s ago: its counters started again from zero.
                node(20_000, 900, 4_000),
            ],
            at: at + Duration::from_secs(60),
        };
        let work = between(&before, &after);
        assert_eq!((work.nodes, work.nodes_missing), (2, 2));
        assert_eq!((work.get("entries_proposed"), work.get("readies"), work.get("group_commits")), (50, 120, 0));
        assert_eq!(per_k(work.get("entries_proposed"), 400), 125.0);
        let line = line(&work, 400);
        assert!(line.starts_with("cluster work per 1,000 gifts (2 nodes, 2 node(s) left out"), "{line}");
        assert!(line.contains("125 raft entries proposed"), "{line}");
        let json = to_json(&work, 400);
        assert_eq!(json["per_1000_gifts"]["readies"], json!(300.0));
        assert_eq!(json["totals"].as_object().unwrap().len(), 14, "one key per NodeCounters field");
    }

    #[test]
    fn no_answers_means_no_figures() {
        let at = Instant::now();
        let work = between(&Reading { nodes: vec![None], at }, &Reading { nodes: vec![node(1, 1, 1)], at });
        assert!(line(&work, 1_000).starts_with("cluster work: not measured"));
        let none = Reading { nodes: vec![], at };
        assert!(line(&between(&none, &none), 0).starts_with("cluster work: not measured"));
    }
}
