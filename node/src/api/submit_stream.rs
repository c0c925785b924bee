//! SubmitStream: clients' commands on one long-lived stream, each answered on its own.
//!
//! SubmitBatch answers a batch when its slowest command is done (a cross-shard gift waits for
//! its credit), so the client library's automatic batching, which gathers the single calls
//! of many callers, made each caller wait for the others: 16 callers got fewer gifts through
//! it than through plain calls. On a stream every call is answered as soon as it is done,
//! and a call costs a share of a frame instead of an HTTP/2 stream (headers, data, trailers,
//! a task) of its own. The commands themselves take the same path as single-command calls
//! (`Router::execute`, admission control included); the replicas batch what reaches a shard
//! together into one raft entry either way.

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::admission::Admission;
use super::{before_the_caller, convert};
use super::ledger_service::{batch_result, BATCH_COMMANDS_MAX};
use crate::call_stream::spawn_serving;
use crate::error::NodeError;
use crate::ledger::{ErrorCode, LedgerError};
use crate::proto::{StreamCall, StreamResult, SubmitStreamReply, SubmitStreamRequest};
use crate::router::Router;

/// What one stream's calls share: where they run, the node's bound and its timeout.
#[derive(Clone)]
pub struct StreamContext {
    pub router: Arc<Router>,
    pub admission: Arc<Admission>,
    pub request_timeout: Duration,
}

/// How long the node works on a call: as for a unary call's grpc-timeout (`deadline_of`), the
/// node's request timeout when the call names none (0).
fn call_deadline(timeout_ms: u64, request_timeout: Duration) -> Duration {
    match timeout_ms {
        0 => request_timeout,
        ms => before_the_caller(Duration::from_millis(ms), request_timeout),
    }
}

/// Runs one call and makes its result.
async fn serve_call(ctx: StreamContext, call: StreamCall) -> StreamResult {
    let deadline = call_deadline(call.timeout_ms, ctx.request_timeout);
    let outcome = async {
        let command = call.command.ok_or_else(|| {
            NodeError::Ledger(LedgerError::new(ErrorCode::InvalidArgument, "stream call has no command set"))
        })?;
        let cmd = convert::batch_command(command).map_err(NodeError::Ledger)?;
        let _slot = ctx.admission.admit(1)?;
        tokio::time::timeout(deadline, ctx.router.execute(cmd)).await.unwrap_or(Err(NodeError::Timeout))
    }
    .await;
    StreamResult { call_id: call.call_id, result: Some(batch_result(outcome)) }
}

/// A frame the stream cannot take: it ends the stream (the calls already taken are answered).
fn frame_error(calls: usize) -> Option<Status> {
    (calls == 0 || calls > BATCH_COMMANDS_MAX)
        .then(|| Status::from(NodeError::Ledger(LedgerError::new(
            ErrorCode::InvalidArgument,
            format!("a SubmitStream frame holds 1 to {BATCH_COMMANDS_MAX} calls, not {calls}"),
        ))))
}

/// Serves one stream in a task of its own (see `call_stream`) and returns its reply frames:
/// a bad frame ends it with INVALID_ARGUMENT once the calls taken before it are answered.
pub fn serve_stream(ctx: StreamContext, frames: Streaming<SubmitStreamRequest>) -> ReceiverStream<Result<SubmitStreamReply, Status>> {
    let calls = |frame: SubmitStreamRequest| frame_error(frame.calls.len()).map_or(Ok(frame.calls), Err);
    let run = move |call| serve_call(ctx.clone(), call);
    spawn_serving(frames, calls, run, |results| SubmitStreamReply { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_deadline_leaves_the_caller_a_tenth_and_never_passes_the_node_timeout() {
        let node = Duration::from_secs(10);
        assert_eq!(call_deadline(0, node), node, "0: the node's timeout");
        assert_eq!(call_deadline(1_000, node), Duration::from_millis(900));
        assert_eq!(call_deadline(60_000, node), node);
        assert_eq!(call_deadline(u64::MAX, node), node);
        assert_eq!(call_deadline(1, node), Duration::from_micros(900));
    }

    #[test]
    fn empty_and_oversized_frames_are_refused() {
        assert!(frame_error(1).is_none());
        assert!(frame_error(BATCH_COMMANDS_MAX).is_none());
        for bad in [0, BATCH_COMMANDS_MAX + 1] {
            let status = frame_error(bad).expect("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(&format!("not {bad}")), "{}", status.message());
        }
    }
}
