//! `coinctl bench`: a load generator and its referee. Seeds sender accounts through purchases,
//! runs a workload from `--clients` concurrent tasks for `--duration`, prints a progress line
//! per second and a latency histogram, checks conservation, and ends with exactly one line
//!
//! `coinledger gifts/s=<n> p50_ms=<x> p99_ms=<y> p999_ms=<z> errors=<n>`
//!
//! Files: `seed.rs`, `task.rs` (one client task), `stats.rs`,
//! `check.rs` (audit and per-creator diamonds), `work.rs` (the nodes' work counters per
//! 1,000 gifts), `report.rs` (everything else printed).
//!
//! It has its own argument parser because its `--json FILE` differs from coinctl's global
//! `--json` flag; `main.rs` routes `coinctl [--endpoints ..] bench ...` here.

mod check;
mod report;
mod seed;
mod stats;
mod task;
mod work;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clap::Parser;
use coinledger_client::proto::*;
use coinledger_client::{Client, ClientConfig, ClientError, BATCH_COMMANDS_MAX};
use serde_json::json;
use tokio::time::Instant;

use crate::cli::args::DEFAULT_ENDPOINTS;
use stats::Stats;
use task::{lock, Plan, Task};
use coinledger_client::workload::{Generator, IdSequence, Names, Shape, Workload, CREATORS_MAX};

/// Seeding purchase per sender, in USD (capped at the currency's published maximum): at 0.01
/// USD per coin plus the 10% bulk bonus that is 550,000 coins, far more than a run spends.
const SEED_USD: &str = "5000";
/// Purchase of the mixed workload, in USD.
const MIXED_PURCHASE_USD: &str = "9.99";
/// Most concurrent client tasks.
const CLIENTS_MAX: usize = 4_096;

/// coinctl bench: load-test a coinledger cluster, report what the nodes did per 1,000 gifts,
/// and check the cluster stayed consistent.
#[derive(Parser, Debug)]
#[command(name = "coinctl bench")]
pub struct BenchArgs {
    /// Comma-separated gRPC endpoints of any nodes ("host:port").
    #[arg(long, env = "COINLEDGER_ENDPOINTS", default_value = DEFAULT_ENDPOINTS)]
    pub endpoints: String,
    /// Deadline of one call (or one batch) in milliseconds, retries included.
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// gift-storm: uniform senders to zipf creators; hot-one: every gift to one creator;
    /// uniform: uniform senders and creators; mixed: 70% gifts, 20% purchases, 5% cash-outs
    /// (each then posted or voided), 5% balance reads.
    #[arg(long, value_enum, default_value = "gift-storm")]
    pub workload: Workload,
    /// Sender accounts, each seeded with one large purchase.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub accounts: u64,
    /// Creator accounts receiving gifts.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=CREATORS_MAX as u64))]
    pub creators: u64,
    /// Zipf exponent of creator popularity (gift-storm, mixed).
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=CLIENTS_MAX as u64))]
    pub clients: u64,
    /// Commands per SubmitBatch per task; 1 sends single-command calls.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=BATCH_COMMANDS_MAX as u64))]
    pub batch: u64,
    /// With --batch 1: the tasks' single-command calls go through the client library's
    /// automatic batching (concurrent calls share SubmitStream frames), as a backend service
    /// with --clients concurrent callers would use it.
    #[arg(long)]
    pub auto_batch: bool,
    /// Send every call to the endpoint that answered last and let the nodes forward it,
    /// instead of straight to its home shard's leader (shard-aware routing, the default).
    #[arg(long)]
    pub no_routing: bool,
    /// How long the workload runs (e.g. 20s, 2m).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop once this many gifts succeeded, if that comes before --duration (a long run to
    /// a fixed volume, such as the 10-million-gift memory run).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub gifts: Option<u64>,
    /// Write every figure of the run to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Seed of the workload generators (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The bench's arguments if `argv` runs `coinctl [global options] bench ...`: the first word
/// that is neither an option nor an option's value is the command.
pub fn bench_argv(argv: &[String]) -> Option<Vec<String>> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        match a {
            "--endpoints" | "--timeout-ms" => i += 2,
            _ if a.starts_with('-') => i += 1,
            "bench" => {
                let mut rest = argv.to_vec();
                rest.remove(i);
                return Some(rest);
            }
            _ => return None,
        }
    }
    None
}

/// Runs the bench; exit code 1 on an error or broken conservation.
pub async fn run(args: BenchArgs) -> ExitCode {
    match bench(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn bench(args: BenchArgs) -> Result<ExitCode, ClientError> {
    if !(args.zipf.is_finite() && args.zipf >= 0.0) || args.duration.is_zero() {
        return Err(ClientError::local(
            ErrorCode::InvalidArgument,
            "--zipf must be >= 0 and --duration > 0",
        ));
    }
    if args.auto_batch && args.batch != 1 {
        return Err(ClientError::local(
            ErrorCode::InvalidArgument,
            "--auto-batch batches single-command calls: use it with --batch 1",
        ));
    }
    let mut config = ClientConfig::from_endpoints(&args.endpoints)?;
    config.deadline_ms = args.timeout_ms;
    config.attempt_timeout_ms = config.attempt_timeout_ms.min(args.timeout_ms.max(1));
    config.routing = !args.no_routing;
    let client = Client::connect(config.clone())?;
    // The workload's own client: seeding and checks stay plain calls either way.
    let workload_client = if args.auto_batch {
        Client::connect(config.clone().batching(BATCH_COMMANDS_MAX, 0))?
    } else {
        client.clone()
    };

    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let seed = args.seed.unwrap_or(now_ms);
    // Fresh accounts per run: the clock keeps two runs with the same seed apart.
    let names = Names {
        prefix: format!("b{:x}-", now_ms ^ seed.rotate_left(20)),
    };
    let shape = Shape {
        workload: args.workload,
        accounts: args.accounts as usize,
        creators: args.creators as usize,
        zipf_s: args.zipf,
    };
    let plan = Arc::new(plan(&client, names.clone(), args.batch as usize).await?);
    eprintln!(
        "bench {:?}: {} senders, {} creators, zipf {}, {} clients, batch {}{}, {}, {:?}{}, seed {seed}, \
         accounts {}*, gift {}",
        args.workload, args.accounts, args.creators, args.zipf, args.clients, args.batch,
        if args.auto_batch { " (auto-batched)" } else { "" },
        if args.no_routing { "unrouted" } else { "shard-aware routing" },
        args.duration, args.gifts.map(|n| format!(" or {n} gifts")).unwrap_or_default(),
        names.prefix, plan.gift_id
    );
    let amount = seed_amount(&client).await?;
    seed::seed(&client, &names, shape.accounts, &amount).await?;
    let work_before = work::read(&config).await;

    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let end = started + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..args.clients {
        let task = Task::new(
            plan.clone(),
            Generator::new(shape, seed, t),
            IdSequence::for_task(&names.prefix, t),
        );
        tasks.spawn(task.run(workload_client.clone(), stats.clone(), end, args.gifts));
    }
    let progress = tokio::spawn(progress_lines(stats.clone(), started, end));
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            progress.abort();
            return Err(ClientError::local(
                ErrorCode::Internal,
                format!("a client task failed: {e}"),
            ));
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    progress.abort();
    let stats = lock(&stats).clone();
    let work = work::between(&work_before, &work::read(&config).await);
    println!("{}", report::histogram(&stats));
    eprintln!("{}", work::line(&work, stats.gifts_ok));

    let verdict = check::check(&client, &names, shape.creators, &stats).await?;
    eprintln!(
        "audit ok={} pending_effects={}; {} creators compared{}",
        verdict.audit_ok,
        verdict.pending_effects,
        verdict.creators_compared,
        if verdict.creators_exact { "" } else { " (not exactly: some outcomes unknown)" }
    );
    if let Some(path) = &args.json {
        let settings = json!({
            "endpoints": args.endpoints, "workload": args.workload, "accounts": args.accounts,
            "creators": args.creators, "zipf": args.zipf, "clients": args.clients,
            "batch": args.batch, "auto_batch": args.auto_batch, "gifts_max": args.gifts, "routing": !args.no_routing, "duration_s": args.duration.as_secs_f64(), "seed": seed,
            "account_prefix": names.prefix, "gift_id": plan.gift_id,
        });
        let mut value = report::to_json(settings, &stats, elapsed_s, &verdict);
        value["cluster_work"] = work::to_json(&work, stats.gifts_ok);
        if let Err(e) = report::write_json(path, &value) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    println!("{}", report::final_line(&stats, elapsed_s));
    if verdict.broken.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("CONSERVATION BROKEN: {}", verdict.broken.join("; "));
        Ok(ExitCode::from(1))
    }
}

/// Picks the cheapest catalog gift that credits at least one diamond (a 1-coin gift at a 50%
/// share credits none, which would make the diamond check vacuous) and the cash-out size.
async fn plan(client: &Client, names: Names, batch: usize) -> Result<Plan, ClientError> {
    let card = client.rates(GetRatesRequest {}).await?;
    let share = u64::from(card.creator_share_bps);
    let gift = card
        .gifts
        .iter()
        .filter(|g| g.price_coins * share / 10_000 >= 1)
        .min_by_key(|g| g.price_coins)
        .ok_or_else(|| {
            ClientError::local(ErrorCode::UnknownGift, "no catalog gift credits a diamond")
        })?;
    Ok(Plan {
        names,
        gift_id: gift.id.clone(),
        purchase_usd: MIXED_PURCHASE_USD.into(),
        cashout_diamonds: card.cashout_min_diamonds.max(1),
        batch,
    })
}

/// SEED_USD, or the published per-purchase maximum in USD if that is lower.
async fn seed_amount(client: &Client) -> Result<String, ClientError> {
    let card = client.rates(GetRatesRequest {}).await?;
    let max = card
        .coin_prices
        .iter()
        .find(|p| p.currency == "USD")
        .ok_or_else(|| ClientError::local(ErrorCode::UnknownCurrency, "no USD price published"))?
        .max_purchase
        .clone();
    let lower = |a: &str, b: &str| {
        let (a, b) = (a.parse::<rust_decimal::Decimal>(), b.parse::<rust_decimal::Decimal>());
        matches!((a, b), (Ok(a), Ok(b)) if a < b)
    };
    Ok(if lower(&max, SEED_USD) { max } else { SEED_USD.into() })
}

/// A line per second until `end`: throughput of the last second, errors and p99 so far.
async fn progress_lines(stats: Arc<Mutex<Stats>>, started: Instant, end: Instant) {
    let mut tick = tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let mut before = (0, 0);
    let mut last = started;
    let mut second = 0;
    while Instant::now() < end {
        tick.tick().await;
        second += 1;
        let now = Instant::now();
        let line = {
            let s = lock(&stats);
            let line = report::progress(second, &s, before, (now - last).as_secs_f64());
            before = (s.commands(), s.gifts_ok);
            line
        };
        last = now;
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn finds_the_bench_command_after_global_options() {
        let a = bench_argv(&argv("coinctl --endpoints n1:1 bench --batch 256 --json out.json"));
        assert_eq!(a, Some(argv("coinctl --endpoints n1:1 --batch 256 --json out.json")));
        let parsed = BenchArgs::try_parse_from(a.unwrap()).unwrap();
        assert_eq!(parsed.batch, 256);
        assert_eq!(parsed.json, Some(PathBuf::from("out.json")));
        assert_eq!(parsed.duration, Duration::from_secs(20));
        assert_eq!(parsed.workload, Workload::GiftStorm);
        assert!(!parsed.auto_batch, "automatic batching is opt-in");
        assert_eq!(parsed.gifts, None, "a run is bounded by its duration alone by default");
        assert_eq!(BenchArgs::try_parse_from(argv("coinctl --gifts 10000000")).unwrap().gifts, Some(10_000_000));
        assert!(BenchArgs::try_parse_from(argv("coinctl --auto-batch")).unwrap().auto_batch);
        assert_eq!(bench_argv(&argv("coinctl balance bench")), None);
        assert_eq!(bench_argv(&argv("coinctl --json status")), None);
    }

    #[test]
    fn rejects_out_of_range_options() {
        for bad in ["--batch 0", "--batch 8193", "--clients 0", "--workload nope", "--gifts 0", "--gifts -5"] {
            let args = argv(&format!("coinctl {bad}"));
            assert!(BenchArgs::try_parse_from(args).is_err(), "{bad}");
        }
        let ok = BenchArgs::try_parse_from(argv(
            "coinctl --workload hot-one --duration 10s --clients 4 --seed 9 --zipf 0.9",
        ))
        .unwrap();
        assert_eq!((ok.workload, ok.clients, ok.seed), (Workload::HotOne, 4, Some(9)));
    }
}
