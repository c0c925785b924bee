//! The fault schedule (drawn from the seed: same seed, same schedule) and its execution
//! against real node processes and the firewall.
//!
//! Faults come one at a time, each healed before the next begins, so a majority of every shard
//! group can commit except during a partition's minority side (short, and the minority must
//! not commit anything). Before a wipe, every running replica must have caught up: wiping a
//! replica that holds the only second copy of a committed entry would be the operator losing
//! data, not the cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::history::History;
use super::net::Firewall;
use super::rng::Rng;
use crate::launcher::{live_pid, Cluster, Result, Sig};
use crate::ops::wait_caught_up;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Restart,
    Wipe,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Restart, FaultKind::Wipe];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::Wipe => "wipe",
        }
    }

    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>> {
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let k = FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == part)
                .ok_or_else(|| format!("unknown fault {part:?} (known: kill, pause, partition, restart, wipe)"))?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Ok(kinds)
    }
}

/// What exactly is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL, restart after `down_ms`.
    Kill { node: u64, down_ms: u64 },
    /// SIGSTOP, SIGCONT after `pause_ms`.
    Pause { node: u64, pause_ms: u64 },
    /// Both directions between `minority` and the other nodes cut for `cut_ms`.
    Isolate { minority: Vec<u64>, cut_ms: u64 },
    /// Packets from `from` to `to` dropped (the other direction flows) for `cut_ms`.
    OneWay { from: u64, to: u64, cut_ms: u64 },
    /// SIGTERM, wait until it exits, start again.
    Restart { node: u64 },
    /// SIGKILL, delete the data dir, start again after `down_ms` (catches up by snapshot).
    Wipe { node: u64, down_ms: u64 },
}

impl Action {
    pub fn kind(&self) -> FaultKind {
        match self {
            Action::Kill { .. } => FaultKind::Kill,
            Action::Pause { .. } => FaultKind::Pause,
            Action::Isolate { .. } | Action::OneWay { .. } => FaultKind::Partition,
            Action::Restart { .. } => FaultKind::Restart,
            Action::Wipe { .. } => FaultKind::Wipe,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::Kill { node, down_ms } => format!("SIGKILL node {node}, down {down_ms} ms"),
            Action::Pause { node, pause_ms } => format!("SIGSTOP node {node} for {pause_ms} ms"),
            Action::Isolate { minority, cut_ms } => format!("partition {minority:?} | rest for {cut_ms} ms"),
            Action::OneWay { from, to, cut_ms } => format!("drop node {from} -> node {to} for {cut_ms} ms"),
            Action::Restart { node } => format!("SIGTERM + restart node {node}"),
            Action::Wipe { node, down_ms } => format!("SIGKILL node {node}, wipe its data, restart after {down_ms} ms"),
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// When it starts (ms since the run began).
    pub at_ms: u64,
    pub action: Action,
}

/// The schedule of a run: faults from 2 s after the start until 3 s before the end, each
/// followed by a pause of 1.5..4 s. Depends only on its arguments.
pub fn schedule(seed: u64, nodes: u64, duration_ms: u64, kinds: &[FaultKind]) -> Vec<Planned> {
    let mut rng = Rng::fork(seed, 0xFA17);
    let mut plan = Vec::new();
    if kinds.is_empty() {
        return plan;
    }
    let mut t = 2_000;
    while t + 3_000 < duration_ms {
        let node = rng.range(1, nodes);
        let action = match *rng.pick(kinds) {
            FaultKind::Kill => Action::Kill { node, down_ms: rng.range(500, 4_000) },
            FaultKind::Pause => Action::Pause { node, pause_ms: rng.range(500, 3_000) },
            FaultKind::Restart => Action::Restart { node },
            FaultKind::Wipe => Action::Wipe { node, down_ms: rng.range(200, 2_000) },
            FaultKind::Partition => {
                let cut_ms = rng.range(1_500, 5_000);
                match rng.range(0, 2) {
                    0 => Action::Isolate { minority: vec![node], cut_ms },
                    1 if nodes >= 5 => {
                        let mut other = rng.range(1, nodes);
                        if other == node {
                            other = node % nodes + 1;
                        }
                        let mut minority = vec![node, other];
                        minority.sort();
                        Action::Isolate { minority, cut_ms }
                    }
                    _ => {
                        let to = (node + rng.range(0, nodes - 2)) % nodes + 1;
                        Action::OneWay { from: node, to, cut_ms }
                    }
                }
            }
        };
        let busy_ms = match &action {
            Action::Kill { down_ms, .. } | Action::Wipe { down_ms, .. } => *down_ms,
            Action::Pause { pause_ms, .. } => *pause_ms,
            Action::Isolate { cut_ms, .. } | Action::OneWay { cut_ms, .. } => *cut_ms,
            Action::Restart { .. } => 500,
        };
        plan.push(Planned { at_ms: t, action });
        t += busy_ms + rng.range(1_500, 4_000);
    }
    plan
}

/// What happened to one planned fault.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub planned: Planned,
    pub started_ms: u64,
    /// When the fault was over: the node runs again / was continued / the rules are gone.
    pub healed_ms: Option<u64>,
    /// Why it could not be injected or healed, if so.
    pub error: Option<String>,
    /// From heal to the first mutation acknowledged after it (filled in by the report).
    pub recover_ms: Option<u64>,
}

/// Executes faults against a cluster shared with the quiescence and monitor code.
pub struct Injector {
    pub cluster: Arc<Mutex<Cluster>>,
    pub firewall: Option<Firewall>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Injector {
    /// Runs `action`; `now_ms` gives the run's clock. Returns (started, healed) times.
    pub async fn run(&mut self, action: &Action, now_ms: &dyn Fn() -> u64) -> Result<(u64, u64)> {
        let ms = Duration::from_millis;
        match action {
            Action::Kill { node, down_ms } => {
                let started = now_ms();
                self.kill9(*node).await?;
                tokio::time::sleep(ms(*down_ms)).await;
                lock(&self.cluster).start(*node)?;
                Ok((started, now_ms()))
            }
            Action::Pause { node, pause_ms } => {
                let started = now_ms();
                lock(&self.cluster).signal(*node, Sig::Stop)?;
                tokio::time::sleep(ms(*pause_ms)).await;
                lock(&self.cluster).signal(*node, Sig::Cont)?;
                Ok((started, now_ms()))
            }
            Action::Isolate { minority, cut_ms } => {
                let ids = lock(&self.cluster).spec.ids();
                let rest: Vec<u64> = ids.into_iter().filter(|i| !minority.contains(i)).collect();
                let fw = self.firewall.as_mut().ok_or("partition without a firewall")?;
                let started = now_ms();
                let cut = fw.split(minority, &rest);
                if cut.is_ok() {
                    tokio::time::sleep(ms(*cut_ms)).await;
                }
                fw.heal()?;
                cut?;
                Ok((started, now_ms()))
            }
            Action::OneWay { from, to, cut_ms } => {
                let fw = self.firewall.as_mut().ok_or("partition without a firewall")?;
                let started = now_ms();
                let cut = fw.cut(*from, *to);
                if cut.is_ok() {
                    tokio::time::sleep(ms(*cut_ms)).await;
                }
                fw.heal()?;
                cut?;
                Ok((started, now_ms()))
            }
            Action::Restart { node } => {
                let started = now_ms();
                lock(&self.cluster).signal(*node, Sig::Term)?;
                if self.wait_gone(*node, Duration::from_secs(10)).await.is_err() {
                    // Bounded graceful shutdown did not end: SIGKILL, as an operator would.
                    self.kill9(*node).await?;
                }
                lock(&self.cluster).start(*node)?;
                Ok((started, now_ms()))
            }
            Action::Wipe { node, down_ms } => {
                self.wait_all_caught_up(*node).await?;
                let started = now_ms();
                self.kill9(*node).await?;
                {
                    let cluster = lock(&self.cluster);
                    crate::launcher::wipe_data(cluster.spec.node(*node)?)?;
                }
                tokio::time::sleep(ms(*down_ms)).await;
                lock(&self.cluster).start(*node)?;
                Ok((started, now_ms()))
            }
        }
    }

    async fn kill9(&self, node: u64) -> Result<()> {
        {
            let cluster = lock(&self.cluster);
            let spec = cluster.spec.node(node)?;
            if live_pid(spec).is_some() {
                cluster.signal(node, Sig::Kill)?;
            }
        }
        self.wait_gone(node, Duration::from_secs(5)).await
    }

    async fn wait_gone(&self, node: u64, limit: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            if !lock(&self.cluster).is_running(node) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("node {node} still running {limit:?} after it was signalled"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every node except `except` has applied what the leaders had committed (bounded wait;
    /// an error if a replica stays behind, and the wipe is then skipped).
    async fn wait_all_caught_up(&self, except: u64) -> Result<()> {
        let spec = lock(&self.cluster).spec.clone();
        for id in spec.ids().into_iter().filter(|i| *i != except) {
            wait_caught_up(&spec, id, Duration::from_secs(15))
                .await
                .map_err(|e| format!("not wiping node {except}: {e}"))?;
        }
        Ok(())
    }

    /// Ends every fault: rules removed, paused nodes continued, stopped nodes started.
    pub fn heal_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(fw) = self.firewall.as_mut() {
            if let Err(e) = fw.heal() {
                errors.push(e);
            }
        }
        let mut cluster = lock(&self.cluster);
        for id in cluster.spec.ids() {
            if cluster.is_running(id) {
                let _ = cluster.signal(id, Sig::Cont);
            } else if let Err(e) = cluster.start(id) {
                errors.push(e);
            }
        }
        errors
    }
}

/// What carries out faults: local processes and the firewall ([`Injector`]), or Docker.
pub(crate) trait FaultRunner {
    /// Why `action` cannot be carried out here (it is then skipped with a note), if it cannot.
    fn skip_reason(&self, _action: &Action) -> Option<&'static str> {
        None
    }

    /// The action as this runner carries it out, for the log.
    fn describe(&self, action: &Action) -> String {
        action.describe()
    }

    /// Carries out `action`; Ok((started_ms, healed_ms)).
    async fn inject(&mut self, action: &Action, now_ms: &dyn Fn() -> u64) -> Result<(u64, u64)>;

    /// Heals whatever is still broken; one line per failure.
    fn heal(&mut self) -> Vec<String>;
}

/// Runs the fault schedule while the workload runs: each fault at its planned time (none
/// that would end within the last second), logged as it happens; then waits out the run's
/// duration and heals everything. Skipped faults become warnings.
pub(crate) async fn run_schedule(
    runner: &mut impl FaultRunner,
    plan: &[Planned],
    history: &Arc<History>,
    duration_ms: u64,
    warnings: &mut Vec<String>,
    say: &mut (dyn FnMut(String) + Send),
) -> Vec<Injected> {
    let mut injected = Vec::new();
    for planned in plan {
        let now = history.now_ms();
        if planned.at_ms > now {
            tokio::time::sleep(Duration::from_millis(planned.at_ms - now)).await;
        }
        if history.now_ms() + 1_000 > duration_ms {
            break;
        }
        let kind = planned.action.kind().name();
        let what = runner.describe(&planned.action);
        if let Some(reason) = runner.skip_reason(&planned.action) {
            let w = format!("{:>7} ms  {kind:<9} {what} skipped ({reason})", history.now_ms());
            say(w.clone());
            warnings.push(w);
            continue;
        }
        let clock = {
            let h = history.clone();
            move || h.now_ms()
        };
        let started_ms = history.now_ms();
        let result = runner.inject(&planned.action, &clock).await;
        say(match &result {
            Ok((s, h)) => format!("{s:>7} ms  {kind:<9} {what} (healed at {h} ms)"),
            Err(e) => format!("{started_ms:>7} ms  {kind:<9} {what} FAILED: {e}"),
        });
        injected.push(Injected {
            planned: planned.clone(),
            started_ms: result.as_ref().map_or(started_ms, |(s, _)| *s),
            healed_ms: result.as_ref().ok().map(|(_, h)| *h),
            error: result.err(),
            recover_ms: None,
        });
    }
    let now = history.now_ms();
    if now < duration_ms {
        tokio::time::sleep(Duration::from_millis(duration_ms - now)).await;
    }
    for e in runner.heal() {
        say(format!("heal: {e}"));
    }
    injected
}

impl FaultRunner for Injector {
    async fn inject(&mut self, action: &Action, now_ms: &dyn Fn() -> u64) -> Result<(u64, u64)> {
        self.run(action, now_ms).await
    }

    fn heal(&mut self) -> Vec<String> {
        self.heal_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let kinds = FaultKind::ALL;
        let a = schedule(7, 5, 120_000, &kinds);
        assert_eq!(a, schedule(7, 5, 120_000, &kinds));
        assert_ne!(a, schedule(8, 5, 120_000, &kinds));
        assert!(a.len() > 10, "{}", a.len());
        for p in &a {
            match &p.action {
                Action::Isolate { minority, .. } => assert!(minority.len() * 2 < 5),
                Action::OneWay { from, to, .. } => assert_ne!(from, to),
                _ => {}
            }
        }
    }

    #[test]
    fn parses_fault_lists() {
        assert_eq!(FaultKind::parse_list("kill,pause").unwrap(), vec![FaultKind::Kill, FaultKind::Pause]);
        assert!(FaultKind::parse_list("kill,nuke").is_err());
    }
}
