//! The CI-sized chaos run against nodes started with `--one-thread` (gRPC and every replica on
//! one thread), its clients' mutating calls going through the client library's automatic
//! batching (frames of a SubmitStream, which faults break under calls in flight): 3 real
//! nodes, 30 s, every fault kind, seed 2; the checker's verdict must pass.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short_passes_with_one_thread_nodes_and_batching_clients() {
    common::chaos_passes(2, Duration::from_secs(30), 17_941, vec!["--one-thread".to_string()], true).await;
}
