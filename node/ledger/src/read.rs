//! Queries of one shard's state. They never change the store.
//!
//! # Panics
//! Every function panics if a stored record does not decode: the store is corrupt.

use crate::book;
use crate::keys;
use crate::model::{Account, Effect, EffectResult, HistoryEntry, Payout};
use crate::rates::RateCard;
use crate::store::Store;

/// Largest history page; `history` clamps `limit` into `1..=HISTORY_LIMIT_MAX`.
pub const HISTORY_LIMIT_MAX: u32 = 500;
/// The page size when the API got 0.
pub const HISTORY_LIMIT_DEFAULT: u32 = 50;

pub fn account(store: &dyn Store, id: &str) -> Option<Account> {
    book::account(store, id)
}

/// The account's statement, newest first: entries with `seq < cursor` (all if None), at most
/// `limit` (clamped to 1..=500). The second value is the cursor of the next (older) page.
pub fn history(store: &dyn Store, account: &str, limit: u32, cursor: Option<u64>) -> (Vec<HistoryEntry>, Option<u64>) {
    let limit = limit.clamp(1, HISTORY_LIMIT_MAX) as usize;
    // Pages below the one after the cursor's entry, newest first: enough to fill `limit`
    // even when the first page holds a single entry below the cursor.
    let before = match cursor {
        Some(0 | 1) => return (Vec::new(), None),
        Some(seq) => Some(keys::history_page(account, keys::history_page_of(seq - 1) + 1)),
        None => None,
    };
    // The open page holds the newest entries (if the last page is not full), then come the
    // full pages.
    let open = book::history_page(&keys::account(account), &book::open_history_page(store, account));
    let pages = limit.div_ceil(keys::HISTORY_PAGE_ENTRIES as usize) + 1;
    let full = store.scan_rev(&keys::history_prefix(account), before.as_deref(), pages);
    let entries: Vec<HistoryEntry> = open
        .into_iter()
        .rev()
        .chain(full.into_iter().flat_map(|(key, bytes)| book::history_page(&key, &bytes).into_iter().rev()))
        .filter(|entry| cursor.is_none_or(|seq| entry.seq < seq))
        .take(limit)
        .collect();
    // Seqs are dense from 1, so an older page exists exactly when the oldest seq here is above 1.
    let next = match entries.last() {
        Some(oldest) if entries.len() == limit && oldest.seq > 1 => Some(oldest.seq),
        _ => None,
    };
    (entries, next)
}

/// The rate card in force in this shard (the default card if none was ever set).
pub fn rate_card(store: &dyn Store) -> RateCard {
    book::rate_card(store).into_owned()
}

/// A stored rate card version (the default card for version 1 if it was never replaced).
pub fn rate_card_version(store: &dyn Store, version: u64) -> Option<RateCard> {
    book::get(store, &keys::rate(version)).or_else(|| (version == 1).then(RateCard::default_card))
}

/// This shard's outbox: effects not yet completed, oldest first. A new leader re-drives them.
pub fn pending_effects(store: &dyn Store) -> Vec<Effect> {
    store
        .scan(keys::OUTBOX_PREFIX, usize::MAX)
        .into_iter()
        .map(|(key, bytes)| book::decode::<book::OutboxRecord>(&key, &bytes).effect)
        .collect()
}

/// The result of an effect already applied in this (target) shard: `Forgotten` if it was also
/// completed at home and its result no longer kept, None if it was never applied here.
pub fn effect_result(store: &dyn Store, effect_id: &str) -> Option<EffectResult> {
    let (home, index, position) = crate::ids::parse_tx_id(effect_id).ok()?;
    if index < book::inbox_fence(store, home) {
        return Some(EffectResult::Forgotten);
    }
    book::inbox_result(store, home, index, position)
}

/// What a delivery from this (home) shard may tell its target: every effect below the
/// returned tx index is completed. The oldest outbox record's index, or `applied_index + 1`
/// if the outbox is empty. A scan: the node keeps an index of its outbox instead.
pub fn completed_below(store: &dyn Store, applied_index: u64) -> u64 {
    match store.scan(keys::OUTBOX_PREFIX, 1).first() {
        Some((key, _)) => keys::index_of_outbox_key(key),
        None => applied_index + 1,
    }
}

pub fn payout(store: &dyn Store, id: &str) -> Option<Payout> {
    book::payout(store, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::World;

    #[test]
    fn history_pages_newest_first() {
        let mut world = World::new(1);
        for i in 0..5 {
            world.purchase(&format!("b{i}"), "fan", "1", "USD", &format!("pay-{i}")).unwrap();
        }
        let store = &world.shards[0];
        let (page, next) = history(store, "fan", 2, None);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 4]);
        assert_eq!(page[0].coins_after, 500);
        let (page, next) = history(store, "fan", 2, next);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
        let (page, next) = history(store, "fan", 2, next);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(next, None);
        assert_eq!(history(store, "nobody", 10, None), (vec![], None));
        assert_eq!(history(store, "fan", 0, None).0.len(), 1, "limit is clamped to at least 1");
    }

    /// Entries are stored 16 to a key, the last ones in the open page: every page size and
    /// cursor must read across those pages exactly as if each entry had a key of its own.
    /// The entry that fills a page moves the open page to its numbered key: no open page is
    /// left behind, and the next entry opens a new one.
    #[test]
    fn a_full_open_page_moves_to_its_numbered_key() {
        let mut world = World::new(1);
        let full = crate::keys::HISTORY_PAGE_ENTRIES;
        for i in 0..full {
            world.purchase(&format!("b{i}"), "fan", "0.01", "USD", &format!("pay-{i}")).unwrap();
        }
        let store = &world.shards[0];
        assert_eq!(book::open_history_page(store, "fan"), Vec::<u8>::new());
        let pages = store.scan(&crate::keys::history_prefix("fan"), usize::MAX);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].0, crate::keys::history_page("fan", 0));
        assert_eq!(book::history_page(&pages[0].0, &pages[0].1).len(), full as usize);
        world.purchase("b-next", "fan", "0.01", "USD", "pay-next").unwrap();
        let store = &world.shards[0];
        let open = book::open_history_page(store, "fan");
        assert_eq!(book::history_page(b"acct/fan", &open)[0].seq, full + 1, "a new open page");
        assert_eq!(history(store, "fan", 500, None).0.len(), full as usize + 1);
    }

    #[test]
    fn history_reads_across_storage_pages() {
        let mut world = World::new(1);
        let count = 3 * crate::keys::HISTORY_PAGE_ENTRIES + 5;
        for i in 0..count {
            world.purchase(&format!("b{i}"), "fan", "0.01", "USD", &format!("pay-{i}")).unwrap();
        }
        let store = &world.shards[0];
        assert_eq!(store.scan(&crate::keys::history_prefix("fan"), usize::MAX).len(), 3, "48 entries in 3 full pages");
        let open = book::open_history_page(store, "fan");
        assert_eq!(book::history_page(b"acct/fan", &open).iter().map(|e| e.seq).collect::<Vec<_>>(), (49..=53).collect::<Vec<_>>(), "5 entries in the open page");
        for limit in [1, 5, 15, 16, 17, 40, 500] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) = history(store, "fan", limit, cursor);
                assert!(page.len() <= limit as usize);
                seen.extend(page.iter().map(|e| e.seq));
                match next {
                    Some(seq) => cursor = Some(seq),
                    None => break,
                }
            }
            assert_eq!(seen, (1..=count).rev().collect::<Vec<_>>(), "limit {limit}");
        }
        for cursor in [0, 1, 2, 16, 17, 18, 53, 54, 1_000] {
            let (page, _) = history(store, "fan", 500, Some(cursor));
            let want: Vec<u64> = (1..cursor.min(count + 1)).rev().collect();
            assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), want, "cursor {cursor}");
        }
    }
}
