//! `coinledger-cluster chaos`: a fresh cluster of real node processes on per-node loopback
//! addresses, a workload from concurrent client tasks, faults on a schedule drawn from the
//! seed, then heal, quiescence, and the checker over the whole history.
//!
//! Files: `rng.rs` (seeded randomness), `history.rs` (operations and outcomes), `workload.rs`
//! (client tasks), `faults.rs` (schedule and injection), `net.rs` (iptables), `monitor.rs`
//! (failovers, quiescence), `check/` (one module per invariant), `report.rs` (tables, files),
//! `docker.rs` (the same run against the containers of cluster/docker-compose.yml).

pub mod check;
pub mod docker;
pub mod faults;
pub mod history;
pub mod monitor;
pub mod net;
pub mod report;
pub mod rng;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coinledger_client::proto::{AuditRequest, BalanceRequest, ErrorCode};
use coinledger_client::{Client, ClientConfig};

use self::check::model::{accounts_named, State};
use self::check::Check;
use self::faults::{FaultKind, Injected, Injector};
use self::history::{definite, History, Outcome};
use self::monitor::{wait_quiescent, Monitor};
use self::report::Report;
use self::workload::{Workload, WorkloadOptions};
use crate::launcher::{Cluster, ClusterOptions, ClusterSpec, Result};

/// Log entries after which every node compacts its raft log, so a wiped node catches up by
/// snapshot.
pub const COMPACT_LOG_ENTRIES: u64 = 200;
/// How long a client task retries one operation with the same request id before it records
/// the outcome as unknown: shorter than the longest faults (kills of up to 4 s, partitions of
/// up to 5 s), so unknown outcomes happen and their resolution is exercised.
pub const OP_DEADLINE: Duration = Duration::from_secs(3);
/// Bound on the wait for quiescence after the heal.
pub const QUIESCENCE_LIMIT: Duration = Duration::from_secs(120);
/// Bound on resolving the unknown outcomes after the heal.
pub const RESOLVE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub nodes: u64,
    pub duration: Duration,
    pub faults: Vec<FaultKind>,
    /// True if --faults was given: then a missing iptables is an error for partitions, not a
    /// warning.
    pub faults_explicit: bool,
    pub seed: u64,
    pub clients: usize,
    /// The workload's mutating calls go through the client library's automatic batching.
    pub auto_batch: bool,
    pub out: PathBuf,
    pub shards: u32,
    pub base_port: u16,
    pub node_bin: PathBuf,
    pub extra_args: Vec<String>,
}

/// Runs the whole thing; `say` gets progress lines. Ok(report) also when the checker found
/// violations (`report.passed()` tells); Err when the run itself could not be carried out.
pub async fn run(opts: ChaosOptions, say: &mut (dyn FnMut(String) + Send)) -> Result<Report> {
    tokio::select! {
        r = run_inner(opts, say) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C): nodes stopped, firewall rules removed".into()),
    }
}

async fn run_inner(opts: ChaosOptions, say: &mut (dyn FnMut(String) + Send)) -> Result<Report> {
    let mut faults = opts.faults.clone();
    let mut warnings = Vec::new();
    let firewall = if faults.contains(&FaultKind::Partition) {
        match net::available() {
            Ok(v) => {
                let fw = net::Firewall::new()?;
                say(format!("iptables: {v}; rules in chain {} (removed on exit)", fw.chain()));
                Some(fw)
            }
            Err(e) if opts.faults_explicit => {
                return Err(format!("--faults asks for partition but iptables is unusable: {e} (run as root with iptables installed, or leave partition out)"))
            }
            Err(e) => {
                let w = format!("warning: iptables unusable ({e}): partition faults skipped");
                say(w.clone());
                warnings.push(w);
                faults.retain(|k| *k != FaultKind::Partition);
                None
            }
        }
    } else {
        None
    };
    let duration_ms = opts.duration.as_millis() as u64;
    let plan = faults::schedule(opts.seed, opts.nodes, duration_ms, &faults);

    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let cluster_dir = opts.out.join("cluster");
    crate::failover::prepare_fresh_dir(&cluster_dir)?;
    let mut extra_args = vec!["--compact-log-entries".to_string(), COMPACT_LOG_ENTRIES.to_string()];
    extra_args.extend(opts.extra_args.iter().cloned());
    let copts = ClusterOptions {
        nodes: opts.nodes,
        base_port: opts.base_port,
        data_dir: cluster_dir,
        shards: opts.shards,
        replication: None,
        node_bin: opts.node_bin.clone(),
        extra_args,
    };
    let spec = ClusterSpec::new_on_hosts(&copts, net::node_ip)?;
    say(format!(
        "chaos: {} nodes ({}), {} shards, {} s, faults {:?}, seed {}, {} clients, {} faults planned",
        opts.nodes,
        spec.endpoints(),
        opts.shards,
        opts.duration.as_secs(),
        faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        opts.seed,
        opts.clients,
        plan.len()
    ));
    let cluster = Cluster::launch(spec.clone())?;
    cluster.wait_ready(Duration::from_secs(30), true).await?;
    let config = cluster.client_config(1_000, 5_000, 200);
    let client = Client::connect(config.clone()).map_err(|e| format!("client: {e}"))?;
    let workload_client = workload_client(&client, config, opts.auto_batch)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let mut injector = Injector { cluster: cluster.clone(), firewall };

    let history = Arc::new(History::new());
    let monitor = Monitor::start(spec.clone(), history.started, Duration::from_millis(250));
    let workload = Workload::start(
        workload_client,
        history.clone(),
        &WorkloadOptions { clients: opts.clients, seed: opts.seed, op_deadline: OP_DEADLINE },
    );
    let injected = faults::run_schedule(&mut injector, &plan, &history, duration_ms, &mut warnings, say).await;
    let internal_answers = workload.stop().await;
    let failovers = monitor.stop().await;
    let run_ms = history.now_ms();
    say(format!("workload stopped at {run_ms} ms; {} operations; healing and waiting for quiescence", history.snapshot().len()));

    let spec = cluster.lock().unwrap_or_else(|p| p.into_inner()).spec.clone();
    {
        let c = Cluster::attach(&spec.dir)?;
        c.wait_ready(Duration::from_secs(60), true).await?;
    }
    let report = check_and_report(&opts, faults, warnings, &spec, &client, &history, injected, failovers, internal_answers, run_ms, say).await?;
    cluster.lock().unwrap_or_else(|p| p.into_inner()).stop_all(Duration::from_secs(5));
    drop(injector);
    Ok(report)
}

/// Frames of automatic batching: what a busy service's concurrent calls fill.
const AUTO_BATCH_MAX: usize = 256;

/// The client the workload's tasks share: `client` itself, or one like it that batches
/// (`auto_batch`). The checks always read through `client`.
pub(crate) fn workload_client(client: &Client, config: ClientConfig, auto_batch: bool) -> Result<Client> {
    if !auto_batch {
        return Ok(client.clone());
    }
    Client::connect(config.batching(AUTO_BATCH_MAX, 0)).map_err(|e| format!("batching client: {e}"))
}

/// After the heal (every node answering): waits for quiescence, resolves unknown outcomes,
/// runs every check, writes the report files into `opts.out`. Shared by the process and the
/// Docker mode.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_and_report(
    opts: &ChaosOptions,
    faults: Vec<FaultKind>,
    warnings: Vec<String>,
    spec: &ClusterSpec,
    client: &Client,
    history: &History,
    mut injected: Vec<Injected>,
    failovers: Vec<monitor::Failover>,
    internal_answers: u64,
    run_ms: u64,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Report> {
    let (_, quiet_after) = wait_quiescent(spec, client, QUIESCENCE_LIMIT).await?;
    say(format!("quiescent after {} ms", quiet_after.as_millis()));

    let unresolved = resolve_unknown(client, history, RESOLVE_LIMIT).await;
    say(format!("unknown outcomes resolved by retrying their request ids ({unresolved} left unresolved)"));
    wait_quiescent(spec, client, QUIESCENCE_LIMIT).await?;

    let ops = history.snapshot();
    let mut checks: Vec<Check> = Vec::new();
    checks.push(check::no_loss::check(client, &ops, 20).await);
    let mut once = check::once::check_ids_and_probe(client, &ops).await;
    let (audit, _) = wait_quiescent(spec, client, QUIESCENCE_LIMIT).await?;
    let final_invoke_ms = history.now_ms();
    let finals = read_finals(client, &accounts_named(&ops)).await?;
    let end_ms = history.now_ms().max(final_invoke_ms + 1);
    check::once::check_balances(&mut once, &ops, &finals);
    checks.push(once);
    let finals_list: Vec<(String, Option<State>)> = finals.iter().map(|(a, s)| (a.clone(), *s)).collect();
    checks.push(check::non_negative::check(&ops, &finals_list));
    let audit = client.audit(AuditRequest {}).await.unwrap_or(audit);
    checks.push(check::conservation::check(&ops, &audit));
    let lin_started = std::time::Instant::now();
    let mut lin = check::linearizable::check(&ops, &finals, end_ms);
    lin.notes.push(format!("search took {} ms", lin_started.elapsed().as_millis()));
    checks.push(lin);
    if unresolved > 0 {
        let mut c = Check::new("resolution");
        c.violation(format!("{unresolved} unknown outcomes still unknown {RESOLVE_LIMIT:?} after the heal"));
        checks.push(c);
    }

    report::fill_recovery(&mut injected, &ops);
    let report = Report::new(opts, faults, warnings, ops, injected, failovers, checks, audit, internal_answers, run_ms, quiet_after);
    report.write(&opts.out, history)?;
    Ok(report)
}

/// Retries every unknown-outcome mutation with its own request id and body until a definite
/// answer; returns how many are still unknown after `limit`.
pub async fn resolve_unknown(client: &Client, history: &History, limit: Duration) -> usize {
    let started = std::time::Instant::now();
    let mut left = 0;
    for op in history.snapshot() {
        if !op.req.is_mutation() || !matches!(op.outcome, Outcome::Unknown { .. }) {
            continue;
        }
        loop {
            match definite(op.req.send(client).await) {
                Ok(o) => {
                    history.resolve(op.id, o);
                    break;
                }
                Err(_) if started.elapsed() < limit => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => {
                    left += 1;
                    break;
                }
            }
        }
    }
    left
}

/// Every account's balance after quiescence (None: never opened).
pub async fn read_finals(client: &Client, accounts: &[String]) -> Result<BTreeMap<String, Option<State>>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(accounts.iter().map(|account| async move {
        let mut tries = 0;
        loop {
            tries += 1;
            match client.balance(BalanceRequest { account: account.clone() }).await {
                Ok(b) => return Ok((account.clone(), Some(State::of(&b)))),
                Err(e) if e.code == ErrorCode::AccountNotFound => return Ok((account.clone(), None)),
                Err(_) if tries < 20 => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => return Err(format!("final balance of {account}: {e}")),
            }
        }
    }))
    .buffer_unordered(check::no_loss::REPLAYS_IN_FLIGHT)
    .try_collect()
    .await
}
