//! Typed records over the [`Store`]: postcard encoding, and the invariants every write asserts.
//! Commands read and write through these functions only.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, LedgerError};
use crate::keys;
use crate::model::{Account, CommandResult, Effect, EffectResult, GiftReceipt, HistoryEntry, PaymentRecord, Payout, ShardTotals};
use crate::rates::RateCard;
use crate::store::Store;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_onto(value, Vec::new(), 0)
}

/// Appends the postcard encoding of `value` to `buf`, growing it once: to the exact size, plus
/// `room` bytes the caller adds next. postcard's own vector grows by doubling as it writes:
/// about 80 reallocations per gift across the replicas of a cluster (a tenth of their
/// instructions in `replica_cost`).
pub(crate) fn encode_onto<T: Serialize + ?Sized>(value: &T, mut buf: Vec<u8>, room: usize) -> Vec<u8> {
    let len = postcard::experimental::serialized_size(value).expect("ledger records always encode");
    buf.reserve_exact(len + room);
    postcard::to_extend(value, buf).expect("ledger records always encode")
}

/// # Panics
/// If the stored bytes are not a `T`: the store is corrupt and the shard must stop.
pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> T {
    postcard::from_bytes(bytes).unwrap_or_else(|e| panic!("corrupt record at key {:?}: {e}", String::from_utf8_lossy(key)))
}

pub(crate) fn get<T: DeserializeOwned>(store: &dyn Store, key: &[u8]) -> Option<T> {
    let mut value = None;
    store.read_with(key, &mut |bytes| value = bytes.map(|bytes| decode(key, bytes)));
    value
}

pub(crate) fn put<T: Serialize>(store: &mut dyn Store, key: &[u8], value: &T) {
    store.put(key, encode(value));
}

pub(crate) fn account(store: &dyn Store, id: &str) -> Option<Account> {
    let key = keys::account(id);
    let mut account = None;
    store.read_with(&key, &mut |bytes| account = bytes.map(|bytes| split_account_record(&key, bytes).0));
    account
}

/// An account record: the account's postcard encoding, then its history tail: where its
/// newest full page is, then its open page. The open page holds the entries of its last page
/// while it has fewer than `HISTORY_PAGE_ENTRIES`, each a postcard encoding, one after the
/// other (nothing when the last page is full). Every change of an account also appends to
/// its statement, so the two share one key: a gift writes and reads one key per party
/// instead of two.
///
/// The tail starts with [`SEAL_MARK`] and the seal number of the account's newest full page
/// (a postcard varint, see [`append_history`]) once it has one of storage format 11; a record
/// without it has its full pages (if any) where format 10 put them (`keys::history_page`). No
/// history entry starts with the mark (its seq, a varint of at least 1, never starts with a
/// zero byte), so records of format 10 read as they are.
///
/// # Panics
/// If the record does not decode: the store is corrupt.
pub(crate) fn split_account_record<'a>(key: &[u8], bytes: &'a [u8]) -> (Account, &'a [u8]) {
    postcard::take_from_bytes(bytes).unwrap_or_else(|e| panic!("corrupt account record at key {:?}: {e}", String::from_utf8_lossy(key)))
}

/// First byte of a history tail that names the account's newest sealed page.
const SEAL_MARK: u8 = 0x00;

/// A history tail split into the seal number of the newest full page (0: none of format 11)
/// and the open page.
///
/// # Panics
/// If the seal number does not decode: the store is corrupt.
fn split_history_tail<'a>(key: &[u8], tail: &'a [u8]) -> (u64, &'a [u8]) {
    match tail.split_first() {
        Some((&SEAL_MARK, rest)) => {
            let (seal, page) = postcard::take_from_bytes::<u64>(rest)
                .unwrap_or_else(|e| panic!("corrupt history tail at key {:?}: {e}", String::from_utf8_lossy(key)));
            assert!(seal > 0, "corrupt history tail at key {:?}: seal 0", String::from_utf8_lossy(key));
            (seal, page)
        }
        _ => (0, tail),
    }
}

/// What a reader needs of an account's record besides the account: the seal number of its
/// newest full page of format 11 (0 if it has none) and its open page (entries oldest first).
pub(crate) struct HistoryTail {
    pub newest_seal: u64,
    pub open_page: Vec<u8>,
}

/// The account with its history tail, as [`split_account_record`] finds them.
pub(crate) fn account_with_tail(store: &dyn Store, id: &str) -> Option<(Account, HistoryTail)> {
    let key = keys::account(id);
    let mut found = None;
    store.read_with(&key, &mut |bytes| {
        found = bytes.map(|bytes| {
            let (account, tail) = split_account_record(&key, bytes);
            let (newest_seal, page) = split_history_tail(&key, tail);
            (account, HistoryTail { newest_seal, open_page: page.to_vec() })
        });
    });
    found
}

/// The account, or ACCOUNT_NOT_FOUND.
pub(crate) fn existing_account(store: &dyn Store, id: &str) -> Result<Account, LedgerError> {
    account(store, id).ok_or_else(|| LedgerError::new(ErrorCode::AccountNotFound, format!("account {id} was never opened")))
}

/// Writes an account changed from `before` to `after`, with its history entry (seq, deltas and
/// balances after are filled in here, so a statement always adds up).
///
/// # Panics
/// If holds exceed the balance, or a delta does not fit an i64: the ledger would be corrupt.
pub(crate) fn save_account<S: Serialize>(store: &mut dyn Store, before: &Account, after: &mut Account, mut entry: HistoryEntry<S>) {
    assert_eq!(before.id, after.id, "an account's id never changes");
    assert!(after.diamonds_held <= after.diamonds, "account {}: held {} > diamonds {}", after.id, after.diamonds_held, after.diamonds);
    let delta = |b: u64, a: u64| i64::try_from(i128::from(a) - i128::from(b)).expect("a single change fits an i64");
    after.history_seq = before.history_seq.checked_add(1).expect("history seq overflow");
    entry.seq = after.history_seq;
    entry.coins_delta = delta(before.coins, after.coins);
    entry.diamonds_delta = delta(before.diamonds, after.diamonds);
    entry.diamonds_held_delta = delta(before.diamonds_held, after.diamonds_held);
    entry.coins_after = after.coins;
    entry.diamonds_after = after.diamonds;
    entry.diamonds_held_after = after.diamonds_held;
    let record = append_history(store, before, after, &entry);
    store.put(&keys::account(&after.id), record);
}

/// What a full history page of format 11 says of itself before its entries: whose page it is,
/// which of the account's pages (`keys::history_page_of`), and the seal number of the page
/// before it (0: that page, if any, is of format 10, under `keys::history_page`). The account
/// lets a reader check a page named by a cursor it was handed; the predecessor lets it walk
/// the statement back from the newest page, which the account record names.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SealedPageHeader<S = String> {
    pub account: S,
    pub page: u64,
    pub previous: u64,
}

/// The number the next history page sealed in this shard gets.
fn next_seal(store: &dyn Store) -> u64 {
    let mut sealed = 0;
    store.read_with(keys::HISTORY_SEALS, &mut |bytes| {
        if let Some(bytes) = bytes {
            sealed = u64::from_be_bytes(bytes.try_into().unwrap_or_else(|_| panic!("corrupt seal count ({} bytes)", bytes.len())));
        }
    });
    sealed.checked_add(1).expect("seal count overflow")
}

/// The record to store for `after`: its encoding, then its history tail with `entry` appended
/// to the open page. The entry that fills a page seals the page: it moves, with a
/// [`SealedPageHeader`], to the key of the shard's next seal number (`keys::sealed_history_page`)
/// for good, and the record's tail names it and starts an empty open page.
///
/// Full pages are keyed by seal number, not by account and page, so that each lands after
/// the last one sealed in the shard, in the engine's last leaf of the table. Keyed by account,
/// a full page landed beside that account's older pages, in leaves no other write keeps in
/// cache; with many senders the engine read them back from disk to insert into them, and the
/// node grew slower as its data grew (docs/throughput-log.md, "Slower as the data grows").
///
/// Appending never decodes what the page already holds, and copies the page once: from the
/// stored record, lent by the store ([`Store::read_with`]), straight into the new record (or
/// the full page). An account record carries up to 15 entries, about 1.5 KB; reading a copy
/// of it, cutting the page out, growing the page for the entry and copying it into the record
/// copied it four times per change, two changes per gift on each replica.
///
/// The stored record starts with `stored`'s encoding (the account as the command read it), so
/// the tail is what follows it: checking that costs an encoding, where finding the tail by
/// decoding the account again (as [`account_with_tail`] does for reads) allocated its
/// strings, about twice the instructions.
///
/// # Panics
/// If the entry starts a page but the open page is not empty: seqs would not be dense. If the
/// stored record does not start with `stored`: the caller's account is not the stored one.
fn append_history<S: Serialize>(store: &mut dyn Store, stored: &Account, after: &Account, entry: &HistoryEntry<S>) -> Vec<u8> {
    let account = stored.id.as_str();
    let key = keys::account(account);
    let stored_account = encode_onto(stored, Vec::new(), 0);
    let entry_bytes = postcard::experimental::serialized_size(entry).expect("ledger records always encode");
    let seal = entry.seq.is_multiple_of(keys::HISTORY_PAGE_ENTRIES).then(|| next_seal(store));
    let mut built = None;
    store.read_with(&key, &mut |record| {
        let tail = match record {
            Some(record) => {
                assert!(record.starts_with(&stored_account), "account {account}: the stored record is not the account its command read");
                &record[stored_account.len()..]
            }
            None => &[],
        };
        let (newest_seal, page) = split_history_tail(&key, tail);
        let starts_page = (entry.seq - 1).is_multiple_of(keys::HISTORY_PAGE_ENTRIES);
        assert!(!starts_page || page.is_empty(), "account {account}: history entry {} starts a page, but the open page is not empty", entry.seq);
        // The new record with the whole tail, or (the entry fills the page) the sealed page.
        let out = match seal {
            Some(_) => {
                let header = SealedPageHeader { account, page: keys::history_page_of(entry.seq), previous: newest_seal };
                let mut out = encode_onto(&header, Vec::new(), page.len() + entry_bytes);
                out.extend_from_slice(page);
                out
            }
            None => {
                let mut out = encode_onto(after, Vec::new(), tail.len() + entry_bytes);
                out.extend_from_slice(tail);
                out
            }
        };
        built = Some(postcard::to_extend(entry, out).expect("ledger records always encode"));
    });
    let built = built.expect("read_with calls back once");
    match seal {
        Some(seal) => {
            store.put(&keys::sealed_history_page(seal), built);
            store.put(keys::HISTORY_SEALS, seal.to_be_bytes().to_vec());
            let mut record = encode_onto(after, Vec::new(), 1 + postcard::experimental::serialized_size(&seal).expect("a u64 encodes"));
            record.push(SEAL_MARK);
            postcard::to_extend(&seal, record).expect("ledger records always encode")
        }
        None => built,
    }
}

/// The entries of an open page or a history page of format 10, oldest first.
///
/// # Panics
/// If the page does not decode: the store is corrupt.
pub(crate) fn history_page(key: &[u8], mut bytes: &[u8]) -> Vec<HistoryEntry> {
    let mut entries = Vec::with_capacity(keys::HISTORY_PAGE_ENTRIES as usize);
    while !bytes.is_empty() {
        let (entry, rest) = postcard::take_from_bytes(bytes)
            .unwrap_or_else(|e| panic!("corrupt history page at key {:?}: {e}", String::from_utf8_lossy(key)));
        entries.push(entry);
        bytes = rest;
    }
    entries
}

/// The header of the full page sealed `seal`-th in this shard, without decoding or copying
/// its entries (a walk back through a statement reads only headers); None if no such page was
/// sealed.
pub(crate) fn sealed_page_header(store: &dyn Store, seal: u64) -> Option<SealedPageHeader> {
    read_sealed_page(store, seal, |_, header, _| header)
}

/// The header of the full page sealed `seal`-th in this shard, and its entries, oldest
/// first; None if no such page was sealed.
pub(crate) fn sealed_page(store: &dyn Store, seal: u64) -> Option<(SealedPageHeader, Vec<HistoryEntry>)> {
    read_sealed_page(store, seal, |key, header, entries| (header, history_page(key, entries)))
}

/// Calls `read` with the key, the header and the entries' bytes of the page sealed `seal`-th,
/// lent by the store.
///
/// # Panics
/// If the header does not decode: the store is corrupt.
fn read_sealed_page<T>(store: &dyn Store, seal: u64, read: impl FnOnce(&[u8], SealedPageHeader, &[u8]) -> T) -> Option<T> {
    let key = keys::sealed_history_page(seal);
    let mut read = Some(read);
    let mut found = None;
    store.read_with(&key, &mut |bytes| {
        found = bytes.map(|bytes| {
            let (header, entries) = postcard::take_from_bytes::<SealedPageHeader>(bytes)
                .unwrap_or_else(|e| panic!("corrupt history page at key {:?}: {e}", String::from_utf8_lossy(&key)));
            (read.take().expect("read_with calls back once"))(&key, header, entries)
        });
    });
    found
}

/// An inbox page: the results of the effects a target applied from one home shard's raft
/// indexes of that page, findable without decoding the page. Layout: the row count (u32 BE),
/// then one row per effect, sorted, of its index (u64 BE), position (u32 BE) and the offset of
/// its result (u32 BE) in the results area, then the results area (postcard results in the
/// order they were applied). Big-endian rows sort as their numbers do, so a lookup is a
/// binary search over fixed-width rows, and an append inserts one row and adds its result at
/// the end: no delivery decodes the page's other results.
struct InboxPage;

impl InboxPage {
    const COUNT_BYTES: usize = 4;
    const ROW_BYTES: usize = 16;
    const ID_BYTES: usize = 12;

    fn id(index: u64, position: u32) -> [u8; Self::ID_BYTES] {
        let mut id = [0; Self::ID_BYTES];
        id[..8].copy_from_slice(&index.to_be_bytes());
        id[8..].copy_from_slice(&position.to_be_bytes());
        id
    }

    /// The row count and the start of the results area.
    ///
    /// # Panics
    /// If the page is shorter than its rows: the store is corrupt.
    fn layout(key: &[u8], page: &[u8]) -> (usize, usize) {
        let count = page.get(..Self::COUNT_BYTES).map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
        let results = Self::COUNT_BYTES + count * Self::ROW_BYTES;
        assert!(page.is_empty() || page.len() >= results, "corrupt inbox page at key {key:?}: {count} rows in {} bytes", page.len());
        (count, results)
    }

    /// The page's rows (count from [`Self::layout`]; none in an empty page).
    fn rows(page: &[u8], count: usize) -> &[[u8; Self::ROW_BYTES]] {
        page.get(Self::COUNT_BYTES..).unwrap_or_default()[..count * Self::ROW_BYTES].as_chunks().0
    }

    /// `Ok(row)` holding `id`, or `Err(row)` where it would be inserted.
    fn search(page: &[u8], count: usize, id: &[u8; Self::ID_BYTES]) -> Result<usize, usize> {
        Self::rows(page, count).binary_search_by(|row| row[..Self::ID_BYTES].cmp(id))
    }

    fn find(key: &[u8], page: &[u8], index: u64, position: u32) -> Option<EffectResult> {
        let (count, results) = Self::layout(key, page);
        let row = Self::search(page, count, &Self::id(index, position)).ok()?;
        let offset_bytes = &Self::rows(page, count)[row][Self::ID_BYTES..];
        let offset = u32::from_be_bytes(offset_bytes.try_into().expect("4 bytes")) as usize;
        let bytes = page.get(results + offset..).unwrap_or_else(|| panic!("corrupt inbox page at key {key:?}: result offset {offset} out of range"));
        let (result, _) = postcard::take_from_bytes(bytes).unwrap_or_else(|e| panic!("corrupt inbox page at key {key:?}: {e}"));
        Some(result)
    }

    /// # Panics
    /// If the page already holds this effect: a delivery is deduplicated before it is kept.
    fn insert(key: &[u8], mut page: Vec<u8>, index: u64, position: u32, result: &EffectResult) -> Vec<u8> {
        if page.is_empty() {
            page.extend_from_slice(&0u32.to_be_bytes());
        }
        let (count, results) = Self::layout(key, &page);
        let id = Self::id(index, position);
        let row = Self::search(&page, count, &id)
            .err()
            .unwrap_or_else(|| panic!("inbox page at key {key:?} already holds effect {index}/{position}"));
        let offset = u32::try_from(page.len() - results).expect("an inbox page stays far below 4 GiB");
        let mut new_row = [0; Self::ROW_BYTES];
        new_row[..Self::ID_BYTES].copy_from_slice(&id);
        new_row[Self::ID_BYTES..].copy_from_slice(&offset.to_be_bytes());
        let at = Self::COUNT_BYTES + row * Self::ROW_BYTES;
        // The result goes at the end, then its row into the rows area: the offset is relative
        // to the results area, which the row moves with it, and the page grows only once.
        let mut page = encode_onto(result, page, Self::ROW_BYTES);
        page.splice(at..at, new_row);
        let count = u32::try_from(count + 1).expect("rows fit a u32");
        page[..Self::COUNT_BYTES].copy_from_slice(&count.to_be_bytes());
        page
    }
}

/// What a target shard keeps of the effects from one home shard besides their pages: the
/// fence, the tx index below which they are forgotten (completed at home), and which of the
/// home's inbox pages exist, so that raising the fence deletes the pages below it by key.
///
/// Finding them by a scan of the home's inbox instead cost, at 64 shards, 3.7% of a node's
/// CPU (0.8% at 16): there a delivery raises the fence past a page on most home entries, and
/// the scan reads past every page deletion the replica's state cache holds until its next
/// flush; looking each page number up by key instead still cost 2.4% in lookups of pages that
/// never existed (entries that sent nothing to this shard).
///
/// The list stays short while the home completes its effects (pages above the fence are those
/// of effects in flight). An effect of the home that cannot complete holds its fence back at
/// every target; past [`INBOX_HEAD_PAGES_MAX`] pages the list is dropped and raises scan, as
/// before, until the pages are gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InboxHead {
    fence: u64,
    /// The page numbers that exist, ascending; all are at or above the fence's page. None
    /// while not known: no record yet, or a bare fence written by an earlier build (which
    /// may have left pages and no record). The next raise of the fence scans for them.
    pages: Option<Vec<u64>>,
}

/// Pages an inbox head lists at most.
const INBOX_HEAD_PAGES_MAX: usize = 1_024;

impl InboxHead {
    fn read(store: &dyn Store, home: u32) -> Self {
        let key = keys::inbox_fence(home);
        let mut head = Self { fence: 0, pages: None };
        store.read_with(&key, &mut |bytes| {
            if let Some(bytes) = bytes {
                head = postcard::from_bytes::<InboxHead>(bytes).unwrap_or_else(|_| {
                    // An earlier build stored the fence alone (a varint, too short for a head).
                    Self { fence: decode::<u64>(&key, bytes), pages: None }
                });
            }
        });
        head
    }

    fn write(&self, store: &mut dyn Store, home: u32) {
        put(store, &keys::inbox_fence(home), self);
    }

    /// A delivery's result made `page` exist; returns whether the head changed.
    fn page_created(&mut self, page: u64) -> bool {
        let Some(pages) = &mut self.pages else { return false };
        match pages.binary_search(&page) {
            Ok(_) => false,
            Err(_) if pages.len() >= INBOX_HEAD_PAGES_MAX => {
                // The home's fence is held back (an effect of it to some shard is stuck):
                // forget the list rather than rewrite a long one on every delivery.
                self.pages = None;
                true
            }
            Err(at) => {
                pages.insert(at, page);
                true
            }
        }
    }
}

/// The tx index below which effects from `home` are forgotten: completed at home.
pub(crate) fn inbox_fence(store: &dyn Store, home: u32) -> u64 {
    InboxHead::read(store, home).fence
}

/// The kept result of the effect at `index`/`position` of `home`.
pub(crate) fn inbox_result(store: &dyn Store, home: u32, index: u64, position: u32) -> Option<EffectResult> {
    InboxSlot::read(store, home, index, position).kept()
}

/// The inbox page that keeps the result of the effect at `index` of `home`, as read once by
/// a delivery: it answers whether the effect was applied ([`InboxSlot::kept`]) and, if not,
/// takes its result ([`InboxSlot::keep`]) without a second lookup of the page.
pub(crate) struct InboxSlot {
    key: Vec<u8>,
    page: Option<Vec<u8>>,
    index: u64,
    position: u32,
}

impl InboxSlot {
    pub(crate) fn read(store: &dyn Store, home: u32, index: u64, position: u32) -> Self {
        Self::read_listed(store, None, home, index, position)
    }

    /// As [`InboxSlot::read`], but a page missing from `listed` (the pages an inbox head knows
    /// exist) is not looked up.
    ///
    /// The first delivery of every second home log index that sends this shard anything
    /// creates its page, and looking that page up missed the replica's state cache and read
    /// sled; with 64 shards a target's deliveries come from 4 times as many homes as with 16,
    /// each home entry sends it fewer effects, and more of its deliveries create a page.
    fn read_listed(store: &dyn Store, listed: Option<&[u64]>, home: u32, index: u64, position: u32) -> Self {
        let number = keys::inbox_page_of(index);
        let key = keys::inbox_page(home, number);
        let page = match listed {
            Some(pages) if pages.binary_search(&number).is_err() => None,
            _ => store.get(&key),
        };
        Self { key, page, index, position }
    }

    /// The kept result of this effect, if it was applied before.
    pub(crate) fn kept(&self) -> Option<EffectResult> {
        InboxPage::find(&self.key, self.page.as_deref()?, self.index, self.position)
    }

    /// Keeps `result` for this effect in its page, and notes in `head` a page it creates;
    /// returns whether `head` changed. The page must not have changed since
    /// [`InboxSlot::read`]: only deliveries from `home` write it, one at a time.
    fn keep(self, store: &mut dyn Store, result: &EffectResult, head: &mut InboxHead) -> bool {
        let created = self.page.is_none() && head.page_created(keys::inbox_page_of(self.index));
        let page = InboxPage::insert(&self.key, self.page.unwrap_or_default(), self.index, self.position, result);
        store.put(&self.key, page);
        created
    }
}

/// One delivery from `home` of the effect at `index`/`position`, deduplicated by the inbox:
/// `Forgotten` below the fence, the kept result if it was applied before, else what `apply`
/// returns (it writes the effect's account and totals, never the inbox), which is kept. Then
/// the fence is raised to `completed_below` and the inbox head written if it changed.
pub(crate) fn deliver_once(
    store: &mut dyn Store,
    home: u32,
    index: u64,
    position: u32,
    completed_below: u64,
    apply: impl FnOnce(&mut dyn Store) -> EffectResult,
) -> EffectResult {
    let mut head = InboxHead::read(store, home);
    let mut head_changed = false;
    let result = if index < head.fence {
        EffectResult::Forgotten
    } else {
        let slot = InboxSlot::read_listed(store, head.pages.as_deref(), home, index, position);
        match slot.kept() {
            Some(kept) => kept,
            None => {
                let result = apply(store);
                head_changed = slot.keep(store, &result, &mut head);
                result
            }
        }
    };
    head_changed |= forget_inbox(store, home, &mut head, completed_below);
    if head_changed {
        head.write(store, home);
    }
    result
}

/// Raises the fence in `head` to `completed_below` and deletes the pages wholly below it;
/// returns whether the fence moved.
fn forget_inbox(store: &mut dyn Store, home: u32, head: &mut InboxHead, completed_below: u64) -> bool {
    if completed_below <= head.fence {
        return false;
    }
    head.fence = completed_below;
    let first_kept = keys::inbox_page_of(completed_below);
    match &mut head.pages {
        Some(pages) => {
            let below = pages.partition_point(|&page| page < first_kept);
            for page in pages.drain(..below) {
                store.delete(&keys::inbox_page(home, page));
            }
        }
        None => {
            // Once per home: every page there is (only those at or above the fence's page
            // are ever kept, so they are few).
            let mut kept = Vec::new();
            for (key, _) in store.scan(&keys::inbox_prefix(home), usize::MAX) {
                let page = keys::page_of_inbox_key(home, &key);
                if page < first_kept {
                    store.delete(&key);
                } else {
                    kept.push(page);
                }
            }
            head.pages = (kept.len() < INBOX_HEAD_PAGES_MAX).then_some(kept);
        }
    }
    true
}

pub(crate) fn totals(store: &dyn Store) -> ShardTotals {
    get(store, keys::TOTALS).unwrap_or_default()
}

/// Publishes `card` in this shard: kept under its version for ever, and in force from now.
pub(crate) fn save_rate_card(store: &mut dyn Store, card: &RateCard) {
    put(store, &keys::rate(card.version), card);
    put(store, keys::RATE_CURRENT, card);
}

pub(crate) fn save_totals(store: &mut dyn Store, totals: &ShardTotals) {
    put(store, keys::TOTALS, totals);
}

/// The default card, built once: every gift and purchase reads the card in force, and in a
/// cluster that never published one, building it (parsing its decimals, allocating its
/// catalog) for every command was about 1% of a node's CPU under batched gifts.
static DEFAULT_CARD: std::sync::LazyLock<RateCard> = std::sync::LazyLock::new(RateCard::default_card);

/// The rate card in force, or the default card (version 1) if none was ever set.
pub(crate) fn rate_card(store: &dyn Store) -> Cow<'static, RateCard> {
    match get(store, keys::RATE_CURRENT) {
        Some(card) => Cow::Owned(card),
        None => Cow::Borrowed(&DEFAULT_CARD),
    }
}

pub(crate) fn payment(store: &dyn Store, payment_ref: &str) -> Option<PaymentRecord> {
    get(store, &keys::payment(payment_ref))
}

pub(crate) fn payout(store: &dyn Store, payout_id: &str) -> Option<Payout> {
    get(store, &keys::payout(payout_id))
}

/// What a request id is remembered with: the command's canonical bytes and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestRecord {
    pub body: Vec<u8>,
    pub state: RequestState,
}

/// `Done` is the common state and far larger than `Pending`; it stays unboxed, as a record is
/// a transient value (decoded, matched, dropped), and a box would allocate for every one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RequestState {
    /// The first outcome. A cross-shard gift is Done from its debit on (its credit is never
    /// refused), while its effect may still be in the outbox.
    Done(CommandResult),
    /// Waiting for the CompleteEffect of this effect id (purchases and refunds).
    Pending(String),
}

/// How the home shard finishes a command once its effect's result is back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    /// Mark the payment record credited or rejected; answer with the receipt or the rejection.
    Purchase,
    /// The receipt was known when the sender was debited.
    Gift(GiftReceipt),
    /// Answer with a refund receipt built from the claw-back's numbers.
    Refund,
}

/// A pending cross-shard effect in its home shard's outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutboxRecord {
    pub effect: Effect,
    /// The client request waiting for this effect.
    pub request_id: String,
    pub finish: Finish,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::MemStore;

    fn inbox_pages(store: &MemStore, home: u32) -> Vec<u64> {
        let prefix = keys::inbox_prefix(home);
        store.map.keys().filter(|k| k.starts_with(&prefix)).map(|k| keys::page_of_inbox_key(home, k)).collect()
    }

    /// One delivery from `home` of the effect at `index`, whose result is `result_for`.
    fn deliver(store: &mut MemStore, home: u32, index: u64, completed_below: u64) {
        deliver_once(store, home, index, 0, completed_below, |_| result_for(index, 0));
    }

    /// What an earlier build left: pages of `home` and, if any, the fence as a bare number.
    fn legacy_inbox(store: &mut MemStore, home: u32, indexes: &[u64], fence: Option<u64>) {
        for &index in indexes {
            let key = keys::inbox_page(home, keys::inbox_page_of(index));
            let page = InboxPage::insert(&key, store.get(&key).unwrap_or_default(), index, 0, &result_for(index, 0));
            store.put(&key, page);
        }
        if let Some(fence) = fence {
            put(store, &keys::inbox_fence(home), &fence);
        }
    }

    /// Saves 40 changes of one account, each from the account as stored, and reads them back.
    #[test]
    fn a_borrowed_history_entry_is_stored_as_the_owned_one_reads_back() {
        let fiat = crate::money::Money::new("4.99".parse().unwrap(), "EUR");
        let mut owned = HistoryEntry::new(crate::EntryKind::GiftSent, "tx-3-9-1", 42);
        (owned.counterparty, owned.gift_id, owned.message, owned.stream_id, owned.reference) =
            ("creator".into(), "rose".into(), "héllo".into(), "live-1".into(), "ref".into());
        (owned.seq, owned.coins_delta, owned.quantity, owned.fiat) = (7, -30, 2, Some(fiat.clone()));
        let mut borrowed = HistoryEntry::borrowed(crate::EntryKind::GiftSent, "tx-3-9-1", 42);
        (borrowed.counterparty, borrowed.gift_id, borrowed.message, borrowed.stream_id, borrowed.reference) =
            ("creator", "rose", "héllo", "live-1", "ref");
        (borrowed.seq, borrowed.coins_delta, borrowed.quantity, borrowed.fiat) = (7, -30, 2, Some(fiat));
        assert_eq!(encode(&borrowed), encode(&owned));
        assert_eq!(decode::<HistoryEntry>(b"entry", &encode(&borrowed)), owned);
    }

    #[test]
    fn every_change_extends_the_stored_open_page_and_the_statement_adds_up() {
        let mut store = MemStore::new();
        for seq in 1..=40u64 {
            let before = account(&store, "fan").unwrap_or_else(|| Account::open("fan"));
            let mut after = before.clone();
            after.coins += seq;
            save_account(&mut store, &before, &mut after, HistoryEntry::new(crate::EntryKind::Purchase, &format!("tx-0-{seq}-0"), seq));
        }
        let stored = account(&store, "fan").unwrap();
        assert_eq!((stored.coins, stored.history_seq), ((1..=40).sum(), 40));
        let (_, tail) = account_with_tail(&store, "fan").unwrap();
        let open = history_page(&keys::account("fan"), &tail.open_page);
        assert_eq!(open.iter().map(|e| e.seq).collect::<Vec<_>>(), (33..=40).collect::<Vec<_>>(), "two full pages, then the open one");
        assert_eq!(open.last().unwrap().coins_after, stored.coins);
    }

    #[test]
    #[should_panic(expected = "the stored record is not the account its command read")]
    fn saving_from_an_account_that_is_not_the_stored_one_stops_the_shard() {
        let mut store = MemStore::new();
        let mut fan = Account::open("fan");
        save_account(&mut store, &Account::open("fan"), &mut fan, HistoryEntry::new(crate::EntryKind::Purchase, "tx-0-1-0", 1));
        let mut stale = fan.clone();
        stale.coins += 7;
        let mut after = stale.clone();
        save_account(&mut store, &stale, &mut after, HistoryEntry::new(crate::EntryKind::Purchase, "tx-0-2-0", 2));
    }

    #[test]
    fn raising_the_fence_deletes_the_pages_below_it_and_no_others() {
        let mut store = MemStore::new();
        let page = keys::inbox_page_of;
        for index in (10..100).step_by(3) {
            deliver(&mut store, 3, index, 5);
        }
        deliver(&mut store, 4, 11, 5);
        let head = InboxHead::read(&store, 3);
        assert_eq!(head.fence, 5);
        assert_eq!(head.pages.as_deref(), Some(inbox_pages(&store, 3).as_slice()), "the head lists every page");
        deliver(&mut store, 3, 100, 20);
        assert_eq!(inbox_pages(&store, 3).first(), Some(&page(22)), "the pages of 10..20 are gone");
        assert_eq!(inbox_result(&store, 3, 22, 0), Some(result_for(22, 0)), "kept at and above the fence");
        deliver(&mut store, 3, 7, 20);
        assert_eq!(inbox_result(&store, 3, 7, 0), None, "below the fence: forgotten, not kept");
        deliver(&mut store, 3, 101, 1_000);
        assert!(inbox_pages(&store, 3).is_empty());
        assert_eq!(InboxHead::read(&store, 3), InboxHead { fence: 1_000, pages: Some(Vec::new()) });
        assert_eq!(inbox_pages(&store, 4), vec![page(11)], "another home's pages are its own");
    }

    #[test]
    fn a_fence_held_back_drops_the_page_list_and_a_raise_scans_again() {
        let mut store = MemStore::new();
        let indexes = INBOX_HEAD_PAGES_MAX as u64 * keys::INBOX_PAGE_INDEXES;
        deliver(&mut store, 3, 0, 1);
        for index in 1..=indexes {
            deliver(&mut store, 3, index, 1);
        }
        assert_eq!(InboxHead::read(&store, 3), InboxHead { fence: 1, pages: None }, "too many pages to list");
        assert_eq!(inbox_pages(&store, 3).len(), INBOX_HEAD_PAGES_MAX + 1);
        deliver(&mut store, 3, indexes + 1, indexes - 3);
        assert_eq!(InboxHead::read(&store, 3).pages, Some(inbox_pages(&store, 3)), "listed again once few");
        assert_eq!(inbox_pages(&store, 3).first(), Some(&keys::inbox_page_of(indexes - 3)));
    }

    #[test]
    fn an_inbox_left_by_an_earlier_build_is_found_by_one_scan() {
        let mut store = MemStore::new();
        legacy_inbox(&mut store, 3, &[40, 41, 44, 50, 61], Some(40));
        legacy_inbox(&mut store, 5, &[1, 9], None);
        assert_eq!(InboxHead::read(&store, 3), InboxHead { fence: 40, pages: None });
        assert_eq!(inbox_fence(&store, 3), 40);
        deliver(&mut store, 3, 70, 45);
        assert_eq!(InboxHead::read(&store, 3).pages, Some(vec![22, 25, 30, 35]));
        assert_eq!(inbox_pages(&store, 3), vec![22, 25, 30, 35]);
        deliver(&mut store, 5, 12, 9);
        assert_eq!(InboxHead::read(&store, 5), InboxHead { fence: 9, pages: Some(vec![4, 6]) });
        assert_eq!(inbox_pages(&store, 5), vec![4, 6]);
    }

    #[test]
    fn a_listed_head_answers_repeats_from_their_page_and_reads_no_page_it_does_not_list() {
        let mut store = MemStore::new();
        deliver(&mut store, 3, 10, 1);
        assert_eq!(InboxHead::read(&store, 3).pages, Some(vec![keys::inbox_page_of(10)]));
        let repeat = deliver_once(&mut store, 3, 10, 0, 1, |_| panic!("a repeat was applied again"));
        assert_eq!(repeat, result_for(10, 0));
        // Bytes under a key the head does not list are never read (these would stop the shard).
        store.put(&keys::inbox_page(3, keys::inbox_page_of(40)), vec![0xff; 3]);
        assert_eq!(deliver_once(&mut store, 3, 40, 0, 1, |_| result_for(40, 0)), result_for(40, 0));
        assert_eq!(inbox_result(&store, 3, 40, 0), Some(result_for(40, 0)));
        assert_eq!(InboxHead::read(&store, 3).pages, Some(inbox_pages(&store, 3)));
    }

    fn result_for(index: u64, position: u32) -> EffectResult {
        match position % 3 {
            0 => EffectResult::GiftCredited { diamonds_balance: index * 1_000 + u64::from(position) },
            1 => EffectResult::Credited { coins_balance: index },
            _ => EffectResult::Rejected(LedgerError::new(ErrorCode::AccountFrozen, format!("frozen {index}/{position}"))),
        }
    }

    proptest! {
        /// Whatever the order of deliveries and fence raises, on a fresh inbox or one an
        /// earlier build left: once known, the head lists exactly the pages there are, none
        /// below the fence's page, and every effect kept at or above the fence is found.
        #[test]
        fn the_head_lists_exactly_the_inbox_pages(
            legacy in proptest::option::of((proptest::collection::btree_set(0u64..60, 0..20), proptest::option::of(0u64..30))),
            deliveries in proptest::collection::vec((0u64..200, 0u64..8), 1..120),
        ) {
            let mut store = MemStore::new();
            let mut kept = std::collections::BTreeSet::new();
            let mut completed_below = 0;
            if let Some((indexes, fence)) = &legacy {
                legacy_inbox(&mut store, 3, &indexes.iter().copied().collect::<Vec<_>>(), *fence);
                let fence = fence.unwrap_or(0);
                kept.extend(indexes.iter().copied().filter(|&i| i >= fence));
                completed_below = fence;
            }
            for (index, advance) in deliveries {
                completed_below += advance;
                let fence = InboxHead::read(&store, 3).fence;
                if index >= fence {
                    kept.insert(index);
                }
                deliver(&mut store, 3, index, completed_below);
                let head = InboxHead::read(&store, 3);
                kept.retain(|&i| i >= head.fence);
                let pages = inbox_pages(&store, 3);
                if let Some(listed) = &head.pages {
                    prop_assert_eq!(listed, &pages);
                }
                if head.fence > fence || head.pages.is_some() {
                    prop_assert!(pages.iter().all(|&p| p >= keys::inbox_page_of(head.fence)), "{:?} below {}", pages, head.fence);
                }
                for &i in &kept {
                    prop_assert_eq!(inbox_result(&store, 3, i, 0), Some(result_for(i, 0)));
                }
            }
        }

        /// Effects kept in any order are each found with their own result; others are not.
        #[test]
        fn an_inbox_page_finds_every_kept_effect_in_any_order(
            ids in proptest::collection::btree_set((0u64..2, 0u32..300), 0..200),
            seed in any::<u64>(),
        ) {
            let mut order: Vec<(u64, u32)> = ids.iter().copied().collect();
            // A deterministic shuffle: deliveries from one home arrive in any order.
            let mut state = seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut store = MemStore::new();
            for &(index, position) in &order {
                prop_assert_eq!(inbox_result(&store, 3, index, position), None);
                let mut head = InboxHead::read(&store, 3);
                InboxSlot::read(&store, 3, index, position).keep(&mut store, &result_for(index, position), &mut head);
            }
            for index in 0..2 {
                for position in 0..300 {
                    let want = ids.contains(&(index, position)).then(|| result_for(index, position));
                    prop_assert_eq!(inbox_result(&store, 3, index, position), want);
                }
            }
            prop_assert_eq!(inbox_result(&store, 4, 0, 0), None, "another home's page");
        }
    }

    #[test]
    #[should_panic(expected = "already holds effect 7/2")]
    fn an_effect_is_kept_once() {
        let mut store = MemStore::new();
        let mut head = InboxHead::read(&store, 1);
        InboxSlot::read(&store, 1, 7, 2).keep(&mut store, &EffectResult::Forgotten, &mut head);
        InboxSlot::read(&store, 1, 7, 2).keep(&mut store, &EffectResult::Forgotten, &mut head);
    }

    #[test]
    #[should_panic(expected = "corrupt inbox page")]
    fn a_truncated_inbox_page_stops_the_shard() {
        let mut store = MemStore::new();
        let mut head = InboxHead::read(&store, 1);
        InboxSlot::read(&store, 1, 7, 2).keep(&mut store, &EffectResult::Forgotten, &mut head);
        let key = keys::inbox_page(1, keys::inbox_page_of(7));
        let mut page = store.get(&key).unwrap();
        page.truncate(10);
        store.put(&key, page);
        inbox_result(&store, 1, 7, 2);
    }
}
