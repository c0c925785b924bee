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

fn allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// `value` (named `what` in the message) has `min..=max` chars of `[A-Za-z0-9._:-]`, else INVALID_ID.
pub fn check_id(what: &str, value: &str, min: usize, max: usize) -> Result<(), LedgerError> {
    // Every replica checks every id of every command it applies (a gift has five): a valid
    // id is all ASCII, so one pass over its bytes settles it, and counting its chars (UTF-8
    // decoding, twice) is left to the errors below, which say what is wrong.
    if (min..=max).contains(&value.len()) && value.bytes().all(allowed_byte) {
        return Ok(());
    }
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
    // Every command carries or derives such ids (an effect's outbox key, a payout's shard),
    // about three per command and replica: parsed in one pass over the bytes.
    let mut rest = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).ok_or_else(malformed)?.as_bytes();
    // The next number, at most `max`, with its separator ('-', or the end after the last).
    let mut number = |max: u64, last: bool| -> Result<u64, LedgerError> {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (part, after) = rest.split_at(digits);
        rest = match (after.split_first(), last) {
            (Some((b'-', tail)), false) => tail,
            (None, true) => after,
            _ => return Err(malformed()),
        };
        if part.is_empty() {
            return Err(malformed());
        }
        part.iter().try_fold(0u64, |n, &b| n.checked_mul(10).and_then(|n| n.checked_add(u64::from(b - b'0'))).filter(|&n| n <= max).ok_or_else(malformed))
    };
    let shard = number(u64::from(u32::MAX), false)? as u32;
    let index = number(u64::MAX, false)?;
    let position = number(u64::from(u32::MAX), true)? as u32;
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
    use proptest::prelude::*;

    use super::*;

    /// The parse as written before the one-pass parser, kept as its specification.
    fn by_parts(prefix: &str, id: &str) -> Option<(u32, u64, u32)> {
        let parts: Vec<&str> = id.split('-').collect();
        let number = |p: &str| (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u64>().ok()).flatten();
        match parts.as_slice() {
            [p, s, i, q] if *p == prefix && id.len() <= ENTRY_ID_CHARS_MAX => {
                Some((u32::try_from(number(s)?).ok()?, number(i)?, u32::try_from(number(q)?).ok()?))
            }
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn entry_ids_parse_as_their_parts_say(shard: u32, index: u64, position: u32) {
            prop_assert_eq!(parse_tx_id(&format!("tx-{shard}-{index}-{position}")), Ok((shard, index, position)));
        }

        #[test]
        fn an_id_is_valid_exactly_when_its_chars_are(value in "[a-c.:/é ]{0,6}", min in 0usize..3, max in 2usize..6) {
            let chars = value.chars().count();
            let valid = (min..=max).contains(&chars) && value.chars().all(allowed);
            prop_assert_eq!(check_id("id", &value, min, max).is_ok(), valid);
        }

        #[test]
        fn any_string_parses_exactly_when_its_parts_do(id in "(tx|po|t)?(-[0-9+a²]{0,3}){0,5}-?") {
            prop_assert_eq!(parse_tx_id(&id).ok(), by_parts("tx", &id));
        }
    }

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
    fn every_error_says_what_is_wrong_first_the_length() {
        let e = check_account("sender", "").unwrap_err();
        assert_eq!(e.message, "sender must have 1 to 64 characters, it has 0");
        // Counted in characters, not bytes, and the length comes before the charset.
        let e = check_account("sender", &"é".repeat(40)).unwrap_err();
        assert_eq!(e.message, "sender may only use A-Z a-z 0-9 . _ : -, it contains 'é'", "40 chars (80 bytes) is a valid length");
        let e = check_account("sender", &"é".repeat(65)).unwrap_err();
        assert_eq!(e.message, "sender must have 1 to 64 characters, it has 65");
        let e = check_account("sender", &"a".repeat(65)).unwrap_err();
        assert_eq!(e.message, "sender must have 1 to 64 characters, it has 65");
        assert_eq!(check_account("sender", "al/ice").unwrap_err().message, "sender may only use A-Z a-z 0-9 . _ : -, it contains '/'");
    }

    #[test]
    fn payout_ids_parse_strictly() {
        assert_eq!(parse_payout_shard("po-3-1042-0"), Ok(3));
        for bad in ["po-3-1042", "tx-3-1042-0", "po-+3-1-0", "po-3-1-0-", "po--1-0", "po-99999999999-1-0", "po-a-1-0"] {
            assert_eq!(parse_payout_shard(bad).unwrap_err().code, ErrorCode::InvalidId, "{bad}");
        }
        assert_eq!(parse_tx_id("tx-0-7-2"), Ok((0, 7, 2)));
        assert_eq!(parse_tx_id("tx-4294967295-18446744073709551615-4294967295"), Ok((u32::MAX, u64::MAX, u32::MAX)));
        for bad in ["tx-4294967296-1-0", "tx-1-18446744073709551616-0", "tx-1-1-4294967296", "tx-1-1-0-0", "tx-1-1-", "tx", "", "tx-1-1-0x", "tx-", "tx-1", "tx-1-2", "tx1-1-1", "tx--1-1-1", "tx-1-1-1\n", "tx-1-²-1", "tx-1-1--1"] {
            assert_eq!(parse_tx_id(bad).unwrap_err().code, ErrorCode::InvalidId, "{bad}");
        }
    }
}
