//! Purchase: fiat in, coins out. Home: the payment reference's shard, which claims the
//! reference for ever; the credit (CreditPurchase) is checked and applied in the account's shard.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::book::{self, Finish, OutboxRecord};
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_account, check_payment_ref, check_request_id};
use crate::keys;
use crate::model::{Effect, EffectKind, PaymentRecord, PaymentStatus};
use crate::money::{check_currency, check_positive, check_precision, Money};
use crate::rates::share_of;
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    pub request_id: String,
    pub account: String,
    /// What the user paid (parse it with [`crate::parse_amount`]).
    pub amount: Decimal,
    pub currency: String,
    /// The payment provider's reference: credits at most once, for ever.
    pub payment_ref: String,
}

impl Purchase {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_account("account", &self.account)?;
        check_payment_ref(&self.payment_ref)?;
        check_positive(self.amount)?;
        check_currency(&self.currency)
    }
}

/// floor(amount / price), exactly: a Decimal quotient may be rounded in its 28th digit, so
/// the candidate is corrected until `base * price <= amount < (base + 1) * price`.
pub(crate) fn base_coins(amount: Decimal, price: Decimal) -> Result<u64, LedgerError> {
    let too_large = || LedgerError::new(ErrorCode::AmountTooLarge, format!("{amount} buys more coins than a balance can hold"));
    let mut base = amount.checked_div(price).ok_or_else(too_large)?.floor().to_u64().ok_or_else(too_large)?;
    let cost = |coins: u64| Decimal::from(coins).checked_mul(price);
    const CORRECTIONS_MAX: usize = 2;
    for _ in 0..CORRECTIONS_MAX {
        if base > 0 && cost(base).is_none_or(|c| c > amount) {
            base -= 1;
        } else if cost(base + 1).is_some_and(|c| c <= amount) {
            base += 1;
        }
    }
    assert!(cost(base).is_some_and(|c| c <= amount), "base coins {base} at {price} cost more than {amount}");
    Ok(base)
}

pub(crate) fn execute(store: &mut dyn Store, ctx: &EntryContext, cmd: &Purchase) -> Result<Step, LedgerError> {
    if let Some(claimed) = book::payment(store, &cmd.payment_ref) {
        return err(
            ErrorCode::DuplicatePaymentRef,
            format!("payment reference {} was already used by purchase {} for account {}", cmd.payment_ref, claimed.tx_id, claimed.account),
        );
    }
    let card = book::rate_card(store);
    let price = card.coin_price(&cmd.currency)?;
    check_precision(cmd.amount, price.minor_units)?;
    if cmd.amount > price.max_purchase {
        return err(
            ErrorCode::AmountTooLarge,
            format!("a single purchase is at most {} {}, this one is {} {}", price.max_purchase, cmd.currency, cmd.amount, cmd.currency),
        );
    }
    let base = base_coins(cmd.amount, price.price_per_coin)?;
    if base == 0 {
        return err(
            ErrorCode::InvalidAmount,
            format!("{} {} is too small to buy one coin ({} {} per coin)", cmd.amount, cmd.currency, price.price_per_coin, cmd.currency),
        );
    }
    let promotion = card.promotion_for(base);
    let bonus = promotion.map_or(0, |p| share_of(base, p.bonus_bps));
    let coins = base.checked_add(bonus).ok_or_else(|| LedgerError::new(ErrorCode::AmountTooLarge, "the purchase credits more coins than a balance can hold"))?;
    let tx_id = ctx.tx_id();
    let paid = Money::new(cmd.amount, &cmd.currency);
    let record = PaymentRecord {
        payment_ref: cmd.payment_ref.clone(),
        account: cmd.account.clone(),
        tx_id: tx_id.clone(),
        coins,
        paid: paid.clone(),
        status: PaymentStatus::Pending,
        refunded: false,
    };
    book::put(store, &keys::payment(&cmd.payment_ref), &record);
    let kind = EffectKind::CreditPurchase {
        payment_ref: cmd.payment_ref.clone(),
        base_coins: base,
        bonus_coins: bonus,
        promotion_id: promotion.map(|p| p.id.clone()).unwrap_or_default(),
        paid,
        coin_price: Money::new(price.price_per_coin, &cmd.currency),
        rate_version: card.version,
        timestamp_ms: ctx.timestamp_ms,
    };
    let effect = Effect { id: tx_id, home_shard: ctx.shard, target_account: cmd.account.clone(), kind };
    Ok(Step::Effect(OutboxRecord { effect, request_id: cmd.request_id.clone(), finish: Finish::Purchase }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{dec, purchase_cmd, World};
    use crate::Outcome;

    #[test]
    fn base_coins_is_an_exact_floor() {
        assert_eq!(base_coins(dec("9.99"), dec("0.01")), Ok(999));
        assert_eq!(base_coins(dec("10"), dec("0.0095")), Ok(1052));
        assert_eq!(base_coins(dec("1"), dec("1.5")), Ok(0));
        assert_eq!(base_coins(dec("1"), dec("0.3333333333333333333333333333")), Ok(3));
        assert_eq!(base_coins(dec("0.0285"), dec("0.0095")), Ok(3));
    }

    #[test]
    fn nine_ninety_nine_usd_buys_999_coins() {
        let mut world = World::new(1);
        let receipt = world.purchase("r1", "alice", "9.99", "USD", "pay-1").unwrap();
        let Outcome::Purchase(receipt) = receipt else { panic!("{receipt:?}") };
        assert_eq!((receipt.base_coins, receipt.bonus_coins, receipt.coins_credited, receipt.coins_balance), (999, 0, 999, 999));
        assert_eq!(receipt.promotion_id, "");
        assert_eq!(receipt.rate_version, 1);
        assert_eq!(world.account("alice").coins, 999);
    }

    #[test]
    fn ten_usd_gets_the_bulk_bonus() {
        let mut world = World::new(1);
        let Outcome::Purchase(receipt) = world.purchase("r1", "alice", "10.00", "USD", "pay-1").unwrap() else { panic!() };
        assert_eq!((receipt.base_coins, receipt.bonus_coins, receipt.coins_credited), (1000, 50, 1050));
        assert_eq!(receipt.promotion_id, "bulk-1k");
        assert_eq!(receipt.coin_price, Money::new(dec("0.01"), "USD"));
        let Outcome::Purchase(big) = world.purchase("r2", "alice", "100", "USD", "pay-2").unwrap() else { panic!() };
        assert_eq!((big.base_coins, big.bonus_coins, big.promotion_id.as_str()), (10_000, 1000, "bulk-10k"));
        assert_eq!(world.account("alice").coins, 1050 + 11_000);
    }

    #[test]
    fn cross_shard_purchase_is_pending_until_completed() {
        let mut world = World::new(8);
        let (account, payment_ref) = world.split_keys();
        let applied = world.submit_only(&purchase_cmd("r1", &account, "9.99", "USD", &payment_ref));
        let crate::Applied::Pending(crate::PendingEffect { effect, .. }) = applied else { panic!("{applied:?}") };
        assert_eq!(world.account_opt(&account), None);
        world.drain();
        let outcome = world.finished[&effect.id].clone().unwrap();
        let Outcome::Purchase(receipt) = outcome else { panic!() };
        assert_eq!(receipt.coins_balance, 999);
        assert_eq!(world.account(&account).coins, 999);
    }
}
