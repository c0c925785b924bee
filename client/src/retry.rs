//! The retry decision table and the backoff schedule, apart from any I/O so they can be tested
//! as tables.
//!
//! | answer                                   | next step                      | outcome      |
//! |------------------------------------------|--------------------------------|--------------|
//! | OK or a definite error (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INTERNAL codes) | stop | known |
//! | NOT_LEADER with a hint                   | go to the hinted endpoint      | known        |
//! | NOT_LEADER without hint, UNAVAILABLE     | next endpoint, after backoff   | known        |
//! | connect error (request never sent)       | next endpoint, after backoff   | known        |
//! | TIMEOUT, attempt timeout, broken connection | next endpoint, after backoff | **unknown**  |
//!
//! "Outcome unknown" means the command may have been applied. Retrying with the same request id
//! is safe (the node answers the first outcome), but if the deadline runs out the caller must
//! be told the truth: TIMEOUT, not the last UNAVAILABLE.

use std::time::Duration;

use rand::Rng;
use tonic::Status;

use crate::error::{is_transport_error, ClientError};
use crate::proto::ErrorCode;

/// What the retry loop does after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A definite answer: return it.
    Stop,
    /// Retry at once on this endpoint ("host:port" as the node gave it).
    Leader(String),
    /// Retry on the next endpoint, round-robin, after a backoff.
    Rotate,
}

/// The decision table above, for an error already parsed.
pub(crate) fn decide(err: &ClientError) -> Step {
    match (&err.code, &err.leader_hint) {
        (ErrorCode::NotLeader, Some(hint)) => Step::Leader(hint.clone()),
        _ if err.is_retryable() => Step::Rotate,
        _ => Step::Stop,
    }
}

/// True if the command may have reached a node and been applied although no answer came back:
/// a TIMEOUT answer, or a transport failure other than failing to connect.
pub(crate) fn outcome_unknown(status: &Status, err: &ClientError) -> bool {
    err.code == ErrorCode::Timeout || (is_transport_error(status) && !is_connect_error(status))
}

/// A connect failure means the request was never sent, so the outcome is known: not applied.
fn is_connect_error(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Exponential backoff with jitter: each pause is drawn from [d/2, d], where d starts at the
/// initial value and doubles up to the maximum. The jitter keeps many clients that lost the
/// same leader from retrying in lock-step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    pub(crate) fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            next_ms: initial_ms.min(max_ms),
            max_ms,
        }
    }

    /// The next pause; advances the schedule.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let d = self.next_ms;
        self.next_ms = d.saturating_mul(2).max(1).min(self.max_ms);
        let ms = if d < 2 {
            d
        } else {
            rand::thread_rng().gen_range(d / 2..=d)
        };
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ErrorCode, hint: Option<&str>) -> ClientError {
        let mut e = ClientError::local(code, "m");
        e.leader_hint = hint.map(str::to_string);
        e
    }

    #[test]
    fn decision_table() {
        use ErrorCode as E;
        let cases = [
            (
                err(E::NotLeader, Some("n2:7002")),
                Step::Leader("n2:7002".into()),
            ),
            (err(E::NotLeader, None), Step::Rotate),
            (err(E::Unavailable, None), Step::Rotate),
            (err(E::Timeout, None), Step::Rotate),
            (err(E::InvalidArgument, None), Step::Stop),
            (err(E::InvalidAmount, None), Step::Stop),
            (err(E::AccountNotFound, None), Step::Stop),
            (err(E::DuplicatePaymentRef, None), Step::Stop),
            (err(E::RequestIdReused, None), Step::Stop),
            (err(E::InsufficientCoins, None), Step::Stop),
            (err(E::AccountFrozen, None), Step::Stop),
            (err(E::Internal, None), Step::Stop),
            // A hint on anything but NOT_LEADER is ignored: the answer is definite.
            (err(E::InsufficientCoins, Some("n2:7002")), Step::Stop),
        ];
        for (e, want) in cases {
            assert_eq!(decide(&e), want, "{e}");
        }
    }

    #[test]
    fn outcome_is_unknown_only_when_the_request_may_have_landed() {
        let timeout = Status::deadline_exceeded("slow");
        let e = ClientError::from_status(&timeout, None);
        assert!(outcome_unknown(&timeout, &e));

        let unavailable = Status::unavailable("electing");
        let e = ClientError::from_status(&unavailable, None);
        assert!(!outcome_unknown(&unavailable, &e));

        let mut broken = Status::unknown("connection reset");
        broken.set_source(std::sync::Arc::new(std::io::Error::other("reset")));
        let e = ClientError::from_status(&broken, None);
        assert!(outcome_unknown(&broken, &e));

        let mut refused = Status::unavailable("tcp connect error");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        refused.set_source(std::sync::Arc::new(tonic::ConnectError(Box::new(io))));
        let e = ClientError::from_status(&refused, None);
        assert!(!outcome_unknown(&refused, &e));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let mut b = Backoff::new(20, 100);
        let bounds = [(10, 20), (20, 40), (40, 80), (50, 100), (50, 100)];
        for (lo, hi) in bounds {
            let p = b.next_pause().as_millis() as u64;
            assert!((lo..=hi).contains(&p), "{p} not in {lo}..={hi}");
        }
        let mut zero = Backoff::new(0, 0);
        assert_eq!(zero.next_pause(), Duration::ZERO);
    }
}
