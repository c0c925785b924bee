//! Placeholder until the ledger lands.
