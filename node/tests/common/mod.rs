//! Test harness: runs the REAL `coinledger-node` binary on a free loopback port with a
//! temporary data directory, and hands out connected clients.
//!
//! Every wait is bounded; the child is SIGKILLed when the [`TestNode`] is dropped (also when a
//! test panics), and on Linux the kernel kills it too if the test process dies first.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coinledger_client::proto::{self, AuditReply, BalanceReply, ErrorCode};
use coinledger_client::{Client, ClientConfig, ClientError};
use coinledger_ledger::Layout;
use tempfile::TempDir;

/// Shard count the tests run with unless they ask for another.
pub const SHARDS: u32 = 8;
/// How long a node may take to start serving with every shard led.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

pub fn node_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coinledger-node"))
}

/// coinctl is another package's binary: cargo builds it into the same target directory when
/// the whole workspace is built (`.ci/run` does), so look for it next to coinledger-node.
pub fn coinctl_bin() -> PathBuf {
    let node = node_bin();
    let dir = node.parent().expect("coinledger-node has a directory");
    let path = dir.join(format!("coinctl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "coinctl binary not found at {}: build the workspace first (cargo build --release --workspace)",
        path.display()
    );
    path
}

/// A free port on 127.0.0.1: bind port 0, read the port, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// One running node process and the directory it keeps its data and logs in.
pub struct TestNode {
    child: Option<Child>,
    pub port: u16,
    pub shards: u32,
    /// Holds `data/` and the node's `stdout.log` / `stderr.log`; removed on drop.
    root: TempDir,
    client: Client,
    starts: u32,
    /// Extra command-line arguments of every start.
    args: Vec<String>,
}

impl TestNode {
    /// A fresh node with [`SHARDS`] shards.
    pub async fn start() -> TestNode {
        TestNode::start_with(SHARDS).await
    }

    pub async fn start_with(shards: u32) -> TestNode {
        TestNode::start_with_args(shards, &[]).await
    }

    /// A fresh node with `shards` shards and extra command-line arguments.
    pub async fn start_with_args(shards: u32, args: &[&str]) -> TestNode {
        let root = tempfile::Builder::new()
            .prefix("coinledger-test-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let mut node = TestNode {
            child: None,
            port,
            shards,
            root,
            client: new_client(port),
            starts: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        // The port is free when probed, but another test may grab it before the node binds:
        // then the node exits at once and a new port is tried.
        let mut last_error = String::new();
        for _ in 0..3 {
            match node.spawn_and_wait().await {
                Ok(()) => return node,
                Err(e) => {
                    last_error = e;
                    node.kill_9();
                    node.port = free_port();
                    node.client = new_client(node.port);
                }
            }
        }
        panic!("coinledger-node did not start: {last_error}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A client connected to this node (cheap clone of a shared one).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "node already running");
        self.starts += 1;
        let log = |name: &str| -> Result<File, String> {
            let path = self.root.path().join(format!("{name}.{}.log", self.starts));
            File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut cmd = Command::new(node_bin());
        cmd.arg("--listen")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--shards")
            .arg(self.shards.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log("stdout")?)
            .stderr(log("stderr")?)
            .env("RUST_LOG", "info,raft=warn");
        kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", node_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Spawns the process and waits until it answers Admin.Status with a leader for every
    /// shard, at most [`START_TIMEOUT`].
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn()?;
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!(
                    "coinledger-node exited with {status} during startup; stderr:\n{}",
                    self.log_tail("stderr")
                ));
            }
            let mut config = ClientConfig::from_endpoints(&self.addr()).expect("endpoint");
            config.deadline_ms = 500;
            config.attempt_timeout_ms = 500;
            let probe = Client::connect(config).expect("client");
            match probe.status(proto::StatusRequest {}).await {
                Ok(s) => {
                    let led = s.shards.iter().filter(|sh| sh.leader_id != 0).count();
                    if s.shard_count == self.shards && led == self.shards as usize {
                        self.client = new_client(self.port);
                        return Ok(());
                    }
                    last = format!("{led} of {} shards have a leader", s.shard_count);
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "not ready after {START_TIMEOUT:?} ({last}); stderr:\n{}",
            self.log_tail("stderr")
        ))
    }

    /// The last lines of the current run's stdout or stderr log.
    pub fn log_tail(&self, name: &str) -> String {
        let path = self.root.path().join(format!("{name}.{}.log", self.starts));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL, then reap. Nothing the node has not fsynced survives.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // std's kill is SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// SIGTERM (graceful shutdown), waiting at most 10 s before falling back to SIGKILL.
    /// Returns true if the node exited by itself.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the node again on the same port and data directory (kill it first).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.kill_9();
        }
        if let Err(e) = self.spawn_and_wait().await {
            panic!("coinledger-node did not restart: {e}");
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(child) = self.child.as_ref() {
                eprintln!(
                    "--- coinledger-node (pid {}) stderr tail, data in {}:\n{}",
                    child.id(),
                    self.root.path().display(),
                    self.log_tail("stderr")
                );
            }
        }
        self.kill_9();
    }
}

/// On Linux, have the kernel SIGKILL the node if the thread that spawned it dies, so a test
/// process killed hard never leaves nodes behind.
fn kill_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

pub fn new_client(port: u16) -> Client {
    let config = ClientConfig::from_endpoints(&format!("127.0.0.1:{port}")).expect("endpoint");
    Client::connect(config).expect("client")
}

// ---------------------------------------------------------------------------------------------
// Account names by shard.

pub fn shard_of(name: &str) -> u32 {
    Layout::new(SHARDS).shard_of(name)
}

/// `prefix-N` for the first N whose shard satisfies `want`.
pub fn name_where(prefix: &str, want: impl Fn(u32) -> bool) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| want(shard_of(n)))
        .expect("some name lands in the wanted shard")
}

pub fn name_in_shard(prefix: &str, shard: u32) -> String {
    name_where(prefix, |s| s == shard)
}

pub fn name_not_in_shard(prefix: &str, shard: u32) -> String {
    name_where(prefix, |s| s != shard)
}

// ---------------------------------------------------------------------------------------------
// Request builders.

pub fn money(amount: &str, currency: &str) -> Option<proto::Money> {
    Some(proto::Money {
        amount: amount.into(),
        currency: currency.into(),
    })
}

pub fn purchase_req(rid: &str, account: &str, amount: &str, currency: &str, pref: &str) -> proto::PurchaseRequest {
    proto::PurchaseRequest {
        request_id: rid.into(),
        account: account.into(),
        paid: money(amount, currency),
        payment_ref: pref.into(),
    }
}

pub fn gift_req(rid: &str, from: &str, to: &str, gift: &str, quantity: u32) -> proto::GiftRequest {
    proto::GiftRequest {
        request_id: rid.into(),
        sender: from.into(),
        recipient: to.into(),
        gift_id: gift.into(),
        quantity,
        message: String::new(),
        stream_id: String::new(),
    }
}

pub fn cashout_req(rid: &str, account: &str, diamonds: u64) -> proto::CashOutRequest {
    proto::CashOutRequest {
        request_id: rid.into(),
        account: account.into(),
        diamonds,
        currency: "USD".into(),
    }
}

pub fn payout_req(rid: &str, payout_id: &str) -> proto::PayoutRequest {
    proto::PayoutRequest {
        request_id: rid.into(),
        payout_id: payout_id.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads and checks.

pub async fn balance(client: &Client, account: &str) -> BalanceReply {
    client
        .balance(proto::BalanceRequest {
            account: account.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("balance of {account}: {e}"))
}

/// (coins, diamonds, diamonds_held), or None if the account was never opened.
pub async fn balance_opt(client: &Client, account: &str) -> Option<(u64, u64, u64)> {
    match client
        .balance(proto::BalanceRequest {
            account: account.into(),
        })
        .await
    {
        Ok(b) => Some((b.coins, b.diamonds, b.diamonds_held)),
        Err(e) if e.code == ErrorCode::AccountNotFound => None,
        Err(e) => panic!("balance of {account}: {e}"),
    }
}

pub async fn audit(client: &Client) -> AuditReply {
    client
        .audit(proto::AuditRequest {})
        .await
        .unwrap_or_else(|e| panic!("audit: {e}"))
}

/// Polls Audit until no cross-shard effect is pending (at most `limit`), then asserts it ok.
pub async fn settled_audit(client: &Client, limit: Duration) -> AuditReply {
    let started = Instant::now();
    loop {
        let a = audit(client).await;
        if a.pending_effects == 0 || started.elapsed() >= limit {
            assert!(a.ok, "audit violations: {:?}\n{a:?}", a.violations);
            assert!(a.violations.is_empty(), "{:?}", a.violations);
            assert_eq!(
                a.pending_effects, 0,
                "cross-shard effects still pending after {limit:?}: {a:?}"
            );
            assert_eq!((a.diamonds_in_flight, a.coins_in_flight), (0, 0), "{a:?}");
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that a call failed with `code_name` and returns the error.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, ClientError>, code_name: &str) -> ClientError {
    match result {
        Ok(v) => panic!("expected {code_name}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.code_name, code_name, "wrong error: {e}");
            assert!(!e.message.is_empty(), "{code_name} without a message");
            if let Some(grpc) = grpc_code_of(code_name) {
                assert_eq!(e.grpc_code, grpc, "gRPC status code of {code_name} ({e})");
            }
            e
        }
    }
}

/// The gRPC status code ledger.proto's table gives an error code (None where it leaves room).
pub fn grpc_code_of(code_name: &str) -> Option<tonic::Code> {
    use tonic::Code;
    Some(match code_name {
        "INVALID_ARGUMENT" | "INVALID_ID" | "INVALID_AMOUNT" | "UNKNOWN_CURRENCY" | "INVALID_QUANTITY"
        | "MESSAGE_TOO_LONG" | "SELF_GIFT" | "INVALID_CURSOR" => Code::InvalidArgument,
        "UNKNOWN_PAYMENT_REF" | "UNKNOWN_PAYOUT" | "ACCOUNT_NOT_FOUND" | "UNKNOWN_GIFT" => Code::NotFound,
        "DUPLICATE_PAYMENT_REF" | "REQUEST_ID_REUSED" => Code::AlreadyExists,
        "INSUFFICIENT_COINS" | "INSUFFICIENT_DIAMONDS" | "BELOW_MINIMUM" | "ACCOUNT_FROZEN" | "LIMIT_EXCEEDED"
        | "PAYOUT_ALREADY_POSTED" | "PAYOUT_ALREADY_VOIDED" | "ALREADY_REFUNDED" | "PURCHASE_NOT_CREDITED" => {
            Code::FailedPrecondition
        }
        _ => return None,
    })
}
