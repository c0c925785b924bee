//! Validation of ids: request ids, accounts, payment references, gift ids, stream ids, and the
//! ids the ledger makes itself (transactions, payouts).

use crate::error::{err, ErrorCode, LedgerError};

pub const REQUEST_ID_CHARS_MAX: usize = 64;
pub const ACCOUNT_CHARS_MAX: usize = 64;
pub const PAYMENT_REF_CHARS_MAX: usize = 128;
pub const GIFT_ID_CHARS_MAX: usize = 64;
pub const STREAM_ID_CHARS_MAX: usize = 64;
/// Payout and transaction ids are made by the ledger; this bounds what a client may send.
pub const ENTRY_ID_CHARS_MAX: usize = 64;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// `value` (named `what` in the message) has `min..=max` chars of `[A-Za-z0-9._:-]`, else INVALID_ID.
pub fn check_id(what: &str, value: &str, min: usize, max: usize) -> Result<(), LedgerError> {
    let len = value.chars().count();
    if len < min || len > max {
        return err(ErrorCode::InvalidId, format!("{what} must have {min} to {max} characters, it has {len}"));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return err(ErrorCode::InvalidId, format!("{what} may only use A-Z a-z 0-9 . _ : -, it contains {bad:?}"));
    }
    Ok(())
}

pub fn check_request_id(value: &str) -> Result<(), LedgerError> {
    check_id("request id", value, 1, REQUEST_ID_CHARS_MAX)
}

pub fn check_account(what: &str, value: &str) -> Result<(), LedgerError> {
    check_id(what, value, 1, ACCOUNT_CHARS_MAX)
}

pub fn check_payment_ref(value: &str) -> Result<(), LedgerError> {
    check_id("payment reference", value, 1, PAYMENT_REF_CHARS_MAX)
}

pub fn check_gift_id(value: &str) -> Result<(), LedgerError> {
    check_id("gift id", value, 1, GIFT_ID_CHARS_MAX)
}

/// Stream ids are optional: empty is fine.
pub fn check_stream_id(value: &str) -> Result<(), LedgerError> {
    check_id("stream id", value, 0, STREAM_ID_CHARS_MAX)
}

/// `(shard, index, position)` of an id `{prefix}-{shard}-{index}-{position}` made by
/// [`crate::EntryContext`]. Strict: decimal digits only, nothing else.
pub(crate) fn parse_entry_id(prefix: &str, what: &str, id: &str) -> Result<(u32, u64, u32), LedgerError> {
    let malformed = || LedgerError::new(ErrorCode::InvalidId, format!("{what} {id:?} is not of the form {prefix}-<shard>-<index>-<position>"));
    if id.len() > ENTRY_ID_CHARS_MAX {
        return Err(malformed());
    }
    // Every command carries or derives such ids (an effect's outbox key, a payout's shard):
    // parsed in place, with no vector of parts.
    let mut parts = id.split('-');
    if parts.next() != Some(prefix) {
        return Err(malformed());
    }
    let mut number = |max: u64| -> Result<u64, LedgerError> {
        let part = parts.next().filter(|p| !p.is_empty()).ok_or_else(malformed)?;
        part.bytes().try_fold(0u64, |n, b| {
            let digit = b.is_ascii_digit().then(|| u64::from(b - b'0')).ok_or_else(malformed)?;
            n.checked_mul(10).and_then(|n| n.checked_add(digit)).filter(|&n| n <= max).ok_or_else(malformed)
        })
    };
    let shard = number(u64::from(u32::MAX))? as u32;
    let index = number(u64::MAX)?;
    let position = number(u64::from(u32::MAX))? as u32;
    if parts.next().is_some() {
        return Err(malformed());
    }
    Ok((shard, index, position))
}

/// The shard that owns a payout id `po-{shard}-{index}-{position}`; INVALID_ID if malformed.
pub fn parse_payout_shard(id: &str) -> Result<u32, LedgerError> {
    parse_entry_id("po", "payout id", id).map(|(shard, _, _)| shard)
}

/// `(shard, index, position)` of a transaction (and effect) id `tx-{shard}-{index}-{position}`.
pub fn parse_tx_id(id: &str) -> Result<(u32, u64, u32), LedgerError> {
    parse_entry_id("tx", "transaction id", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_bounded_length_and_charset() {
        assert!(check_account("account", "alice.B_9:x-y").is_ok());
        assert_eq!(check_account("account", "").unwrap_err().code, ErrorCode::InvalidId);
        assert_eq!(check_account("account", &"a".repeat(65)).unwrap_err().code, ErrorCode::InvalidId);
        assert!(check_account("account", &"a".repeat(64)).is_ok());
        assert_eq!(check_account("account", "al ice").unwrap_err().code, ErrorCode::InvalidId);
        assert_eq!(check_account("account", "alice/x").unwrap_err().code, ErrorCode::InvalidId);
        assert!(check_payment_ref(&"p".repeat(128)).is_ok());
        assert!(check_payment_ref(&"p".repeat(129)).is_err());
        assert!(check_stream_id("").is_ok());
    }

    #[test]
    fn payout_ids_parse_strictly() {
        assert_eq!(parse_payout_shard("po-3-1042-0"), Ok(3));
        for bad in ["po-3-1042", "tx-3-1042-0", "po-+3-1-0", "po-3-1-0-", "po--1-0", "po-99999999999-1-0", "po-a-1-0"] {
            assert_eq!(parse_payout_shard(bad).unwrap_err().code, ErrorCode::InvalidId, "{bad}");
        }
        assert_eq!(parse_tx_id("tx-0-7-2"), Ok((0, 7, 2)));
        assert_eq!(parse_tx_id("tx-4294967295-18446744073709551615-4294967295"), Ok((u32::MAX, u64::MAX, u32::MAX)));
        for bad in ["tx-4294967296-1-0", "tx-1-18446744073709551616-0", "tx-1-1-4294967296", "tx-1-1-0-0", "tx-1-1-", "tx", "", "tx-1-1-0x"] {
            assert_eq!(parse_tx_id(bad).unwrap_err().code, ErrorCode::InvalidId, "{bad}");
        }
    }
}
