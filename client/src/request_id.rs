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

/// Length of generated ids: 24 alphanumeric characters are about 142 random bits, so two
/// clients never pick the same id by chance, and they stay well inside the 64-char limit.
pub const REQUEST_ID_LEN: usize = 24;

/// A fresh random id of [A-Za-z0-9] (URL-safe and valid under the API's id rules).
pub fn new_request_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(REQUEST_ID_LEN)
        .map(char::from)
        .collect()
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
