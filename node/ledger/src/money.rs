//! Fiat amounts: strict parsing, currency codes, minor units, rounding.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::{err, ErrorCode, LedgerError};

/// Decimals carry at most 28 significant digits; more would be rounded, so they are refused.
pub const AMOUNT_DIGITS_MAX: usize = 28;
/// Longest amount string accepted (leading zeros included): a bound on the work parsing does.
pub const AMOUNT_CHARS_MAX: usize = 64;

/// A fiat amount in a currency (ISO 4217 code).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: String,
}

impl Money {
    pub fn new(amount: Decimal, currency: &str) -> Self {
        Money { amount, currency: currency.to_string() }
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Parses a fiat amount strictly: `^[0-9]+(\.[0-9]+)?$`, at most 28 significant digits, > 0.
/// Never rounds: anything it cannot represent exactly is INVALID_AMOUNT.
pub fn parse_amount(s: &str) -> Result<Decimal, LedgerError> {
    if s.len() > AMOUNT_CHARS_MAX {
        return err(ErrorCode::InvalidAmount, format!("amount has {} characters, at most {AMOUNT_CHARS_MAX} are accepted", s.len()));
    }
    let (whole, fraction) = match s.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (s, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return err(ErrorCode::InvalidAmount, format!("amount {s:?} is not a decimal like \"9.99\" (digits, one optional point, no sign or exponent)"));
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.unwrap_or("").trim_end_matches('0');
    let significant = if whole.is_empty() { fraction.trim_start_matches('0').len() } else { whole.len() + fraction.len() };
    if significant > AMOUNT_DIGITS_MAX || fraction.len() > AMOUNT_DIGITS_MAX {
        return err(ErrorCode::InvalidAmount, format!("amount {s:?} has more than {AMOUNT_DIGITS_MAX} significant digits"));
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    let canonical = if fraction.is_empty() { whole.to_string() } else { format!("{whole}.{fraction}") };
    let amount = Decimal::from_str_exact(&canonical)
        .map_err(|_| LedgerError::new(ErrorCode::InvalidAmount, format!("amount {s:?} cannot be represented exactly")))?;
    check_positive(amount)?;
    Ok(amount.normalize())
}

/// An amount given as a Decimal (already parsed): > 0 and at most 28 significant digits.
pub fn check_positive(amount: Decimal) -> Result<(), LedgerError> {
    if amount <= Decimal::ZERO {
        return err(ErrorCode::InvalidAmount, format!("amount must be greater than zero, it is {amount}"));
    }
    let mantissa = amount.normalize().mantissa().unsigned_abs();
    if mantissa >= 10u128.pow(AMOUNT_DIGITS_MAX as u32) {
        return err(ErrorCode::InvalidAmount, format!("amount {amount} has more than {AMOUNT_DIGITS_MAX} significant digits"));
    }
    Ok(())
}

/// INVALID_AMOUNT if `amount` has more fractional digits than the currency's minor units
/// (trailing zeros do not count: "9.990" is fine for USD).
pub fn check_precision(amount: Decimal, minor_units: u32) -> Result<(), LedgerError> {
    let scale = amount.normalize().scale();
    if scale > minor_units {
        return err(ErrorCode::InvalidAmount, format!("amount {amount} has {scale} decimal places, the currency allows {minor_units}"));
    }
    Ok(())
}

/// A currency code has the ISO 4217 form: 3 ASCII uppercase letters, else UNKNOWN_CURRENCY.
pub fn check_currency(code: &str) -> Result<(), LedgerError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        err(ErrorCode::UnknownCurrency, format!("currency {code:?} is not an ISO 4217 code (3 uppercase letters, e.g. USD)"))
    }
}

/// Rounds toward zero to `minor_units` decimal places.
pub fn round_down(amount: Decimal, minor_units: u32) -> Decimal {
    amount.round_dp_with_strategy(minor_units, RoundingStrategy::ToZero)
}

/// Rounds away from zero to `minor_units` decimal places.
pub fn round_up(amount: Decimal, minor_units: u32) -> Decimal {
    amount.round_dp_with_strategy(minor_units, RoundingStrategy::AwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse_amount("9.99"), Ok(dec("9.99")));
        assert_eq!(parse_amount("9.990"), Ok(dec("9.99")));
        assert_eq!(parse_amount("0010"), Ok(dec("10")));
        assert_eq!(parse_amount(&"9".repeat(28)), Ok(dec(&"9".repeat(28))));
        assert_eq!(parse_amount("0.0000000000000000000000000001"), Ok(dec("0.0000000000000000000000000001")));
    }

    #[test]
    fn refuses_everything_else() {
        let too_long = "1".repeat(30);
        let too_many_digits = format!("1.{}", "1".repeat(28));
        for bad in ["", "0", "0.00", "-1", "+1", "1e3", "1.", ".5", "1,5", " 1", "1.2.3", "NaN", &too_long, &too_many_digits] {
            assert_eq!(parse_amount(bad).unwrap_err().code, ErrorCode::InvalidAmount, "{bad:?}");
        }
    }

    #[test]
    fn precision_and_rounding() {
        assert!(check_precision(dec("9.990"), 2).is_ok());
        assert_eq!(check_precision(dec("9.999"), 2).unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(check_precision(dec("1.5"), 0).unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(round_down(dec("0.129"), 2), dec("0.12"));
        assert_eq!(round_up(dec("0.125"), 2), dec("0.13"));
        assert_eq!(round_up(dec("0.12"), 2), dec("0.12"));
    }

    #[test]
    fn currency_codes() {
        assert!(check_currency("USD").is_ok());
        for bad in ["usd", "US", "USDD", "U1D", ""] {
            assert_eq!(check_currency(bad).unwrap_err().code, ErrorCode::UnknownCurrency);
        }
    }
}
