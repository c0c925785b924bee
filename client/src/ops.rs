//! The typed calls: one method per RPC of ledger.proto and admin.proto, all through
//! [`Client::call_at`](crate::Client) so every call gets the same retry behaviour, starting at
//! the home shard's leader when shard-aware routing knows it.
//!
//! Mutating calls fill an empty `request_id` before the first attempt, so every retry carries
//! the same id. To know the id (to log it, or to retry later after a TIMEOUT), set it yourself
//! with [`Client::new_request_id`].

use crate::client::Client;
use crate::error::ClientError;
use crate::proto::admin_client::AdminClient;
use crate::proto::ledger_client::LedgerClient;
use crate::proto::*;
use crate::proto::batch_command::Command as Cmd;
use crate::proto::batch_result::Result as Answer;
use crate::request_id::WithRequestId;
use crate::route::Routed;

/// `mutating`: fills the request id first; `batchable`: mutating, and through the batcher
/// when `ClientConfig::batch` is set; `read`: sends the request as it is.
macro_rules! rpc {
    ($(#[$doc:meta])* $name:ident: $svc:ident::$method:ident($req:ty) -> $rep:ty, mutating) => {
        $(#[$doc])*
        pub async fn $name(&self, mut req: $req) -> Result<$rep, ClientError> {
            req.fill_request_id();
            let start = self.route(req.route_key());
            self.call_at(start, req, |ch, r| async move { $svc::new(ch).$method(r).await }).await
        }
    };
    // Mutating and batchable: through the batcher when batching is on.
    ($(#[$doc:meta])* $name:ident: $svc:ident::$method:ident($req:ty) -> $rep:ty,
     batchable($wrap:path, $answer:path)) => {
        $(#[$doc])*
        pub async fn $name(&self, mut req: $req) -> Result<$rep, ClientError> {
            req.fill_request_id();
            if let Some(batcher) = self.batcher() {
                let unwrap = |a| match a {
                    $answer(reply) => Some(reply),
                    _ => None,
                };
                return self.call_batched(batcher, req, $wrap, unwrap).await;
            }
            let start = self.route(req.route_key());
            self.call_at(start, req, |ch, r| async move { $svc::new(ch).$method(r).await }).await
        }
    };
    ($(#[$doc:meta])* $name:ident: $svc:ident::$method:ident($req:ty) -> $rep:ty, read) => {
        $(#[$doc])*
        pub async fn $name(&self, req: $req) -> Result<$rep, ClientError> {
            let start = self.route(req.route_key());
            self.call_at(start, req, |ch, r| async move { $svc::new(ch).$method(r).await }).await
        }
    };
}

/// Ledger API.
impl Client {
    rpc!(
        /// Credits coins for a real-money payment (at most once per payment reference).
        purchase: LedgerClient::purchase(PurchaseRequest) -> PurchaseReply, batchable(Cmd::Purchase, Answer::Purchase)
    );
    rpc!(
        /// Spends the sender's coins on a catalog gift; credits the creator's diamonds.
        gift: LedgerClient::gift(GiftRequest) -> GiftReply, batchable(Cmd::Gift, Answer::Gift)
    );
    rpc!(
        /// Holds diamonds for a payout; finish with `post_payout` or `void_payout`.
        cash_out: LedgerClient::cash_out(CashOutRequest) -> CashOutReply, batchable(Cmd::CashOut, Answer::CashOut)
    );
    rpc!(
        /// The payout provider paid: the held diamonds leave the ledger.
        post_payout: LedgerClient::post_payout(PayoutRequest) -> PayoutReply, batchable(Cmd::PostPayout, Answer::Payout)
    );
    rpc!(
        /// The payout failed: the held diamonds return to the creator.
        void_payout: LedgerClient::void_payout(PayoutRequest) -> PayoutReply, batchable(Cmd::VoidPayout, Answer::Payout)
    );
    rpc!(
        /// Chargeback of a purchase: claws back what the wallet still holds.
        refund: LedgerClient::refund(RefundRequest) -> RefundReply, batchable(Cmd::Refund, Answer::Refund)
    );
    rpc!(
        /// An account's balances (linearizable).
        balance: LedgerClient::balance(BalanceRequest) -> BalanceReply, read
    );
    rpc!(
        /// One page of an account's statement, newest first.
        history: LedgerClient::history(HistoryRequest) -> HistoryReply, read
    );
    rpc!(
        /// The rate card in force (GetRates).
        rates: LedgerClient::get_rates(GetRatesRequest) -> RateCard, read
    );
    rpc!(
        /// The gift catalog in force (ListGifts).
        gifts: LedgerClient::list_gifts(ListGiftsRequest) -> ListGiftsReply, read
    );
    rpc!(
        /// Shard count, members and each shard's leader as the answering node knows them
        /// (what shard-aware routing uses; see `route.rs`).
        topology: LedgerClient::topology(TopologyRequest) -> TopologyReply, read
    );
}

/// Admin API.
impl Client {
    rpc!(
        /// Publishes a rate card whose version is exactly the current one + 1.
        set_rates: AdminClient::set_rates(SetRatesRequest) -> RateCard, mutating
    );
    rpc!(
        /// Sets or clears an account's minor flag and daily purchase cap.
        set_limit: AdminClient::set_limit(SetLimitRequest) -> BalanceReply, mutating
    );
    rpc!(
        /// Freezes or unfreezes an account.
        set_frozen: AdminClient::set_frozen(SetFrozenRequest) -> BalanceReply, mutating
    );
    rpc!(
        /// Nodes, shards, leaders and raft progress as the answering node sees them.
        status: AdminClient::status(StatusRequest) -> StatusReply, read
    );
    rpc!(
        /// The conservation check over every shard.
        audit: AdminClient::audit(AuditRequest) -> AuditReply, read
    );
}
