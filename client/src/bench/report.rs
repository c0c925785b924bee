//! What a run prints: a progress line per second, the latency histogram, the final line, and
//! the JSON file of every figure.

use std::path::Path;

use serde_json::{json, Value};

use super::check::Verdict;
use super::stats::Stats;

/// Quantiles the histogram table shows.
const QUANTILES: [f64; 8] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];
const BAR_WIDTH_MAX: usize = 40;

/// `[  3s] ops/s=... gifts/s=... errors=... p99_ms=...` for the last second.
pub fn progress(second: u64, now: &Stats, before: (u64, u64), elapsed_s: f64) -> String {
    let commands = now.commands();
    let ops_per_s = (commands - before.0) as f64 / elapsed_s;
    let gifts_per_s = (now.gifts_ok - before.1) as f64 / elapsed_s;
    format!(
        "[{second:>3}s] ops/s={ops_per_s:.0} gifts/s={gifts_per_s:.0} errors={} p99_ms={:.2} (so far)",
        now.errors_total(),
        now.quantile_ms(0.99)
    )
}

/// Latency by quantile with a bar proportional to the value, then the errors by code.
pub fn histogram(stats: &Stats) -> String {
    let mut out = format!("latency per command ({} commands)\n", stats.commands());
    let max = stats.quantile_ms(1.0).max(f64::MIN_POSITIVE);
    for q in QUANTILES {
        let ms = stats.quantile_ms(q);
        let bar = "#".repeat(((ms / max) * BAR_WIDTH_MAX as f64).ceil() as usize);
        out.push_str(&format!("  p{:<7} {ms:>10.3} ms  {bar}\n", q * 100.0));
    }
    if stats.errors.is_empty() {
        out.push_str("errors: none\n");
    } else {
        out.push_str("errors:\n");
        for (code, n) in &stats.errors {
            out.push_str(&format!("  {code:<24} {n}\n"));
        }
    }
    out
}

/// The one line a run ends with.
pub fn final_line(stats: &Stats, elapsed_s: f64) -> String {
    format!(
        "coinledger gifts/s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} errors={}",
        gifts_per_s(stats, elapsed_s),
        stats.quantile_ms(0.5),
        stats.quantile_ms(0.99),
        stats.quantile_ms(0.999),
        stats.errors_total()
    )
}

fn gifts_per_s(stats: &Stats, elapsed_s: f64) -> f64 {
    stats.gifts_ok as f64 / elapsed_s.max(f64::MIN_POSITIVE)
}

/// Every figure of the run, for `--json FILE`.
pub fn to_json(settings: Value, stats: &Stats, elapsed_s: f64, verdict: &Verdict) -> Value {
    let quantiles: serde_json::Map<String, Value> = QUANTILES
        .iter()
        .map(|q| (format!("p{}", q * 100.0), json!(stats.quantile_ms(*q))))
        .collect();
    json!({
        "settings": settings,
        "elapsed_s": elapsed_s,
        "gifts_ok": stats.gifts_ok,
        "gifts_per_s": gifts_per_s(stats, elapsed_s),
        "commands": stats.commands(),
        "commands_per_s": stats.commands() as f64 / elapsed_s.max(f64::MIN_POSITIVE),
        "ops_ok": stats.ops_ok,
        "errors": stats.errors_total(),
        "errors_by_code": stats.errors,
        "outcomes_unknown": stats.unknown,
        "latency_ms": quantiles,
        "latency_ms_mean": stats.latency_us.mean() / 1_000.0,
        "conservation": verdict,
    })
}

pub fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn final_line_has_the_fixed_shape() {
        let mut s = Stats::default();
        for _ in 0..1_000 {
            s.gift_ok(0, 2);
        }
        s.record_latency(Duration::from_micros(1_500), 1_000);
        s.error("INSUFFICIENT_COINS");
        assert_eq!(
            final_line(&s, 2.0),
            "coinledger gifts/s=500 p50_ms=1.50 p99_ms=1.50 p999_ms=1.50 errors=1"
        );
        assert!(histogram(&s).contains("INSUFFICIENT_COINS"));
    }
}
