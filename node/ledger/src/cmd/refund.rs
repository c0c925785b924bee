//! Refund (chargeback) of a purchase. Home: the payment reference's shard, which marks the
//! purchase refunded; the claw-back runs in the account's shard.
//!
//! The rule: the purchase's coins are taken back as far as the balance allows; coins already
//! spent stay spent (the gifts stay delivered) and are reported as unrecovered; if any are
//! unrecovered, the account is frozen. A payment reference can be refunded once.

use serde::{Deserialize, Serialize};

use crate::book::{self, Finish, OutboxRecord};
use crate::cmd::Step;
use crate::context::EntryContext;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_payment_ref, check_request_id};
use crate::keys;
use crate::model::{Effect, EffectKind, PaymentStatus};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub request_id: String,
    pub payment_ref: String,
}

impl Refund {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_request_id(&self.request_id)?;
        check_payment_ref(&self.payment_ref)
    }
}

pub(crate) fn execute(store: &mut dyn Store, ctx: &EntryContext, cmd: &Refund) -> Result<Step, LedgerError> {
    let Some(mut record) = book::payment(store, &cmd.payment_ref) else {
        return err(ErrorCode::UnknownPaymentRef, format!("no purchase has payment reference {}", cmd.payment_ref));
    };
    match record.status {
        PaymentStatus::Rejected => {
            return err(ErrorCode::PurchaseNotCredited, format!("purchase {} was refused when it was credited: nothing to refund", cmd.payment_ref))
        }
        // Transient, so never recorded under the request id: the retry will find it credited.
        PaymentStatus::Pending => return err(ErrorCode::Unavailable, format!("purchase {} is still being credited, retry", cmd.payment_ref)),
        PaymentStatus::Credited => {}
    }
    if record.refunded {
        return err(ErrorCode::AlreadyRefunded, format!("purchase {} was already refunded", cmd.payment_ref));
    }
    record.refunded = true;
    book::put(store, &keys::payment(&cmd.payment_ref), &record);
    let kind = EffectKind::Clawback { payment_ref: record.payment_ref.clone(), coins: record.coins, refunded: record.paid.clone(), timestamp_ms: ctx.timestamp_ms };
    let effect = Effect { id: ctx.tx_id(), home_shard: ctx.shard, target_account: record.account.clone(), kind };
    Ok(Step::Effect(OutboxRecord { effect, request_id: cmd.request_id.clone(), finish: Finish::Refund }))
}

#[cfg(test)]
mod tests {
    use crate::sim::World;
    use crate::{ErrorCode, Outcome};

    #[test]
    fn refund_takes_back_the_whole_purchase_when_unspent() {
        let mut world = World::new(4);
        world.purchase("b1", "fan", "9.99", "USD", "pay-1").unwrap();
        let Ok(Outcome::Refund(receipt)) = world.refund("r1", "pay-1") else { panic!() };
        assert_eq!((receipt.coins_purchased, receipt.coins_recovered, receipt.coins_unrecovered, receipt.account_frozen), (999, 999, 0, false));
        assert_eq!(world.account("fan").coins, 0);
        assert!(!world.account("fan").frozen);
        assert_eq!(world.refund("r2", "pay-1").unwrap_err().code, ErrorCode::AlreadyRefunded);
        assert!(world.audit().ok);
    }

    #[test]
    fn refund_of_spent_coins_freezes_the_account() {
        let mut world = World::new(4);
        world.purchase("b1", "fan", "9.99", "USD", "pay-1").unwrap();
        world.gift("g1", "fan", "creator", "corgi", 3).unwrap();
        let Ok(Outcome::Refund(receipt)) = world.refund("r1", "pay-1") else { panic!() };
        assert_eq!((receipt.coins_recovered, receipt.coins_unrecovered, receipt.account_frozen), (102, 897, true));
        assert_eq!(world.account("fan").coins, 0);
        assert!(world.account("fan").frozen);
        assert!(world.audit().ok);
    }
}
