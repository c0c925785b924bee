//! The one error type of the library, parsed from a gRPC status.
//!
//! The node puts an encoded [`ErrorDetail`] in every error status and the same stable code, as
//! text, in the `coinledger-error-code` trailer (ledger.proto). We read the detail first because
//! it also carries the leader hint; the trailer is the fallback for a node or proxy that only
//! kept the trailer; the bare gRPC code is the last resort (transport errors, foreign servers).

use std::fmt;

use prost::Message;
use tonic::{Code, Status};

use crate::proto::{ErrorCode, ErrorDetail};

/// Trailer that holds the stable error code as text (same value as `ErrorDetail.code_name`).
pub const ERROR_CODE_TRAILER: &str = "coinledger-error-code";

/// An error answered by a node, produced by the transport, or found by the client itself.
///
/// Branch on `code`: it is stable across versions. `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// `code`'s name, e.g. "INSUFFICIENT_COINS": what the CLI prints and scripts match on.
    pub code_name: String,
    /// A sentence for a person.
    pub message: String,
    /// For NOT_LEADER: the endpoint ("host:port") the node believes leads the shard.
    pub leader_hint: Option<String>,
    /// The gRPC status code the error arrived with (or the one closest to a local error).
    pub grpc_code: Code,
    /// The endpoint that gave this answer, if any endpoint was reached.
    pub endpoint: Option<String>,
}

impl ClientError {
    /// An error found without asking a node (bad configuration, unreadable input file).
    pub fn local(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            code_name: code.as_str_name().to_string(),
            message: message.into(),
            leader_hint: None,
            grpc_code: grpc_code_for(code),
            endpoint: None,
        }
    }

    /// Parses a status: the `ErrorDetail` in its details, else the code trailer, else the gRPC
    /// code. A status that tonic built from a local transport failure (it has a `source`, which
    /// statuses received from a server never have) is UNAVAILABLE: the node was not reached or
    /// the connection broke, so trying another endpoint is the right move.
    pub fn from_status(status: &Status, endpoint: Option<&str>) -> ClientError {
        if let Some(mut detail) = decode_detail(status.details()) {
            if detail.message.is_empty() {
                detail.message = status.message().to_string();
            }
            let mut err = ClientError::from_detail(detail, endpoint);
            err.grpc_code = status.code();
            return err;
        }
        let endpoint = endpoint.map(str::to_string);
        let code = trailer_code(status).unwrap_or_else(|| code_from_grpc(status));
        // A transport error ("tcp connect error") means little without the endpoint it hit.
        let message = match &endpoint {
            Some(e) if is_transport_error(status) => format!("{e}: {}", status.message()),
            _ => status.message().to_string(),
        };
        ClientError {
            code,
            code_name: code.as_str_name().to_string(),
            message,
            leader_hint: None,
            grpc_code: status.code(),
            endpoint,
        }
    }

    /// The error of one command of a SubmitBatch (or of a status's details). The gRPC code is
    /// the one the single-command RPC would have answered with. An unknown code (a newer node)
    /// is INTERNAL: a definite answer we cannot interpret, never silently retried.
    pub fn from_detail(detail: ErrorDetail, endpoint: Option<&str>) -> ClientError {
        let code = ErrorCode::try_from(detail.code).unwrap_or(ErrorCode::Internal);
        ClientError {
            code,
            code_name: code.as_str_name().to_string(),
            message: detail.message,
            leader_hint: Some(detail.leader_hint).filter(|h| !h.is_empty()),
            grpc_code: grpc_code_for(code),
            endpoint: endpoint.map(str::to_string),
        }
    }

    /// True for codes that mean "not done here, try again (same request id)": NOT_LEADER,
    /// UNAVAILABLE and TIMEOUT. Every other code is a definite answer and retrying it would
    /// only return the same answer (or, for INTERNAL, hammer a broken node).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::NotLeader | ErrorCode::Unavailable | ErrorCode::Timeout
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code_name, self.message)
    }
}

impl std::error::Error for ClientError {}

/// True if tonic made this status from a local error (connect failure, broken connection,
/// client-side timeout) rather than receiving it from a server.
pub(crate) fn is_transport_error(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// An empty or undecodable details field, or one whose code is UNSPECIFIED, is no detail.
fn decode_detail(bytes: &[u8]) -> Option<ErrorDetail> {
    if bytes.is_empty() {
        return None;
    }
    let detail = ErrorDetail::decode(bytes).ok()?;
    (detail.code != ErrorCode::Unspecified as i32).then_some(detail)
}

fn trailer_code(status: &Status) -> Option<ErrorCode> {
    let text = status.metadata().get(ERROR_CODE_TRAILER)?.to_str().ok()?;
    ErrorCode::from_str_name(text.trim()).filter(|c| *c != ErrorCode::Unspecified)
}

fn code_from_grpc(status: &Status) -> ErrorCode {
    if is_transport_error(status) {
        return ErrorCode::Unavailable;
    }
    match status.code() {
        Code::Unavailable => ErrorCode::Unavailable,
        // A server-side grpc-timeout expiry is answered CANCELLED by tonic: the call may or
        // may not have executed, exactly like a deadline.
        Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Timeout,
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    }
}

/// The gRPC code the node would use for `code` (ledger.proto's table), for local errors.
fn grpc_code_for(code: ErrorCode) -> Code {
    use ErrorCode as E;
    match code {
        E::NotLeader | E::Unavailable => Code::Unavailable,
        E::Timeout => Code::DeadlineExceeded,
        E::Internal | E::Unspecified => Code::Internal,
        E::UnknownPaymentRef | E::UnknownPayout | E::AccountNotFound => Code::NotFound,
        E::UnknownGift => Code::NotFound,
        E::DuplicatePaymentRef | E::RequestIdReused => Code::AlreadyExists,
        E::InvalidArgument | E::InvalidId | E::InvalidAmount | E::UnknownCurrency => {
            Code::InvalidArgument
        }
        E::InvalidQuantity | E::MessageTooLong | E::SelfGift | E::InvalidCursor => {
            Code::InvalidArgument
        }
        _ => Code::FailedPrecondition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn detail_status(code: ErrorCode, hint: &str) -> Status {
        let detail = ErrorDetail {
            code: code as i32,
            code_name: code.as_str_name().into(),
            message: "detail message".into(),
            leader_hint: hint.into(),
            shard: 3,
        };
        Status::with_details(
            Code::Unavailable,
            "status message",
            detail.encode_to_vec().into(),
        )
    }

    #[test]
    fn a_cancelled_call_is_an_unknown_outcome() {
        let e = ClientError::from_status(&Status::cancelled("Timeout expired"), Some("a"));
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.is_retryable());
    }

    #[test]
    fn detail_wins_and_carries_the_leader_hint() {
        let e =
            ClientError::from_status(&detail_status(ErrorCode::NotLeader, "n2:7002"), Some("a"));
        assert_eq!(e.code, ErrorCode::NotLeader);
        assert_eq!(e.code_name, "NOT_LEADER");
        assert_eq!(e.message, "detail message");
        assert_eq!(e.leader_hint.as_deref(), Some("n2:7002"));
        assert_eq!(e.grpc_code, Code::Unavailable);
        assert_eq!(e.endpoint.as_deref(), Some("a"));
        assert_eq!(e.to_string(), "NOT_LEADER: detail message");
        assert!(e.is_retryable());
    }

    #[test]
    fn batch_command_errors_get_the_single_rpc_grpc_code() {
        let detail = ErrorDetail {
            code: ErrorCode::InsufficientCoins as i32,
            code_name: "INSUFFICIENT_COINS".into(),
            message: "need 10 coins".into(),
            leader_hint: String::new(),
            shard: 2,
        };
        let e = ClientError::from_detail(detail, Some("http://n1:1"));
        assert_eq!(e.code, ErrorCode::InsufficientCoins);
        assert_eq!(e.grpc_code, Code::FailedPrecondition);
        assert_eq!(e.leader_hint, None);
        assert_eq!(e.endpoint.as_deref(), Some("http://n1:1"));
        let unknown = ErrorDetail {
            code: 9_999,
            ..Default::default()
        };
        assert_eq!(ClientError::from_detail(unknown, None).code, ErrorCode::Internal);
    }

    #[test]
    fn empty_hint_is_none() {
        let e = ClientError::from_status(&detail_status(ErrorCode::NotLeader, ""), None);
        assert_eq!(e.leader_hint, None);
    }

    #[test]
    fn trailer_only() {
        let mut md = MetadataMap::new();
        md.insert(ERROR_CODE_TRAILER, "INSUFFICIENT_COINS".parse().unwrap());
        let s = Status::with_metadata(Code::FailedPrecondition, "need 100 coins", md);
        let e = ClientError::from_status(&s, None);
        assert_eq!(e.code, ErrorCode::InsufficientCoins);
        assert_eq!(e.code_name, "INSUFFICIENT_COINS");
        assert_eq!(e.message, "need 100 coins");
        assert!(!e.is_retryable());
    }

    #[test]
    fn bare_grpc_codes() {
        let cases = [
            (Code::Unavailable, ErrorCode::Unavailable),
            (Code::DeadlineExceeded, ErrorCode::Timeout),
            (Code::InvalidArgument, ErrorCode::InvalidArgument),
            (Code::NotFound, ErrorCode::Internal),
            (Code::Unknown, ErrorCode::Internal),
        ];
        for (grpc, want) in cases {
            let e = ClientError::from_status(&Status::new(grpc, "m"), None);
            assert_eq!(e.code, want, "{grpc:?}");
            assert_eq!(e.message, "m");
        }
    }

    #[test]
    fn garbage_details_fall_back_to_trailer() {
        let mut md = MetadataMap::new();
        md.insert(ERROR_CODE_TRAILER, "UNKNOWN_GIFT".parse().unwrap());
        let s = Status::with_details_and_metadata(Code::NotFound, "m", vec![0xff, 0xff].into(), md);
        assert_eq!(
            ClientError::from_status(&s, None).code,
            ErrorCode::UnknownGift
        );
    }

    #[test]
    fn transport_errors_are_unavailable() {
        let mut s = Status::unknown("connection reset");
        s.set_source(std::sync::Arc::new(std::io::Error::other("reset")));
        let e = ClientError::from_status(&s, None);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.is_retryable());
    }

    #[test]
    fn local_errors() {
        let e = ClientError::local(ErrorCode::InvalidArgument, "no endpoints");
        assert_eq!(e.to_string(), "INVALID_ARGUMENT: no endpoints");
        assert_eq!(e.grpc_code, Code::InvalidArgument);
    }
}
