//! gRPC services: thin handlers that convert (`convert`), route (`crate::router`) and map
//! errors (`status`). No ledger rule lives here.

pub mod admin;
pub mod admission;
pub mod convert;
pub mod ledger_service;
pub mod status;
pub mod submit_stream;

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Status};

use crate::error::NodeError;

/// The deadline of a call: the client's `grpc-timeout` if it sent one, capped by the node's
/// `request_timeout`. Past it the answer is TIMEOUT (outcome unknown: retry, same request id).
pub fn deadline_of<T>(request: &Request<T>, cap: Duration) -> Duration {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |asked| before_the_caller(asked, cap))
}

/// How long the node works on a call whose caller waits `asked`: a tenth less, so that the
/// caller hears our TIMEOUT (with its code and advice) rather than its own timeout (tonic's
/// server even enforces grpc-timeout itself, with an untyped status), and never beyond `cap`.
pub fn before_the_caller(asked: Duration, cap: Duration) -> Duration {
    asked.saturating_sub(asked / 10).min(cap)
}

/// `grpc-timeout` is 1 to 8 digits followed by a unit: H, M, S, m (ms), u (µs), n (ns).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs `work` within `deadline`; a timeout becomes TIMEOUT.
pub async fn within<T>(deadline: Duration, work: impl Future<Output = Result<T, NodeError>>) -> Result<T, Status> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result.map_err(Status::from),
        Err(_) => Err(NodeError::Timeout.into()),
    }
}

fn unexpected(what: &str, got: impl std::fmt::Debug) -> Status {
    NodeError::Internal(format!("{what} produced an unexpected outcome: {got:?}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_are_capped() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        let mut r = Request::new(());
        r.metadata_mut().insert("grpc-timeout", "1H".parse().unwrap());
        assert_eq!(deadline_of(&r, Duration::from_secs(10)), Duration::from_secs(10));
        r.metadata_mut().insert("grpc-timeout", "1000m".parse().unwrap());
        assert_eq!(deadline_of(&r, Duration::from_secs(10)), Duration::from_millis(900));
    }
}
