//! Admin commands: publish a rate card (to every shard), set an account's spending limit,
//! freeze or unfreeze an account.

use serde::{Deserialize, Serialize};

use crate::book;
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_account, check_request_id};
use crate::model::{Account, EntryKind, HistoryEntry, Outcome};
use crate::money::{check_currency, check_positive, check_precision, Money};
use crate::rates::RateCard;
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetRates {
    pub request_id: String,
    /// `version` must be the current version + 1; `effective_ms` is ignored (set at commit).
    pub card: RateCard,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetLimit {
    pub request_id: String,
    pub account: String,
    pub minor: bool,
    /// None: no cap. With a cap, the account can only buy in the cap's currency.
    pub daily_purchase_cap: Option<Money>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetFrozen {
    pub request_id: String,
    pub account: String,
    pub frozen: bool,
}

impl SetRates {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        self.card.validate()
    }
}

impl SetLimit {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_account("account", &self.account)?;
        if let Some(cap) = &self.daily_purchase_cap {
            check_positive(cap.amount)?;
            check_currency(&cap.currency)?;
        }
        Ok(())
    }
}

impl SetFrozen {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_account("account", &self.account)
    }
}

pub(crate) fn set_rates(store: &mut dyn Store, ctx: &EntryContext, cmd: &SetRates) -> Result<Step, LedgerError> {
    let current = book::rate_card(store);
    if cmd.card.version == current.version && cmd.card.without_effective_ms() == current.without_effective_ms() {
        // Re-driven to a shard that already has it (under another request id).
        return Ok(Step::Done(Outcome::Rates(current.into_owned())));
    }
    let next = current.version.checked_add(1).expect("rate card versions do not reach u64::MAX");
    if cmd.card.version != next {
        return err(
            ErrorCode::InvalidRateCard,
            format!("the rate card version must be {next} (current {} + 1), it is {}", current.version, cmd.card.version),
        );
    }
    let card = RateCard { effective_ms: ctx.timestamp_ms, ..cmd.card.clone() };
    book::save_rate_card(store, &card);
    Ok(Step::Done(Outcome::Rates(card)))
}

fn account_or_open(store: &dyn Store, id: &str) -> Account {
    book::account(store, id).unwrap_or_else(|| Account::open(id))
}

pub(crate) fn set_limit(store: &mut dyn Store, ctx: &EntryContext, cmd: &SetLimit) -> Result<Step, LedgerError> {
    if let Some(cap) = &cmd.daily_purchase_cap {
        let price = book::rate_card(store).coin_price(&cap.currency).cloned()?;
        check_precision(cap.amount, price.minor_units)?;
    }
    let before = account_or_open(store, &cmd.account);
    let mut after = before.clone();
    after.minor = cmd.minor;
    let same_currency = match (&before.daily_purchase_cap, &cmd.daily_purchase_cap) {
        (Some(old), Some(new)) => old.currency == new.currency,
        _ => false,
    };
    if !same_currency {
        // purchased_today counts in the cap's currency: another currency starts a new count.
        after.purchased_today = rust_decimal::Decimal::ZERO;
    }
    after.daily_purchase_cap = cmd.daily_purchase_cap.clone();
    let mut entry = HistoryEntry::new(EntryKind::LimitChanged, &ctx.tx_id(), ctx.timestamp_ms);
    entry.fiat = cmd.daily_purchase_cap.clone();
    book::save_account(store, &before, &mut after, entry);
    Ok(Step::Done(Outcome::Account(after)))
}

pub(crate) fn set_frozen(store: &mut dyn Store, ctx: &EntryContext, cmd: &SetFrozen) -> Result<Step, LedgerError> {
    let before = account_or_open(store, &cmd.account);
    let mut after = before.clone();
    after.frozen = cmd.frozen;
    book::save_account(store, &before, &mut after, HistoryEntry::new(EntryKind::FrozenChanged, &ctx.tx_id(), ctx.timestamp_ms));
    Ok(Step::Done(Outcome::Account(after)))
}

#[cfg(test)]
mod tests {
    use crate::sim::{dec, World};
    use crate::{ErrorCode, Money, Outcome, RateCard};

    #[test]
    fn set_rates_publishes_the_next_version_to_every_shard() {
        let mut world = World::new(3);
        let mut card = RateCard::default_card();
        card.version = 2;
        card.coin_prices[0].price_per_coin = dec("0.02");
        let Ok(Outcome::Rates(stored)) = world.set_rates("s1", card.clone()) else { panic!() };
        assert_eq!(stored.effective_ms, world.clock_ms);
        for shard in 0..3 {
            assert_eq!(crate::read::rate_card(&world.shards[shard]).version, 2);
            let kept = crate::read::rate_card_version(&world.shards[shard], 2).expect("kept under its version too");
            assert_eq!(kept.without_effective_ms(), stored.without_effective_ms(), "each shard stamps its own effective_ms");
            assert_eq!(crate::read::rate_card_version(&world.shards[shard], 1), Some(RateCard::default_card()));
        }
        assert!(matches!(world.set_rates("s2", card.clone()), Ok(Outcome::Rates(_))), "the same card again is fine");
        let Ok(Outcome::Purchase(receipt)) = world.purchase("b1", "fan", "9.99", "USD", "pay-1") else { panic!() };
        assert_eq!((receipt.base_coins, receipt.rate_version), (499, 2));
    }

    #[test]
    fn set_limit_and_frozen_open_the_account() {
        let mut world = World::new(2);
        let cap = Some(Money::new(dec("20"), "EUR"));
        let Ok(Outcome::Account(account)) = world.set_limit("l1", "kid", true, cap.clone()) else { panic!() };
        assert!(account.minor);
        assert_eq!(account.daily_purchase_cap, cap);
        let Ok(Outcome::Account(account)) = world.set_frozen("f1", "kid", true) else { panic!() };
        assert!(account.frozen);
        assert_eq!(world.history("kid", 10, None).0.len(), 2);
        assert_eq!(world.set_limit("l2", "kid", true, Some(Money::new(dec("20"), "CHF"))).unwrap_err().code, ErrorCode::UnknownCurrency);
    }
}
