//! Invariant 1: nothing acknowledged is lost. Every mutation with a definite outcome (an
//! answer during the run, or the resolution of an unknown one) is sent again with its request
//! id and the same body: the node must answer exactly the first outcome (the same reply,
//! tx ids and timestamps included, or the same refusal code). A lost command would be applied
//! now, with another tx id; a forgotten refusal would succeed.

use coinledger_client::Client;
use futures::stream::{self, StreamExt};

use super::Check;
use crate::chaos::history::{definite, Op, Outcome};

/// Replays sent at once (each is a round trip through the shard's leader).
pub const REPLAYS_IN_FLIGHT: usize = 32;

/// Replays every definite mutation (retrying "try again" answers for up to `attempts`).
pub async fn check(client: &Client, ops: &[Op], attempts: u32) -> Check {
    let mut c = Check::new("no_loss");
    let definite_ops = ops.iter().filter(|o| o.req.is_mutation() && !matches!(o.final_outcome(), Outcome::Unknown { .. }));
    let results: Vec<Option<String>> = stream::iter(definite_ops.map(|op| replay(client, op, attempts)))
        .buffer_unordered(REPLAYS_IN_FLIGHT)
        .collect()
        .await;
    c.checked = results.len();
    c.violations = results.into_iter().flatten().collect();
    c
}

/// None if the replay answered the first outcome, else the violation.
async fn replay(client: &Client, op: &Op, attempts: u32) -> Option<String> {
    let first = op.final_outcome();
    let mut again = None;
    for _ in 0..attempts.max(1) {
        match definite(op.req.send(client).await) {
            Ok(o) => {
                again = Some(o);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let Some(again) = again else {
        return Some(format!("op #{} {} {:?}: no definite answer to the replay", op.id, op.req.kind(), op.req.request_id()));
    };
    let same = match (first, &again) {
        (Outcome::Ok(a), Outcome::Ok(b)) => a == b,
        (Outcome::Failed { code: a, .. }, Outcome::Failed { code: b, .. }) => a == b,
        _ => false,
    };
    (!same).then(|| {
        format!(
            "op #{} {} request {:?}: first answer {}, replay answered {}",
            op.id,
            op.req.kind(),
            op.req.request_id(),
            first.to_json(),
            again.to_json()
        )
    })
}
