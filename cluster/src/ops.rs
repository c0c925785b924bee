//! Operator views and actions on a cluster directory: status, kill, restart; and the
//! queries the failover driver and the tests share (who leads a shard, is a node caught up).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coinledger_client::proto::StatusReply;

use crate::launcher::{live_pid, node_status, ClusterSpec, Result};

/// What every node says about itself, None for a node that does not answer.
pub async fn statuses(spec: &ClusterSpec, limit_ms: u64) -> BTreeMap<u64, Option<StatusReply>> {
    let probes = spec.nodes.iter().map(|n| async move { (n.id, node_status(&n.addr, limit_ms).await) });
    join_local(probes.collect()).await.into_iter().collect()
}

/// Polls futures concurrently on the current task.
async fn join_local<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if outs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// The node whose own status says it is the leader of `shard` (highest term wins if two
/// claim it, as briefly happens during an election).
pub fn leader_from(statuses: &BTreeMap<u64, Option<StatusReply>>, shard: u32) -> Option<(u64, u64)> {
    statuses
        .iter()
        .filter_map(|(id, s)| {
            let s = s.as_ref()?;
            let sh = s.shards.iter().find(|sh| sh.shard == shard)?;
            (sh.role == "leader").then_some((*id, sh.term))
        })
        .max_by_key(|(_, term)| *term)
}

/// The leader of `shard` and its term, asking every node.
pub async fn find_leader(spec: &ClusterSpec, shard: u32, limit_ms: u64) -> Option<(u64, u64)> {
    leader_from(&statuses(spec, limit_ms).await, shard)
}

/// Waits until some node leads `shard`.
pub async fn wait_leader(spec: &ClusterSpec, shard: u32, limit: Duration) -> Result<(u64, u64)> {
    let started = Instant::now();
    loop {
        if let Some(l) = find_leader(spec, shard, 500).await {
            return Ok(l);
        }
        if started.elapsed() > limit {
            return Err(format!("no leader for shard {shard} after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until node `id` hosts a replica of every shard the leaders know about and each of
/// its replicas has applied at least what that shard's leader had committed when the wait
/// began (so steady load does not make the target recede). Returns the time it took.
pub async fn wait_caught_up(spec: &ClusterSpec, id: u64, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let addr = spec.node(id)?.addr.clone();
    let mut target: Option<BTreeMap<u32, u64>> = None;
    let mut last = String::from("no answer yet");
    loop {
        if target.is_none() {
            let all = statuses(spec, 500).await;
            let mut t = BTreeMap::new();
            let mut complete = true;
            for shard in 0..spec.shards {
                match leader_from(&all, shard) {
                    Some((leader, _)) => {
                        let s = all[&leader].as_ref().expect("leader answered");
                        let sh = s.shards.iter().find(|sh| sh.shard == shard).expect("leader hosts shard");
                        if sh.voters.is_empty() || sh.voters.contains(&id) {
                            t.insert(shard, sh.commit_index);
                        }
                    }
                    None => {
                        complete = false;
                        last = format!("shard {shard} has no leader");
                    }
                }
            }
            if complete {
                target = Some(t);
            }
        }
        if let Some(t) = &target {
            match node_status(&addr, 500).await {
                None => last = format!("node {id} does not answer"),
                Some(s) => {
                    let behind: Vec<String> = t
                        .iter()
                        .filter_map(|(shard, want)| {
                            let have = s.shards.iter().find(|sh| sh.shard == *shard).map_or(0, |sh| sh.applied_index);
                            (have < *want).then(|| format!("shard {shard} applied {have} < {want}"))
                        })
                        .collect();
                    if behind.is_empty() {
                        return Ok(started.elapsed());
                    }
                    last = behind.join(", ");
                }
            }
        }
        if started.elapsed() > limit {
            return Err(format!("node {id} not caught up after {limit:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `status` command's report.
pub async fn status_report(spec: &ClusterSpec) -> String {
    let all = statuses(spec, 1_000).await;
    let mut out = vec![format!("cluster {} ({} nodes, {} shards)", spec.dir.display(), spec.nodes.len(), spec.shards)];
    let mut rows = Vec::new();
    for n in &spec.nodes {
        let pid = live_pid(n);
        let answer = all.get(&n.id).and_then(|s| s.as_ref());
        let state = match (pid, answer) {
            (Some(_), Some(_)) => "up",
            (Some(_), None) => "not answering",
            (None, Some(_)) => "up (unknown pid)",
            (None, None) => "down",
        };
        let leads = answer.map_or(0, |s| s.shards.iter().filter(|sh| sh.role == "leader").count());
        rows.push(vec![
            n.id.to_string(),
            n.addr.clone(),
            pid.map_or("-".into(), |p| p.to_string()),
            state.to_string(),
            answer.map_or("-".into(), |_| leads.to_string()),
            answer.map_or("-".into(), |s| format!("{}s", s.uptime_ms / 1000)),
        ]);
    }
    out.push(table(&["NODE", "ADDRESS", "PID", "STATE", "LEADS", "UPTIME"], &rows));
    out.push(String::new());
    let ids = spec.ids();
    let mut header: Vec<String> = vec!["SHARD".into(), "LEADER".into(), "TERM".into()];
    header.extend(ids.iter().map(|id| format!("N{id} COMMIT/APPLIED")));
    let mut rows = Vec::new();
    for shard in 0..spec.shards {
        let leader = leader_from(&all, shard);
        // The term: the leader's, else the highest any node reports.
        let term = leader.map(|(_, t)| t).or_else(|| {
            all.values()
                .flatten()
                .filter_map(|s| s.shards.iter().find(|sh| sh.shard == shard).map(|sh| sh.term))
                .max()
        });
        let mut row = vec![
            shard.to_string(),
            leader.map_or("-".into(), |(id, _)| id.to_string()),
            term.map_or("-".into(), |t| t.to_string()),
        ];
        for id in &ids {
            let cell = all
                .get(id)
                .and_then(|s| s.as_ref())
                .and_then(|s| s.shards.iter().find(|sh| sh.shard == shard))
                .map_or("-".into(), |sh| format!("{}/{}", sh.commit_index, sh.applied_index));
            row.push(cell);
        }
        rows.push(row);
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push(table(&header, &rows));
    out.join("\n")
}

/// A left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}
