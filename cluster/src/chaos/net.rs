//! Network faults through iptables on per-node loopback addresses.
//!
//! Node i listens on 127.0.0.(10+i) and its peer connections leave from that address, so a
//! rule `-s 127.0.0.11 -d 127.0.0.12 -j DROP` drops exactly what node 1 sends to node 2 (real
//! packet loss: TCP retransmits into the void, no reset). Every rule lives in one chain of our
//! own, `COINLEDGER_CHAOS_<pid>`, jumped to from INPUT: healing flushes the chain, and on exit
//! (normal, error, panic or Ctrl-C) the jump and the chain are deleted. Chains left by a
//! harness that died (its pid no longer runs) are deleted when the next one starts.

use std::process::Command;

use crate::launcher::Result;

/// Prefix of our chains' names; the harness pid follows.
pub const CHAIN_PREFIX: &str = "COINLEDGER_CHAOS_";

/// The loopback address of node `id`.
pub fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

fn iptables(args: &[&str]) -> Result<String> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Ok(version) if iptables runs and we may change rules (listing the INPUT chain needs root).
pub fn available() -> Result<String> {
    let version = iptables(&["-V"])?;
    iptables(&["-S", "INPUT"])?;
    Ok(version.trim().to_string())
}

/// Deletes the chains of harness processes that no longer run. Returns their names.
pub fn clean_stale_chains() -> Result<Vec<String>> {
    let rules = iptables(&["-S"])?;
    let mut removed = Vec::new();
    for line in rules.lines() {
        let Some(name) = line.strip_prefix("-N ") else { continue };
        let Some(pid) = name.strip_prefix(CHAIN_PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_chain(name);
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

fn delete_chain(name: &str) {
    // The jump may have been inserted more than once if a run was interrupted mid-setup.
    while iptables(&["-D", "INPUT", "-j", name]).is_ok() {}
    let _ = iptables(&["-F", name]);
    let _ = iptables(&["-X", name]);
}

/// Our chain, deleted on drop.
#[derive(Debug)]
pub struct Firewall {
    chain: String,
    /// (from, to) node pairs currently cut.
    cut: Vec<(u64, u64)>,
}

impl Firewall {
    /// Creates the chain and the jump from INPUT (after cleaning stale chains).
    pub fn new() -> Result<Firewall> {
        clean_stale_chains()?;
        let chain = format!("{CHAIN_PREFIX}{}", std::process::id());
        delete_chain(&chain);
        iptables(&["-N", &chain])?;
        let fw = Firewall { chain, cut: Vec::new() };
        iptables(&["-I", "INPUT", "-j", &fw.chain])?;
        Ok(fw)
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Drops every packet node `from` sends to node `to`.
    pub fn cut(&mut self, from: u64, to: u64) -> Result<()> {
        iptables(&["-A", &self.chain, "-s", &node_ip(from), "-d", &node_ip(to), "-j", "DROP"])?;
        self.cut.push((from, to));
        Ok(())
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn split(&mut self, a: &[u64], b: &[u64]) -> Result<()> {
        for x in a {
            for y in b {
                self.cut(*x, *y)?;
                self.cut(*y, *x)?;
            }
        }
        Ok(())
    }

    /// Removes every rule.
    pub fn heal(&mut self) -> Result<()> {
        iptables(&["-F", &self.chain])?;
        self.cut.clear();
        Ok(())
    }

    pub fn cuts(&self) -> &[(u64, u64)] {
        &self.cut
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        delete_chain(&self.chain);
    }
}
