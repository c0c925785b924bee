//! Cash-out, phase two: the payout provider paid (post: the held diamonds leave the ledger) or
//! failed (void: the hold is released). Home: the payout id's shard, where its account lives.

use serde::{Deserialize, Serialize};

use crate::book;
use crate::cmd::cashout::payout_entry;
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_request_id, parse_payout_shard};
use crate::keys;
use crate::model::{EntryKind, Outcome, Payout, PayoutState};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayoutCmd {
    pub request_id: String,
    pub payout_id: String,
}

impl PayoutCmd {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        parse_payout_shard(&self.payout_id).map(|_| ())
    }
}

/// Pending → Posted (the held diamonds are paid out) or Pending → Voided (the hold is
/// released). Asking for the state a payout is already in answers it as is; asking for the
/// other final state is refused.
pub(crate) fn settle(store: &mut dyn Store, ctx: &EntryContext, cmd: &PayoutCmd, wanted: PayoutState) -> Result<Step, LedgerError> {
    let Some(payout) = book::payout(store, &cmd.payout_id) else {
        return err(ErrorCode::UnknownPayout, format!("there is no payout {}", cmd.payout_id));
    };
    match (payout.state, wanted) {
        (PayoutState::Pending, _) => finish(store, ctx, payout, wanted),
        (state, wanted) if state == wanted => Ok(Step::Done(Outcome::Payout(payout))),
        (PayoutState::Voided, _) => err(ErrorCode::PayoutAlreadyVoided, format!("payout {} was voided, it cannot be posted", cmd.payout_id)),
        (_, _) => err(ErrorCode::PayoutAlreadyPosted, format!("payout {} was posted, it cannot be voided", cmd.payout_id)),
    }
}

fn finish(store: &mut dyn Store, ctx: &EntryContext, mut payout: Payout, state: PayoutState) -> Result<Step, LedgerError> {
    let before = book::account(store, &payout.account).unwrap_or_else(|| panic!("payout {} has no account {}", payout.payout_id, payout.account));
    let mut after = before.clone();
    let released = before.diamonds_held.checked_sub(payout.diamonds);
    after.diamonds_held = released.unwrap_or_else(|| panic!("account {} holds {} < payout {}", before.id, before.diamonds_held, payout.diamonds));
    let kind = if state == PayoutState::Posted {
        after.diamonds = before.diamonds.checked_sub(payout.diamonds).expect("held diamonds are part of the balance");
        let mut totals = book::totals(store);
        totals.diamonds_paid_out = totals.diamonds_paid_out.checked_add(payout.diamonds).expect("paid out <= credited");
        book::save_totals(store, &totals);
        EntryKind::PayoutPosted
    } else {
        EntryKind::PayoutVoided
    };
    payout.state = state;
    payout.updated_ms = ctx.timestamp_ms;
    book::put(store, &keys::payout(&payout.payout_id), &payout);
    book::save_account(store, &before, &mut after, payout_entry(kind, &ctx.tx_id(), ctx.timestamp_ms, &payout));
    Ok(Step::Done(Outcome::Payout(payout)))
}

#[cfg(test)]
mod tests {
    use crate::sim::World;
    use crate::{ErrorCode, Outcome, PayoutState};

    fn with_payout() -> (World, String) {
        let mut world = World::new(1);
        world.give_diamonds("creator", 3000);
        let Ok(Outcome::CashOut(payout)) = world.cash_out("c1", "creator", 1000, "USD") else { panic!() };
        (world, payout.payout_id)
    }

    #[test]
    fn post_pays_the_held_diamonds_out() {
        let (mut world, id) = with_payout();
        let Ok(Outcome::Payout(payout)) = world.post("p1", &id) else { panic!() };
        assert_eq!(payout.state, PayoutState::Posted);
        let account = world.account("creator");
        assert_eq!((account.diamonds, account.diamonds_held), (2000, 0));
        assert_eq!(world.post("p2", &id), Ok(Outcome::Payout(payout)), "posting again with another request id answers as is");
        assert_eq!(world.void("v1", &id).unwrap_err().code, ErrorCode::PayoutAlreadyPosted);
        assert_eq!(world.audit().diamonds_paid_out, 1000);
        assert!(world.audit().ok);
    }

    #[test]
    fn void_releases_the_hold() {
        let (mut world, id) = with_payout();
        let Ok(Outcome::Payout(payout)) = world.void("v1", &id) else { panic!() };
        assert_eq!(payout.state, PayoutState::Voided);
        let account = world.account("creator");
        assert_eq!((account.diamonds, account.diamonds_held), (3000, 0));
        assert_eq!(world.post("p1", &id).unwrap_err().code, ErrorCode::PayoutAlreadyVoided);
        assert!(world.audit().ok);
    }

    #[test]
    fn unknown_payout() {
        let (mut world, _) = with_payout();
        assert_eq!(world.post("p1", "po-0-999-0").unwrap_err().code, ErrorCode::UnknownPayout);
    }
}
