//! The one place that turns a [`NodeError`] into a gRPC status: the gRPC code, the stable
//! error code (in an `ErrorDetail` in the status details and in the `coinledger-error-code`
//! trailer), a human message and the leader hint.

use prost::Message as _;
use tonic::{Code, Status};

use crate::error::NodeError;
use crate::ledger::ErrorCode;
use crate::proto;

fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode::*;
    match code {
        InvalidArgument | InvalidId | InvalidAmount | AmountTooLarge | UnknownCurrency
        | InvalidQuantity | MessageTooLong | SelfGift | InvalidRateCard | InvalidCursor => {
            Code::InvalidArgument
        }
        UnknownGift | UnknownPaymentRef | UnknownPayout | AccountNotFound => Code::NotFound,
        DuplicatePaymentRef | RequestIdReused => Code::AlreadyExists,
        InsufficientCoins | InsufficientDiamonds | BelowMinimum | AccountFrozen | LimitExceeded
        | PayoutAlreadyPosted | PayoutAlreadyVoided | AlreadyRefunded | PurchaseNotCredited => {
            Code::FailedPrecondition
        }
        NotLeader | Unavailable => Code::Unavailable,
        Timeout => Code::DeadlineExceeded,
        Internal => Code::Internal,
    }
}

/// The stable code, message, leader hint and shard of an error.
pub fn error_detail(e: &NodeError) -> (ErrorCode, proto::ErrorDetail) {
    let (code, message, leader_hint, shard) = match e {
        NodeError::Ledger(le) => (le.code, le.message.clone(), None, None),
        NodeError::NotLeader { shard, leader_hint, .. } => (
            ErrorCode::NotLeader,
            match leader_hint {
                Some(h) => format!("this node does not lead shard {shard}; its leader is at {h}"),
                None => format!("this node does not lead shard {shard} and no leader is known yet; retry"),
            },
            leader_hint.clone(),
            Some(*shard),
        ),
        NodeError::Unavailable(m) => (ErrorCode::Unavailable, m.clone(), None, None),
        NodeError::Timeout => (
            ErrorCode::Timeout,
            "deadline passed before the outcome was known: retry with the same request id".into(),
            None,
            None,
        ),
        NodeError::Internal(m) => (ErrorCode::Internal, m.clone(), None, None),
    };
    let proto_code = proto::ErrorCode::from_str_name(code.as_str()).unwrap_or(proto::ErrorCode::Internal);
    let detail = proto::ErrorDetail {
        code: proto_code as i32,
        code_name: code.as_str().to_string(),
        message,
        leader_hint: leader_hint.unwrap_or_default(),
        shard: shard.unwrap_or(0),
    };
    (code, detail)
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let (code, detail) = error_detail(&e);
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("coinledger-error-code", code.as_str().parse().expect("ascii code"));
        let message = detail.message.clone();
        Status::with_details_and_metadata(grpc_code(code), message, detail.encode_to_vec().into(), metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerError;

    #[test]
    fn statuses_carry_code_detail_trailer_and_hint() {
        let s: Status = NodeError::Ledger(LedgerError::new(ErrorCode::InsufficientCoins, "alice has 3 coins")).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let d = proto::ErrorDetail::decode(s.details()).unwrap();
        assert_eq!(d.code, proto::ErrorCode::InsufficientCoins as i32);
        assert_eq!(d.code_name, "INSUFFICIENT_COINS");
        assert_eq!(s.metadata().get("coinledger-error-code").unwrap(), "INSUFFICIENT_COINS");

        let s: Status = NodeError::NotLeader { shard: 4, leader_id: Some(2), leader_hint: Some("127.0.0.1:7002".into()) }.into();
        assert_eq!(s.code(), Code::Unavailable);
        let d = proto::ErrorDetail::decode(s.details()).unwrap();
        assert_eq!((d.leader_hint.as_str(), d.shard), ("127.0.0.1:7002", 4));
    }

    #[test]
    fn every_ledger_code_has_a_proto_code_of_the_same_name() {
        use ErrorCode::*;
        for code in [
            InvalidArgument, InvalidId, InvalidAmount, AmountTooLarge, UnknownCurrency, UnknownGift,
            InvalidQuantity, MessageTooLong, SelfGift, InsufficientCoins, InsufficientDiamonds,
            BelowMinimum, AccountFrozen, LimitExceeded, DuplicatePaymentRef, RequestIdReused,
            UnknownPaymentRef, UnknownPayout, PayoutAlreadyPosted, PayoutAlreadyVoided,
            AlreadyRefunded, PurchaseNotCredited, AccountNotFound, InvalidRateCard, NotLeader,
            Unavailable, Timeout, Internal, InvalidCursor,
        ] {
            assert!(proto::ErrorCode::from_str_name(code.as_str()).is_some(), "{code:?}");
        }
    }
}
