//! The public Ledger service.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::admission::Admission;
use super::status::error_detail;
use super::submit_stream::{serve_stream, StreamContext};
use super::{convert, deadline_of, unexpected, within};
use crate::error::NodeError;
use crate::ledger::{self, Command, ErrorCode, LedgerError, Outcome};
use crate::proto::{self, ledger_server::Ledger};
use crate::router::Router;
use crate::shard::{ReadAnswer, ReadQuery};

/// Most commands in one SubmitBatch (the proto's documented bound).
pub const BATCH_COMMANDS_MAX: usize = 8_192;

pub struct LedgerService {
    router: Arc<Router>,
    request_timeout: Duration,
    node_id: u64,
    /// Every member's address by node id, for Topology.
    addresses: Arc<BTreeMap<u64, String>>,
    admission: Arc<Admission>,
}

impl LedgerService {
    pub fn new(router: Arc<Router>, request_timeout: Duration, node_id: u64, addresses: Arc<BTreeMap<u64, String>>, max_commands_in_flight: u32) -> Self {
        Self { router, request_timeout, node_id, addresses, admission: Arc::new(Admission::new(max_commands_in_flight)) }
    }

    async fn execute<T>(&self, request: &Request<T>, cmd: Command) -> Result<Outcome, Status> {
        let _slot = self.admission.admit(1)?;
        within(deadline_of(request, self.request_timeout), self.router.execute(cmd)).await
    }

    async fn read_account_shard<T>(&self, request: &Request<T>, account: &str, query: ReadQuery) -> Result<ReadAnswer, Status> {
        ledger::ids::check_account("account", account).map_err(NodeError::from)?;
        let shard = self.router.shard_of_key(account);
        within(deadline_of(request, self.request_timeout), self.router.read(shard, query)).await
    }

    /// Rates are replicated to every shard; shard 0 answers.
    async fn rate_card<T>(&self, request: &Request<T>) -> Result<ledger::RateCard, Status> {
        match within(deadline_of(request, self.request_timeout), self.router.read(0, ReadQuery::Rates)).await? {
            ReadAnswer::Rates(card) => Ok(card),
            other => Err(unexpected("rates read", other)),
        }
    }
}

/// A batch or stream command's answer as the wire carries it: its reply, or its error exactly
/// as the single-command RPC would have returned it.
pub(crate) fn batch_result(outcome: Result<Outcome, NodeError>) -> proto::BatchResult {
    let result = outcome.and_then(convert::batch_outcome);
    proto::BatchResult { result: Some(result.unwrap_or_else(|e| proto::batch_result::Result::Error(error_detail(&e).1))) }
}

fn account_not_found(account: &str) -> Status {
    NodeError::Ledger(LedgerError::new(ErrorCode::AccountNotFound, format!("account {account} was never opened"))).into()
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn purchase(&self, request: Request<proto::PurchaseRequest>) -> Result<Response<proto::PurchaseReply>, Status> {
        let cmd = convert::purchase(request.get_ref().clone()).map_err(NodeError::from)?;
        match self.execute(&request, cmd).await? {
            Outcome::Purchase(r) => Ok(Response::new(convert::purchase_out(r))),
            other => Err(unexpected("purchase", other)),
        }
    }

    async fn gift(&self, request: Request<proto::GiftRequest>) -> Result<Response<proto::GiftReply>, Status> {
        let cmd = convert::gift(request.get_ref().clone());
        match self.execute(&request, cmd).await? {
            Outcome::Gift(r) => Ok(Response::new(convert::gift_out(r))),
            other => Err(unexpected("gift", other)),
        }
    }

    async fn cash_out(&self, request: Request<proto::CashOutRequest>) -> Result<Response<proto::CashOutReply>, Status> {
        let cmd = convert::cash_out(request.get_ref().clone());
        match self.execute(&request, cmd).await? {
            Outcome::CashOut(p) => Ok(Response::new(convert::cash_out_out(&p))),
            other => Err(unexpected("cash-out", other)),
        }
    }

    async fn post_payout(&self, request: Request<proto::PayoutRequest>) -> Result<Response<proto::PayoutReply>, Status> {
        let cmd = Command::PostPayout(convert::payout_cmd(request.get_ref().clone()));
        self.payout(&request, cmd).await
    }

    async fn void_payout(&self, request: Request<proto::PayoutRequest>) -> Result<Response<proto::PayoutReply>, Status> {
        let cmd = Command::VoidPayout(convert::payout_cmd(request.get_ref().clone()));
        self.payout(&request, cmd).await
    }

    async fn refund(&self, request: Request<proto::RefundRequest>) -> Result<Response<proto::RefundReply>, Status> {
        let cmd = convert::refund(request.get_ref().clone());
        match self.execute(&request, cmd).await? {
            Outcome::Refund(r) => Ok(Response::new(convert::refund_out(r))),
            other => Err(unexpected("refund", other)),
        }
    }

    async fn balance(&self, request: Request<proto::BalanceRequest>) -> Result<Response<proto::BalanceReply>, Status> {
        let account = request.get_ref().account.clone();
        match self.read_account_shard(&request, &account, ReadQuery::Account(account.clone())).await? {
            ReadAnswer::Account(Some(a)) => Ok(Response::new(convert::balance_out(&a))),
            ReadAnswer::Account(None) => Err(account_not_found(&account)),
            other => Err(unexpected("balance read", other)),
        }
    }

    async fn history(&self, request: Request<proto::HistoryRequest>) -> Result<Response<proto::HistoryReply>, Status> {
        let r = request.get_ref().clone();
        let limit = convert::history_limit_in(r.limit).map_err(NodeError::from)?;
        let cursor = convert::cursor_in(&r.cursor).map_err(NodeError::from)?;
        let query = ReadQuery::History { account: r.account.clone(), limit, cursor };
        match self.read_account_shard(&request, &r.account, query).await? {
            ReadAnswer::History { entries, next_cursor } => Ok(Response::new(proto::HistoryReply {
                entries: entries.iter().map(convert::history_entry_out).collect(),
                next_cursor: next_cursor.map(|c| c.to_string()).unwrap_or_default(),
            })),
            other => Err(unexpected("history read", other)),
        }
    }

    async fn get_rates(&self, request: Request<proto::GetRatesRequest>) -> Result<Response<proto::RateCard>, Status> {
        Ok(Response::new(convert::rate_card_out(&self.rate_card(&request).await?)))
    }

    async fn submit_batch(&self, request: Request<proto::SubmitBatchRequest>) -> Result<Response<proto::SubmitBatchReply>, Status> {
        let deadline = deadline_of(&request, self.request_timeout);
        let commands = request.into_inner().commands;
        if commands.is_empty() || commands.len() > BATCH_COMMANDS_MAX {
            return Err(NodeError::Ledger(LedgerError::new(
                ErrorCode::InvalidArgument,
                format!("a batch holds 1 to {BATCH_COMMANDS_MAX} commands, not {}", commands.len()),
            ))
            .into());
        }
        let _slots = self.admission.admit(commands.len())?;
        // Each command is answered on its own; the router moves them per shard, not one by one.
        let mut results: Vec<Option<Result<ledger::Outcome, NodeError>>> = Vec::with_capacity(commands.len());
        let mut valid = Vec::with_capacity(commands.len());
        for c in commands {
            match convert::batch_command(c) {
                Ok(cmd) => {
                    valid.push(cmd);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(NodeError::Ledger(e)))),
            }
        }
        let mut outcomes = self.router.execute_batch(valid, deadline).await.into_iter();
        let results = results
            .into_iter()
            .map(|slot| batch_result(slot.unwrap_or_else(|| outcomes.next().expect("one outcome per valid command"))))
            .collect();
        Ok(Response::new(proto::SubmitBatchReply { results }))
    }

    type SubmitStreamStream = Pin<Box<dyn Stream<Item = Result<proto::SubmitStreamReply, Status>> + Send + 'static>>;

    async fn submit_stream(&self, request: Request<Streaming<proto::SubmitStreamRequest>>) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let ctx = StreamContext { router: self.router.clone(), admission: self.admission.clone(), request_timeout: self.request_timeout };
        Ok(Response::new(Box::pin(serve_stream(ctx, request.into_inner()))))
    }

    async fn topology(&self, _request: Request<proto::TopologyRequest>) -> Result<Response<proto::TopologyReply>, Status> {
        Ok(Response::new(proto::TopologyReply {
            shard_count: self.router.layout().shard_count,
            nodes: self.addresses.iter().map(|(id, address)| proto::NodeAddress { id: *id, address: address.clone() }).collect(),
            shard_leaders: self.router.leader_guesses(),
            node_id: self.node_id,
        }))
    }

    async fn list_gifts(&self, request: Request<proto::ListGiftsRequest>) -> Result<Response<proto::ListGiftsReply>, Status> {
        let card = self.rate_card(&request).await?;
        Ok(Response::new(proto::ListGiftsReply { gifts: convert::gifts_out(&card), rate_version: card.version }))
    }
}

impl LedgerService {
    async fn payout<T>(&self, request: &Request<T>, cmd: Command) -> Result<Response<proto::PayoutReply>, Status> {
        match self.execute(request, cmd).await? {
            Outcome::Payout(p) => Ok(Response::new(convert::payout_out(&p))),
            other => Err(unexpected("payout", other)),
        }
    }
}

