//! Key encoding of the shard-local store. Every key starts with a short ASCII table name and a
//! `/`; ids never contain `/` (ids.rs), so `hpg/alice/` can never match another account's keys.
//! Numbers are fixed-width big-endian so that byte order is numeric order.
//!
//! | key                                   | value            | kept      |
//! |---------------------------------------|------------------|-----------|
//! | `acct/{account}`                      | Account, then HistoryEntry ×<16 (its open page) | for ever |
//! | `hps/{seal:be64}`                     | header, HistoryEntry ×16 (a full page, since format 11) | for ever |
//! | `hsn`                                 | u64 BE: pages sealed in this shard | for ever |
//! | `hpg/{account}/{page:be64}`           | HistoryEntry ×16 (a full page of format 10 or earlier) | for ever  |
//! | `rate/{version:be64}`                 | RateCard         | for ever  |
//! | `ratecur`                             | RateCard in force | replaced by each new card |
//! | `pref/{payment_ref}`                  | PaymentRecord    | for ever  |
//! | `pout/{payout_id}`                    | Payout           | for ever  |
//! | `req/{request_id}`                    | RequestRecord (the node stores them ~16 to a key, `rqp/`) | for ever  |
//! | `obx/{index:be64}{position:be32}`     | OutboxRecord     | until completed; written once, by the entry at that index |
//! | `ibf/{home:be32}`                     | u64 fence        | for ever (one per home shard) |
//! | `ibx/{home:be32}{page:be64}`          | sorted rows + results | until the home completed them |
//! | `totals`                              | ShardTotals      | for ever  |

pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
const RATE_PREFIX: &[u8] = b"rate/";
pub const PAYOUT_PREFIX: &[u8] = b"pout/";
pub const OUTBOX_PREFIX: &[u8] = b"obx/";
pub const TOTALS: &[u8] = b"totals";
/// The rate card in force, also under its version: every gift and purchase reads it, and a
/// point read is far cheaper than finding the highest version by a reverse scan.
pub const RATE_CURRENT: &[u8] = b"ratecur";

const PAYMENT_PREFIX: &[u8] = b"pref/";
const INBOX_FENCE_PREFIX: &[u8] = b"ibf/";

/// Keys the ledger reads one at a time: on the command path always by key, and scanned only
/// whole, by the audit (accounts, payouts). A write-back cache of them needs no order (the
/// node keeps them in a hash map); every other table is scanned by ranges (history pages,
/// the outbox, inbox pages, rate versions). Tested against every scan the ledger makes
/// (`store::tests`).
pub const POINT_TABLES: [&[u8]; 7] = [ACCOUNT_PREFIX, PAYMENT_PREFIX, PAYOUT_PREFIX, INBOX_FENCE_PREFIX, TOTALS, RATE_CURRENT, HISTORY_SEALS];

/// Whether `key` belongs to one of the [`POINT_TABLES`].
pub fn is_point_key(key: &[u8]) -> bool {
    POINT_TABLES.iter().any(|table| key.starts_with(table))
}

/// Whether a scan of `prefix` can see keys of the [`POINT_TABLES`].
pub fn scan_reaches_point_keys(prefix: &[u8]) -> bool {
    POINT_TABLES.iter().any(|table| table.starts_with(prefix) || prefix.starts_with(table))
}

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

/// Table of the full history pages that storage formats up to 10 wrote, under their account
/// and page number. They are read where they are; no build writes them any more.
pub const HISTORY_PREFIX: &[u8] = b"hpg/";

/// Table of the full history pages of every account since storage format 11, in the order
/// they were sealed (filled) in this shard: see `book::append_history` for why.
pub const SEALED_HISTORY_PREFIX: &[u8] = b"hps/";

/// How many history pages this shard has sealed: the next one is sealed as number `n + 1`.
pub const HISTORY_SEALS: &[u8] = b"hsn";

/// The full history page sealed `seal`-th in this shard (seals count from 1).
pub fn sealed_history_page(seal: u64) -> Vec<u8> {
    [SEALED_HISTORY_PREFIX, &seal.to_be_bytes()].concat()
}

/// The prefix of the account's full history pages of format 10 or earlier.
pub fn history_prefix(account: &str) -> Vec<u8> {
    [HISTORY_PREFIX, account.as_bytes(), b"/"].concat()
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
    key(PAYMENT_PREFIX, payment_ref)
}

pub fn payout(payout_id: &str) -> Vec<u8> {
    key(PAYOUT_PREFIX, payout_id)
}

/// Request records. The node stores them many to a key (its `shard/request_pages.rs`): a
/// scan of this prefix sees only those still in its state cache, so the ledger never scans it.
pub const REQUEST_PREFIX: &[u8] = b"req/";

pub fn request(request_id: &str) -> Vec<u8> {
    key(REQUEST_PREFIX, request_id)
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

/// Home raft indexes per inbox page: effects from one home shard are kept `INBOX_PAGE_INDEXES`
/// of its log indexes to a key, so the target writes a page per flush rather than a key per
/// effect, and forgets a whole page at once.
///
/// Small, because every delivery reads its page to deduplicate and rewrites it: the cost per
/// effect grows with the page (the lookup is a binary search, the copies are not). Under
/// batched load a home entry carries dozens of commands; when they all credit one creator
/// (hot-one), pages of 64 indexes held thousands of effects, and scanning and copying them
/// took a third of the cluster's CPU (150,000 gifts: 35.2 s of node CPU at 64, 23.3 s at 2;
/// gift-storm 27.1 s and 24.3 s). A page now holds at most the commands of two entries
/// (`MAX_ENTRY_COMMANDS` each).
pub const INBOX_PAGE_INDEXES: u64 = 2;

/// The inbox head of `home` (`book::InboxHead`): the tx index below which its effects are
/// forgotten (completed at home), and which of its inbox pages exist.
pub fn inbox_fence(home: u32) -> Vec<u8> {
    [INBOX_FENCE_PREFIX, &home.to_be_bytes()].concat()
}

/// Table of the inbox pages of every home shard (`inbox_page`).
pub const INBOX_PREFIX: &[u8] = b"ibx/";

pub fn inbox_prefix(home: u32) -> Vec<u8> {
    [INBOX_PREFIX, &home.to_be_bytes()].concat()
}

pub fn inbox_page_of(index: u64) -> u64 {
    index / INBOX_PAGE_INDEXES
}

pub fn inbox_page(home: u32, page: u64) -> Vec<u8> {
    [inbox_prefix(home).as_slice(), &page.to_be_bytes()].concat()
}

/// The page number of an inbox page key of `home`.
///
/// # Panics
/// If `key` is not one (the store is corrupt).
pub fn page_of_inbox_key(home: u32, key: &[u8]) -> u64 {
    let prefix = inbox_prefix(home);
    let page = key.strip_prefix(prefix.as_slice()).and_then(|rest| <[u8; 8]>::try_from(rest).ok());
    u64::from_be_bytes(page.unwrap_or_else(|| panic!("not an inbox page key of shard {home}: {key:?}")))
}

/// The raft index of an outbox key (the home entry that created the effect).
///
/// # Panics
/// If `key` is not an outbox key.
pub fn index_of_outbox_key(key: &[u8]) -> u64 {
    let index = key.strip_prefix(OUTBOX_PREFIX).and_then(|rest| rest.get(..8)).and_then(|b| <[u8; 8]>::try_from(b).ok());
    u64::from_be_bytes(index.unwrap_or_else(|| panic!("not an outbox key: {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_parts_sort_numerically() {
        assert!(history_page("a", 9) < history_page("a", 10));
        assert!(history_page("a", 255) < history_page("a", 256));
        assert!(sealed_history_page(255) < sealed_history_page(256));
        assert!(outbox(9, 1) < outbox(10, 0));
        assert!(rate(2) < rate(10));
        assert!(inbox_page(1, 255) < inbox_page(1, 256));
        assert!(inbox_page(1, u64::MAX) < inbox_page(2, 0));
    }

    #[test]
    fn numbers_come_back_out_of_their_keys() {
        assert_eq!(page_of_inbox_key(7, &inbox_page(7, 300)), 300);
        assert_eq!(index_of_outbox_key(&outbox(1234, 5)), 1234);
        assert_eq!(inbox_page_of(INBOX_PAGE_INDEXES - 1), 0);
        assert_eq!(inbox_page_of(INBOX_PAGE_INDEXES), 1);
    }

    #[test]
    fn point_tables_are_apart_from_every_ranged_scan() {
        for key in [account("a"), payment("p"), payout("po-1-2-0"), inbox_fence(3), TOTALS.to_vec(), RATE_CURRENT.to_vec(), HISTORY_SEALS.to_vec()] {
            assert!(is_point_key(&key), "{key:?}");
        }
        for key in [history_page("a", 0), sealed_history_page(1), rate(1), request("r"), outbox(1, 0), inbox_page(3, 0)] {
            assert!(!is_point_key(&key), "{key:?}");
        }
        // The ranges the command path and the statement scan never see a point key ...
        for prefix in [history_prefix("a"), SEALED_HISTORY_PREFIX.to_vec(), OUTBOX_PREFIX.to_vec(), inbox_prefix(3), RATE_PREFIX.to_vec()] {
            assert!(!scan_reaches_point_keys(&prefix), "{prefix:?}");
        }
        // ... the audit's whole-table scans do, and so does a scan of everything.
        for prefix in [ACCOUNT_PREFIX, PAYOUT_PREFIX, b"acct/bo", b""] {
            assert!(scan_reaches_point_keys(prefix), "{prefix:?}");
        }
    }

    #[test]
    fn one_accounts_history_prefix_never_matches_another() {
        assert!(!history_page("alice.x", 0).starts_with(&history_prefix("alice")));
        assert!(history_page("alice", 0).starts_with(&history_prefix("alice")));
        assert!(!account("alice").starts_with(&history_prefix("alice")));
    }
}
