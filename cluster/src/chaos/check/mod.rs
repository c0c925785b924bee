//! The checker: one module per invariant, each reading the history (and, where it must, asking
//! the healed, quiescent cluster) and returning a [`Check`].
//!
//! | module         | invariant (ARCHITECTURE.md)                                             |
//! |----------------|-------------------------------------------------------------------------|
//! | `no_loss`      | 1: every acknowledged mutation is there (same request id → same reply)  |
//! | `once`         | 2, 6: nothing applied twice (request ids, payment refs, payout ids); final balances = what the outcomes imply |
//! | `non_negative` | 3: no read saw a negative balance or held > diamonds                    |
//! | `conservation` | 4: Admin.Audit ok, and its totals equal the history's                   |
//! | `linearizable` | 5: each account's reads fit a linearization of its mutations            |

pub mod conservation;
pub mod linearizable;
pub mod model;
pub mod no_loss;
pub mod non_negative;
pub mod once;

use serde::Serialize;

/// The verdict of one invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// How many things were checked (operations, accounts, equations).
    pub checked: usize,
    pub violations: Vec<String>,
    /// Not violations: what could not be decided, and why.
    pub notes: Vec<String>,
}

/// Violations listed in full in the report, per check; the rest are counted.
pub const VIOLATIONS_SHOWN_MAX: usize = 50;

impl Check {
    pub fn new(name: &'static str) -> Check {
        Check { name, checked: 0, violations: Vec::new(), notes: Vec::new() }
    }

    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn violation(&mut self, v: String) {
        self.violations.push(v);
    }
}
