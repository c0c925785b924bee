//! The Admin service: rate publication, account limits and freezes, status and audit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::{convert, deadline_of, unexpected, within};
use crate::error::NodeError;
use crate::ledger::{Command, Outcome};
use crate::proto::{self, admin_server::Admin};
use crate::raftlog::RaftWal;
use crate::router::Router;
use crate::shard::{ReadAnswer, ReadQuery};
use crate::stats::NodeStats;

pub struct AdminService {
    router: Arc<Router>,
    request_timeout: Duration,
    node_id: u64,
    addresses: Arc<BTreeMap<u64, String>>,
    started: Instant,
    raft_log: Arc<RaftWal>,
    stats: Arc<NodeStats>,
}

impl AdminService {
    pub fn new(
        router: Arc<Router>,
        request_timeout: Duration,
        node_id: u64,
        addresses: Arc<BTreeMap<u64, String>>,
        raft_log: Arc<RaftWal>,
        stats: Arc<NodeStats>,
    ) -> Self {
        Self { router, request_timeout, node_id, addresses, started: Instant::now(), raft_log, stats }
    }

    async fn account_change<T>(&self, request: &Request<T>, cmd: Command) -> Result<Response<proto::BalanceReply>, Status> {
        match within(deadline_of(request, self.request_timeout), self.router.execute(cmd)).await? {
            Outcome::Account(a) => Ok(Response::new(convert::balance_out(&a))),
            other => Err(unexpected("account change", other)),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn set_rates(&self, request: Request<proto::SetRatesRequest>) -> Result<Response<proto::RateCard>, Status> {
        let cmd = convert::set_rates(request.get_ref().clone()).map_err(NodeError::from)?;
        match within(deadline_of(&request, self.request_timeout), self.router.execute(cmd)).await? {
            Outcome::Rates(card) => Ok(Response::new(convert::rate_card_out(&card))),
            other => Err(unexpected("set rates", other)),
        }
    }

    async fn set_limit(&self, request: Request<proto::SetLimitRequest>) -> Result<Response<proto::BalanceReply>, Status> {
        let cmd = convert::set_limit(request.get_ref().clone()).map_err(NodeError::from)?;
        self.account_change(&request, cmd).await
    }

    async fn set_frozen(&self, request: Request<proto::SetFrozenRequest>) -> Result<Response<proto::BalanceReply>, Status> {
        let cmd = convert::set_frozen(request.get_ref().clone());
        self.account_change(&request, cmd).await
    }

    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::StatusReply>, Status> {
        let layout = self.router.layout();
        let mut shards = Vec::with_capacity(layout.shard_count as usize);
        for shard in (0..layout.shard_count).filter(|&s| self.router.hosts(s)) {
            let st = self.router.status(shard).await?;
            // Pending effects are read only where this node leads (a follower's count could lag).
            let pending_effects = if st.role == "leader" {
                match self.router.read_local(shard, ReadQuery::PendingEffects).await {
                    Ok(ReadAnswer::PendingEffects(e)) => e.len() as u64,
                    _ => 0,
                }
            } else {
                0
            };
            shards.push(proto::ShardStatus {
                shard,
                leader_id: st.leader_id,
                term: st.term,
                commit_index: st.commit_index,
                applied_index: st.applied_index,
                role: st.role,
                pending_effects,
                voters: st.voters,
            });
        }
        let rate_version = match self.router.read(0, ReadQuery::Rates).await {
            Ok(ReadAnswer::Rates(card)) => card.version,
            _ => 0,
        };
        let (raft_log_segments, raft_log_bytes) = self.raft_log.disk_usage();
        Ok(Response::new(proto::StatusReply {
            node_id: self.node_id,
            address: self.addresses.get(&self.node_id).cloned().unwrap_or_default(),
            shard_count: layout.shard_count,
            nodes: self.addresses.iter().map(|(id, address)| proto::NodeStatus { id: *id, address: address.clone() }).collect(),
            shards,
            rate_version,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            raft_log_segments: u32::try_from(raft_log_segments).unwrap_or(u32::MAX),
            raft_log_bytes,
            counters: Some(self.stats.snapshot()),
        }))
    }

    async fn audit(&self, request: Request<proto::AuditRequest>) -> Result<Response<proto::AuditReply>, Status> {
        let a = within(deadline_of(&request, self.request_timeout), self.router.audit()).await?;
        Ok(Response::new(proto::AuditReply {
            ok: a.ok,
            violations: a.violations,
            accounts: a.accounts,
            coins_held: a.coins_held,
            diamonds_held_total: a.diamonds_total,
            diamonds_on_hold_for_payout: a.diamonds_on_hold,
            coins_issued: a.coins_issued,
            coins_recovered_by_refunds: a.coins_recovered,
            coins_spent_on_gifts: a.coins_spent,
            diamonds_credited: a.diamonds_credited,
            diamonds_paid_out: a.diamonds_paid_out,
            platform_coins: a.platform_coins,
            diamonds_in_flight: a.diamonds_in_flight,
            coins_in_flight: a.coins_in_flight,
            pending_effects: a.pending_effects,
        }))
    }
}
