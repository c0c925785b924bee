//! The ledger's records and results: accounts, payouts, history entries, receipts, cross-shard
//! effects and outcomes. Field names mirror the proto messages.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::money::Money;
use crate::rates::RateCard;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub coins: u64,
    /// All diamonds, held ones included.
    pub diamonds: u64,
    /// Diamonds held for pending payouts; always <= `diamonds`.
    pub diamonds_held: u64,
    pub frozen: bool,
    pub minor: bool,
    /// An account with a cap can only buy in the cap's currency, at most this much a UTC day.
    pub daily_purchase_cap: Option<Money>,
    /// Days since the epoch (UTC) that `purchased_today` counts.
    pub purchased_day: u64,
    /// Bought on `purchased_day`, in the cap's currency (only counted while a cap is set).
    pub purchased_today: Decimal,
    /// Seq of the newest history entry (0: none yet).
    pub history_seq: u64,
}

impl Account {
    pub fn open(id: &str) -> Self {
        Account {
            id: id.to_string(),
            coins: 0,
            diamonds: 0,
            diamonds_held: 0,
            frozen: false,
            minor: false,
            daily_purchase_cap: None,
            purchased_day: 0,
            purchased_today: Decimal::ZERO,
            history_seq: 0,
        }
    }

    /// Diamonds that can be cashed out.
    pub fn diamonds_available(&self) -> u64 {
        self.diamonds - self.diamonds_held
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutState {
    Pending,
    Posted,
    Voided,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub payout_id: String,
    pub account: String,
    pub state: PayoutState,
    pub diamonds: u64,
    /// diamonds * fiat_per_diamond, rounded down to minor units.
    pub gross: Money,
    /// gross * fee_bps / 10000, rounded up to minor units.
    pub fee: Money,
    /// gross - fee: what the creator receives.
    pub net: Money,
    pub fiat_per_diamond: Decimal,
    pub fee_bps: u32,
    pub rate_version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Purchase,
    GiftSent,
    GiftReceived,
    CashoutHeld,
    PayoutPosted,
    PayoutVoided,
    Refund,
    LimitChanged,
    FrozenChanged,
}

/// One line of a statement; mirrors the proto `HistoryEntry`. Deltas and balances "after" are
/// filled in by the ledger from the account before and after the change.
///
/// `S` is the type of its strings: `String` for an entry read back, `&str` for one the ledger
/// only writes (its strings borrowed from the command, [`HistoryEntry::borrowed`]); both
/// encode to the same bytes. A gift writes two entries on every replica, and copying their
/// ids, names and message into owned strings only to encode them was 8 allocations a gift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry<S = String> {
    pub seq: u64,
    pub tx_id: S,
    pub kind: EntryKind,
    pub timestamp_ms: u64,
    pub coins_delta: i64,
    pub diamonds_delta: i64,
    pub diamonds_held_delta: i64,
    pub coins_after: u64,
    pub diamonds_after: u64,
    pub diamonds_held_after: u64,
    pub counterparty: S,
    pub fiat: Option<Money>,
    pub rate_version: u64,
    pub gift_id: S,
    pub quantity: u32,
    pub message: S,
    pub stream_id: S,
    pub base_coins: u64,
    pub bonus_coins: u64,
    pub platform_coins: u64,
    pub fee: Option<Money>,
    pub reference: S,
}

impl<S: Default> HistoryEntry<S> {
    fn blank(kind: EntryKind, tx_id: S, timestamp_ms: u64) -> Self {
        HistoryEntry {
            seq: 0,
            tx_id,
            kind,
            timestamp_ms,
            coins_delta: 0,
            diamonds_delta: 0,
            diamonds_held_delta: 0,
            coins_after: 0,
            diamonds_after: 0,
            diamonds_held_after: 0,
            counterparty: S::default(),
            fiat: None,
            rate_version: 0,
            gift_id: S::default(),
            quantity: 0,
            message: S::default(),
            stream_id: S::default(),
            base_coins: 0,
            bonus_coins: 0,
            platform_coins: 0,
            fee: None,
            reference: S::default(),
        }
    }
}

impl HistoryEntry {
    /// An entry with only its kind, transaction and time set; the caller fills in the details.
    pub fn new(kind: EntryKind, tx_id: &str, timestamp_ms: u64) -> Self {
        Self::blank(kind, tx_id.to_string(), timestamp_ms)
    }
}

impl<'a> HistoryEntry<&'a str> {
    /// As [`HistoryEntry::new`], for an entry that is only written: its strings are borrowed.
    pub fn borrowed(kind: EntryKind, tx_id: &'a str, timestamp_ms: u64) -> Self {
        Self::blank(kind, tx_id, timestamp_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseReceipt {
    pub tx_id: String,
    pub account: String,
    pub coins_credited: u64,
    pub base_coins: u64,
    pub bonus_coins: u64,
    pub promotion_id: String,
    pub coin_price: Money,
    pub rate_version: u64,
    pub coins_balance: u64,
    pub timestamp_ms: u64,
    pub payment_ref: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftReceipt {
    pub tx_id: String,
    pub sender: String,
    pub recipient: String,
    pub coins_debited: u64,
    pub diamonds_credited: u64,
    pub platform_coins: u64,
    pub price_coins: u64,
    pub quantity: u32,
    pub creator_share_bps: u32,
    pub rate_version: u64,
    pub sender_coins_balance: u64,
    pub timestamp_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundReceipt {
    pub tx_id: String,
    pub account: String,
    pub payment_ref: String,
    pub coins_purchased: u64,
    pub coins_recovered: u64,
    pub coins_unrecovered: u64,
    pub account_frozen: bool,
    pub refunded: Money,
    pub timestamp_ms: u64,
}

/// Where a purchase stands, as its home shard (the payment reference's) knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// The credit is on its way to the account's shard.
    Pending,
    Credited,
    /// The account's shard refused the credit (frozen, limit): the reference stays claimed.
    Rejected,
}

/// A claimed payment reference, kept for ever in the reference's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_ref: String,
    pub account: String,
    pub tx_id: String,
    /// base + bonus coins the purchase credits.
    pub coins: u64,
    pub paid: Money,
    pub status: PaymentStatus,
    pub refunded: bool,
}

/// Value booked by one shard since it started; summed over shards by the global audit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTotals {
    /// Coins credited by purchases (at the account's shard).
    pub coins_issued: u64,
    /// Coins taken back by refunds (at the account's shard).
    pub coins_recovered: u64,
    /// Coins debited by gifts (at the sender's shard).
    pub coins_spent: u64,
    /// Diamonds owed to creators by gifts debited here (at the sender's shard).
    pub diamonds_promised: u64,
    /// The platform's share of gifts debited here, in coins.
    pub platform_coins: u64,
    /// Diamonds credited to creators here (at the creator's shard).
    pub diamonds_credited: u64,
    /// Diamonds that left the ledger by posted payouts.
    pub diamonds_paid_out: u64,
}

/// Work one shard asks another to do: change an account that lives there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// The originating transaction id; the target deduplicates by it.
    pub id: String,
    pub home_shard: u32,
    pub target_account: String,
    pub kind: EffectKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectKind {
    /// Credit a purchase. The target checks frozen and the daily cap; may be Rejected.
    CreditPurchase {
        payment_ref: String,
        base_coins: u64,
        bonus_coins: u64,
        promotion_id: String,
        paid: Money,
        coin_price: Money,
        rate_version: u64,
        timestamp_ms: u64,
    },
    /// Credit a gift's diamonds to its creator. Never rejected (a frozen account can receive).
    CreditGift {
        sender: String,
        diamonds: u64,
        coins_debited: u64,
        platform_coins: u64,
        gift_id: String,
        quantity: u32,
        message: String,
        stream_id: String,
        rate_version: u64,
        timestamp_ms: u64,
    },
    /// Take back a refunded purchase's coins, as far as the balance allows.
    Clawback { payment_ref: String, coins: u64, refunded: Money, timestamp_ms: u64 },
}

impl EffectKind {
    /// Coins (purchase credit) and diamonds (gift credit) this effect carries, for the audit.
    pub fn in_flight(&self) -> (u64, u64) {
        match self {
            EffectKind::CreditPurchase { base_coins, bonus_coins, .. } => (base_coins.saturating_add(*bonus_coins), 0),
            EffectKind::CreditGift { diamonds, .. } => (0, *diamonds),
            EffectKind::Clawback { .. } => (0, 0),
        }
    }
}

/// An effect on its way to the target shard, with what the target may forget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectDelivery {
    pub effect: Effect,
    /// Every effect of `effect.home_shard` whose tx index is below this was completed at home
    /// (taken from the home's committed outbox; 0 claims nothing). The target keeps an
    /// effect's result only until it learns this, and from then on refuses a late duplicate
    /// delivery as [`EffectResult::Forgotten`] instead of applying it twice.
    pub completed_below: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectResult {
    Credited { coins_balance: u64 },
    GiftCredited { diamonds_balance: u64 },
    Rejected(LedgerError),
    ClawedBack { recovered: u64, unrecovered: u64, frozen: bool },
    /// A late duplicate delivery of an effect that was applied and completed long ago: the
    /// target no longer keeps its result, and changed nothing. No command can be waiting for it.
    Forgotten,
}

/// The target's answer, delivered back to the home shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteEffect {
    pub effect_id: String,
    /// The shard that issued the effect (its outbox); CompleteEffect is routed there.
    pub home_shard: u32,
    pub result: EffectResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Purchase(PurchaseReceipt),
    Gift(GiftReceipt),
    CashOut(Payout),
    Payout(Payout),
    Refund(RefundReceipt),
    Rates(RateCard),
    Account(Account),
    EffectApplied(EffectResult),
    EffectCompleted,
}

pub type CommandResult = Result<Outcome, LedgerError>;

/// What `apply` did with a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Finished: the command's outcome (a business error is an outcome too).
    Done(CommandResult),
    /// The home half is committed; deliver this effect to its target shard, then its result
    /// back home as CompleteEffect. The command's outcome is `final_outcome(finish, effect,
    /// result)`, which that CompleteEffect also records.
    Pending(PendingEffect),
}

/// An effect waiting for its target shard, with what the home shard needs to finish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEffect {
    pub effect: Effect,
    pub finish: crate::book::Finish,
    /// What the delivery may tell the target ([`EffectDelivery::completed_below`]). The ledger
    /// leaves it 0; the node raises it from its index of the home's outbox.
    pub completed_below: u64,
}

impl PendingEffect {
    pub fn delivery(&self) -> EffectDelivery {
        EffectDelivery { effect: self.effect.clone(), completed_below: self.completed_below }
    }
}
