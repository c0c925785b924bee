//! Key encoding of the shard-local store. Every key starts with a short ASCII table name and a
//! `/`; ids never contain `/` (ids.rs), so `hpg/alice/` can never match another account's keys.
//! Numbers are fixed-width big-endian so that byte order is numeric order.
//!
//! | key                                   | value            | kept      |
//! |---------------------------------------|------------------|-----------|
//! | `acct/{account}`                      | Account          | for ever  |
//! | `hpg/{account}/{page:be64}`           | HistoryEntry ×≤16 | for ever  |
//! | `rate/{version:be64}`                 | RateCard         | for ever  |
//! | `ratecur`                             | RateCard in force | replaced by each new card |
//! | `pref/{payment_ref}`                  | PaymentRecord    | for ever  |
//! | `pout/{payout_id}`                    | Payout           | for ever  |
//! | `req/{request_id}`                    | RequestRecord    | for ever  |
//! | `obx/{index:be64}{position:be32}`     | OutboxRecord     | until completed |
//! | `ibx/{effect_id}`                     | EffectResult     | for ever  |
//! | `totals`                              | ShardTotals      | for ever  |

pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
const RATE_PREFIX: &[u8] = b"rate/";
pub const PAYOUT_PREFIX: &[u8] = b"pout/";
pub const OUTBOX_PREFIX: &[u8] = b"obx/";
pub const TOTALS: &[u8] = b"totals";
/// The rate card in force, also under its version: every gift and purchase reads it, and a
/// point read is far cheaper than finding the highest version by a reverse scan.
pub const RATE_CURRENT: &[u8] = b"ratecur";

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    [prefix, id.as_bytes()].concat()
}

pub fn account(id: &str) -> Vec<u8> {
    key(ACCOUNT_PREFIX, id)
}

/// History entries per page: an account's statement is stored `HISTORY_PAGE_ENTRIES` entries
/// to a key. Every stored key costs sled CPU to insert and resident memory for as long as it
/// exists, so one key per entry made history the largest part of both.
pub const HISTORY_PAGE_ENTRIES: u64 = 16;

pub fn history_prefix(account: &str) -> Vec<u8> {
    [b"hpg/", account.as_bytes(), b"/"].concat()
}

/// The page holding history entry `seq` (seqs start at 1).
pub fn history_page_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / HISTORY_PAGE_ENTRIES
}

pub fn history_page(account: &str, page: u64) -> Vec<u8> {
    [history_prefix(account).as_slice(), &page.to_be_bytes()].concat()
}

pub fn rate(version: u64) -> Vec<u8> {
    [RATE_PREFIX, &version.to_be_bytes()].concat()
}

pub fn payment(payment_ref: &str) -> Vec<u8> {
    key(b"pref/", payment_ref)
}

pub fn payout(payout_id: &str) -> Vec<u8> {
    key(PAYOUT_PREFIX, payout_id)
}

pub fn request(request_id: &str) -> Vec<u8> {
    key(b"req/", request_id)
}

/// Outbox keys sort by commit order, so pending effects are re-driven oldest first.
pub fn outbox(index: u64, position: u32) -> Vec<u8> {
    [OUTBOX_PREFIX, &index.to_be_bytes(), &position.to_be_bytes()].concat()
}

/// The outbox key of an effect, from its id `tx-{shard}-{index}-{position}`.
///
/// # Panics
/// If the id is not a tx id (effect ids are validated before they reach the store).
pub fn outbox_of(effect_id: &str) -> Vec<u8> {
    let (_, index, position) = crate::ids::parse_tx_id(effect_id).expect("effect ids are tx ids");
    outbox(index, position)
}

pub fn inbox(effect_id: &str) -> Vec<u8> {
    key(b"ibx/", effect_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_parts_sort_numerically() {
        assert!(history_page("a", 9) < history_page("a", 10));
        assert!(history_page("a", 255) < history_page("a", 256));
        assert!(outbox(9, 1) < outbox(10, 0));
        assert!(rate(2) < rate(10));
    }

    #[test]
    fn one_accounts_history_prefix_never_matches_another() {
        assert!(!history_page("alice.x", 0).starts_with(&history_prefix("alice")));
        assert!(history_page("alice", 0).starts_with(&history_prefix("alice")));
    }
}
