//! Gift: the sender pays coins in its shard (home); the creator is credited diamonds in theirs
//! (CreditGift, never refused). The platform's share is booked in the sender's shard.

use serde::{Deserialize, Serialize};

use crate::book::{self, Finish, OutboxRecord};
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_account, check_gift_id, check_request_id, check_stream_id};
use crate::model::{EntryKind, Effect, EffectKind, GiftReceipt, HistoryEntry};
use crate::rates::{share_of, MESSAGE_BYTES_MAX};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gift {
    pub request_id: String,
    pub sender: String,
    pub recipient: String,
    pub gift_id: String,
    /// 1..=max_gift_quantity (the API maps 0 to 1 before it gets here).
    pub quantity: u32,
    pub message: String,
    /// Optional: empty for none.
    pub stream_id: String,
}

impl Gift {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_account("sender", &self.sender)?;
        check_account("recipient", &self.recipient)?;
        check_gift_id(&self.gift_id)?;
        check_stream_id(&self.stream_id)?;
        if self.sender == self.recipient {
            return err(ErrorCode::SelfGift, format!("{} cannot send a gift to itself", self.sender));
        }
        if self.quantity == 0 {
            return err(ErrorCode::InvalidQuantity, "gift quantity must be at least 1");
        }
        if self.message.len() > MESSAGE_BYTES_MAX {
            return err(ErrorCode::MessageTooLong, format!("the message has {} bytes, at most {MESSAGE_BYTES_MAX}", self.message.len()));
        }
        if self.message.chars().any(char::is_control) {
            return err(ErrorCode::MessageTooLong, "the message must not contain control characters");
        }
        Ok(())
    }
}

pub(crate) fn execute(store: &mut dyn Store, ctx: &EntryContext, cmd: &Gift) -> Result<Step, LedgerError> {
    let card = book::rate_card(store);
    let gift = card.gift(&cmd.gift_id)?;
    if cmd.quantity > card.max_gift_quantity {
        return err(ErrorCode::InvalidQuantity, format!("at most {} gifts at once, asked for {}", card.max_gift_quantity, cmd.quantity));
    }
    let message_chars = cmd.message.chars().count();
    if message_chars > card.max_message_chars as usize {
        return err(ErrorCode::MessageTooLong, format!("the message has {message_chars} characters, at most {}", card.max_message_chars));
    }
    let before = book::existing_account(store, &cmd.sender)?;
    if before.frozen {
        return err(ErrorCode::AccountFrozen, format!("account {} is frozen: it cannot send gifts", cmd.sender));
    }
    let coins = gift.price_coins.checked_mul(u64::from(cmd.quantity)).ok_or_else(|| {
        LedgerError::new(ErrorCode::AmountTooLarge, format!("{} x {} at {} coins costs more coins than exist", cmd.quantity, gift.id, gift.price_coins))
    })?;
    let Some(coins_after) = before.coins.checked_sub(coins) else {
        return err(ErrorCode::InsufficientCoins, format!("sender {} has {} coins, the gift costs {coins}", cmd.sender, before.coins));
    };
    let diamonds = share_of(coins, card.creator_share_bps);
    let platform_coins = coins - diamonds;
    assert_eq!(coins, diamonds + platform_coins, "a gift's coins are split, never created");

    let mut totals = book::totals(store);
    let overflow = || LedgerError::new(ErrorCode::AmountTooLarge, "the shard's gift totals would overflow");
    totals.coins_spent = totals.coins_spent.checked_add(coins).ok_or_else(overflow)?;
    totals.diamonds_promised = totals.diamonds_promised.checked_add(diamonds).ok_or_else(overflow)?;
    totals.platform_coins = totals.platform_coins.checked_add(platform_coins).ok_or_else(overflow)?;
    book::save_totals(store, &totals);

    let tx_id = ctx.tx_id();
    let mut after = before.clone();
    after.coins = coins_after;
    let mut entry = HistoryEntry::borrowed(EntryKind::GiftSent, &tx_id, ctx.timestamp_ms);
    entry.counterparty = &cmd.recipient;
    entry.rate_version = card.version;
    entry.gift_id = &cmd.gift_id;
    entry.quantity = cmd.quantity;
    entry.message = &cmd.message;
    entry.stream_id = &cmd.stream_id;
    entry.base_coins = coins;
    entry.platform_coins = platform_coins;
    book::save_account(store, &before, &mut after, entry);

    let receipt = GiftReceipt {
        tx_id: tx_id.clone(),
        sender: cmd.sender.clone(),
        recipient: cmd.recipient.clone(),
        coins_debited: coins,
        diamonds_credited: diamonds,
        platform_coins,
        price_coins: gift.price_coins,
        quantity: cmd.quantity,
        creator_share_bps: card.creator_share_bps,
        rate_version: card.version,
        sender_coins_balance: coins_after,
        timestamp_ms: ctx.timestamp_ms,
    };
    let kind = EffectKind::CreditGift {
        sender: cmd.sender.clone(),
        diamonds,
        coins_debited: coins,
        platform_coins,
        gift_id: cmd.gift_id.clone(),
        quantity: cmd.quantity,
        message: cmd.message.clone(),
        stream_id: cmd.stream_id.clone(),
        rate_version: card.version,
        timestamp_ms: ctx.timestamp_ms,
    };
    let effect = Effect { id: tx_id, home_shard: ctx.shard, target_account: cmd.recipient.clone(), kind };
    Ok(Step::Effect(OutboxRecord { effect, request_id: cmd.request_id.clone(), finish: Finish::Gift(receipt) }))
}

#[cfg(test)]
mod tests {
    use crate::sim::{gift_cmd, World};
    use crate::{Applied, EntryKind, Outcome};

    fn funded(shards: u32) -> World {
        let mut world = World::new(shards);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        world
    }

    #[test]
    fn a_rose_costs_one_coin_and_all_of_it_goes_to_the_platform() {
        let mut world = funded(1);
        let Outcome::Gift(receipt) = world.gift("g1", "fan", "creator", "rose", 1).unwrap() else { panic!() };
        assert_eq!((receipt.coins_debited, receipt.diamonds_credited, receipt.platform_coins), (1, 0, 1));
        assert_eq!(receipt.sender_coins_balance, 998);
        assert_eq!(world.account("creator").diamonds, 0);
    }

    #[test]
    fn a_doughnut_splits_fifteen_fifteen() {
        let mut world = funded(1);
        let Outcome::Gift(receipt) = world.gift("g1", "fan", "creator", "doughnut", 1).unwrap() else { panic!() };
        assert_eq!((receipt.coins_debited, receipt.diamonds_credited, receipt.platform_coins), (30, 15, 15));
        assert_eq!((receipt.price_coins, receipt.creator_share_bps, receipt.rate_version), (30, 5000, 1));
        assert_eq!(world.account("fan").coins, 969);
        assert_eq!(world.account("creator").diamonds, 15);
        let (history, _) = world.history("creator", 10, None);
        assert_eq!(history[0].kind, EntryKind::GiftReceived);
        assert_eq!((history[0].diamonds_delta, history[0].counterparty.as_str()), (15, "fan"));
        assert!(world.audit().ok);
    }

    #[test]
    fn cross_shard_gift_is_answered_after_the_credit() {
        let mut world = World::new(16);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        let applied = world.submit_only(&gift_cmd("g1", "fan", &creator, "doughnut", 2));
        let Applied::Pending(crate::PendingEffect { effect, .. }) = applied else { panic!("{applied:?}") };
        let audit = world.audit();
        assert!(audit.ok, "{:?}", audit.violations);
        assert_eq!(audit.diamonds_in_flight, 30);
        world.drain();
        let Ok(Outcome::Gift(receipt)) = world.finished[&effect.id].clone() else { panic!() };
        assert_eq!(receipt.diamonds_credited, 30);
        assert_eq!(world.account(&creator).diamonds, 30);
        assert_eq!(world.audit().diamonds_in_flight, 0);
    }

    #[test]
    fn a_cross_shard_gift_retried_before_its_credit_waits_for_it_then_answers_the_receipt() {
        let mut world = World::new(16);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        let gift = gift_cmd("g1", "fan", &creator, "doughnut", 2);
        let Applied::Pending(first) = world.submit_only(&gift) else { panic!("a cross-shard gift waits for its credit") };
        // Recorded as done at the debit, but a retry must not be answered before the credit.
        let Applied::Pending(again) = world.submit_only(&gift) else { panic!("a retry before the credit waits for it too") };
        assert_eq!(again.effect, first.effect);
        world.effects.pop();
        world.drain();
        assert_eq!(world.account(&creator).diamonds, 30, "credited once");
        let Applied::Done(Ok(Outcome::Gift(receipt))) = world.submit_only(&gift) else { panic!("a retry after the credit is answered") };
        assert_eq!(Ok(Outcome::Gift(receipt.clone())), world.finished[&first.effect.id]);
        assert_eq!(receipt.tx_id, first.effect.id);
        assert!(world.audit().ok);
    }

    #[test]
    fn completing_a_gift_releases_its_outbox_record_and_leaves_its_request_as_recorded() {
        let mut world = World::new(16);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        let Applied::Pending(pending) = world.submit_only(&gift_cmd("g1", "fan", &creator, "doughnut", 1)) else { panic!() };
        world.deliver_effect(0);
        let home = world.layout.shard_of("fan") as usize;
        let request_before = world.shards[home].map.get(&crate::keys::request("g1")).cloned();
        assert!(request_before.is_some());
        let Applied::Done(Ok(Outcome::EffectCompleted)) = world.deliver_completion(0) else { panic!() };
        assert_eq!(world.shards[home].map.get(&crate::keys::request("g1")), request_before.as_ref(), "the request record is not rewritten");
        assert!(!world.shards[home].map.contains_key(&crate::keys::outbox_of(&pending.effect.id)));
        // A duplicate completion finds nothing to release and changes nothing.
        let before = world.shards.clone();
        world.completions.push(crate::CompleteEffect { effect_id: pending.effect.id.clone(), home_shard: home as u32, result: crate::EffectResult::GiftCredited { diamonds_balance: 15 } });
        let Applied::Done(Ok(Outcome::EffectCompleted)) = world.deliver_completion(0) else { panic!() };
        assert_eq!(world.shards, before);
        assert!(world.audit().ok);
    }
}
