//! Shard-aware routing against three in-process Ledger servers over real sockets. Each server
//! answers Topology with the same map (2 shards: shard 0 led by server 0, shard 1 by server
//! 1; server 2 leads nothing) and records the senders of the gifts it was sent, singly or in
//! batches. The client is only told about server 2's address: it must learn the others from
//! the topology and send every gift straight to its sender's shard leader.

mod common;
use common::serve;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::ledger_server::Ledger;
use coinledger_client::proto::*;
use coinledger_client::{Client, ClientConfig};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// FNV-1a 64 of the key mod 2: the node's `Layout::shard_of` for a 2-shard cluster, written
/// out here so the test does not trust the client's own copy of the rule.
fn shard_of(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % 2) as usize
}

#[derive(Clone, Default)]
struct Server {
    /// Addresses of the three servers (filled once all listen), node ids 1, 2, 3.
    members: Arc<Mutex<Vec<SocketAddr>>>,
    /// Senders of the gifts this server received, in arrival order.
    senders: Arc<Mutex<Vec<String>>>,
    topology_calls: Arc<Mutex<usize>>,
}

impl Server {
    fn senders(&self) -> Vec<String> {
        self.senders.lock().unwrap().clone()
    }

    fn gift_reply(&self, gift: &GiftRequest) -> GiftReply {
        self.senders.lock().unwrap().push(gift.sender.clone());
        GiftReply {
            tx_id: format!("tx-{}", gift.request_id),
            quantity: gift.quantity,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Ledger for Server {
    async fn topology(&self, _: Request<TopologyRequest>) -> Reply<TopologyReply> {
        *self.topology_calls.lock().unwrap() += 1;
        let members = self.members.lock().unwrap().clone();
        Ok(Response::new(TopologyReply {
            shard_count: 2,
            nodes: members
                .iter()
                .enumerate()
                .map(|(i, addr)| NodeAddress {
                    id: i as u64 + 1,
                    address: addr.to_string(),
                })
                .collect(),
            shard_leaders: vec![1, 2],
            node_id: 3,
        }))
    }
    async fn gift(&self, request: Request<GiftRequest>) -> Reply<GiftReply> {
        Ok(Response::new(self.gift_reply(request.get_ref())))
    }
    async fn submit_batch(&self, request: Request<SubmitBatchRequest>) -> Reply<SubmitBatchReply> {
        let mut results = Vec::new();
        for c in request.into_inner().commands {
            let Some(Command::Gift(g)) = c.command else {
                return Err(Status::invalid_argument("gifts only"));
            };
            results.push(BatchResult {
                result: Some(Answer::Gift(self.gift_reply(&g))),
            });
        }
        Ok(Response::new(SubmitBatchReply { results }))
    }
    unused_rpcs!("not used by this test";
        purchase: PurchaseRequest => PurchaseReply,
        post_payout: PayoutRequest => PayoutReply,
        refund: RefundRequest => RefundReply,
        history: HistoryRequest => HistoryReply,
        list_gifts: ListGiftsRequest => ListGiftsReply,
        cash_out: CashOutRequest => CashOutReply,
        void_payout: PayoutRequest => PayoutReply,
        balance: BalanceRequest => BalanceReply,
        get_rates: GetRatesRequest => RateCard,
    );
    unused_submit_stream!("not used by this test");
}

/// Three servers sharing one topology; returns them and their addresses.
async fn cluster() -> (Vec<Server>, Vec<SocketAddr>) {
    let members = Arc::new(Mutex::new(Vec::new()));
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let server = Server {
            members: members.clone(),
            ..Default::default()
        };
        addrs.push(serve(server.clone()).await);
        servers.push(server);
    }
    *members.lock().unwrap() = addrs.clone();
    (servers, addrs)
}

fn gift(sender: &str, n: u32) -> GiftRequest {
    GiftRequest {
        request_id: format!("{sender}-{n}"),
        sender: sender.into(),
        recipient: "creator".into(),
        gift_id: "rose".into(),
        quantity: 1,
        ..Default::default()
    }
}

/// Senders spread over both shards (checked, so a change of hash cannot make this vacuous).
fn senders() -> Vec<String> {
    let senders: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    assert!(senders.iter().any(|s| shard_of(s) == 0) && senders.iter().any(|s| shard_of(s) == 1));
    senders
}

#[tokio::test]
async fn single_calls_go_straight_to_their_senders_shard_leader() {
    let (servers, addrs) = cluster().await;
    let client = Client::connect(ClientConfig::from_endpoints(&addrs[2].to_string()).unwrap()).unwrap();
    client.refresh_topology().await.unwrap();
    assert_eq!(client.endpoints().len(), 3, "members learnt from the topology: {:?}", client.endpoints());
    for (n, sender) in senders().iter().enumerate() {
        let reply = client.gift(gift(sender, n as u32)).await.unwrap();
        assert_eq!(reply.tx_id, format!("tx-{sender}-{n}"));
    }
    for (leader, server) in servers.iter().take(2).enumerate() {
        let got = server.senders();
        assert!(!got.is_empty(), "server {leader} leads a shard and got nothing");
        assert!(got.iter().all(|s| shard_of(s) == leader), "server {leader} got {got:?}");
    }
    assert!(servers[2].senders().is_empty(), "the configured endpoint leads nothing and got {:?}", servers[2].senders());
}

#[tokio::test]
async fn a_batch_is_split_by_leader_and_answered_in_request_order() {
    let (servers, addrs) = cluster().await;
    let client = Client::connect(ClientConfig::from_endpoints(&addrs[2].to_string()).unwrap()).unwrap();
    client.refresh_topology().await.unwrap();
    let commands: Vec<BatchCommand> = senders()
        .iter()
        .enumerate()
        .map(|(n, s)| BatchCommand {
            command: Some(Command::Gift(gift(s, n as u32))),
        })
        .collect();
    let outcomes = client.submit_batch(commands).await.unwrap();
    for ((n, sender), outcome) in senders().iter().enumerate().zip(outcomes) {
        match outcome {
            Ok(Answer::Gift(reply)) => assert_eq!(reply.tx_id, format!("tx-{sender}-{n}"), "answer {n} in order"),
            other => panic!("command {n}: {other:?}"),
        }
    }
    assert_eq!(servers[0].senders().len() + servers[1].senders().len(), 20, "each command sent once");
    for (leader, server) in servers.iter().take(2).enumerate() {
        assert!(server.senders().iter().all(|s| shard_of(s) == leader), "server {leader}: {:?}", server.senders());
    }
    assert!(servers[2].senders().is_empty());
}

#[tokio::test]
async fn with_routing_off_every_call_goes_to_the_endpoint_that_answered() {
    let (servers, addrs) = cluster().await;
    let mut config = ClientConfig::from_endpoints(&addrs[2].to_string()).unwrap();
    config.routing = false;
    let client = Client::connect(config).unwrap();
    for (n, sender) in senders().iter().enumerate() {
        client.gift(gift(sender, n as u32)).await.unwrap();
    }
    assert_eq!(servers[2].senders().len(), 20);
    assert!(servers.iter().all(|s| *s.topology_calls.lock().unwrap() == 0), "no topology asked for");
}

#[tokio::test]
async fn the_first_calls_fetch_the_topology_in_the_background() {
    let (servers, addrs) = cluster().await;
    let client = Client::connect(ClientConfig::from_endpoints(&addrs[2].to_string()).unwrap()).unwrap();
    // Unrouted until the topology arrives; then routed, with one fetch per refresh period.
    for round in 0..50 {
        client.gift(gift("user-0", round)).await.unwrap();
        if !servers[shard_of("user-0")].senders().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!servers[shard_of("user-0")].senders().is_empty(), "calls never reached the leader");
    let fetches: usize = servers.iter().map(|s| *s.topology_calls.lock().unwrap()).sum();
    assert!((1..=2).contains(&fetches), "{fetches} topology fetches for a 0.5 s burst of calls");
}
