//! Runs local coinledger clusters of real `coinledger-node` processes: the launcher
//! (`launcher`), operator queries (`ops`), a purchase load with its no-loss checks (`load`),
//! the failover benchmark (`failover`) and the chaos harness with its checker (`chaos`). The
//! `coinledger-cluster` binary is a thin CLI over these; the integration tests use them
//! directly.

pub mod failover;
pub mod launcher;
pub mod load;
pub mod ops;
pub mod chaos;
