//! The failover benchmark: a fresh cluster under steady load; repeatedly SIGKILL the leader of
//! a shard and measure the time from the kill to the first commit on that shard; restart the
//! node, wait until it caught up; at the end check nothing acknowledged was lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::launcher::{Cluster, ClusterOptions, ClusterSpec, Result, Sig, SPEC_FILE};
use crate::load::{purchase, purchase_once, verify, Book, Load, RefsForShard};
use crate::ops::{find_leader, wait_caught_up, wait_leader};

#[derive(Debug, Clone)]
pub struct FailoverOptions {
    pub kills: u32,
    pub cluster: ClusterOptions,
    /// Concurrent buyers of the steady load.
    pub load_tasks: usize,
}

/// One kill's measurement.
#[derive(Debug, Clone)]
pub struct KillResult {
    pub shard: u32,
    pub killed: u64,
    pub old_term: u64,
    pub failover: Duration,
    pub new_leader: Option<(u64, u64)>,
    pub catch_up: Duration,
}

/// Median and maximum of the failover times.
pub fn median_max(times: &[Duration]) -> (Duration, Duration) {
    let mut v = times.to_vec();
    v.sort();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 };
    (median, v[n - 1])
}

/// Empties `dir` for a fresh cluster: allowed if it does not exist, is empty, or holds a
/// previous cluster (cluster.json). Anything else is refused rather than deleted.
pub fn prepare_fresh_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.next().is_none();
    if empty {
        return Ok(());
    }
    if !dir.join(SPEC_FILE).is_file() {
        return Err(format!("{} exists and is not a cluster directory (no {SPEC_FILE}): refusing to delete it", dir.display()));
    }
    let old = ClusterSpec::load(dir)?;
    for n in &old.nodes {
        if let Some(pid) = crate::launcher::live_pid(n) {
            return Err(format!("node {} of the cluster in {} still runs (pid {pid})", n.id, dir.display()));
        }
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot delete {}: {e}", dir.display()))
}

/// Proposes purchases routed to `shard`, a new one every `every` (so one slow attempt does not
/// hide a recovered leader), until one is acknowledged; returns when. Every outcome goes in
/// the book, including the probes still in flight when the first one succeeds.
pub async fn first_commit_on_shard(
    client: &coinledger_client::Client,
    book: &Arc<Book>,
    refs: &mut RefsForShard,
    account: &str,
    every: Duration,
    limit: Duration,
) -> Result<Instant> {
    let started = Instant::now();
    let mut set: JoinSet<(bool, Instant)> = JoinSet::new();
    let mut ticker = tokio::time::interval(every);
    let mut first: Option<Instant> = None;
    while first.is_none() {
        tokio::select! {
            _ = ticker.tick(), if set.len() < 64 => {
                if started.elapsed() > limit {
                    break;
                }
                let req = purchase(account, &refs.next().expect("infinite"));
                let (client, book) = (client.clone(), book.clone());
                set.spawn(async move {
                    let ok = purchase_once(&client, &book, req).await.is_ok();
                    (ok, Instant::now())
                });
            }
            Some(done) = set.join_next(), if !set.is_empty() => {
                if let Ok((true, at)) = done {
                    first = Some(at);
                }
            }
        }
    }
    // The remaining probes finish (their outcomes are recorded) before the next step.
    while set.join_next().await.is_some() {}
    first.ok_or_else(|| format!("no commit within {limit:?}"))
}

pub async fn run(opts: FailoverOptions, out: &mut dyn FnMut(String)) -> Result<bool> {
    let c = &opts.cluster;
    prepare_fresh_dir(&c.data_dir)?;
    let spec = ClusterSpec::new(c)?;
    let mut cluster = Cluster::launch(spec)?;
    out(format!(
        "started {} nodes on {} (data in {}), {} shards; waiting for leaders",
        c.nodes,
        cluster.endpoints(),
        cluster.spec.dir.display(),
        c.shards
    ));
    cluster.wait_ready(Duration::from_secs(30), true).await?;
    let client = cluster.client();
    let load = Load::start(client.clone(), opts.load_tasks, 16, "fo-load", Duration::from_millis(2));
    let book = load.book.clone();
    // Probes: short attempts and a small backoff ceiling, so the probe that succeeds first
    // is not one sleeping in a long backoff.
    let probe_client = cluster.client_with(1_000, 20_000, 50);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut results = Vec::new();
    for k in 0..opts.kills {
        let shard = (k * 5 + 1) % c.shards;
        let mut refs = RefsForShard::new(c.shards, shard, &format!("fo-probe-k{k}"));
        let account = format!("fo-probe-{k}");
        book.track(&account);
        // The shard works before the kill.
        first_commit_on_shard(&probe_client, &book, &mut refs, &account, Duration::from_millis(50), Duration::from_secs(20)).await?;
        let (leader, term) = wait_leader(&cluster.spec, shard, Duration::from_secs(20)).await?;
        cluster.signal(leader, Sig::Kill)?;
        let killed_at = Instant::now();
        let at = first_commit_on_shard(&probe_client, &book, &mut refs, &account, Duration::from_millis(20), Duration::from_secs(30))
            .await
            .map_err(|e| format!("kill {}: shard {shard} did not recover: {e}", k + 1))?;
        let failover = at.saturating_duration_since(killed_at);
        let new_leader = find_leader(&cluster.spec, shard, 500).await;
        cluster.wait_gone(leader, Duration::from_secs(5))?;
        cluster.start(leader)?;
        cluster.wait_nodes_ready(&[leader], Duration::from_secs(30), false).await?;
        let catch_up = wait_caught_up(&cluster.spec, leader, Duration::from_secs(60)).await?;
        out(format!(
            "kill {:>2}/{}: shard {shard}: leader node {leader} (term {term}) SIGKILLed -> first commit after {} ms{}; node {leader} restarted, caught up in {} ms",
            k + 1,
            opts.kills,
            failover.as_millis(),
            new_leader.map_or(String::new(), |(id, t)| format!(" (new leader node {id}, term {t})")),
            catch_up.as_millis()
        ));
        results.push(KillResult { shard, killed: leader, old_term: term, failover, new_leader, catch_up });
    }
    let book = load.stop().await;
    let times: Vec<Duration> = results.iter().map(|r| r.failover).collect();
    let (median, max) = median_max(&times);
    out(format!(
        "failover time over {} kills: median {} ms, max {} ms (min {} ms)",
        times.len(),
        median.as_millis(),
        max.as_millis(),
        times.iter().min().copied().unwrap_or_default().as_millis()
    ));
    let unknown = book.unknown_count();
    let verdict = verify(&client, &book, true, Duration::from_secs(60)).await?;
    out(format!("{unknown} unknown outcomes (TIMEOUT/UNAVAILABLE, and INTERNAL answers) resolved by retrying with the same request id"));
    out(format!("verdict: {}", verdict.summary()));
    cluster.stop_all(Duration::from_secs(5));
    Ok(verdict.ok())
}

/// Default data dir of `failover`.
pub fn default_dir() -> PathBuf {
    PathBuf::from("./failover-data")
}
