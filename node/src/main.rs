//! `coinledger-node`: see `coinledger-node --help`.

use clap::Parser;
use coinledger_node::config::NodeConfig;

/// The node allocates on every command (decoded requests, encoded records, sled's pages).
/// With glibc's malloc that was a fifth of the node's CPU under load; jemalloc (as in TiKV)
/// gave 30% more batched gifts/s at a lower resident set (mimalloc was as fast, +40% RSS).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). With its defaults (4 arenas per core, freed pages returned after 10 s and
/// only when the arena is used again) the largest node held 235 and 244 MiB after 1,000,000
/// batched gifts; with 2 arenas, dirty pages returned after 1 s and a background thread that
/// returns them when the node is idle too, 214 and 218 MiB (2026-12-02, gifts/s within the
/// run-to-run noise of this machine).
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true".as_ptr());

/// A C string pointer jemalloc reads as `const char *malloc_conf`.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to an immutable static string.
unsafe impl Sync for MallocConf {}

fn main() {
    let cfg = NodeConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,raft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Fail-stop: a panic anywhere (a violated money-path assertion, a storage failure) ends
    // the process instead of leaving a half-working replica answering clients.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    if let Err(e) = coinledger_node::node::serve(cfg) {
        eprintln!("coinledger-node: {e}");
        std::process::exit(1);
    }
}
