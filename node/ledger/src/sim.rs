//! A simulated multi-shard world: one [`MemStore`] per shard, queues of effects and completions
//! delivered when the test says so (in any order, duplicated if it likes). It plays the node's
//! part in tests: route, apply, re-drive the outbox. Pure and deterministic, like the ledger.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::apply::apply;
use crate::book::{self, OutboxRecord, RequestRecord, RequestState};
use crate::audit::{global_audit, shard_audit, GlobalAudit};
use crate::cmd::{CashOut, Command, Gift, PayoutCmd, Purchase, Refund, Route, SetFrozen, SetLimit, SetRates};
use crate::context::EntryContext;
use crate::error::{ErrorCode, LedgerError};
use crate::keys;
use crate::layout::Layout;
use crate::model::{Account, Applied, CommandResult, CompleteEffect, Effect, EffectDelivery, EffectResult, HistoryEntry, Outcome};
use crate::money::Money;
use crate::rates::RateCard;
use crate::read;
use crate::store::MemStore;

/// A decimal literal, for tests.
///
/// # Panics
/// If `s` is not a decimal.
pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

pub fn purchase_cmd(request_id: &str, account: &str, amount: &str, currency: &str, payment_ref: &str) -> Command {
    let amount = crate::money::parse_amount(amount).unwrap_or_else(|_| dec(amount));
    Command::Purchase(Purchase { request_id: request_id.into(), account: account.into(), amount, currency: currency.into(), payment_ref: payment_ref.into() })
}

pub fn gift_cmd(request_id: &str, sender: &str, recipient: &str, gift_id: &str, quantity: u32) -> Command {
    Command::Gift(Gift {
        request_id: request_id.into(),
        sender: sender.into(),
        recipient: recipient.into(),
        gift_id: gift_id.into(),
        quantity,
        message: String::new(),
        stream_id: String::new(),
    })
}

pub fn cash_out_cmd(request_id: &str, account: &str, diamonds: u64, currency: &str) -> Command {
    Command::CashOut(CashOut { request_id: request_id.into(), account: account.into(), diamonds, currency: currency.into() })
}

pub fn payout_cmd(request_id: &str, payout_id: &str) -> PayoutCmd {
    PayoutCmd { request_id: request_id.into(), payout_id: payout_id.into() }
}

pub struct World {
    pub layout: Layout,
    pub shards: Vec<MemStore>,
    /// Last raft index used per shard.
    pub indexes: Vec<u64>,
    /// The leader's clock: every entry advances it by one second.
    pub clock_ms: u64,
    /// Effects proposed to their target, not yet delivered.
    pub effects: Vec<Effect>,
    /// Completions proposed to their home, not yet delivered.
    pub completions: Vec<CompleteEffect>,
    /// Final outcomes of commands that went through an effect, by effect id.
    pub finished: BTreeMap<String, CommandResult>,
    /// How the home shards will finish each pending effect (from `Applied::Pending`).
    pub finishes: BTreeMap<String, crate::Finish>,
    /// `final_outcome` computed as soon as an effect's result was known, by effect id: the
    /// CompleteEffect must then record exactly this outcome.
    pub previewed: BTreeMap<String, CommandResult>,
}

impl World {
    pub fn new(shard_count: u32) -> Self {
        World {
            layout: Layout::new(shard_count),
            shards: vec![MemStore::new(); shard_count as usize],
            indexes: vec![0; shard_count as usize],
            clock_ms: 1_700_000_000_000,
            effects: Vec::new(),
            finishes: BTreeMap::new(),
            previewed: BTreeMap::new(),
            completions: Vec::new(),
            finished: BTreeMap::new(),
        }
    }

    /// Applies `cmd` as the next entry of `shard`.
    pub fn apply_on(&mut self, shard: u32, cmd: &Command) -> Applied {
        self.clock_ms += 1000;
        let index = &mut self.indexes[shard as usize];
        *index += 1;
        let ctx = EntryContext { shard, index: *index, position: 0, timestamp_ms: self.clock_ms };
        apply(&mut self.shards[shard as usize], &self.layout, &ctx, cmd)
    }

    /// Routes and applies `cmd` (on every shard for SetRates: the last answer is returned);
    /// a pending effect joins the queue. An unroutable command is refused like the node would.
    pub fn submit_only(&mut self, cmd: &Command) -> Applied {
        let shards = match cmd.route() {
            Ok(Route::Key(key)) => vec![self.layout.shard_of(key)],
            Ok(Route::Shard(shard)) if shard < self.layout.shard_count => vec![shard],
            Ok(Route::Shard(shard)) => return Applied::Done(Err(LedgerError::new(ErrorCode::InvalidId, format!("there is no shard {shard}")))),
            Ok(Route::AllShards) => (0..self.layout.shard_count).collect(),
            Err(unroutable) => return Applied::Done(Err(unroutable)),
        };
        let mut applied = None;
        for shard in shards {
            let answer = self.apply_on(shard, cmd);
            if let Applied::Pending(pending) = &answer {
                self.finishes.insert(pending.effect.id.clone(), pending.finish.clone());
                self.effects.push(pending.effect.clone());
            }
            applied = Some(answer);
        }
        applied.expect("a command routes to at least one shard")
    }

    /// Routes and applies `cmd`, then delivers every queued effect: the final outcome.
    pub fn submit(&mut self, cmd: &Command) -> CommandResult {
        match self.submit_only(cmd) {
            Applied::Done(result) => result,
            Applied::Pending(pending) => {
                self.drain();
                self.finished.get(&pending.effect.id).cloned().expect("a drained effect is finished")
            }
        }
    }

    /// Delivers queued effect `i` to its target; its completion joins the queue.
    pub fn deliver_effect(&mut self, i: usize) -> EffectResult {
        let effect = self.effects.remove(i);
        let shard = self.layout.shard_of(&effect.target_account);
        let home = effect.home_shard as usize;
        let completed_below = read::completed_below(&self.shards[home], self.indexes[home]);
        let delivery = EffectDelivery { effect: effect.clone(), completed_below };
        let Applied::Done(Ok(Outcome::EffectApplied(result))) = self.apply_on(shard, &Command::ApplyEffect(delivery)) else {
            panic!("effect {} was not applied", effect.id)
        };
        // A late duplicate of a completed effect is Forgotten: its command already finished.
        if let Some(finish) = self.finishes.get(&effect.id).filter(|_| result != EffectResult::Forgotten) {
            let preview = crate::final_outcome(finish, &effect, &result).expect("a delivered result fits its effect");
            self.previewed.insert(effect.id.clone(), preview);
        }
        self.completions.push(CompleteEffect { effect_id: effect.id, home_shard: effect.home_shard, result: result.clone() });
        result
    }

    /// Delivers queued completion `i` to its home shard.
    pub fn deliver_completion(&mut self, i: usize) -> Applied {
        let completion = self.completions.remove(i);
        let home = completion.home_shard as usize;
        let outbox: Option<OutboxRecord> = book::get(&self.shards[home], &keys::outbox_of(&completion.effect_id));
        let applied = self.apply_on(completion.home_shard, &Command::CompleteEffect(completion.clone()));
        let Applied::Done(answer) = &applied else { return applied };
        // The command's outcome as its request now records it: what a completion answers, or,
        // for a gift (whose completion only releases the outbox record), what was recorded
        // when its sender was debited.
        let recorded = match (answer, &outbox) {
            (Ok(Outcome::EffectCompleted), Some(record)) => {
                assert!(!self.shards[home].map.contains_key(&keys::outbox_of(&completion.effect_id)), "completed effect {} is still in the outbox", completion.effect_id);
                let request: RequestRecord = book::get(&self.shards[home], &keys::request(&record.request_id)).expect("a completed effect's request is recorded");
                match request.state {
                    RequestState::Done(outcome) => Some(outcome),
                    RequestState::Pending(_) => panic!("request {} still pending after its effect completed", record.request_id),
                }
            }
            (Ok(Outcome::EffectCompleted), None) => None,
            (result, _) => Some(result.clone()),
        };
        if let Some(recorded) = recorded {
            if let Some(preview) = self.previewed.get(&completion.effect_id) {
                assert_eq!(preview, &recorded, "effect {}: the early answer differs from the recorded one", completion.effect_id);
            }
            self.finished.insert(completion.effect_id, recorded);
        }
        applied
    }

    /// Delivers everything queued, oldest first, until both queues are empty.
    pub fn drain(&mut self) {
        while !self.effects.is_empty() || !self.completions.is_empty() {
            if !self.effects.is_empty() {
                self.deliver_effect(0);
            } else {
                self.deliver_completion(0);
            }
        }
    }

    /// What a new leader does: queue every shard's outbox again.
    pub fn redrive(&mut self) {
        for store in &self.shards {
            self.effects.extend(read::pending_effects(store));
        }
    }

    pub fn store_of(&self, routing_key: &str) -> &MemStore {
        &self.shards[self.layout.shard_of(routing_key) as usize]
    }

    pub fn account_opt(&self, id: &str) -> Option<Account> {
        read::account(self.store_of(id), id)
    }

    /// # Panics
    /// If the account was never opened.
    pub fn account(&self, id: &str) -> Account {
        self.account_opt(id).unwrap_or_else(|| panic!("account {id} not found"))
    }

    pub fn history(&self, id: &str, limit: u32, cursor: Option<read::HistoryCursor>) -> (Vec<HistoryEntry>, Option<read::HistoryCursor>) {
        read::history(self.store_of(id), id, limit, cursor)
    }

    pub fn audit(&self) -> GlobalAudit {
        let audits: Vec<_> = self.shards.iter().enumerate().map(|(shard, store)| shard_audit(store, shard as u32)).collect();
        let applied = |effect: &Effect| read::effect_result(self.store_of(&effect.target_account), &effect.id).is_some();
        global_audit(&audits, &applied)
    }

    /// A key `{base}-{n}` that lives in another shard than `key` (needs 2+ shards).
    pub fn key_in_other_shard(&self, key: &str, base: &str) -> String {
        let home = self.layout.shard_of(key);
        (0..).map(|n| format!("{base}-{n}")).find(|k| self.layout.shard_of(k) != home).expect("some key lands elsewhere")
    }

    /// An account and a payment reference that live in different shards.
    pub fn split_keys(&self) -> (String, String) {
        let account = "acct-0".to_string();
        let payment_ref = self.key_in_other_shard(&account, "pay");
        (account, payment_ref)
    }

    pub fn purchase(&mut self, request_id: &str, account: &str, amount: &str, currency: &str, payment_ref: &str) -> CommandResult {
        self.submit(&purchase_cmd(request_id, account, amount, currency, payment_ref))
    }

    pub fn gift(&mut self, request_id: &str, sender: &str, recipient: &str, gift_id: &str, quantity: u32) -> CommandResult {
        self.submit(&gift_cmd(request_id, sender, recipient, gift_id, quantity))
    }

    pub fn cash_out(&mut self, request_id: &str, account: &str, diamonds: u64, currency: &str) -> CommandResult {
        self.submit(&cash_out_cmd(request_id, account, diamonds, currency))
    }

    pub fn post(&mut self, request_id: &str, payout_id: &str) -> CommandResult {
        self.submit(&Command::PostPayout(payout_cmd(request_id, payout_id)))
    }

    pub fn void(&mut self, request_id: &str, payout_id: &str) -> CommandResult {
        self.submit(&Command::VoidPayout(payout_cmd(request_id, payout_id)))
    }

    pub fn refund(&mut self, request_id: &str, payment_ref: &str) -> CommandResult {
        self.submit(&Command::Refund(Refund { request_id: request_id.into(), payment_ref: payment_ref.into() }))
    }

    pub fn set_rates(&mut self, request_id: &str, card: RateCard) -> CommandResult {
        self.submit(&Command::SetRates(SetRates { request_id: request_id.into(), card }))
    }

    pub fn set_limit(&mut self, request_id: &str, account: &str, minor: bool, cap: Option<Money>) -> CommandResult {
        self.submit(&Command::SetLimit(SetLimit { request_id: request_id.into(), account: account.into(), minor, daily_purchase_cap: cap }))
    }

    pub fn set_frozen(&mut self, request_id: &str, account: &str, frozen: bool) -> CommandResult {
        self.submit(&Command::SetFrozen(SetFrozen { request_id: request_id.into(), account: account.into(), frozen }))
    }

    /// Gives `creator` exactly `diamonds` (< 5000) by a funder's roses: 2 roses make 1 diamond.
    pub fn give_diamonds(&mut self, creator: &str, diamonds: u64) {
        let funder = format!("funder-{creator}-{}", self.clock_ms);
        let coins = 2 * diamonds;
        let amount = (Decimal::from(coins) / Decimal::from(100)).to_string();
        self.purchase(&format!("{funder}-buy"), &funder, &amount, "USD", &format!("{funder}-pay")).expect("funding purchase");
        let quantity = u32::try_from(coins).expect("small test amounts");
        self.gift(&format!("{funder}-gift"), &funder, creator, "rose", quantity).expect("funding gift");
    }
}
