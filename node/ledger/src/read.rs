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

/// Where a history cursor resumes: below entry `seq`, and (a hint) where the page holding
/// entry `seq - 1` is. Its text form is `{seq}` or `{seq}.{page}`: `page` is the seal number
/// of that page (`keys::sealed_history_page`), or 0 for a page of format 10 (under
/// `keys::history_page`). Cursors of builds before format 11 are plain `{seq}`.
///
/// The hint saves walking the statement back from the newest page to find where to resume,
/// a read per 16 entries above the cursor. It is checked (the page must be that account's
/// page holding `seq - 1`), so a wrong or forged one costs the walk, never a wrong answer or
/// another account's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCursor {
    pub seq: u64,
    pub page: Option<u64>,
}

impl HistoryCursor {
    /// Parses the text form; None unless it is one History produces (`seq` at least 1, both
    /// numbers plain decimal digits).
    pub fn parse(text: &str) -> Option<Self> {
        let number = |part: &str| (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse::<u64>().ok()).flatten();
        let (seq, page) = match text.split_once('.') {
            Some((seq, page)) => (number(seq)?, Some(number(page)?)),
            None => (number(text)?, None),
        };
        (seq > 0).then_some(Self { seq, page })
    }
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.page {
            Some(page) => write!(f, "{}.{page}", self.seq),
            None => write!(f, "{}", self.seq),
        }
    }
}

/// Where one of an account's full pages is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageAt {
    /// `keys::sealed_history_page(seal)` (format 11).
    Sealed(u64),
    /// `keys::history_page(account, page)` (format 10 and earlier). Format 11 seals only
    /// after them, so every older page of the account is there too.
    ByAccount,
}

impl PageAt {
    fn of_seal(seal: u64) -> Self {
        if seal == 0 { PageAt::ByAccount } else { PageAt::Sealed(seal) }
    }

    /// The number a cursor carries for it.
    fn hint(self) -> u64 {
        match self {
            PageAt::Sealed(seal) => seal,
            PageAt::ByAccount => 0,
        }
    }
}

/// Where full page `target` of `account` is, given that its newest full page `newest` is at
/// `newest_at`: the cursor's hint if it checks out, else found by walking back from the
/// newest page through each page's predecessor.
fn locate_page(store: &dyn Store, account: &str, newest: u64, newest_at: PageAt, target: u64, hint: Option<u64>) -> PageAt {
    if let Some(hinted) = hint.map(PageAt::of_seal) {
        let checks = match hinted {
            PageAt::Sealed(seal) => book::sealed_page_header(store, seal).is_some_and(|header| header.account == account && header.page == target),
            PageAt::ByAccount => {
                let mut exists = false;
                store.read_with(&keys::history_page(account, target), &mut |bytes| exists = bytes.is_some());
                exists
            }
        };
        if checks {
            return hinted;
        }
    }
    let (mut page, mut at) = (newest, newest_at);
    while page > target {
        let PageAt::Sealed(seal) = at else { break };
        let header = chained(book::sealed_page_header(store, seal), |header| header, account, seal, page);
        at = PageAt::of_seal(header.previous);
        page -= 1;
    }
    at
}

/// `found`, the page sealed `seal`-th as read (its header, and its entries if asked for),
/// checked to be `account`'s page `page`, as the chain of pages says it is.
///
/// # Panics
/// If that page is missing or is another page: the store is corrupt.
fn chained<T>(found: Option<T>, header: impl Fn(&T) -> &book::SealedPageHeader, account: &str, seal: u64, page: u64) -> T {
    let found = found.unwrap_or_else(|| panic!("account {account}: its history page {page} (seal {seal}) is missing"));
    let header = header(&found);
    assert!(header.account == account && header.page == page, "account {account}: seal {seal} holds page {} of {}, not its page {page}", header.page, header.account);
    found
}

/// The account's statement, newest first: entries with `seq < cursor.seq` (all if None), at
/// most `limit` (clamped to 1..=500). The second value is the cursor of the next (older) page.
///
/// The newest entries are in the account's record (its open page); the full pages before them
/// are found from the record and each other (see [`HistoryCursor`] and `book::append_history`).
pub fn history(store: &dyn Store, account: &str, limit: u32, cursor: Option<HistoryCursor>) -> (Vec<HistoryEntry>, Option<HistoryCursor>) {
    let limit = limit.clamp(1, HISTORY_LIMIT_MAX) as usize;
    let below = match cursor {
        Some(HistoryCursor { seq: 0 | 1, .. }) => return (Vec::new(), None),
        Some(cursor) => cursor.seq,
        None => u64::MAX,
    };
    let Some((stored, tail)) = book::account_with_tail(store, account) else { return (Vec::new(), None) };
    let per_page = keys::HISTORY_PAGE_ENTRIES;
    let mut entries: Vec<HistoryEntry> =
        book::history_page(&keys::account(account), &tail.open_page).into_iter().rev().filter(|entry| entry.seq < below).take(limit).collect();
    let full_pages = stored.history_seq / per_page;
    // Where each full page read (or about to be) is, to hand on in the next cursor.
    let mut seen: Vec<(u64, PageAt)> = Vec::new();
    if full_pages > 0 && entries.len() < limit {
        let newest_at = PageAt::of_seal(tail.newest_seal);
        let mut page = keys::history_page_of(below - 1).min(full_pages - 1);
        let mut at = locate_page(store, account, full_pages - 1, newest_at, page, cursor.and_then(|c| c.page));
        loop {
            seen.push((page, at));
            let PageAt::Sealed(seal) = at else {
                // Pages of format 10 are all of the rest: read as many as fill the answer in one scan.
                let pages = (limit - entries.len()).div_ceil(per_page as usize) + 1;
                let before = keys::history_page(account, page + 1);
                let older = store.scan_rev(&keys::history_prefix(account), Some(&before), pages);
                let older = older.into_iter().flat_map(|(key, bytes)| book::history_page(&key, &bytes).into_iter().rev());
                entries.extend(older.filter(|entry| entry.seq < below).take(limit - entries.len()));
                break;
            };
            let (header, page_entries) = chained(book::sealed_page(store, seal), |(header, _)| header, account, seal, page);
            entries.extend(page_entries.into_iter().rev().filter(|entry| entry.seq < below).take(limit - entries.len()));
            if entries.len() == limit || page == 0 {
                if page > 0 {
                    seen.push((page - 1, PageAt::of_seal(header.previous)));
                }
                break;
            }
            page -= 1;
            at = PageAt::of_seal(header.previous);
        }
    }
    // Seqs are dense from 1, so an older entry exists exactly when the oldest seq here is above 1.
    let next = match entries.last() {
        Some(oldest) if entries.len() == limit && oldest.seq > 1 => {
            let resume = keys::history_page_of(oldest.seq - 1);
            let page = match seen.iter().find(|(page, _)| *page == resume) {
                Some((_, at)) => Some(at.hint()),
                // Below a page of format 10 read by the scan: of format 10 too.
                None => matches!(seen.last(), Some(&(page, PageAt::ByAccount)) if resume < page).then_some(0),
            };
            Some(HistoryCursor { seq: oldest.seq, page })
        }
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

    const PAGE: u64 = crate::keys::HISTORY_PAGE_ENTRIES;

    fn buy(world: &mut World, account: &str, times: u64) {
        let start = world.account_opt(account).map_or(0, |a| a.history_seq);
        for i in start..start + times {
            world.purchase(&format!("{account}-b{i}"), account, "0.01", "USD", &format!("{account}-pay-{i}")).unwrap();
        }
    }

    fn seqs(entries: &[HistoryEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    /// The whole statement read `limit` entries at a time, following each answer's cursor.
    fn read_all(store: &dyn Store, account: &str, limit: u32) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = history(store, account, limit, cursor);
            assert!(page.len() <= limit as usize);
            seen.extend(seqs(&page));
            match next {
                Some(next) => cursor = Some(HistoryCursor::parse(&next.to_string()).expect("a cursor reads back")),
                None => return seen,
            }
        }
    }

    /// Every page size and every cursor, with its hint right, wrong, forged or missing, reads
    /// the statement exactly as if each entry had a key of its own.
    fn check_statement(store: &dyn Store, account: &str, count: u64) {
        for limit in [1, 5, 15, 16, 17, 40, 500] {
            assert_eq!(read_all(store, account, limit), (1..=count).rev().collect::<Vec<_>>(), "limit {limit}");
        }
        for seq in [0, 1, 2, 16, 17, 18, 33, 53, 54, count, count + 1, 1_000] {
            let want: Vec<u64> = (1..seq.min(count + 1)).rev().collect();
            for page in [None, Some(0), Some(1), Some(2), Some(3), Some(7), Some(u64::MAX)] {
                let (got, _) = history(store, account, 500, Some(HistoryCursor { seq, page }));
                assert_eq!(seqs(&got), want, "cursor {seq}.{page:?}");
            }
        }
    }

    /// The entry that fills a page seals it: the page moves to the shard's next seal number
    /// with a header naming its account, its number and its predecessor; the account's record
    /// names it and holds an empty open page; the next entry opens a new one.
    #[test]
    fn a_full_open_page_is_sealed_under_the_shards_next_seal_number() {
        let mut world = World::new(1);
        buy(&mut world, "fan", PAGE);
        let store = &world.shards[0];
        let (_, tail) = book::account_with_tail(store, "fan").unwrap();
        assert_eq!((tail.newest_seal, tail.open_page.len()), (1, 0));
        assert_eq!(store.get(crate::keys::HISTORY_SEALS), Some(1u64.to_be_bytes().to_vec()));
        let (header, entries) = book::sealed_page(store, 1).unwrap();
        assert_eq!(header, book::SealedPageHeader { account: "fan".to_string(), page: 0, previous: 0 });
        assert_eq!(book::sealed_page_header(store, 1), Some(header));
        assert_eq!(seqs(&entries), (1..=PAGE).collect::<Vec<_>>());
        assert_eq!(book::sealed_page_header(store, 2), None);
        assert!(store.scan(crate::keys::HISTORY_PREFIX, usize::MAX).is_empty(), "nothing of format 10");
        buy(&mut world, "other", PAGE);
        buy(&mut world, "fan", PAGE + 1);
        let store = &world.shards[0];
        assert_eq!(book::sealed_page(store, 2).unwrap().0.account, "other", "seal numbers are the shard's, in seal order");
        assert_eq!(book::sealed_page(store, 3).unwrap().0, book::SealedPageHeader { account: "fan".to_string(), page: 1, previous: 1 });
        let (_, tail) = book::account_with_tail(store, "fan").unwrap();
        assert_eq!(tail.newest_seal, 3);
        assert_eq!(seqs(&book::history_page(b"acct/fan", &tail.open_page)), vec![2 * PAGE + 1], "a new open page");
        assert_eq!(history(store, "fan", 500, None).0.len(), 2 * PAGE as usize + 1);
    }

    #[test]
    fn history_reads_across_storage_pages() {
        let mut world = World::new(1);
        let count = 3 * PAGE + 5;
        // Two accounts sealing in turn: each one's pages are not adjacent.
        for _ in 0..count {
            buy(&mut world, "fan", 1);
            buy(&mut world, "idol", 1);
        }
        let store = &world.shards[0];
        assert_eq!(store.scan(crate::keys::SEALED_HISTORY_PREFIX, usize::MAX).len(), 6, "48 entries each in 3 full pages");
        let (_, tail) = book::account_with_tail(store, "fan").unwrap();
        assert_eq!(seqs(&book::history_page(b"acct/fan", &tail.open_page)), (49..=53).collect::<Vec<_>>(), "5 entries in the open page");
        check_statement(store, "fan", count);
        check_statement(store, "idol", count);
    }

    /// Rewrites a shard's statements into the layout storage format 10 left: full pages under
    /// their account and number, without a header, and account records that name no seal.
    fn to_format_10(store: &mut crate::MemStore) {
        for (key, bytes) in store.scan(crate::keys::SEALED_HISTORY_PREFIX, usize::MAX) {
            let (header, entries) = postcard::take_from_bytes::<book::SealedPageHeader>(&bytes).unwrap();
            store.map.remove(&key);
            store.put(&crate::keys::history_page(&header.account, header.page), entries.to_vec());
        }
        store.map.remove(crate::keys::HISTORY_SEALS);
        for (key, bytes) in store.scan(crate::keys::ACCOUNT_PREFIX, usize::MAX) {
            let (account, _) = book::split_account_record(&key, &bytes);
            let (_, tail) = book::account_with_tail(store, &account.id).unwrap();
            store.put(&key, [book::encode(&account), tail.open_page].concat());
        }
    }

    /// A statement that format 10 began and format 11 goes on with: its older pages are read
    /// where format 10 put them, the newer ones from their seals, across every page size and
    /// cursor, and format 11's cursors into the old pages say so (`.0`).
    #[test]
    fn a_statement_begun_in_format_10_reads_on_in_format_11() {
        let mut world = World::new(1);
        buy(&mut world, "fan", 2 * PAGE + 3);
        buy(&mut world, "new", 3);
        to_format_10(&mut world.shards[0]);
        assert_eq!(world.shards[0].scan(&crate::keys::history_prefix("fan"), usize::MAX).len(), 2);
        check_statement(&world.shards[0], "fan", 2 * PAGE + 3);
        buy(&mut world, "fan", 2 * PAGE);
        buy(&mut world, "new", PAGE);
        let store = &world.shards[0];
        assert_eq!(book::sealed_page(store, 1).unwrap().0, book::SealedPageHeader { account: "fan".to_string(), page: 2, previous: 0 });
        assert_eq!(book::sealed_page(store, 3).unwrap().0, book::SealedPageHeader { account: "new".to_string(), page: 0, previous: 0 });
        check_statement(store, "fan", 4 * PAGE + 3);
        check_statement(store, "new", PAGE + 3);
        let (_, next) = history(store, "fan", 2 * PAGE as u32 + 4, None);
        assert_eq!(next, Some(HistoryCursor { seq: 2 * PAGE, page: Some(0) }), "entry 31 is in page 1, of format 10");
    }

    /// A store that lists the sealed pages read from it.
    struct Counting<'a> {
        store: &'a dyn Store,
        sealed_reads: std::cell::Cell<usize>,
    }

    impl Store for Counting<'_> {
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.store.get(key)
        }
        fn read_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) {
            if key.starts_with(crate::keys::SEALED_HISTORY_PREFIX) {
                self.sealed_reads.set(self.sealed_reads.get() + 1);
            }
            self.store.read_with(key, read);
        }
        fn put(&mut self, _: &[u8], _: Vec<u8>) {
            unreachable!("reads only")
        }
        fn delete(&mut self, _: &[u8]) {
            unreachable!("reads only")
        }
        fn scan(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.store.scan(prefix, limit)
        }
        fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.store.scan_rev(prefix, before, limit)
        }
    }

    /// Paging deep into a long statement with the cursors History hands out reads the pages it
    /// answers from and the one its hint names, not every page above them; a cursor without
    /// the hint (an earlier build's) walks.
    #[test]
    fn a_cursor_resumes_at_its_page_without_walking_the_statement() {
        let mut world = World::new(1);
        buy(&mut world, "fan", 40 * PAGE);
        let counting = Counting { store: &world.shards[0], sealed_reads: Default::default() };
        let mut cursor = None;
        for _ in 0..30 {
            counting.sealed_reads.set(0);
            let (page, next) = history(&counting, "fan", PAGE as u32, cursor);
            assert_eq!(page.len(), PAGE as usize);
            assert!(counting.sealed_reads.get() <= 2, "{} sealed pages read for one page of entries", counting.sealed_reads.get());
            cursor = next;
        }
        let cursor = cursor.unwrap();
        assert_eq!(cursor.seq, 10 * PAGE + 1);
        counting.sealed_reads.set(0);
        let (walked, _) = history(&counting, "fan", PAGE as u32, Some(HistoryCursor { page: None, ..cursor }));
        assert!(counting.sealed_reads.get() >= 30, "a cursor without its page walks from the newest");
        assert_eq!(walked, history(&world.shards[0], "fan", PAGE as u32, Some(cursor)).0);
    }

    /// A page that names a predecessor which is not the account's page before it: the store
    /// is corrupt, and reading the statement stops the shard rather than answer another
    /// account's entries.
    #[test]
    #[should_panic(expected = "holds page 0 of idol, not its page 1")]
    fn a_broken_chain_of_pages_stops_the_shard() {
        let mut world = World::new(1);
        buy(&mut world, "fan", 3 * PAGE);
        buy(&mut world, "idol", PAGE);
        let store = &mut world.shards[0];
        let key = crate::keys::sealed_history_page(3);
        let page = store.get(&key).unwrap();
        let (mut header, entries) = postcard::take_from_bytes::<book::SealedPageHeader>(&page).unwrap();
        assert_eq!((header.account.as_str(), header.page, header.previous), ("fan", 2, 2));
        header.previous = 4;
        store.put(&key, [book::encode(&header).as_slice(), entries].concat());
        history(store, "fan", 500, None);
    }

    #[test]
    fn cursors_read_back_from_their_text_and_nothing_else_is_one() {
        for cursor in [HistoryCursor { seq: 42, page: None }, HistoryCursor { seq: 7, page: Some(0) }, HistoryCursor { seq: u64::MAX, page: Some(u64::MAX) }] {
            assert_eq!(HistoryCursor::parse(&cursor.to_string()), Some(cursor));
        }
        for bad in ["", "0", "0.3", "-1", "+1", "1.", ".1", "1.2.3", "1.-2", " 1", "x", "18446744073709551616", "1.18446744073709551616", "1e3"] {
            assert_eq!(HistoryCursor::parse(bad), None, "{bad:?}");
        }
    }
}
