//! Seeding: every sender account gets coins through real purchases (SubmitBatch, several
//! batches at once), so the run's gifts are paid for like production gifts.

use std::time::Instant;

use coinledger_client::proto::batch_command::Command;
use coinledger_client::proto::batch_result::Result as Answer;
use coinledger_client::proto::*;
use coinledger_client::proto::ErrorCode;
use coinledger_client::{Client, ClientError};
use tokio::task::JoinSet;

use coinledger_client::workload::Names;

/// Purchases per seeding SubmitBatch.
pub const SEED_BATCH: usize = 1_024;
/// Seeding batches in flight at once.
pub const SEED_BATCHES_IN_FLIGHT: usize = 4;

/// Buys `amount_usd` of coins for each of `accounts` senders; returns the coins credited to
/// the first account (the same for all: one price, one promotion). Any failed purchase fails
/// the seeding: a run on half-funded accounts would measure INSUFFICIENT_COINS.
pub async fn seed(
    client: &Client,
    names: &Names,
    accounts: usize,
    amount_usd: &str,
) -> Result<u64, ClientError> {
    let started = Instant::now();
    let mut batches = JoinSet::new();
    let mut coins_each = 0;
    let mut chunks = (0..accounts).step_by(SEED_BATCH);
    loop {
        while batches.len() < SEED_BATCHES_IN_FLIGHT {
            let Some(first) = chunks.next() else { break };
            let commands: Vec<BatchCommand> = (first..(first + SEED_BATCH).min(accounts))
                .map(|i| BatchCommand {
                    command: Some(Command::Purchase(PurchaseRequest {
                        request_id: format!("{}seed-{i}", names.prefix),
                        account: names.user(i),
                        paid: Some(Money {
                            amount: amount_usd.to_string(),
                            currency: "USD".into(),
                        }),
                        payment_ref: format!("{}seed-{i}", names.prefix),
                    })),
                })
                .collect();
            let client = client.clone();
            batches.spawn(async move {
                let outcomes = client.submit_batch(commands.clone()).await;
                (commands, outcomes)
            });
        }
        let Some(done) = batches.join_next().await else { break };
        let (commands, outcomes) = done.expect("seeding task panicked");
        for (command, outcome) in commands.into_iter().zip(outcomes?) {
            let reply = match outcome {
                Ok(Answer::Purchase(r)) => r,
                Ok(other) => panic!("a purchase was answered {other:?}"),
                // Seen from SubmitBatch on 3 nodes: INTERNAL for a purchase that was applied.
                // The same request id asks the node for the purchase's recorded outcome.
                Err(e) if e.code == ErrorCode::Internal => {
                    eprintln!("seeding: {e}; asking again with the same request id");
                    let Some(Command::Purchase(req)) = command.command else {
                        unreachable!("seeding sends purchases only")
                    };
                    client.purchase(req).await?
                }
                Err(e) => return Err(e),
            };
            coins_each = reply.coins_credited;
        }
    }
    eprintln!(
        "seeded {accounts} accounts with {amount_usd} USD = {coins_each} coins each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(coins_each)
}
