//! Shard-aware routing: each command starts at the node that leads its home shard.
//!
//! Any node accepts any command and forwards it to the leader of the command's home shard, but
//! that hop costs a gRPC call on two nodes and a network round trip. So the client learns the
//! topology (shard count, members, each shard's leader as a node last knew it) from the
//! Topology RPC, computes each command's home shard with the ledger's own `Layout::shard_of`
//! over the same routing key the node uses, and starts the call at that shard's leader.
//!
//! The topology is a hint. It is refreshed in the background, at most once per
//! [`TOPOLOGY_REFRESH_MS`] and only while calls are made; until the first answer, and for
//! commands with no home shard, calls start where they always did (the endpoint that answered
//! last). A stale guess costs one forwarding hop on the node, never correctness: the retry
//! loop, its leader hints and exactly-once by request id are unchanged.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coinledger_ledger::layout::SHARD_COUNT_MAX;
use coinledger_ledger::{parse_payout_shard, Layout};
use tokio::time::Instant;

use crate::client::Client;
use crate::proto::batch_command::Command;
use crate::proto::ledger_client::LedgerClient;
use crate::proto::*;

/// How old a topology may get before the next call refreshes it (in the background). Leaders
/// move on elections only, so once a second keeps a client within a second of the truth at
/// the cost of one cheap RPC per second per client.
pub const TOPOLOGY_REFRESH_MS: u64 = 1_000;

/// What decides a request's home shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKey<'a> {
    /// A routing key hashed to its shard: an account, a sender, a payment reference.
    Key(&'a str),
    /// A payout id, which names its shard (`po-{shard}-...`).
    Payout(&'a str),
    /// No single home shard (rates, status, audit): any node will do.
    Anywhere,
}

/// A request that knows its routing key (the node's `Command::route`, on the wire types).
pub trait Routed {
    fn route_key(&self) -> RouteKey<'_>;
}

macro_rules! routed {
    ($($req:ty => |$r:ident| $key:expr;)*) => {
        $(impl Routed for $req {
            fn route_key(&self) -> RouteKey<'_> {
                let $r = self;
                $key
            }
        })*
    };
}

routed! {
    PurchaseRequest => |r| RouteKey::Key(&r.payment_ref);
    RefundRequest => |r| RouteKey::Key(&r.payment_ref);
    GiftRequest => |r| RouteKey::Key(&r.sender);
    CashOutRequest => |r| RouteKey::Key(&r.account);
    PayoutRequest => |r| RouteKey::Payout(&r.payout_id);
    BalanceRequest => |r| RouteKey::Key(&r.account);
    HistoryRequest => |r| RouteKey::Key(&r.account);
    SetLimitRequest => |r| RouteKey::Key(&r.account);
    SetFrozenRequest => |r| RouteKey::Key(&r.account);
    GetRatesRequest => |_r| RouteKey::Anywhere;
    ListGiftsRequest => |_r| RouteKey::Anywhere;
    SetRatesRequest => |_r| RouteKey::Anywhere;
    StatusRequest => |_r| RouteKey::Anywhere;
    AuditRequest => |_r| RouteKey::Anywhere;
    TopologyRequest => |_r| RouteKey::Anywhere;
    SubmitBatchRequest => |_r| RouteKey::Anywhere;
}

impl Routed for Command {
    fn route_key(&self) -> RouteKey<'_> {
        match self {
            Command::Purchase(r) => r.route_key(),
            Command::Gift(r) => r.route_key(),
            Command::CashOut(r) => r.route_key(),
            Command::PostPayout(r) | Command::VoidPayout(r) => r.route_key(),
            Command::Refund(r) => r.route_key(),
        }
    }
}

impl Routed for BatchCommand {
    fn route_key(&self) -> RouteKey<'_> {
        self.command.as_ref().map_or(RouteKey::Anywhere, Routed::route_key)
    }
}

/// The cluster as one node described it, with its members resolved to the client's endpoints.
#[derive(Debug)]
pub(crate) struct Topology {
    layout: Layout,
    /// Index in the client's endpoint list of each shard's leader (None: unknown).
    leaders: Vec<Option<usize>>,
    fetched_at: Instant,
}

impl Topology {
    /// Checks the reply is coherent (a valid shard count, one leader slot per shard) and
    /// resolves each shard's leader id to an endpoint index through `endpoint_of(address)`.
    pub(crate) fn from_reply(
        reply: &TopologyReply,
        mut endpoint_of: impl FnMut(&str) -> Option<usize>,
    ) -> Result<Topology, String> {
        if !(1..=SHARD_COUNT_MAX).contains(&reply.shard_count) {
            return Err(format!("shard_count {} is outside 1..={SHARD_COUNT_MAX}", reply.shard_count));
        }
        if reply.shard_leaders.len() != reply.shard_count as usize {
            return Err(format!(
                "{} shard leaders for {} shards",
                reply.shard_leaders.len(),
                reply.shard_count
            ));
        }
        let endpoints: HashMap<u64, Option<usize>> = reply
            .nodes
            .iter()
            .map(|n| (n.id, endpoint_of(&n.address)))
            .collect();
        let leaders = reply
            .shard_leaders
            .iter()
            .map(|id| endpoints.get(id).copied().flatten())
            .collect();
        Ok(Topology {
            layout: Layout::new(reply.shard_count),
            leaders,
            fetched_at: Instant::now(),
        })
    }

    /// The home shard of a routing key, if it has one (a malformed payout id has none: the
    /// node refuses it wherever it lands).
    pub(crate) fn shard_of(&self, key: RouteKey<'_>) -> Option<u32> {
        match key {
            RouteKey::Key(k) => Some(self.layout.shard_of(k)),
            RouteKey::Payout(id) => parse_payout_shard(id)
                .ok()
                .filter(|&s| s < self.layout.shard_count),
            RouteKey::Anywhere => None,
        }
    }

    /// The endpoint index of the leader of the key's home shard, if known.
    pub(crate) fn endpoint_for(&self, key: RouteKey<'_>) -> Option<usize> {
        self.leaders.get(self.shard_of(key)? as usize).copied().flatten()
    }

    fn is_stale(&self) -> bool {
        self.fetched_at.elapsed() >= Duration::from_millis(TOPOLOGY_REFRESH_MS)
    }
}

impl Client {
    /// Where a call for `key` should start: its home shard's leader if routing is on and the
    /// topology knows it, else None (the endpoint that answered last). Starts a background
    /// refresh when the topology is missing or stale.
    pub(crate) fn route(&self, key: RouteKey<'_>) -> Option<usize> {
        if !self.config().routing || key == RouteKey::Anywhere {
            return None;
        }
        let topology = self.known_topology();
        if topology.as_ref().is_none_or(|t| t.is_stale()) {
            self.refresh_topology_in_background();
        }
        topology?.endpoint_for(key)
    }

    /// The topology as last fetched, if any.
    pub(crate) fn known_topology(&self) -> Option<Arc<Topology>> {
        self.routing_state()
            .topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// At most one refresh runs at a time per client; a failed one leaves the old topology
    /// in place (and is retried by the next call that finds it stale).
    fn refresh_topology_in_background(&self) {
        let state = self.routing_state();
        if state.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            // A failed refresh leaves the old topology: calls keep their current start, and
            // the next call that finds it stale tries again.
            let _ = client.refresh_topology().await;
            client.routing_state().refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the topology from the endpoint that answered last (trying each endpoint once
    /// if that fails) and installs it.
    pub async fn refresh_topology(&self) -> Result<(), String> {
        let limit = Duration::from_millis(self.config().attempt_timeout_ms);
        let start = self.preferred_index();
        let count = self.endpoints().len();
        let mut last = String::from("no endpoints");
        for k in 0..count {
            let node = self.node(start + k);
            let mut request = tonic::Request::new(TopologyRequest {});
            request.set_timeout(limit);
            let mut ledger = LedgerClient::new(node.channel.clone());
            let reply = match tokio::time::timeout(limit, ledger.topology(request)).await {
                Ok(Ok(reply)) => reply.into_inner(),
                Ok(Err(status)) => {
                    last = format!("{}: {}", node.uri, status.message());
                    continue;
                }
                Err(_) => {
                    last = format!("{}: no answer within {} ms", node.uri, limit.as_millis());
                    continue;
                }
            };
            let topology = Topology::from_reply(&reply, |address| self.index_of_or_add(address))
                .map_err(|e| format!("{}: incoherent topology: {e}", node.uri))?;
            *self
                .routing_state()
                .topology
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(topology));
            return Ok(());
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(shard_count: u32, leaders: Vec<u64>) -> TopologyReply {
        TopologyReply {
            shard_count,
            nodes: (1..=3)
                .map(|id| NodeAddress {
                    id,
                    address: format!("127.0.0.1:{}", 7000 + id),
                })
                .collect(),
            shard_leaders: leaders,
            node_id: 1,
        }
    }

    fn index_by_port(address: &str) -> Option<usize> {
        let port: usize = address.rsplit(':').next()?.parse().ok()?;
        Some(port - 7001)
    }

    #[test]
    fn routes_each_key_to_its_shards_leader() {
        let t = Topology::from_reply(&reply(4, vec![1, 2, 3, 0]), index_by_port).unwrap();
        let layout = Layout::new(4);
        for account in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            let shard = layout.shard_of(account);
            let want = [Some(0), Some(1), Some(2), None][shard as usize];
            assert_eq!(t.endpoint_for(RouteKey::Key(account)), want, "{account} in shard {shard}");
        }
        assert_eq!(t.endpoint_for(RouteKey::Payout("po-2-17-0")), Some(2));
        assert_eq!(t.endpoint_for(RouteKey::Payout("po-3-17-0")), None, "leader unknown");
        assert_eq!(t.endpoint_for(RouteKey::Payout("po-9-17-0")), None, "no such shard");
        assert_eq!(t.endpoint_for(RouteKey::Payout("garbage")), None);
        assert_eq!(t.endpoint_for(RouteKey::Anywhere), None);
    }

    #[test]
    fn routing_keys_are_the_nodes() {
        let gift = GiftRequest { sender: "s".into(), recipient: "c".into(), ..Default::default() };
        assert_eq!(gift.route_key(), RouteKey::Key("s"));
        let purchase = PurchaseRequest { account: "a".into(), payment_ref: "p".into(), ..Default::default() };
        assert_eq!(purchase.route_key(), RouteKey::Key("p"));
        let batch = BatchCommand { command: Some(Command::CashOut(CashOutRequest { account: "a".into(), ..Default::default() })) };
        assert_eq!(batch.route_key(), RouteKey::Key("a"));
        assert_eq!(BatchCommand { command: None }.route_key(), RouteKey::Anywhere);
    }

    #[test]
    fn incoherent_replies_are_refused() {
        assert!(Topology::from_reply(&reply(0, vec![]), index_by_port).is_err());
        assert!(Topology::from_reply(&reply(4, vec![1, 2]), index_by_port).is_err());
        assert!(Topology::from_reply(&reply(SHARD_COUNT_MAX + 1, vec![]), index_by_port).is_err());
        let unknown_member = Topology::from_reply(&reply(1, vec![9]), index_by_port).unwrap();
        assert_eq!(unknown_member.endpoint_for(RouteKey::Key("x")), None);
    }
}
