//! SubmitBatch from the caller's side: many commands in one call, each with its own request id
//! and its own outcome. [`Client::submit_batch`] resends only the commands whose answer was
//! "try again" (NOT_LEADER, UNAVAILABLE, TIMEOUT), with the SAME request ids, until every
//! command has a definite answer or the deadline passes.

use tokio::time::Instant;

use crate::client::{final_error, ms, Client, ATTEMPTS_MAX};
use crate::error::ClientError;
use crate::proto::batch_command::Command;
use crate::proto::batch_result::Result as BatchAnswer;
use crate::proto::ledger_client::LedgerClient;
use crate::proto::{BatchCommand, BatchResult, ErrorCode, SubmitBatchRequest};
use crate::request_id::WithRequestId;
use crate::retry::Backoff;
use crate::route::Routed;

/// Most commands in one SubmitBatch (ledger.proto's bound; the node refuses more).
pub const BATCH_COMMANDS_MAX: usize = 8_192;

/// The outcome of one command of a batch: its reply (never the `Error` variant), or its error.
pub type BatchOutcome = Result<BatchAnswer, ClientError>;

/// Fills an empty request id of a batch command, like the single-command calls do.
pub fn fill_command_request_id(command: &mut Command) -> String {
    match command {
        Command::Purchase(r) => r.fill_request_id(),
        Command::Gift(r) => r.fill_request_id(),
        Command::CashOut(r) => r.fill_request_id(),
        Command::PostPayout(r) | Command::VoidPayout(r) => r.fill_request_id(),
        Command::Refund(r) => r.fill_request_id(),
    }
}

/// One command's answer inside a reply: the reply, a retryable error (Err(Ok)), or a
/// definite error (Err(Err)). A missing result is a node bug: INTERNAL, definite.
pub(crate) fn classify(result: BatchResult, uri: &str) -> Result<BatchAnswer, ClientError> {
    match result.result {
        Some(BatchAnswer::Error(detail)) => Err(ClientError::from_detail(detail, Some(uri))),
        Some(answer) => Ok(answer),
        None => Err(ClientError::local(
            ErrorCode::Internal,
            format!("{uri} answered a batch command with no result"),
        )),
    }
}

impl Client {
    /// Sends up to [`BATCH_COMMANDS_MAX`] commands in SubmitBatch calls and returns one outcome
    /// per command, in order. Empty request ids are filled first; every resend carries the same
    /// ids, so no command is applied twice. The batch is not atomic: business errors
    /// (INSUFFICIENT_COINS, ...) are per-command outcomes, not an `Err` of the whole call.
    ///
    /// `Err` only for an empty or oversized batch. A command still answered "try again" at the
    /// deadline ends with that error, or TIMEOUT if some attempt may have applied it.
    pub async fn submit_batch(
        &self,
        mut commands: Vec<BatchCommand>,
    ) -> Result<Vec<BatchOutcome>, ClientError> {
        if commands.is_empty() || commands.len() > BATCH_COMMANDS_MAX {
            return Err(ClientError::local(
                ErrorCode::InvalidArgument,
                format!(
                    "a batch holds 1 to {BATCH_COMMANDS_MAX} commands, not {}",
                    commands.len()
                ),
            ));
        }
        for c in &mut commands {
            match c.command.as_mut() {
                Some(command) => {
                    fill_command_request_id(command);
                }
                None => {
                    return Err(ClientError::local(
                        ErrorCode::InvalidArgument,
                        "batch command has no command set",
                    ))
                }
            }
        }
        let config = self.config();
        let deadline = Instant::now() + ms(config.deadline_ms);
        let mut backoff = Backoff::new(config.backoff_ms_initial, config.backoff_ms_max);
        let mut outcomes: Vec<Option<BatchOutcome>> = vec![None; commands.len()];
        let mut unknown = vec![false; commands.len()];
        let mut pending: Vec<usize> = (0..commands.len()).collect();
        for _ in 0..ATTEMPTS_MAX {
            // One SubmitBatch per home-shard leader (shard-aware routing), all in flight at
            // once; commands with no known leader share a call to the usual endpoint.
            let mut groups: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
            for &i in &pending {
                let start = self.route(commands[i].route_key());
                match groups.iter_mut().find(|(s, _)| *s == start) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((start, vec![i])),
                }
            }
            let calls = groups.into_iter().map(|(start, members)| {
                let request = SubmitBatchRequest {
                    commands: members.iter().map(|&i| commands[i].clone()).collect(),
                };
                async move {
                    // Each call has the usual retry loop (transport failures, a node shutting
                    // down); resending a whole batch is safe for the same reason as a single
                    // command.
                    let reply = self
                        .call_at(start, request, |ch, r| async move {
                            LedgerClient::new(ch).submit_batch(r).await
                        })
                        .await;
                    (start, members, reply)
                }
            });
            let mut retry = Vec::new();
            let mut last = None;
            for (start, members, reply) in futures::future::join_all(calls).await {
                let results = match reply {
                    Ok(reply) if reply.results.len() == members.len() => reply.results,
                    Ok(reply) => {
                        let e = ClientError::local(
                            ErrorCode::Internal,
                            format!("{} results for a batch of {}", reply.results.len(), members.len()),
                        );
                        settle(&mut outcomes, &members, &e, &unknown);
                        continue;
                    }
                    Err(e) => {
                        settle(&mut outcomes, &members, &e, &unknown);
                        continue;
                    }
                };
                let uri = match start {
                    Some(index) => self.node(index).uri,
                    None => self.preferred_uri(),
                };
                for (i, result) in members.iter().copied().zip(results) {
                    match classify(result, &uri) {
                        Err(e) if e.is_retryable() => {
                            unknown[i] |= e.code == ErrorCode::Timeout;
                            outcomes[i] = Some(Err(e.clone()));
                            last = Some(e);
                            retry.push(i);
                        }
                        outcome => outcomes[i] = Some(outcome),
                    }
                }
            }
            retry.sort_unstable();
            pending = retry;
            let Some(last) = last else { break };
            let pause = backoff.next_pause();
            if Instant::now() + pause >= deadline {
                return Ok(finish(outcomes, &pending, &last, &unknown));
            }
            tokio::time::sleep(pause).await;
        }
        let give_up = ClientError::local(
            ErrorCode::Unavailable,
            format!("no definite answer in {ATTEMPTS_MAX} attempts"),
        );
        Ok(finish(outcomes, &pending, &give_up, &unknown))
    }
}

/// Gives every still-pending command `err` (TIMEOUT where its outcome is unknown) and unwraps.
fn finish(
    mut outcomes: Vec<Option<BatchOutcome>>,
    pending: &[usize],
    err: &ClientError,
    unknown: &[bool],
) -> Vec<BatchOutcome> {
    settle(&mut outcomes, pending, err, unknown);
    outcomes
        .into_iter()
        .map(|o| o.expect("every command has an outcome once none is pending"))
        .collect()
}

/// Ends the commands `ended` with their last retryable error, or `err` if they had none
/// (TIMEOUT where the outcome is unknown): a call that gave up, or the deadline.
fn settle(outcomes: &mut [Option<BatchOutcome>], ended: &[usize], err: &ClientError, unknown: &[bool]) {
    for &i in ended {
        let last = match outcomes[i].take() {
            Some(Err(e)) => e,
            _ => err.clone(),
        };
        outcomes[i] = Some(Err(final_error(last, unknown[i] || err.code == ErrorCode::Timeout)));
    }
}
