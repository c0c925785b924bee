//! Serving a stream of call frames: the loop the Ledger's SubmitStream and the Peer service's
//! ForwardStream share.
//!
//! A frame carries calls that each want their own answer. Every call runs as soon as its
//! frame arrives, all of them concurrently in the stream's one task, and each answer leaves
//! as soon as it is ready, those ready together in one frame: a slow call (a cross-shard gift
//! waiting for its credit) holds up no other.

use std::future::Future;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Answers sent in one frame at most (those ready together beyond it go in the next).
pub const FRAME_ANSWERS_MAX: usize = 1_024;

/// Answer frames buffered per stream before its task waits for the network.
const ANSWER_FRAMES_MAX: usize = 8;

/// Serves one stream in a task of its own (see [`serve_calls`]) and returns the stream of
/// answer frames, for the handler to answer with.
pub fn spawn_serving<In, Call, Answer, Out, Run>(
    frames: Streaming<In>,
    calls: impl Fn(In) -> Result<Vec<Call>, Status> + Send + 'static,
    run: impl Fn(Call) -> Run + Send + 'static,
    frame: impl Fn(Vec<Answer>) -> Out + Send + 'static,
) -> ReceiverStream<Result<Out, Status>>
where
    In: Send + 'static,
    Call: Send + 'static,
    Run: Future<Output = Answer> + Send + 'static,
    Answer: Send + 'static,
    Out: Send + 'static,
{
    let (out, answers) = mpsc::channel(ANSWER_FRAMES_MAX);
    tokio::spawn(serve_calls(frames, calls, run, frame, out));
    ReceiverStream::new(answers)
}

/// Serves one stream until the caller closed its side and every call taken is answered, or
/// the caller is gone. `calls` takes a frame apart; an `Err` refuses the frame and ends the
/// stream with that status once the calls taken before it are answered. `run` runs one
/// call; `frame` makes a frame of answers.
async fn serve_calls<In, Call, Answer, Out, Run>(
    mut frames: Streaming<In>,
    calls: impl Fn(In) -> Result<Vec<Call>, Status>,
    run: impl Fn(Call) -> Run,
    frame: impl Fn(Vec<Answer>) -> Out,
    out: mpsc::Sender<Result<Out, Status>>,
) where
    Run: Future<Output = Answer>,
{
    let mut running = FuturesUnordered::new();
    let mut incoming = true;
    let mut ending: Option<Status> = None;
    loop {
        tokio::select! {
            next = frames.next(), if incoming => match next {
                Some(Ok(f)) => match calls(f) {
                    Ok(taken) => running.extend(taken.into_iter().map(&run)),
                    Err(status) => {
                        incoming = false;
                        ending = Some(status);
                    }
                },
                Some(Err(status)) => {
                    tracing::debug!(error = %status, "call stream broke");
                    return;
                }
                None => incoming = false,
            },
            Some(first) = running.next(), if !running.is_empty() => {
                let mut answers = vec![first];
                while answers.len() < FRAME_ANSWERS_MAX {
                    match running.next().now_or_never() {
                        Some(Some(answer)) => answers.push(answer),
                        _ => break,
                    }
                }
                if out.send(Ok(frame(answers))).await.is_err() {
                    return; // the caller is gone
                }
            }
            else => break,
        }
    }
    if let Some(status) = ending {
        let _ = out.send(Err(status)).await;
    }
}
