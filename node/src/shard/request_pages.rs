//! Request records on disk, many to an engine key.
//!
//! The ledger keeps a record of every request id for ever (`req/{id}` in its keys), one per
//! command. As one sled key each they were most of the keys a node holds and half of the keys
//! a state flush writes: sled keeps about 13 to 35 bytes of resident memory per key it has, and
//! inserts every key of a flush on its own (copying the leaf it lands in, splitting full ones).
//! So the state cache holds them one per key, as the ledger wrote them, and a flush merges
//! them into pages of about [`PAGE_RECORDS_MEAN`] records; a read the cache cannot answer
//! finds the one page that can hold the id.
//!
//! Where pages start depends on the ids alone: an id whose hash is a multiple of
//! `PAGE_RECORDS_MEAN` starts a page, under `rqp/{id}`; ids below the first such id live in
//! the page `rqp/`. Every replica therefore holds byte-identical pages for the same records,
//! whatever its flush history, and a snapshot carries them as they are. The page of `id` is the
//! one with the greatest key at or below `rqp/{id}`; since the client library's ids start with
//! their time, new ids land in the last page, which each flush rewrites with them.
//!
//! A page: the row count (u32 BE), one u32 BE offset per row (into the rows area), then the
//! rows, sorted by id, each the id's length (u8), the id and the record (up to the next row).
//! A lookup is a binary search over the offsets; nothing else of the page is decoded.

use crate::ledger::layout::fnv1a_64;
use crate::storage::{prefix_end, Engine, StorageError, WriteBatch};

type Result<T> = std::result::Result<T, StorageError>;

/// Table of the pages, under the shard's ledger prefix. Ledger keys never start with it.
pub const PAGE_PREFIX: &[u8] = b"rqp/";

/// Mean records per page (page sizes are geometric around it; 1 in 3,000 holds above 512).
const PAGE_RECORDS_MEAN: u64 = 64;

const COUNT_BYTES: usize = 4;
const OFFSET_BYTES: usize = 4;

/// Whether `id` starts a page of its own: FNV-1a, then MurmurHash3's 64-bit finalizer (FNV's
/// own bits are poorly mixed for short ids that differ in their last characters, and its raw
/// value is what places accounts in shards).
pub fn starts_page(id: &[u8]) -> bool {
    let mut h = fnv1a_64(id);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h.is_multiple_of(PAGE_RECORDS_MEAN)
}

fn page_key(shard_prefix: &[u8], start_id: &[u8]) -> Vec<u8> {
    [shard_prefix, PAGE_PREFIX, start_id].concat()
}

fn corrupt(key: &[u8], what: &str) -> StorageError {
    StorageError::Corrupt { key: format!("request page {}", String::from_utf8_lossy(key)), reason: what.to_string() }
}

/// A page's row count and where its rows area starts.
fn layout(key: &[u8], page: &[u8]) -> Result<(usize, usize)> {
    let count = page.get(..COUNT_BYTES).ok_or_else(|| corrupt(key, "shorter than its row count"))?;
    let count = u32::from_be_bytes(count.try_into().expect("4 bytes")) as usize;
    let area = COUNT_BYTES + count * OFFSET_BYTES;
    if page.len() < area {
        return Err(corrupt(key, "shorter than its offsets"));
    }
    Ok((count, area))
}

/// Row `i` of a page whose [`layout`] is `(count, area)`: (id, record).
fn row_at<'a>(key: &[u8], page: &'a [u8], (count, area): (usize, usize), i: usize) -> Result<(&'a [u8], &'a [u8])> {
    let offset = |i: usize| {
        let at = COUNT_BYTES + i * OFFSET_BYTES;
        area + u32::from_be_bytes(page[at..at + OFFSET_BYTES].try_into().expect("4 bytes")) as usize
    };
    let end = if i + 1 < count { offset(i + 1) } else { page.len() };
    let row = page.get(offset(i)..end).ok_or_else(|| corrupt(key, "row out of range"))?;
    let (&id_len, rest) = row.split_first().ok_or_else(|| corrupt(key, "empty row"))?;
    if rest.len() < usize::from(id_len) {
        return Err(corrupt(key, "row shorter than its id"));
    }
    Ok(rest.split_at(usize::from(id_len)))
}

/// The rows of a page, borrowed from its bytes: (id, record), sorted by id.
fn rows<'a>(key: &[u8], page: &'a [u8]) -> Result<Vec<(&'a [u8], &'a [u8])>> {
    let layout = layout(key, page)?;
    (0..layout.0).map(|i| row_at(key, page, layout, i)).collect()
}

/// The record of `id` in `page`, by binary search over the row offsets.
fn find<'a>(key: &[u8], page: &'a [u8], id: &[u8]) -> Result<Option<&'a [u8]>> {
    let layout = layout(key, page)?;
    let (mut low, mut high) = (0, layout.0);
    while low < high {
        let mid = low + (high - low) / 2;
        let (row_id, record) = row_at(key, page, layout, mid)?;
        match row_id.cmp(id) {
            std::cmp::Ordering::Equal => return Ok(Some(record)),
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
        }
    }
    Ok(None)
}

fn encode(rows: &[(&[u8], &[u8])]) -> Vec<u8> {
    let rows_bytes: usize = rows.iter().map(|(id, record)| 1 + id.len() + record.len()).sum();
    let mut page = Vec::with_capacity(COUNT_BYTES + rows.len() * OFFSET_BYTES + rows_bytes);
    page.extend_from_slice(&u32::try_from(rows.len()).expect("rows fit a u32").to_be_bytes());
    let mut offset = 0usize;
    for (id, record) in rows {
        page.extend_from_slice(&u32::try_from(offset).expect("a page stays far below 4 GiB").to_be_bytes());
        offset += 1 + id.len() + record.len();
    }
    for (id, record) in rows {
        page.push(u8::try_from(id.len()).expect("request ids are at most 64 bytes"));
        page.extend_from_slice(id);
        page.extend_from_slice(record);
    }
    page
}

/// The page that can hold `id`: the one with the greatest key at or below `rqp/{id}`.
fn covering(engine: &dyn Engine, shard_prefix: &[u8], id: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let first = page_key(shard_prefix, b"");
    let mut past_id = page_key(shard_prefix, id);
    past_id.push(0);
    Ok(engine.scan(&first, &past_id, 1, true)?.into_iter().next())
}

/// The start id of the first page after the one starting at `start_id`, if any.
fn next_start(engine: &dyn Engine, shard_prefix: &[u8], start_id: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut after = page_key(shard_prefix, start_id);
    after.push(0);
    let table_end = prefix_end(&page_key(shard_prefix, b"")).expect("the page prefix has an end");
    let skip = shard_prefix.len() + PAGE_PREFIX.len();
    Ok(engine.scan(&after, &table_end, 1, false)?.into_iter().next().map(|(key, _)| key[skip..].to_vec()))
}

/// The stored record of request `id` (the suffix of its ledger key), if any.
pub fn get(engine: &dyn Engine, shard_prefix: &[u8], id: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some((key, page)) = covering(engine, shard_prefix, id)? else { return Ok(None) };
    Ok(find(&key, &page, id)?.map(<[u8]>::to_vec))
}

/// The page with the greatest start: where every new time-ordered id lands, so the state
/// cache keeps it to answer those ids' lookups (almost all of them miss) without a reverse
/// scan of the engine, which cost twice a point read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    start_id: Vec<u8>,
    page: Vec<u8>,
}

impl Tail {
    /// The record of `id`, if the tail is the page that can hold it (`None` if it is not).
    pub fn get(&self, id: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
        if id < self.start_id.as_slice() {
            return Ok(None);
        }
        Ok(Some(find(PAGE_PREFIX, &self.page, id)?.map(<[u8]>::to_vec)))
    }
}

/// The last page of the shard's table, if it has any page.
pub fn last_page(engine: &dyn Engine, shard_prefix: &[u8]) -> Result<Option<Tail>> {
    let first = page_key(shard_prefix, b"");
    let end = prefix_end(&first).expect("the page prefix has an end");
    let skip = first.len();
    Ok(engine.scan(&first, &end, 1, true)?.into_iter().next().map(|(key, page)| Tail { start_id: key[skip..].to_vec(), page }))
}

/// Adds `records` (id, record), sorted by id with no id twice, to their pages in `batch`: one
/// read and one write per page they touch. A record of an id already stored replaces it.
/// Returns the table's last page as the batch leaves it, if the batch changes it.
pub fn merge(engine: &dyn Engine, shard_prefix: &[u8], records: &[(&[u8], &[u8])], batch: &mut WriteBatch) -> Result<Option<Tail>> {
    debug_assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "records are sorted by id");
    let skip = shard_prefix.len() + PAGE_PREFIX.len();
    let mut rest = records;
    let mut tail = None;
    while let Some(&(first_id, _)) = rest.first() {
        // The page holding first_id (or the first page, `rqp/`, if none is at or below it).
        let (start_id, old_key, old_page) = match covering(engine, shard_prefix, first_id)? {
            Some((key, page)) => (key[skip..].to_vec(), key, page),
            None => (Vec::new(), page_key(shard_prefix, b""), Vec::new()),
        };
        let old_rows = if old_page.is_empty() { Vec::new() } else { rows(&old_key, &old_page)? };
        // Every record below the next page's start belongs to this page.
        let next = next_start(engine, shard_prefix, &start_id)?;
        let take = next.as_ref().map_or(rest.len(), |next| rest.partition_point(|(id, _)| *id < next.as_slice()));
        let (mine, later) = rest.split_at(take);
        rest = later;

        let mut merged: Vec<(&[u8], &[u8])> = Vec::with_capacity(old_rows.len() + mine.len());
        let (mut a, mut b) = (old_rows.iter().peekable(), mine.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 < y.0 => merged.push(*a.next().expect("peeked")),
                (Some(x), Some(y)) if x.0 == y.0 => {
                    a.next();
                    merged.push(*b.next().expect("peeked"));
                }
                (_, Some(_)) => merged.push(*b.next().expect("peeked")),
                (Some(_), None) => merged.push(*a.next().expect("peeked")),
                (None, None) => break,
            }
        }
        // Cut where an id starts a page of its own (new ids can start new pages).
        let mut page_start = start_id.as_slice();
        let mut from = 0;
        for i in 0..merged.len() {
            if starts_page(merged[i].0) && merged[i].0 != page_start {
                if i == 0 && !old_page.is_empty() {
                    // Only the page `rqp/` can lose its first row this way (to a new id that
                    // starts a page below all of its rows): it now holds nothing.
                    batch.delete(old_key.clone());
                }
                if i > from {
                    batch.put(page_key(shard_prefix, page_start), encode(&merged[from..i]));
                }
                page_start = merged[i].0;
                from = i;
            }
        }
        if merged.len() > from {
            let page = encode(&merged[from..]);
            if next.is_none() {
                tail = Some(Tail { start_id: page_start.to_vec(), page: page.clone() });
            }
            batch.put(page_key(shard_prefix, page_start), page);
        }
    }
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::storage::MemEngine;

    const PREFIX: &[u8] = b"L\0\0\0\x07";

    fn merge_all(engine: &MemEngine, records: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let rows: Vec<(&[u8], &[u8])> = records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let mut batch = WriteBatch::default();
        let before = last_page(engine, PREFIX).unwrap();
        let tail = merge(engine, PREFIX, &rows, &mut batch).unwrap();
        engine.write(batch).unwrap();
        // What merge says of the last page is what the engine then holds.
        assert_eq!(tail.or(before), last_page(engine, PREFIX).unwrap());
    }

    fn pages(engine: &MemEngine) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = page_key(PREFIX, b"");
        engine.scan(&start, &prefix_end(&start).unwrap(), usize::MAX, false).unwrap()
    }

    #[test]
    fn thousands_of_records_fill_pages_that_start_where_their_ids_say() {
        let engine = MemEngine::new();
        let records: BTreeMap<Vec<u8>, Vec<u8>> =
            (0..5_000).map(|i| (format!("id-{i:06}").into_bytes(), format!("record {i}").into_bytes())).collect();
        for chunk in records.iter().collect::<Vec<_>>().chunks(700) {
            merge_all(&engine, &chunk.iter().map(|(k, v)| ((*k).clone(), (*v).clone())).collect());
        }
        let pages = pages(&engine);
        assert!((40..=120).contains(&pages.len()), "about 5,000 / 64 pages, got {}", pages.len());
        let mut seen = 0;
        for (key, page) in &pages {
            let start = &key[PREFIX.len() + PAGE_PREFIX.len()..];
            let rows = rows(key, page).unwrap();
            assert!(start.is_empty() || (starts_page(start) && rows[0].0 == start), "a page starts at its first id");
            assert!(rows[1..].iter().all(|(id, _)| !starts_page(id)), "no id inside a page starts one");
            seen += rows.len();
        }
        assert_eq!(seen, 5_000);
        for (id, record) in &records {
            assert_eq!(get(&engine, PREFIX, id).unwrap().as_ref(), Some(record));
        }
        assert_eq!(get(&engine, PREFIX, b"id-9").unwrap(), None);
        assert_eq!(get(&engine, PREFIX, b"a").unwrap(), None, "below every page");
        assert_eq!(get(&MemEngine::new(), PREFIX, b"a").unwrap(), None, "no page at all");
    }

    #[test]
    fn a_corrupt_page_is_an_error_not_a_panic() {
        let engine = MemEngine::new();
        let mut batch = WriteBatch::default();
        batch.put(page_key(PREFIX, b""), vec![0, 0, 0, 9, 1]);
        engine.write(batch).unwrap();
        assert!(matches!(get(&engine, PREFIX, b"x"), Err(StorageError::Corrupt { .. })));
    }

    proptest! {
        /// Against a map: whatever the order of flushes, every stored record is found, nothing
        /// else is, and the pages are the same bytes as one flush of everything makes.
        #[test]
        fn pages_hold_exactly_the_records_in_pages_that_depend_only_on_them(
            flushes in prop::collection::vec(prop::collection::btree_map("[a-z0-9]{1,12}", "[a-z]{0,20}", 0..200), 1..8),
            probes in prop::collection::vec("[a-z0-9]{1,12}", 0..50),
        ) {
            let engine = MemEngine::new();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for flush in &flushes {
                let flush: BTreeMap<Vec<u8>, Vec<u8>> = flush.iter().map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes())).collect();
                merge_all(&engine, &flush);
                model.extend(flush);
            }
            for (id, record) in &model {
                prop_assert_eq!(get(&engine, PREFIX, id).unwrap(), Some(record.clone()));
            }
            for probe in &probes {
                prop_assert_eq!(get(&engine, PREFIX, probe.as_bytes()).unwrap(), model.get(probe.as_bytes()).cloned());
            }
            let last = last_page(&engine, PREFIX).unwrap();
            prop_assert_eq!(last.is_none(), model.is_empty());
            for probe in probes.iter().filter(|_| last.is_some()) {
                if let Some(found) = last.as_ref().expect("filtered").get(probe.as_bytes()).unwrap() {
                    prop_assert_eq!(found, model.get(probe.as_bytes()).cloned());
                }
            }
            let at_once = MemEngine::new();
            merge_all(&at_once, &model);
            prop_assert_eq!(pages(&engine), pages(&at_once));
        }
    }
}
