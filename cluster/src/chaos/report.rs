//! The verdict, its tables, and the files of `--out`: history.jsonl (one operation per line),
//! report.md and report.json.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use coinledger_client::proto::AuditReply;
use serde_json::json;

use super::check::Check;
use super::faults::{FaultKind, Injected};
use super::history::{History, Op, Outcome, KINDS};
use super::monitor::Failover;
use super::ChaosOptions;
use crate::launcher::Result;
use crate::ops::table;

pub struct Report {
    pub nodes: u64,
    pub seed: u64,
    pub duration_s: u64,
    pub clients: usize,
    pub faults: Vec<FaultKind>,
    pub warnings: Vec<String>,
    pub ops: Vec<Op>,
    pub injected: Vec<Injected>,
    pub failovers: Vec<Failover>,
    pub checks: Vec<Check>,
    pub audit: AuditReply,
    pub internal_answers: u64,
    pub run_ms: u64,
    pub quiescent_after: Duration,
}

/// From each fault's heal to the first mutation acknowledged after it (possibly one invoked
/// earlier and retried with its request id across the fault).
pub fn fill_recovery(injected: &mut [Injected], ops: &[Op]) {
    for f in injected.iter_mut() {
        let Some(healed) = f.healed_ms else { continue };
        f.recover_ms = ops
            .iter()
            .filter(|o| o.req.is_mutation() && matches!(o.outcome, Outcome::Ok(_)))
            .filter_map(|o| o.complete_ms)
            .filter(|c| *c >= healed)
            .min()
            .map(|c| c - healed);
    }
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: &ChaosOptions,
        faults: Vec<FaultKind>,
        warnings: Vec<String>,
        ops: Vec<Op>,
        injected: Vec<Injected>,
        failovers: Vec<Failover>,
        checks: Vec<Check>,
        audit: AuditReply,
        internal_answers: u64,
        run_ms: u64,
        quiescent_after: Duration,
    ) -> Report {
        Report {
            nodes: opts.nodes,
            seed: opts.seed,
            duration_s: opts.duration.as_secs(),
            clients: opts.clients,
            faults,
            warnings,
            ops,
            injected,
            failovers,
            checks,
            audit,
            internal_answers,
            run_ms,
            quiescent_after,
        }
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// (kind, ok, failed, unknown, unknown resolved as applied)
    fn op_rows(&self) -> Vec<(&'static str, usize, usize, usize, usize)> {
        let mut rows = Vec::new();
        for kind in KINDS {
            let of: Vec<&Op> = self.ops.iter().filter(|o| o.req.kind() == kind).collect();
            let count = |name: &str| of.iter().filter(|o| o.outcome.name() == name).count();
            let applied = of.iter().filter(|o| o.outcome.name() == "unknown" && o.final_reply().is_some()).count();
            rows.push((kind, count("ok"), count("failed"), count("unknown"), applied));
        }
        rows
    }

    fn fault_rows(&self) -> Vec<Vec<String>> {
        let mut by_kind: BTreeMap<FaultKind, Vec<&Injected>> = BTreeMap::new();
        for f in &self.injected {
            by_kind.entry(f.planned.action.kind()).or_default().push(f);
        }
        by_kind
            .iter()
            .map(|(k, fs)| {
                let rec: Vec<u64> = fs.iter().filter_map(|f| f.recover_ms).collect();
                let failed = fs.iter().filter(|f| f.error.is_some()).count();
                vec![
                    k.name().to_string(),
                    fs.len().to_string(),
                    failed.to_string(),
                    rec.iter().max().map_or("-".into(), |m| m.to_string()),
                    if rec.is_empty() { "-".into() } else { (rec.iter().sum::<u64>() / rec.len() as u64).to_string() },
                ]
            })
            .collect()
    }

    /// The text printed at the end of a run (also the body of report.md).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        out.push(format!(
            "VERDICT: {} (seed {}, {} nodes, {} s, {} clients, faults {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.seed,
            self.nodes,
            self.duration_s,
            self.clients,
            self.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
        ));
        out.extend(self.warnings.iter().cloned());
        out.push(String::new());
        out.push("Operations (unknown = no definite answer within the task's deadline; resolved after the heal by retrying the same request id):".into());
        let rows: Vec<Vec<String>> = self
            .op_rows()
            .into_iter()
            .map(|(k, ok, failed, unknown, applied)| vec![k.into(), ok.to_string(), failed.to_string(), unknown.to_string(), applied.to_string()])
            .collect();
        out.push(table(&["KIND", "OK", "FAILED", "UNKNOWN", "UNKNOWN->APPLIED"], &rows));
        let failed_codes = self.failed_codes();
        if !failed_codes.is_empty() {
            out.push(format!("definite refusals by code: {failed_codes}"));
        }
        out.push(String::new());
        out.push("Faults (recover = heal/restart -> first mutation acknowledged after it):".into());
        out.push(table(&["FAULT", "INJECTED", "FAILED", "RECOVER MAX MS", "RECOVER MEAN MS"], &self.fault_rows()));
        out.push(String::new());
        out.push("Fault timeline:".into());
        let rows: Vec<Vec<String>> = self
            .injected
            .iter()
            .map(|f| {
                vec![
                    f.started_ms.to_string(),
                    f.healed_ms.map_or("-".into(), |h| h.to_string()),
                    f.recover_ms.map_or("-".into(), |r| r.to_string()),
                    f.planned.action.describe() + &f.error.as_ref().map_or(String::new(), |e| format!(" FAILED: {e}")),
                ]
            })
            .collect();
        out.push(table(&["START MS", "HEALED MS", "RECOVER MS", "FAULT"], &rows));
        out.push(String::new());
        out.push(format!(
            "Failovers observed (shard leader changes seen by Admin.Status polling every 250 ms): {}",
            self.failovers.len()
        ));
        out.push(format!(
            "run {} ms; quiescent {} ms after the heal; INTERNAL answers during the run: {}",
            self.run_ms,
            self.quiescent_after.as_millis(),
            self.internal_answers
        ));
        out.push(format!(
            "audit: ok={} coins issued {} held {} spent on gifts {}; diamonds credited {} held {} on hold {} paid out {}",
            self.audit.ok,
            self.audit.coins_issued,
            self.audit.coins_held,
            self.audit.coins_spent_on_gifts,
            self.audit.diamonds_credited,
            self.audit.diamonds_held_total,
            self.audit.diamonds_on_hold_for_payout,
            self.audit.diamonds_paid_out
        ));
        out.push(String::new());
        out.push("Checks:".into());
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| vec![c.name.into(), if c.ok() { "ok".into() } else { "VIOLATED".into() }, c.checked.to_string(), c.violations.len().to_string()])
            .collect();
        out.push(table(&["CHECK", "RESULT", "CHECKED", "VIOLATIONS"], &rows));
        for c in &self.checks {
            for n in &c.notes {
                out.push(format!("  {}: {n}", c.name));
            }
            for v in c.violations.iter().take(super::check::VIOLATIONS_SHOWN_MAX) {
                out.push(format!("  {} VIOLATION: {v}", c.name));
            }
            if c.violations.len() > super::check::VIOLATIONS_SHOWN_MAX {
                out.push(format!("  {}: {} more violations in report.json", c.name, c.violations.len() - super::check::VIOLATIONS_SHOWN_MAX));
            }
        }
        out.join("\n")
    }

    fn failed_codes(&self) -> String {
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for o in &self.ops {
            if let Outcome::Failed { code, .. } = &o.outcome {
                *codes.entry(format!("{}/{}", o.req.kind(), code.as_str_name())).or_default() += 1;
            }
        }
        codes.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" ")
    }

    pub fn to_json(&self) -> serde_json::Value {
        let ops: Vec<_> = self
            .op_rows()
            .into_iter()
            .map(|(k, ok, failed, unknown, applied)| json!({"kind": k, "ok": ok, "failed": failed, "unknown": unknown, "unknown_applied": applied}))
            .collect();
        json!({
            "verdict": if self.passed() { "pass" } else { "fail" },
            "seed": self.seed, "nodes": self.nodes, "duration_s": self.duration_s, "clients": self.clients,
            "faults": self.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "warnings": self.warnings,
            "operations": ops,
            "injected": self.injected,
            "failovers": self.failovers,
            "checks": self.checks,
            "audit_ok": self.audit.ok,
            "internal_answers": self.internal_answers,
            "run_ms": self.run_ms,
            "quiescent_after_ms": self.quiescent_after.as_millis() as u64,
        })
    }

    pub fn write(&self, dir: &Path, history: &History) -> Result<()> {
        let err = |what: &str, e: std::io::Error| format!("cannot write {}: {e}", dir.join(what).display());
        history.write_jsonl(&dir.join("history.jsonl")).map_err(|e| err("history.jsonl", e))?;
        std::fs::write(dir.join("report.md"), format!("# coinledger chaos run\n\n```text\n{}\n```\n", self.render()))
            .map_err(|e| err("report.md", e))?;
        let text = serde_json::to_string_pretty(&self.to_json()).expect("report serializes");
        std::fs::write(dir.join("report.json"), text + "\n").map_err(|e| err("report.json", e))
    }
}
