//! Cash-out, phase one: hold diamonds for a payout at the published rate and fee. Phase two is
//! PostPayout or VoidPayout (payout.rs). Home: the account's shard; the payout lives there too.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::book;
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_account, check_request_id};
use crate::keys;
use crate::model::{EntryKind, HistoryEntry, Outcome, Payout, PayoutState};
use crate::money::{check_currency, round_down, round_up, Money};
use crate::rates::BPS_ONE;
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CashOut {
    pub request_id: String,
    pub account: String,
    pub diamonds: u64,
    /// Payout currency ("USD" when the API got an empty one).
    pub currency: String,
}

impl CashOut {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_account("account", &self.account)?;
        if self.diamonds == 0 {
            return err(ErrorCode::InvalidArgument, "a cash-out needs at least one diamond");
        }
        check_currency(&self.currency)
    }
}

/// `(gross, fee, net)` of a cash-out: gross rounded down, fee rounded up, to minor units.
pub(crate) fn amounts(diamonds: u64, fiat_per_diamond: Decimal, fee_bps: u32, minor_units: u32) -> Result<(Decimal, Decimal, Decimal), LedgerError> {
    let too_large = || LedgerError::new(ErrorCode::AmountTooLarge, format!("{diamonds} diamonds are worth more than an amount can hold"));
    let gross = round_down(Decimal::from(diamonds).checked_mul(fiat_per_diamond).ok_or_else(too_large)?, minor_units);
    let fee_exact = gross.checked_mul(Decimal::from(fee_bps)).ok_or_else(too_large)? / Decimal::from(BPS_ONE);
    let fee = round_up(fee_exact, minor_units);
    let net = gross - fee;
    assert!(net >= Decimal::ZERO && fee >= Decimal::ZERO, "fee {fee} exceeds gross {gross}");
    Ok((gross, fee, net))
}

pub(crate) fn execute(store: &mut dyn Store, ctx: &EntryContext, cmd: &CashOut) -> Result<Step, LedgerError> {
    let before = book::existing_account(store, &cmd.account)?;
    if before.frozen {
        return err(ErrorCode::AccountFrozen, format!("account {} is frozen: it cannot cash out", cmd.account));
    }
    let card = book::rate_card(store);
    let rate = card.cashout_rate(&cmd.currency)?;
    if cmd.diamonds < card.cashout_min_diamonds {
        return err(ErrorCode::BelowMinimum, format!("a cash-out needs at least {} diamonds, asked for {}", card.cashout_min_diamonds, cmd.diamonds));
    }
    let available = before.diamonds_available();
    if cmd.diamonds > available {
        return err(
            ErrorCode::InsufficientDiamonds,
            format!("account {} has {available} diamonds available ({} held of {}), asked for {}", cmd.account, before.diamonds_held, before.diamonds, cmd.diamonds),
        );
    }
    let minor_units = card.minor_units(&cmd.currency);
    let (gross, fee, net) = amounts(cmd.diamonds, rate.fiat_per_diamond, card.cashout_fee_bps, minor_units)?;
    let payout_id = ctx.payout_id();
    let payout = Payout {
        payout_id: payout_id.clone(),
        account: cmd.account.clone(),
        state: PayoutState::Pending,
        diamonds: cmd.diamonds,
        gross: Money::new(gross, &cmd.currency),
        fee: Money::new(fee, &cmd.currency),
        net: Money::new(net, &cmd.currency),
        fiat_per_diamond: rate.fiat_per_diamond,
        fee_bps: card.cashout_fee_bps,
        rate_version: card.version,
        created_ms: ctx.timestamp_ms,
        updated_ms: ctx.timestamp_ms,
    };
    book::put(store, &keys::payout(&payout_id), &payout);

    let mut after = before.clone();
    after.diamonds_held = before.diamonds_held.checked_add(cmd.diamonds).expect("held + requested <= diamonds, checked above");
    book::save_account(store, &before, &mut after, payout_entry(EntryKind::CashoutHeld, &ctx.tx_id(), ctx.timestamp_ms, &payout));
    Ok(Step::Done(Outcome::CashOut(payout)))
}

/// The history entry of a payout's hold, post or void.
pub(crate) fn payout_entry(kind: EntryKind, tx_id: &str, timestamp_ms: u64, payout: &Payout) -> HistoryEntry {
    let mut entry = HistoryEntry::new(kind, tx_id, timestamp_ms);
    entry.fiat = Some(payout.net.clone());
    entry.fee = Some(payout.fee.clone());
    entry.rate_version = payout.rate_version;
    entry.reference = payout.payout_id.clone();
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{dec, World};

    #[test]
    fn thousand_diamonds_in_usd() {
        assert_eq!(amounts(1000, dec("0.005"), 250, 2), Ok((dec("5.00"), dec("0.13"), dec("4.87"))));
        assert_eq!(amounts(1001, dec("0.005"), 250, 2), Ok((dec("5.00"), dec("0.13"), dec("4.87"))));
        assert_eq!(amounts(1000, dec("0.0046"), 250, 2), Ok((dec("4.60"), dec("0.12"), dec("4.48"))));
    }

    #[test]
    fn cash_out_holds_diamonds() {
        let mut world = World::new(1);
        world.give_diamonds("creator", 2000);
        let Ok(Outcome::CashOut(payout)) = world.cash_out("c1", "creator", 1000, "USD") else { panic!() };
        assert_eq!(payout.payout_id, "po-0-3-0");
        assert_eq!(payout.state, PayoutState::Pending);
        assert_eq!((payout.gross.amount, payout.fee.amount, payout.net.amount), (dec("5.00"), dec("0.13"), dec("4.87")));
        let account = world.account("creator");
        assert_eq!((account.diamonds, account.diamonds_held), (2000, 1000));
        let (history, _) = world.history("creator", 1, None);
        assert_eq!((history[0].kind, history[0].diamonds_held_delta), (EntryKind::CashoutHeld, 1000));
        assert!(world.audit().ok);
    }
}
