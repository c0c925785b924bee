//! Proto ↔ domain conversion, in one place. Inbound: proto requests become ledger commands
//! (strict parsing; malformed input never reaches the state machine). Outbound: ledger
//! outcomes become proto replies.

use rust_decimal::Decimal;

use crate::ledger::{
    self, Account, EntryKind, ErrorCode, HistoryEntry, LedgerError, Money, Payout, PayoutState,
    RateCard,
};
use crate::proto;

type Result<T> = std::result::Result<T, LedgerError>;

fn invalid(code: ErrorCode, message: impl Into<String>) -> LedgerError {
    LedgerError::new(code, message)
}

/// Parses a proto `Money` that must be present, with a strictly formatted positive amount.
pub fn money_in(field: &str, money: Option<proto::Money>) -> Result<Money> {
    let money = money.ok_or_else(|| invalid(ErrorCode::InvalidAmount, format!("{field} is required")))?;
    let amount = ledger::money::parse_amount(&money.amount)
        .map_err(|e| invalid(e.code, format!("{field}: {}", e.message)))?;
    ledger::money::check_currency(&money.currency)?;
    Ok(Money { amount, currency: money.currency })
}

pub fn money_out(m: &Money) -> proto::Money {
    proto::Money { amount: m.amount.normalize().to_string(), currency: m.currency.clone() }
}

fn decimal_out(d: Decimal) -> String {
    d.normalize().to_string()
}

fn decimal_in(field: &str, s: &str) -> Result<Decimal> {
    ledger::money::parse_amount(s).map_err(|e| invalid(ErrorCode::InvalidRateCard, format!("{field}: {}", e.message)))
}

pub fn purchase(r: proto::PurchaseRequest) -> Result<ledger::Command> {
    let paid = money_in("paid", r.paid)?;
    Ok(ledger::Command::Purchase(ledger::Purchase {
        request_id: r.request_id,
        account: r.account,
        amount: paid.amount,
        currency: paid.currency,
        payment_ref: r.payment_ref,
    }))
}

pub fn gift(r: proto::GiftRequest) -> ledger::Command {
    ledger::Command::Gift(ledger::Gift {
        request_id: r.request_id,
        sender: r.sender,
        recipient: r.recipient,
        gift_id: r.gift_id,
        quantity: r.quantity.max(1),
        message: r.message,
        stream_id: r.stream_id,
    })
}

pub fn cash_out(r: proto::CashOutRequest) -> ledger::Command {
    ledger::Command::CashOut(ledger::CashOut {
        request_id: r.request_id,
        account: r.account,
        diamonds: r.diamonds,
        currency: if r.currency.is_empty() { "USD".into() } else { r.currency },
    })
}

pub fn payout_cmd(r: proto::PayoutRequest) -> ledger::PayoutCmd {
    ledger::PayoutCmd { request_id: r.request_id, payout_id: r.payout_id }
}

pub fn refund(r: proto::RefundRequest) -> ledger::Command {
    ledger::Command::Refund(ledger::Refund { request_id: r.request_id, payment_ref: r.payment_ref })
}

pub fn set_limit(r: proto::SetLimitRequest) -> Result<ledger::Command> {
    let cap = match r.daily_purchase_cap {
        Some(m) if !m.amount.is_empty() => Some(money_in("daily_purchase_cap", Some(m))?),
        _ => None,
    };
    Ok(ledger::Command::SetLimit(ledger::SetLimit {
        request_id: r.request_id,
        account: r.account,
        minor: r.minor,
        daily_purchase_cap: cap,
    }))
}

pub fn set_frozen(r: proto::SetFrozenRequest) -> ledger::Command {
    ledger::Command::SetFrozen(ledger::SetFrozen { request_id: r.request_id, account: r.account, frozen: r.frozen })
}

pub fn set_rates(r: proto::SetRatesRequest) -> Result<ledger::Command> {
    let card = r.card.ok_or_else(|| invalid(ErrorCode::InvalidRateCard, "card is required"))?;
    Ok(ledger::Command::SetRates(ledger::SetRates { request_id: r.request_id, card: rate_card_in(card)? }))
}

pub fn rate_card_in(c: proto::RateCard) -> Result<RateCard> {
    Ok(RateCard {
        version: c.version,
        effective_ms: 0,
        coin_prices: c
            .coin_prices
            .into_iter()
            .map(|p| {
                Ok(ledger::CoinPrice {
                    price_per_coin: decimal_in("price_per_coin", &p.price_per_coin)?,
                    max_purchase: decimal_in("max_purchase", &p.max_purchase)?,
                    currency: p.currency,
                    minor_units: p.minor_units,
                })
            })
            .collect::<Result<_>>()?,
        promotions: c
            .promotions
            .into_iter()
            .map(|p| ledger::Promotion { id: p.id, min_base_coins: p.min_base_coins, bonus_bps: p.bonus_bps })
            .collect(),
        creator_share_bps: c.creator_share_bps,
        cashout_rates: c
            .cashout_rates
            .into_iter()
            .map(|r| {
                Ok(ledger::CashOutRate {
                    fiat_per_diamond: decimal_in("fiat_per_diamond", &r.fiat_per_diamond)?,
                    currency: r.currency,
                })
            })
            .collect::<Result<_>>()?,
        cashout_min_diamonds: c.cashout_min_diamonds,
        cashout_fee_bps: c.cashout_fee_bps,
        max_gift_quantity: c.max_gift_quantity,
        max_message_chars: c.max_message_chars,
        gifts: c
            .gifts
            .into_iter()
            .map(|g| ledger::CatalogGift { id: g.id, name: g.name, price_coins: g.price_coins })
            .collect(),
    })
}

pub fn rate_card_out(c: &RateCard) -> proto::RateCard {
    proto::RateCard {
        version: c.version,
        effective_ms: c.effective_ms,
        coin_prices: c
            .coin_prices
            .iter()
            .map(|p| proto::CoinPrice {
                currency: p.currency.clone(),
                price_per_coin: decimal_out(p.price_per_coin),
                minor_units: p.minor_units,
                max_purchase: decimal_out(p.max_purchase),
            })
            .collect(),
        promotions: c
            .promotions
            .iter()
            .map(|p| proto::Promotion { id: p.id.clone(), min_base_coins: p.min_base_coins, bonus_bps: p.bonus_bps })
            .collect(),
        creator_share_bps: c.creator_share_bps,
        cashout_rates: c
            .cashout_rates
            .iter()
            .map(|r| proto::CashOutRate { currency: r.currency.clone(), fiat_per_diamond: decimal_out(r.fiat_per_diamond) })
            .collect(),
        cashout_min_diamonds: c.cashout_min_diamonds,
        cashout_fee_bps: c.cashout_fee_bps,
        max_gift_quantity: c.max_gift_quantity,
        max_message_chars: c.max_message_chars,
        gifts: gifts_out(c),
    }
}

pub fn gifts_out(c: &RateCard) -> Vec<proto::CatalogGift> {
    c.gifts
        .iter()
        .map(|g| proto::CatalogGift { id: g.id.clone(), name: g.name.clone(), price_coins: g.price_coins })
        .collect()
}

pub fn balance_out(a: &Account) -> proto::BalanceReply {
    proto::BalanceReply {
        account: a.id.clone(),
        coins: a.coins,
        diamonds: a.diamonds,
        diamonds_held: a.diamonds_held,
        diamonds_available: a.diamonds_available(),
        frozen: a.frozen,
        limit: Some(proto::SpendingLimit {
            minor: a.minor,
            daily_purchase_cap: a.daily_purchase_cap.as_ref().map(money_out),
            purchased_today: a.daily_purchase_cap.as_ref().map(|cap| proto::Money {
                amount: decimal_out(a.purchased_today),
                currency: cap.currency.clone(),
            }),
            day: a.purchased_day,
        }),
    }
}

pub fn purchase_out(r: ledger::PurchaseReceipt) -> proto::PurchaseReply {
    proto::PurchaseReply {
        coin_price: Some(money_out(&r.coin_price)),
        tx_id: r.tx_id,
        coins_credited: r.coins_credited,
        base_coins: r.base_coins,
        bonus_coins: r.bonus_coins,
        promotion_id: r.promotion_id,
        rate_version: r.rate_version,
        coins_balance: r.coins_balance,
        timestamp_ms: r.timestamp_ms,
    }
}

pub fn gift_out(r: ledger::GiftReceipt) -> proto::GiftReply {
    proto::GiftReply {
        tx_id: r.tx_id,
        coins_debited: r.coins_debited,
        diamonds_credited: r.diamonds_credited,
        platform_coins: r.platform_coins,
        price_coins: r.price_coins,
        quantity: r.quantity,
        creator_share_bps: r.creator_share_bps,
        rate_version: r.rate_version,
        sender_coins_balance: r.sender_coins_balance,
        timestamp_ms: r.timestamp_ms,
    }
}

pub fn refund_out(r: ledger::RefundReceipt) -> proto::RefundReply {
    proto::RefundReply {
        refunded: Some(money_out(&r.refunded)),
        tx_id: r.tx_id,
        account: r.account,
        coins_purchased: r.coins_purchased,
        coins_recovered: r.coins_recovered,
        coins_unrecovered: r.coins_unrecovered,
        account_frozen: r.account_frozen,
        timestamp_ms: r.timestamp_ms,
    }
}

/// One command of a SubmitBatch, as the single-command RPC would have built it.
pub fn batch_command(c: proto::BatchCommand) -> Result<ledger::Command> {
    use proto::batch_command::Command as C;
    match c.command {
        Some(C::Purchase(r)) => purchase(r),
        Some(C::Gift(r)) => Ok(gift(r)),
        Some(C::CashOut(r)) => Ok(cash_out(r)),
        Some(C::PostPayout(r)) => Ok(ledger::Command::PostPayout(payout_cmd(r))),
        Some(C::VoidPayout(r)) => Ok(ledger::Command::VoidPayout(payout_cmd(r))),
        Some(C::Refund(r)) => Ok(refund(r)),
        None => Err(invalid(ErrorCode::InvalidArgument, "batch command has no command set")),
    }
}

/// The reply of one batch command.
pub fn batch_outcome(o: ledger::Outcome) -> std::result::Result<proto::batch_result::Result, crate::error::NodeError> {
    use proto::batch_result::Result as R;
    Ok(match o {
        ledger::Outcome::Purchase(r) => R::Purchase(purchase_out(r)),
        ledger::Outcome::Gift(r) => R::Gift(gift_out(r)),
        ledger::Outcome::CashOut(p) => R::CashOut(cash_out_out(&p)),
        ledger::Outcome::Payout(p) => R::Payout(payout_out(&p)),
        ledger::Outcome::Refund(r) => R::Refund(refund_out(r)),
        other => return Err(crate::error::NodeError::Internal(format!("batch command produced {other:?}"))),
    })
}

pub fn payout_out(p: &Payout) -> proto::PayoutReply {
    proto::PayoutReply {
        payout_id: p.payout_id.clone(),
        account: p.account.clone(),
        state: match p.state {
            PayoutState::Pending => proto::PayoutState::Pending,
            PayoutState::Posted => proto::PayoutState::Posted,
            PayoutState::Voided => proto::PayoutState::Voided,
        } as i32,
        diamonds: p.diamonds,
        fiat_amount: decimal_out(p.net.amount),
        currency: p.net.currency.clone(),
        timestamp_ms: p.updated_ms,
    }
}

pub fn cash_out_out(p: &Payout) -> proto::CashOutReply {
    proto::CashOutReply {
        payout_id: p.payout_id.clone(),
        diamonds_held: p.diamonds,
        fiat_amount: decimal_out(p.net.amount),
        currency: p.net.currency.clone(),
        gross_amount: decimal_out(p.gross.amount),
        fee_amount: decimal_out(p.fee.amount),
        fiat_per_diamond: decimal_out(p.fiat_per_diamond),
        fee_bps: p.fee_bps,
        rate_version: p.rate_version,
        timestamp_ms: p.created_ms,
    }
}

fn entry_kind_out(k: EntryKind) -> proto::EntryKind {
    match k {
        EntryKind::Purchase => proto::EntryKind::Purchase,
        EntryKind::GiftSent => proto::EntryKind::GiftSent,
        EntryKind::GiftReceived => proto::EntryKind::GiftReceived,
        EntryKind::CashoutHeld => proto::EntryKind::CashoutHeld,
        EntryKind::PayoutPosted => proto::EntryKind::PayoutPosted,
        EntryKind::PayoutVoided => proto::EntryKind::PayoutVoided,
        EntryKind::Refund => proto::EntryKind::Refund,
        EntryKind::LimitChanged => proto::EntryKind::LimitChanged,
        EntryKind::FrozenChanged => proto::EntryKind::FrozenChanged,
    }
}

pub fn history_entry_out(e: &HistoryEntry) -> proto::HistoryEntry {
    proto::HistoryEntry {
        seq: e.seq,
        tx_id: e.tx_id.clone(),
        kind: entry_kind_out(e.kind) as i32,
        timestamp_ms: e.timestamp_ms,
        coins_delta: e.coins_delta,
        diamonds_delta: e.diamonds_delta,
        diamonds_held_delta: e.diamonds_held_delta,
        coins_after: e.coins_after,
        diamonds_after: e.diamonds_after,
        diamonds_held_after: e.diamonds_held_after,
        counterparty: e.counterparty.clone(),
        fiat: e.fiat.as_ref().map(money_out),
        rate_version: e.rate_version,
        gift_id: e.gift_id.clone(),
        quantity: e.quantity,
        message: e.message.clone(),
        stream_id: e.stream_id.clone(),
        base_coins: e.base_coins,
        bonus_coins: e.bonus_coins,
        platform_coins: e.platform_coins,
        fee: e.fee.as_ref().map(money_out),
        reference: e.reference.clone(),
    }
}

/// History cursors are what History returned as `next_cursor` (`ledger::HistoryCursor`: the
/// decimal seq of the oldest entry returned, and where the next page is); anything else is
/// refused.
pub fn cursor_in(cursor: &str) -> Result<Option<ledger::HistoryCursor>> {
    if cursor.is_empty() {
        return Ok(None);
    }
    match ledger::HistoryCursor::parse(cursor) {
        Some(cursor) => Ok(Some(cursor)),
        None => Err(invalid(ErrorCode::InvalidCursor, format!("cursor {cursor:?} was not produced by History"))),
    }
}

/// History page size: 0 means the default of 50; above 500 is refused.
pub fn history_limit_in(limit: u32) -> Result<u32> {
    match limit {
        0 => Ok(50),
        1..=500 => Ok(limit),
        _ => Err(invalid(ErrorCode::InvalidCursor, format!("limit {limit} is above the maximum of 500"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_parsed_strictly() {
        let m = |a: &str, c: &str| money_in("paid", Some(proto::Money { amount: a.into(), currency: c.into() }));
        assert_eq!(m("9.99", "USD").unwrap().amount.to_string(), "9.99");
        assert_eq!(m("", "USD").unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(m("-1", "USD").unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(m("1e3", "USD").unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(m("123456789012345678901234567890", "USD").unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(m("1", "usd").unwrap_err().code, ErrorCode::UnknownCurrency);
        assert_eq!(money_in("paid", None).unwrap_err().code, ErrorCode::InvalidAmount);
    }

    #[test]
    fn cursors_and_limits_are_validated() {
        assert_eq!(cursor_in("").unwrap(), None);
        assert_eq!(cursor_in("42").unwrap(), Some(ledger::HistoryCursor { seq: 42, page: None }));
        assert_eq!(cursor_in("42.7").unwrap(), Some(ledger::HistoryCursor { seq: 42, page: Some(7) }));
        for bad in ["0", "-1", "abc", "+4", "99999999999999999999999", "4.", "4.x", "4.5.6"] {
            assert_eq!(cursor_in(bad).unwrap_err().code, ErrorCode::InvalidCursor, "{bad}");
        }
        assert_eq!(history_limit_in(0).unwrap(), 50);
        assert_eq!(history_limit_in(501).unwrap_err().code, ErrorCode::InvalidCursor);
    }

    #[test]
    fn the_default_card_round_trips_through_proto() {
        let card = RateCard::default_card();
        let back = rate_card_in(rate_card_out(&card)).unwrap();
        assert_eq!(back.coin_prices, card.coin_prices);
        assert_eq!(back.gifts, card.gifts);
        assert_eq!(back.cashout_rates, card.cashout_rates);
    }
}
