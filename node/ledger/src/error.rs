//! Errors of the ledger: one stable code (the proto `ErrorCode` name) and a sentence for a person.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes; mirrors `coinledger.v1.ErrorCode` (same names, same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidArgument,
    InvalidId,
    InvalidAmount,
    AmountTooLarge,
    UnknownCurrency,
    UnknownGift,
    InvalidQuantity,
    MessageTooLong,
    SelfGift,
    InsufficientCoins,
    InsufficientDiamonds,
    BelowMinimum,
    AccountFrozen,
    LimitExceeded,
    DuplicatePaymentRef,
    RequestIdReused,
    UnknownPaymentRef,
    UnknownPayout,
    PayoutAlreadyPosted,
    PayoutAlreadyVoided,
    AlreadyRefunded,
    PurchaseNotCredited,
    AccountNotFound,
    InvalidRateCard,
    NotLeader,
    Unavailable,
    Timeout,
    Internal,
    InvalidCursor,
}

impl ErrorCode {
    /// Every code, in proto order (proto number = index + 1).
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidId,
        ErrorCode::InvalidAmount,
        ErrorCode::AmountTooLarge,
        ErrorCode::UnknownCurrency,
        ErrorCode::UnknownGift,
        ErrorCode::InvalidQuantity,
        ErrorCode::MessageTooLong,
        ErrorCode::SelfGift,
        ErrorCode::InsufficientCoins,
        ErrorCode::InsufficientDiamonds,
        ErrorCode::BelowMinimum,
        ErrorCode::AccountFrozen,
        ErrorCode::LimitExceeded,
        ErrorCode::DuplicatePaymentRef,
        ErrorCode::RequestIdReused,
        ErrorCode::UnknownPaymentRef,
        ErrorCode::UnknownPayout,
        ErrorCode::PayoutAlreadyPosted,
        ErrorCode::PayoutAlreadyVoided,
        ErrorCode::AlreadyRefunded,
        ErrorCode::PurchaseNotCredited,
        ErrorCode::AccountNotFound,
        ErrorCode::InvalidRateCard,
        ErrorCode::NotLeader,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::InvalidCursor,
    ];

    /// The proto enum value name, e.g. `"INSUFFICIENT_COINS"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::InvalidId => "INVALID_ID",
            ErrorCode::InvalidAmount => "INVALID_AMOUNT",
            ErrorCode::AmountTooLarge => "AMOUNT_TOO_LARGE",
            ErrorCode::UnknownCurrency => "UNKNOWN_CURRENCY",
            ErrorCode::UnknownGift => "UNKNOWN_GIFT",
            ErrorCode::InvalidQuantity => "INVALID_QUANTITY",
            ErrorCode::MessageTooLong => "MESSAGE_TOO_LONG",
            ErrorCode::SelfGift => "SELF_GIFT",
            ErrorCode::InsufficientCoins => "INSUFFICIENT_COINS",
            ErrorCode::InsufficientDiamonds => "INSUFFICIENT_DIAMONDS",
            ErrorCode::BelowMinimum => "BELOW_MINIMUM",
            ErrorCode::AccountFrozen => "ACCOUNT_FROZEN",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::DuplicatePaymentRef => "DUPLICATE_PAYMENT_REF",
            ErrorCode::RequestIdReused => "REQUEST_ID_REUSED",
            ErrorCode::UnknownPaymentRef => "UNKNOWN_PAYMENT_REF",
            ErrorCode::UnknownPayout => "UNKNOWN_PAYOUT",
            ErrorCode::PayoutAlreadyPosted => "PAYOUT_ALREADY_POSTED",
            ErrorCode::PayoutAlreadyVoided => "PAYOUT_ALREADY_VOIDED",
            ErrorCode::AlreadyRefunded => "ALREADY_REFUNDED",
            ErrorCode::PurchaseNotCredited => "PURCHASE_NOT_CREDITED",
            ErrorCode::AccountNotFound => "ACCOUNT_NOT_FOUND",
            ErrorCode::InvalidRateCard => "INVALID_RATE_CARD",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::InvalidCursor => "INVALID_CURSOR",
        }
    }

    /// The proto enum number (1 for INVALID_ARGUMENT ... 29 for INVALID_CURSOR).
    pub fn as_i32(&self) -> i32 {
        let index = Self::ALL.iter().position(|code| code == self).expect("ALL lists every code");
        index as i32 + 1
    }

    /// Whether a command that failed with this code is remembered under its request id.
    ///
    /// Business outcomes are deterministic and are the FIRST outcome a retry must see. Transient
    /// codes (retry later) are not: recording "UNAVAILABLE" would make the retry fail for ever.
    pub fn is_recorded(&self) -> bool {
        !matches!(
            self,
            ErrorCode::NotLeader | ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::Internal
        )
    }
}

/// A refused command: a stable code and a sentence with the numbers that explain it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct LedgerError {
    pub code: ErrorCode,
    pub message: String,
}

impl LedgerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        LedgerError { code, message: message.into() }
    }
}

/// Shorthand for building an error: `err(ErrorCode::InvalidId, format!(..))`.
pub(crate) fn err<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, LedgerError> {
    Err(LedgerError::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_match_the_proto() {
        assert_eq!(ErrorCode::InvalidArgument.as_i32(), 1);
        assert_eq!(ErrorCode::InsufficientCoins.as_str(), "INSUFFICIENT_COINS");
        assert_eq!(ErrorCode::InsufficientCoins.as_i32(), 10);
        assert_eq!(ErrorCode::RequestIdReused.as_i32(), 16);
        assert_eq!(ErrorCode::InvalidCursor.as_str(), "INVALID_CURSOR");
        assert_eq!(ErrorCode::InvalidCursor.as_i32(), 29);
    }

    #[test]
    fn transient_codes_are_not_recorded() {
        assert!(!ErrorCode::Unavailable.is_recorded());
        assert!(ErrorCode::InsufficientCoins.is_recorded());
    }
}
