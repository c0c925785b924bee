//! # coinledger-ledger
//!
//! The ledger state machine of coinledger: pure Rust, no I/O, no clock, no randomness. Every
//! replica of a shard applies the same commands in the same order with [`apply`] and gets
//! byte-identical state and outcomes. Time and ids come from the raft entry ([`EntryContext`]).
//!
//! ## The rules
//!
//! * **Purchase** (home: the payment reference's shard). Priced with the home shard's rate
//!   card: `base = floor(amount / price_per_coin)` (≥ 1), plus the largest matching promotion's
//!   `floor(base * bonus_bps / 10000)`. The reference is claimed for ever, even if the credit is
//!   then refused (DUPLICATE_PAYMENT_REF). The credit (an effect) runs in the account's shard,
//!   which refuses it if the account is frozen or over its daily cap (LIMIT_EXCEEDED).
//! * **Gift** (home: the sender's shard). `coins = price * quantity` are debited; the creator
//!   gets `floor(coins * creator_share_bps / 10000)` diamonds (an effect, never refused; a frozen
//!   account can receive), the platform the rest (booked in the sender's shard).
//! * **Cash-out** (home: the account's shard). Holds diamonds; `gross` = diamonds × rate rounded
//!   down to minor units, `fee` = gross × fee_bps / 10000 rounded up, `net = gross − fee`.
//!   **PostPayout** pays the held diamonds out, **VoidPayout** releases them. Posting a posted
//!   payout (voiding a voided one) answers it as is.
//! * **Refund** (home: the payment reference's shard). The purchase's coins are taken back as
//!   far as the balance allows; coins already spent stay spent (the gifts stay delivered) and
//!   are reported as unrecovered; if any are unrecovered the account is frozen. Once per
//!   reference; a refused purchase cannot be refunded; one still being credited answers
//!   UNAVAILABLE (retry).
//! * **SetRates** goes to every shard; version must be current + 1; the same card again is Ok.
//!   **SetLimit** / **SetFrozen** open the account if needed.
//! * **Idempotency**: a request id is remembered for ever in the home shard with the command's
//!   bytes and first outcome (business errors included; UNAVAILABLE not). Same id, same body:
//!   the first outcome again, nothing changes. Same id, other body: REQUEST_ID_REUSED.
//!
//! ## Cross-shard effects
//!
//! A command's home shard commits its half plus an outbox record (an [`Effect`]) and
//! [`apply`] returns [`Applied::Pending`]. The node proposes `Command::ApplyEffect` (an
//! [`EffectDelivery`]) to the target account's shard, deduplicated there by effect id, then
//! `Command::CompleteEffect` with that result to the home shard, whose [`apply`] returns the
//! command's final outcome and removes the outbox record. That outcome is [`final_outcome`]
//! of the [`PendingEffect`] and the result, a pure function, so the node can answer as soon as
//! the target committed and complete at home afterwards. A new leader re-drives
//! [`read::pending_effects`]. When home and target are the same shard, both halves happen in one
//! [`apply`] call, with no outbox or inbox record, and it returns [`Applied::Done`].
//!
//! The target keeps an effect's result only until a later delivery from the same home says the
//! effect was completed there ([`EffectDelivery::completed_below`], the home's oldest pending
//! outbox index). Effects of that home below it are then refused as [`EffectResult::Forgotten`]:
//! a completed effect is never driven again, so only a late duplicate can arrive there, and
//! the inbox stays a few pages per pair of shards instead of a key per effect for ever.
//!
//! ## Keys
//!
//! See [`keys`]: `acct/` (with the open history page), `hps/` and `hsn`, `hpg/` (format 10), `rate/`, `pref/`, `pout/`, `req/`, `obx/`, `ibf/`, `ibx/`, `totals`.
//!
//! ## A short tutorial
//!
//! ```
//! use coinledger_ledger::{apply, parse_amount, read, Applied, Command, EntryContext, Layout, MemStore, Outcome, Purchase};
//!
//! let layout = Layout::new(1);
//! let mut store = MemStore::new();
//! let ctx = EntryContext { shard: 0, index: 1, position: 0, timestamp_ms: 1_700_000_000_000 };
//! let cmd = Command::Purchase(Purchase {
//!     request_id: "req-1".into(),
//!     account: "alice".into(),
//!     amount: parse_amount("10.00").unwrap(),
//!     currency: "USD".into(),
//!     payment_ref: "psp-42".into(),
//! });
//! let Applied::Done(Ok(Outcome::Purchase(receipt))) = apply(&mut store, &layout, &ctx, &cmd) else { panic!() };
//! assert_eq!((receipt.base_coins, receipt.bonus_coins), (1000, 50));
//! assert_eq!(receipt.tx_id, "tx-0-1-0");
//!
//! // A retry with the same request id answers the same and changes nothing.
//! let before = store.clone();
//! let later = EntryContext { index: 2, ..ctx };
//! assert_eq!(apply(&mut store, &layout, &later, &cmd), Applied::Done(Ok(Outcome::Purchase(receipt))));
//! assert_eq!(store, before);
//! assert_eq!(read::account(&store, "alice").unwrap().coins, 1050);
//! ```

mod apply;
pub mod audit;
mod book;
pub mod cmd;
mod context;
pub mod error;
pub mod ids;
pub mod keys;
pub mod layout;
pub mod model;
pub mod money;
mod overlay;
pub mod rates;
pub mod read;
pub mod sim;
pub mod store;

pub use apply::apply;
pub use book::Finish;
pub use cmd::effect::{final_outcome, record_pending_gift_outcomes};
pub use audit::{global_audit, shard_audit, GlobalAudit, ShardAudit};
pub use cmd::{CashOut, Command, Gift, PayoutCmd, Purchase, Refund, Route, SetFrozen, SetLimit, SetRates};
pub use context::{EntryContext, DAY_MS};
pub use error::{ErrorCode, LedgerError};
pub use ids::{parse_payout_shard, parse_tx_id};
pub use layout::Layout;
pub use model::{
    PendingEffect,
    Account, Applied, CommandResult, CompleteEffect, Effect, EffectDelivery, EffectKind, EffectResult, EntryKind, GiftReceipt, HistoryEntry, Outcome,
    PaymentRecord, PaymentStatus, Payout, PayoutState, PurchaseReceipt, RefundReceipt, ShardTotals,
};
pub use money::{check_precision, parse_amount, Money};
pub use rates::{CashOutRate, CatalogGift, CoinPrice, Promotion, RateCard};
pub use read::{account, effect_result, history, payout, pending_effects, rate_card, HistoryCursor};
pub use store::{MemStore, Store};
