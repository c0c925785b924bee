//! The commands a shard applies: one file per command (its body, its stateless checks and its
//! home-shard half), one enum that routes and dispatches them.

pub mod admin;
pub mod cashout;
pub mod effect;
pub mod gift;
pub mod payout;
pub mod purchase;
pub mod refund;

use serde::{Deserialize, Serialize};

use crate::book::OutboxRecord;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::{check_account, parse_payout_shard, parse_tx_id};
use crate::model::{CompleteEffect, EffectDelivery, Outcome};

pub use admin::{SetFrozen, SetLimit, SetRates};
pub use cashout::CashOut;
pub use gift::Gift;
pub use payout::PayoutCmd;
pub use purchase::Purchase;
pub use refund::Refund;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Purchase(Purchase),
    Gift(Gift),
    CashOut(CashOut),
    PostPayout(PayoutCmd),
    VoidPayout(PayoutCmd),
    Refund(Refund),
    SetRates(SetRates),
    SetLimit(SetLimit),
    SetFrozen(SetFrozen),
    /// Internal: proposed to the target shard by the node, from a home shard's outbox.
    ApplyEffect(EffectDelivery),
    /// Internal: proposed back to the home shard with the target's result.
    CompleteEffect(CompleteEffect),
}

/// Which shard a command must be proposed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `layout.shard_of(key)`: borrowed from the command (every replica routes every command
    /// again before applying it, see `apply::check_route`).
    Key(&'a str),
    Shard(u32),
    /// Every shard (rate cards).
    AllShards,
}

impl Command {
    /// Purchase/Refund: the payment reference; Gift: the sender; CashOut/SetLimit/SetFrozen: the
    /// account; Post/Void: the payout id's shard; SetRates: all shards; ApplyEffect: the target
    /// account; CompleteEffect: the home shard.
    pub fn route(&self) -> Result<Route<'_>, LedgerError> {
        Ok(match self {
            Command::Purchase(c) => Route::Key(&c.payment_ref),
            Command::Refund(c) => Route::Key(&c.payment_ref),
            Command::Gift(c) => Route::Key(&c.sender),
            Command::CashOut(c) => Route::Key(&c.account),
            Command::SetLimit(c) => Route::Key(&c.account),
            Command::SetFrozen(c) => Route::Key(&c.account),
            Command::PostPayout(c) | Command::VoidPayout(c) => Route::Shard(parse_payout_shard(&c.payout_id)?),
            Command::SetRates(_) => Route::AllShards,
            Command::ApplyEffect(d) => Route::Key(&d.effect.target_account),
            Command::CompleteEffect(c) => Route::Shard(c.home_shard),
        })
    }

    /// Stateless checks, done before proposing and again by every replica before applying.
    pub fn validate(&self) -> Result<(), LedgerError> {
        match self {
            Command::Purchase(c) => c.validate(),
            Command::Gift(c) => c.validate(),
            Command::CashOut(c) => c.validate(),
            Command::PostPayout(c) | Command::VoidPayout(c) => c.validate(),
            Command::Refund(c) => c.validate(),
            Command::SetRates(c) => c.validate(),
            Command::SetLimit(c) => c.validate(),
            Command::SetFrozen(c) => c.validate(),
            Command::ApplyEffect(d) => {
                check_effect_id(&d.effect.id, d.effect.home_shard)?;
                check_account("target account", &d.effect.target_account)
            }
            Command::CompleteEffect(c) => check_effect_id(&c.effect_id, c.home_shard),
        }
    }

    /// The client's request id; None for the internal effect commands.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Command::Purchase(c) => Some(&c.request_id),
            Command::Gift(c) => Some(&c.request_id),
            Command::CashOut(c) => Some(&c.request_id),
            Command::PostPayout(c) | Command::VoidPayout(c) => Some(&c.request_id),
            Command::Refund(c) => Some(&c.request_id),
            Command::SetRates(c) => Some(&c.request_id),
            Command::SetLimit(c) => Some(&c.request_id),
            Command::SetFrozen(c) => Some(&c.request_id),
            Command::ApplyEffect(_) | Command::CompleteEffect(_) => None,
        }
    }
}

/// An effect id is the tx id of its originating command, made in its home shard.
fn check_effect_id(effect_id: &str, home_shard: u32) -> Result<(), LedgerError> {
    let (shard, _, _) = parse_tx_id(effect_id)?;
    if shard != home_shard {
        return err(ErrorCode::InvalidId, format!("effect {effect_id} was not made by its home shard {home_shard}"));
    }
    Ok(())
}

/// What a command's home half produced.
pub(crate) enum Step {
    Done(Outcome),
    /// Committed at home; the effect must change an account (maybe in another shard).
    Effect(OutboxRecord),
}
