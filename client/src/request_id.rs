//! Client request ids: the idempotency key of every mutating call.
//!
//! The id is chosen once, before the first attempt, and reused by every retry: that is what
//! lets a node answer a retried command with its first outcome instead of applying it twice.

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::proto::{
    CashOutRequest, GiftRequest, PayoutRequest, PurchaseRequest, RefundRequest, SetFrozenRequest,
    SetLimitRequest, SetRatesRequest,
};

/// Length of generated ids: a timestamp of [`TIME_CHARS`] characters, then random ones.
pub const REQUEST_ID_LEN: usize = 24;

/// Base-62 digits of the millisecond timestamp that starts an id: 62^8 ms is about 6,900
/// years, so the prefix never wraps or changes width.
pub const TIME_CHARS: usize = 8;

/// Digits in ASCII order, so the ids' byte order is the timestamps' order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh id of [0-9A-Za-z] (URL-safe and valid under the API's id rules): the current Unix
/// time in milliseconds in base 62, then 16 random characters (about 95 random bits, so two
/// clients never pick the same id by chance, even in the same millisecond).
///
/// Why time first: a node keeps every request id in a sorted on-disk index, and checks it
/// before each command. Ids that grow with time land at the end of that index, in pages that
/// are in memory already; purely random ids (like UUIDv4) would each touch a page of their
/// own, read from disk once the index outgrows the cache.
pub fn new_request_id() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    request_id_at(now_ms, &mut rand::thread_rng())
}

fn request_id_at(mut unix_ms: u64, rng: &mut impl Rng) -> String {
    let mut time = [b'0'; TIME_CHARS];
    for digit in time.iter_mut().rev() {
        *digit = BASE62[(unix_ms % 62) as usize];
        unix_ms /= 62;
    }
    let mut id = String::with_capacity(REQUEST_ID_LEN);
    id.extend(time.iter().map(|&b| char::from(b)));
    id.extend(rng.sample_iter(&Alphanumeric).take(REQUEST_ID_LEN - TIME_CHARS).map(char::from));
    id
}

/// A request that carries a `request_id` (every mutating request of the API).
pub trait WithRequestId {
    /// The request's id field.
    fn request_id_mut(&mut self) -> &mut String;

    /// Fills an empty id with a fresh one; keeps a caller-chosen id. Returns the id in force.
    fn fill_request_id(&mut self) -> String {
        let id = self.request_id_mut();
        if id.is_empty() {
            *id = new_request_id();
        }
        id.clone()
    }
}

macro_rules! with_request_id {
    ($($t:ty),*) => {$(
        impl WithRequestId for $t {
            fn request_id_mut(&mut self) -> &mut String {
                &mut self.request_id
            }
        }
    )*};
}

with_request_id!(
    PurchaseRequest,
    GiftRequest,
    CashOutRequest,
    PayoutRequest,
    RefundRequest,
    SetRatesRequest,
    SetLimitRequest,
    SetFrozenRequest
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_random_and_url_safe() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), REQUEST_ID_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn ids_sort_by_time() {
        let mut rng = rand::thread_rng();
        let times = [0, 1, 61, 62, 999, 1_700_000_000_000, 1_700_000_000_001, 62u64.pow(8) - 1];
        let ids: Vec<String> = times.iter().map(|&t| request_id_at(t, &mut rng)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0][..TIME_CHARS] < pair[1][..TIME_CHARS], "{pair:?}");
        }
        assert!(ids.iter().all(|id| id.len() == REQUEST_ID_LEN));
        assert_eq!(&ids[0][..TIME_CHARS], "00000000");
        assert_eq!(&ids[2][..TIME_CHARS], "0000000z");
        assert_eq!(&ids[3][..TIME_CHARS], "00000010");
        assert_eq!(&ids[7][..TIME_CHARS], "zzzzzzzz");
        let later = new_request_id();
        assert!(ids[5][..TIME_CHARS] < later[..TIME_CHARS], "now is after 2023: {later}");
    }

    #[test]
    fn fills_only_an_empty_id() {
        let mut req = GiftRequest::default();
        let id = req.fill_request_id();
        assert_eq!(req.request_id, id);
        assert_eq!(id.len(), REQUEST_ID_LEN);
        assert_eq!(req.fill_request_id(), id, "a filled id is kept");

        let mut mine = PurchaseRequest {
            request_id: "my-id-1".into(),
            ..Default::default()
        };
        assert_eq!(mine.fill_request_id(), "my-id-1");
    }
}
