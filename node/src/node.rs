//! Wires a node together: storage engine, group-commit syncer, one actix actor per shard
//! replica (spread over `--shard-threads` arbiters), the router and the gRPC server.
//!
//! Threads: tonic serves gRPC on the tokio runtime [`serve`] starts; shard replicas (raft
//! and apply) run on actix arbiters; fsync runs on the syncer's own thread. A gRPC handler only
//! awaits a oneshot, so neither raft work nor fsync ever blocks the threads serving gRPC.
//! With `--one-thread` that runtime is an actix system's single thread and the
//! replicas run on it too (fsync still has its own thread): fewer wake-ups between threads,
//! at the price of raft work holding up gRPC serving (see the flag's help).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use serde::{Deserialize, Serialize};
use tonic::transport::server::TcpIncoming;

use crate::api::{admin::AdminService, ledger_service::LedgerService};
use crate::config::NodeConfig;
use crate::keys;
use crate::ledger::Layout;
use crate::placement::Placement;
use crate::raftlog::RaftWal;
use crate::proto::peer::peer_server::PeerServer;
use crate::proto::{admin_server::AdminServer, ledger_server::LedgerServer};
use crate::transport::link::PEER_MESSAGE_BYTES_MAX;
use crate::transport::service::PeerService;
use crate::transport::{Peers, RaftLinks};
use crate::router::{self, Router};
use crate::shard::actor::ShardHooks;
use crate::shard::replica::{Clock, RaftTiming, Replica, ReplicaConfig};
use crate::shard::ShardActor;
use crate::stats::NodeStats;
use crate::storage::{Engine, SharedEngine, SledEngine, WriteBatch};
use crate::syncer::{GroupCommit, Syncer};

/// What a data directory was created for; a node refuses to start on a directory made for
/// another node id or shard count (that would silently re-hash every wallet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NodeMeta {
    node_id: u64,
    shard_count: u32,
}

/// The layout of shard state this build reads and writes. Format 1 stored one history entry
/// per key; format 2 stores pages of them (`hpg/`); format 3 keeps effect results in inbox
/// pages per home shard behind a fence (`ibx/`, `ibf/`) instead of a key per effect; format 4
/// kept each account's last, partly filled history page under `hop/` until it was full;
/// format 5 keeps that page in the account's own record (`acct/`); format 6 keeps inbox pages
/// of 2 home indexes instead of 64, as sorted rows with their results (binary-searched);
/// format 7 keeps request records in pages of about 16 (`rqp/`, see `shard/request_pages.rs`)
/// instead of a key each (`req/`); format 8 records a cross-shard gift's outcome under its
/// request id when the sender is debited instead of when the credit is completed; format 9
/// keeps the raft entries in the node's raft log (`raftlog/` beside the engine's files, see
/// `raftlog/wal.rs`) instead of a key each in the engine; format 10 stores request pages of
/// 1 KiB or more (`shard/request_pages.rs`), and account records and history pages of 256
/// bytes or more (`shard/store.rs`), lz4-compressed, and reads the plain ones of earlier
/// formats as they are (upgrading to it changes nothing on disk but the marker; a build of
/// format 9 refuses the directory afterwards, as it could not read those records); format 11
/// seals full history pages under the shard's seal count (`hps/`, `hsn`) instead of under
/// their account (`hpg/`), and names an account's newest one in its record (ledger
/// `book::append_history`), and reads the pages and records of format 10 as they are
/// (upgrading to it, too, changes nothing on disk but the marker).
const STORAGE_FORMAT: u32 = 11;

/// The earliest format this build upgrades in place: format 7 by [`upgrade_from_7`], formats
/// 7 and 8 by [`move_raft_log_out_of_engine`], and 7 to 10 by writing the new marker.
const UPGRADABLE_FORMAT: u32 = 7;

/// The first format with the raft log out of the engine: earlier ones move it on upgrade.
const RAFT_LOG_FORMAT: u32 = 9;

/// The node's raft log, in the data directory beside the engine's own files.
fn raft_log_dir(cfg: &NodeConfig) -> std::path::PathBuf {
    cfg.data_dir.join("raftlog")
}

/// Checks that the data directory was made for this node and returns its storage format
/// (writing this build's on a new directory).
fn check_meta(engine: &dyn Engine, cfg: &NodeConfig) -> Result<u32, String> {
    let want = NodeMeta { node_id: cfg.id, shard_count: cfg.shards };
    match engine.get(keys::NODE_META).map_err(|e| e.to_string())? {
        Some(bytes) => {
            let have: NodeMeta = postcard::from_bytes(&bytes).map_err(|e| format!("corrupt node metadata: {e}"))?;
            if have != want {
                return Err(format!(
                    "data directory {} belongs to node {} with {} shards; refusing to start as node {} with {} shards",
                    cfg.data_dir.display(), have.node_id, have.shard_count, want.node_id, want.shard_count
                ));
            }
            let format = match engine.get(keys::STORAGE_FORMAT).map_err(|e| e.to_string())? {
                None => 1,
                Some(b) => u32::from_be_bytes(b.as_slice().try_into().map_err(|_| format!("corrupt storage format marker ({} bytes)", b.len()))?),
            };
            if !(UPGRADABLE_FORMAT..=STORAGE_FORMAT).contains(&format) {
                return Err(format!(
                    "data directory {} is in storage format {format}; this build reads format {STORAGE_FORMAT} and upgrades formats {UPGRADABLE_FORMAT} to {}: \
                     start it on an empty directory (its replicas are rebuilt from the other nodes by snapshot) \
                     or run the build that wrote it",
                    cfg.data_dir.display(),
                    STORAGE_FORMAT - 1
                ));
            }
            Ok(format)
        }
        None => {
            let mut batch = WriteBatch::default();
            batch.put(keys::STORAGE_FORMAT.to_vec(), STORAGE_FORMAT.to_be_bytes().to_vec());
            batch.put(keys::NODE_META.to_vec(), postcard::to_stdvec(&want).expect("encode meta"));
            engine.write(batch).map_err(|e| e.to_string())?;
            engine.sync().map_err(|e| e.to_string())?;
            Ok(STORAGE_FORMAT)
        }
    }
}

/// Upgrades the ledger state of a directory of format 7 to 8 once its replicas are open:
/// every cross-shard gift still waiting in an outbox gets its request recorded as done, as
/// this build records it at the debit (its completion will only release the outbox record).
/// Entries above a replica's applied index are applied by this build anyway. A crash before
/// the new format is written repeats the upgrade, which changes nothing the second time.
fn upgrade_from_7(replicas: &mut [Replica]) -> Result<usize, String> {
    let mut recorded = 0;
    for replica in replicas.iter_mut() {
        recorded += replica.record_pending_gift_outcomes().map_err(|e| format!("upgrading shard {}: {e}", replica.shard()))?;
    }
    Ok(recorded)
}

/// Entries moved from the engine to the raft log per record (and per engine scan).
const MOVE_CHUNK_ENTRIES: usize = 1_024;

/// The upgrade to format 9, before the replicas open: every shard's raft entries are copied
/// from the engine into a new raft log, which is synced; then one atomic engine write deletes
/// them from the engine and marks the move done. A crash before that write repeats the move
/// from the start (the partial raft log is removed first); after it, the move is skipped.
fn move_raft_log_out_of_engine(engine: &dyn Engine, shard_count: u32, dir: &std::path::Path) -> Result<u64, String> {
    let fail = |e: crate::storage::StorageError| format!("moving the raft log to {}: {e}", dir.display());
    if engine.get(keys::RAFT_LOG_MOVED).map_err(fail)?.is_some() {
        return Ok(0);
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the partial raft log {}: {e}", dir.display())),
    }
    let wal = RaftWal::open(dir).map_err(fail)?;
    let mut moved = 0u64;
    let mut batch = WriteBatch::default();
    for shard in 0..shard_count {
        let end = keys::raft_entries_end(shard);
        let mut start = keys::raft_entry(shard, 0);
        loop {
            let chunk = engine.scan(&start, &end, MOVE_CHUNK_ENTRIES, false).map_err(fail)?;
            let Some((last_key, _)) = chunk.last() else { break };
            let mut records = Vec::with_capacity(chunk.len());
            for (key, value) in &chunk {
                let entry = <raft::prelude::Entry as protobuf::Message>::parse_from_bytes(value)
                    .map_err(|e| format!("raft entry {key:?} of shard {shard}: {e}"))?;
                records.push((keys::raft_entry_index(key), entry.term, value.as_slice()));
            }
            wal.append(shard, 0, &records);
            moved += chunk.len() as u64;
            start = keys::raft_entry(shard, keys::raft_entry_index(last_key) + 1);
            wal.sync().map_err(fail)?;
            if chunk.len() < MOVE_CHUNK_ENTRIES {
                break;
            }
        }
        batch.delete_range(keys::raft_entry(shard, 0), end);
    }
    wal.sync().map_err(fail)?;
    batch.put(keys::RAFT_LOG_MOVED.to_vec(), vec![1]);
    engine.write(batch).map_err(fail)?;
    engine.sync().map_err(fail)?;
    Ok(moved)
}

/// Ends an upgrade: the new format, written once everything it needs is durable.
fn finish_upgrade(engine: &dyn Engine, wal: &RaftWal, from: u32, entries_moved: u64, gift_requests_recorded: usize) -> Result<(), String> {
    crate::raftlog::sync_round(wal, engine).map_err(|e| e.to_string())?;
    let mut batch = WriteBatch::default();
    batch.put(keys::STORAGE_FORMAT.to_vec(), STORAGE_FORMAT.to_be_bytes().to_vec());
    batch.delete(keys::RAFT_LOG_MOVED.to_vec());
    engine.write(batch).map_err(|e| e.to_string())?;
    engine.sync().map_err(|e| e.to_string())?;
    tracing::info!(from, to = STORAGE_FORMAT, entries_moved, gift_requests_recorded, "storage format upgraded");
    Ok(())
}

/// The node's answers to its replicas' outputs.
struct NodeHooks {
    router: OnceLock<Arc<Router>>,
    runtime: tokio::runtime::Handle,
    links: RaftLinks,
}

impl ShardHooks for NodeHooks {
    fn send_raft(&self, shard: u32, messages: Vec<raft::prelude::Message>) {
        self.links.send(shard, messages);
    }

    fn became_leader(&self, shard: u32) {
        let Some(router) = self.router.get().cloned() else { return };
        self.runtime.spawn(async move {
            // The sweep reads through ReadIndex, which waits for this term's first commit.
            match tokio::time::timeout(router::SWEEP_TIMEOUT, router.sweep_effects(shard, 0)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(shard, effects = n, "re-drove pending cross-shard effects"),
                Ok(Err(e)) => tracing::warn!(shard, error = %e, "re-driving pending effects failed; the sweep retries"),
                Err(_) => tracing::warn!(shard, "re-driving pending effects timed out; the sweep retries"),
            }
        });
    }

    fn leader_known(&self, shard: u32, leader_id: u64) {
        if let Some(router) = self.router.get() {
            router.note_leader(shard, leader_id);
        }
    }
}

/// Where the shard actors run.
enum ActorThreads {
    /// On the thread calling [`start_shards`], an actix system's (`--one-thread`).
    Current,
    /// Spread over this many arbiters of an actix system thread of their own.
    Arbiters(usize),
}

/// Starts the shard actors and returns their addresses.
fn start_shards(replicas: Vec<Replica>, threads: ActorThreads, syncer: Syncer, hooks: Arc<dyn ShardHooks>, tick: Duration) -> Vec<(u32, Addr<ShardActor>)> {
    match threads {
        ActorThreads::Current => replicas
            .into_iter()
            .map(|replica| {
                let shard = replica.shard();
                (shard, ShardActor::new(replica, syncer.clone(), hooks.clone(), tick).start())
            })
            .collect(),
        ActorThreads::Arbiters(threads) => start_on_arbiters(replicas, threads, syncer, hooks, tick),
    }
}

/// Starts the shard actors on `threads` arbiters of an actix system thread of their own.
fn start_on_arbiters(replicas: Vec<Replica>, threads: usize, syncer: Syncer, hooks: Arc<dyn ShardHooks>, tick: Duration) -> Vec<(u32, Addr<ShardActor>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("coinledger-actors".into())
        .spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
                let addrs: Vec<(u32, Addr<ShardActor>)> = replicas
                    .into_iter()
                    .enumerate()
                    .map(|(i, replica)| {
                        let (syncer, hooks) = (syncer.clone(), hooks.clone());
                        let shard = replica.shard();
                        let addr = ShardActor::start_in_arbiter(&arbiters[i % threads].handle(), move |_| {
                            ShardActor::new(replica, syncer, hooks, tick)
                        });
                        (shard, addr)
                    })
                    .collect();
                tx.send(addrs).expect("hand shard addresses to the node");
                // Arbiters live as long as the process.
                std::mem::forget(arbiters);
            });
            system.run().expect("actix system");
        })
        .expect("spawn actor thread");
    rx.recv().expect("shard actors started")
}

/// How long a stopping node waits for the leadership it hands over to be taken.
const HAND_OFF_WAIT: Duration = Duration::from_millis(1_000);

/// How long a stopping node lets in-flight calls finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs a node until SIGINT or SIGTERM, on the runtime its configuration asks for: with
/// `--one-thread` an actix system's, whose thread then also hosts the shard actors (see
/// [`ActorThreads::Current`]); else a tokio runtime of `--grpc-threads` workers.
pub fn serve(cfg: NodeConfig) -> Result<(), String> {
    if cfg.one_thread {
        return actix::System::new().block_on(run(cfg));
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.grpc_threads as usize)
        .thread_name("coinledger-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?
        .block_on(run(cfg))
}

async fn run(cfg: NodeConfig) -> Result<(), String> {
    cfg.validate()?;
    let members = Arc::new(cfg.members()?);
    let placement = Placement::new(&members, cfg.replication()?)?;
    // Peer connections leave from our own listen IP (when it is a specific one), so firewall
    // rules between node addresses see which node is talking.
    let source_ip = Some(cfg.listen.ip()).filter(|ip| !ip.is_unspecified());
    let engine: SharedEngine = Arc::new(
        SledEngine::open(&cfg.data_dir, cfg.cache_mb << 20).map_err(|e| format!("cannot open {}: {e}", cfg.data_dir.display()))?,
    );
    let format = check_meta(engine.as_ref(), &cfg)?;
    let wal_dir = raft_log_dir(&cfg);
    let entries_moved = if format < RAFT_LOG_FORMAT { move_raft_log_out_of_engine(engine.as_ref(), cfg.shards, &wal_dir)? } else { 0 };
    let wal = RaftWal::open(&wal_dir).map_err(|e| format!("cannot open the raft log {}: {e}", wal_dir.display()))?;
    let wal = Arc::new(wal.with_segment_bytes(cfg.raft_log_segment_mb << 20));
    let layout = Layout::new(cfg.shards);
    let timing = RaftTiming {
        tick_ms: cfg.tick_ms,
        election_ticks: cfg.election_ticks as usize,
        heartbeat_ticks: cfg.heartbeat_ticks as usize,
        fixed_election_timeout: false,
    };
    let hosted: Vec<u32> = (0..cfg.shards).filter(|&s| placement.hosts(cfg.id, s)).collect();
    let state_flush_ticks = crate::shard::replica::state_flush_ticks(hosted.len());
    let entry_cache_bytes = crate::raftlog::entry_cache_bytes(hosted.len());
    let stats = Arc::new(NodeStats::default());
    let mut replicas = Vec::with_capacity(hosted.len());
    for shard in hosted {
        let rc = ReplicaConfig {
            shard,
            node_id: cfg.id,
            layout,
            voters: placement.replicas(shard),
            addresses: members.clone(),
            timing: timing.clone(),
            compact_log_entries: cfg.compact_log_entries,
            compact_log_bytes: cfg.compact_log_mb << 20,
            state_flush_ticks,
            entry_cache_bytes,
            clock: Clock::System,
            stats: stats.clone(),
        };
        replicas.push(Replica::open(rc, engine.clone(), wal.clone()).map_err(|e| format!("shard {shard}: {e}"))?);
    }
    wal.forget_untaken();
    if format < STORAGE_FORMAT {
        let recorded = if format == 7 { upgrade_from_7(&mut replicas)? } else { 0 };
        finish_upgrade(engine.as_ref(), &wal, format, entries_moved, recorded)?;
    }
    let group_commit = GroupCommit {
        delay: Duration::from_micros(cfg.group_commit_delay_us),
        min_writers: cfg.group_commit_min_writers as usize,
    };
    let (syncer, _sync_thread) = Syncer::start(engine.clone(), wal.clone(), group_commit, stats.clone());
    let hooks = Arc::new(NodeHooks {
        router: OnceLock::new(),
        runtime: tokio::runtime::Handle::current(),
        links: RaftLinks::start(cfg.id, &members, source_ip, stats.clone()),
    });
    let threads = if cfg.one_thread { ActorThreads::Current } else { ActorThreads::Arbiters(cfg.shard_threads as usize) };
    let hosted = start_shards(replicas, threads, syncer, hooks.clone(), Duration::from_millis(cfg.tick_ms));
    let mut shards: Vec<Option<Addr<ShardActor>>> = vec![None; cfg.shards as usize];
    for (shard, addr) in hosted {
        shards[shard as usize] = Some(addr);
    }
    let peers = Peers::new(cfg.id, &members, source_ip)?;
    let router = Arc::new(Router::new(cfg.id, layout, placement, shards, peers));
    let _ = hooks.router.set(router.clone());
    tokio::spawn(router::sweep_forever(router.clone(), Duration::from_millis(cfg.effect_sweep_ms)));

    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let ledger = LedgerService::new(router.clone(), timeout, cfg.id, members.clone(), cfg.max_commands_in_flight);
    let admin = AdminService::new(router.clone(), timeout, cfg.id, members.clone(), wal.clone(), stats.clone());
    let peer = PeerService::new(router.clone(), timeout, stats);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(node = cfg.id, address = %local, shards = cfg.shards, data_dir = %cfg.data_dir.display(), "coinledger node serving");
    println!("coinledger-node {} serving on {local} ({} shards, data in {})", cfg.id, cfg.shards, cfg.data_dir.display());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = grpc_server(CONNECTION_KEEPALIVE, CONNECTION_KEEPALIVE_TIMEOUT)
        .add_service(LedgerServer::new(ledger))
        .add_service(AdminServer::new(admin))
        .add_service(
            PeerServer::new(peer)
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        )
        // tonic ignores the builder's tcp_nodelay for an incoming stream we supply: without
        // it here, Nagle held small replies for a delayed ACK (40 ms stalls, p90 of 46 ms for
        // a single client whose p50 was 3.7 ms).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(|e| format!("gRPC server: {e}"))?,
        _ = shutdown_signal() => {
            // Hand the shards we lead to caught-up followers first: clients then see a
            // leader change of a few milliseconds instead of an election timeout.
            let transfers = router.hand_off_leadership().await;
            if transfers > 0 {
                let deadline = tokio::time::Instant::now() + HAND_OFF_WAIT;
                while router.shards_led().await > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tracing::info!(transfers, still_leading = router.shards_led().await, "stopping: leadership handed over");
            }
            tracing::info!(grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "stopping: finishing in-flight calls");
            let _ = stop_tx.send(());
            // Peers' raft and Forward streams never end by themselves: bound the wait. Nothing
            // durable depends on a graceful stop (every acknowledged write is already fsynced).
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await;
            // Not needed for safety (the state is a function of the fsynced log), but the
            // next start then re-applies nothing instead of up to one flush period per shard.
            match tokio::time::timeout(SHUTDOWN_GRACE, router.flush_state()).await {
                Ok(flushed) => match crate::raftlog::sync_round(&wal, engine.as_ref()) {
                    Ok(()) => tracing::info!(replicas = flushed, "stopping: shard state flushed"),
                    Err(e) => tracing::warn!(error = %e, "stopping: shard state flush not synced"),
                },
                Err(_) => tracing::warn!("stopping: shard state flush timed out"),
            }
        }
    }
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// How long a connection to the node (a client's, or a peer's) may stay silent before the node
/// pings it, and how long it then has to answer. One that does not is closed with its streams:
/// a SubmitStream or peer stream whose other end vanished without a reset (its host gone, cut
/// off) would otherwise keep its task and buffers until the kernel gave up on the connection,
/// which for a connection with nothing to send is never. Clients and peers ping more often
/// themselves (1 s) to find a dead node quickly; this only reaps.
const CONNECTION_KEEPALIVE: Duration = Duration::from_secs(10);
const CONNECTION_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

fn grpc_server(keepalive: Duration, keepalive_timeout: Duration) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse as config;
    use crate::storage::MemEngine;

    #[tokio::test]
    async fn the_server_closes_a_connection_whose_other_end_went_silent() {
        use crate::proto::peer::{peer_client::PeerClient, RaftFrame};
        use crate::transport::testing::serve_counting_peer;
        use coinledger_client::testing::FreezingProxy;

        let (upstream, received) = serve_counting_peer(grpc_server(Duration::from_millis(200), Duration::from_millis(300))).await;
        let proxy = FreezingProxy::start(upstream).await;
        // A client that does not ping, with a stream it keeps open and silent.
        let mut client = PeerClient::connect(format!("http://{}", proxy.addr)).await.unwrap();
        let (frames, frames_rx) = tokio::sync::mpsc::channel(1);
        let call = tokio::spawn(async move { client.raft(tokio_stream::wrappers::ReceiverStream::new(frames_rx)).await });
        frames.send(RaftFrame { from_node: 1, messages: Vec::new() }).await.unwrap();
        // Past a ping and its timeout: answered pings keep the connection.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(proxy.upstream_closed(), 0, "a connection that answers pings is kept");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);

        proxy.freeze();
        let frozen = std::time::Instant::now();
        while proxy.upstream_closed() == 0 {
            assert!(frozen.elapsed() < Duration::from_secs(10), "the server kept the silent connection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A ping after 200 ms of silence, unanswered for 300 ms.
        assert!(frozen.elapsed() < Duration::from_secs(2), "closed after {:?}", frozen.elapsed());
        drop((frames, call));
    }

    #[test]
    fn a_data_directory_keeps_its_identity_and_format() {
        let engine = MemEngine::new();
        let cfg = config(&[]);
        check_meta(&engine, &cfg).unwrap();
        check_meta(&engine, &cfg).expect("a directory this build wrote opens again");
        let other = config(&["--shards", "64"]);
        assert!(check_meta(&engine, &other).unwrap_err().contains("with 16 shards"));

        // A directory from before history pages (format 1) has the identity but no marker.
        let mut batch = WriteBatch::default();
        batch.delete(keys::STORAGE_FORMAT.to_vec());
        engine.write(batch).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(keys::STORAGE_FORMAT.to_vec(), UPGRADABLE_FORMAT.to_be_bytes().to_vec());
        engine.write(batch).unwrap();
        assert_eq!(check_meta(&engine, &cfg), Ok(UPGRADABLE_FORMAT), "format 7 opens, to be upgraded");
        let mut batch = WriteBatch::default();
        batch.put(keys::STORAGE_FORMAT.to_vec(), (STORAGE_FORMAT - 1).to_be_bytes().to_vec());
        engine.write(batch).unwrap();
        assert_eq!(check_meta(&engine, &cfg), Ok(STORAGE_FORMAT - 1), "the previous format opens, to be upgraded");
        let mut batch = WriteBatch::default();
        batch.put(keys::STORAGE_FORMAT.to_vec(), (STORAGE_FORMAT + 1).to_be_bytes().to_vec());
        engine.write(batch).unwrap();
        assert!(check_meta(&engine, &cfg).unwrap_err().contains(&format!("storage format {}", STORAGE_FORMAT + 1)), "a newer format is refused");
        let mut batch = WriteBatch::default();
        batch.delete(keys::STORAGE_FORMAT.to_vec());
        engine.write(batch).unwrap();
        let refused = check_meta(&engine, &cfg).unwrap_err();
        assert!(refused.contains("storage format 1") && refused.contains(&format!("format {STORAGE_FORMAT}")), "{refused}");
    }
}
