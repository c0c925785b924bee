//! What a run measured: one latency histogram of every command (HdrHistogram, microseconds),
//! counts by outcome, and the diamonds each creator was acknowledged to receive.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks (larger ones are clamped to it): above the client's
/// deadline, so nothing real is clamped.
pub const LATENCY_US_MAX: u64 = 120_000_000;

#[derive(Debug, Clone)]
pub struct Stats {
    /// Per command; for a batch, the batch's latency once per command.
    pub latency_us: Histogram<u64>,
    pub gifts_ok: u64,
    /// Successful commands and reads of every kind (gifts included).
    pub ops_ok: u64,
    /// Errors by code name (business refusals and failures alike).
    pub errors: BTreeMap<String, u64>,
    /// Commands whose outcome stayed unknown (TIMEOUT): they may or may not have been applied.
    pub unknown: u64,
    /// Diamonds credited by acknowledged gifts, by creator index.
    pub diamonds_expected: HashMap<usize, u64>,
    /// Diamonds of acknowledged posted payouts, by creator index: they left the ledger, so a
    /// creator's `diamonds` balance must equal expected minus posted.
    pub diamonds_posted: HashMap<usize, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds"),
            gifts_ok: 0,
            ops_ok: 0,
            errors: BTreeMap::new(),
            unknown: 0,
            diamonds_expected: HashMap::new(),
            diamonds_posted: HashMap::new(),
        }
    }
}

impl Stats {
    /// One latency counted for `commands` commands (a batch's latency counts for each).
    pub fn record_latency(&mut self, latency: Duration, commands: u64) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency_us
            .record_n(us, commands)
            .expect("clamped into the histogram's range");
    }

    pub fn gift_ok(&mut self, creator: usize, diamonds: u64) {
        self.gifts_ok += 1;
        self.ops_ok += 1;
        *self.diamonds_expected.entry(creator).or_default() += diamonds;
    }

    pub fn posted(&mut self, creator: usize, diamonds: u64) {
        self.ops_ok += 1;
        *self.diamonds_posted.entry(creator).or_default() += diamonds;
    }

    pub fn error(&mut self, code_name: &str) {
        *self.errors.entry(code_name.to_string()).or_default() += 1;
        if code_name == "TIMEOUT" {
            self.unknown += 1;
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn commands(&self) -> u64 {
        self.latency_us.len()
    }

    /// Latency at quantile `q` (0..=1) in milliseconds; 0 with no samples.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_latency_counts_once_per_command() {
        let mut s = Stats::default();
        s.record_latency(Duration::from_millis(4), 256);
        s.record_latency(Duration::from_millis(1), 1);
        assert_eq!(s.commands(), 257);
        assert!((s.quantile_ms(0.5) - 4.0).abs() < 0.01);
        assert!((s.quantile_ms(0.001) - 1.0).abs() < 0.01);
    }

    #[test]
    fn outcomes_are_counted() {
        let mut s = Stats::default();
        s.gift_ok(1, 15);
        s.gift_ok(1, 15);
        s.posted(1, 10);
        s.error("INSUFFICIENT_COINS");
        s.error("TIMEOUT");
        assert_eq!((s.gifts_ok, s.ops_ok, s.errors_total(), s.unknown), (2, 3, 2, 1));
        assert_eq!(s.diamonds_expected[&1], 30);
        assert_eq!(s.diamonds_posted[&1], 10);
    }
}
