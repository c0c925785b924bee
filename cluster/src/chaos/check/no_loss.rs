//! Invariant 1: nothing acknowledged is lost. Every mutation with a definite outcome (an
//! answer during the run, or the resolution of an unknown one) is sent again with its request
//! id and the same body: the node must answer exactly the first outcome (the same reply,
//! tx ids and timestamps included, or the same refusal code). A lost command would be applied
//! now, with another tx id; a forgotten refusal would succeed.

use coinledger_client::Client;

use super::Check;
use crate::chaos::history::{definite, Op, Outcome};

/// Replays every definite mutation (retrying "try again" answers for up to `attempts`).
pub async fn check(client: &Client, ops: &[Op], attempts: u32) -> Check {
    let mut c = Check::new("no_loss");
    for op in ops.iter().filter(|o| o.req.is_mutation()) {
        let first = op.final_outcome();
        if let Outcome::Unknown { .. } = first {
            continue;
        }
        c.checked += 1;
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
            c.violation(format!("op #{} {} {:?}: no definite answer to the replay", op.id, op.req.kind(), op.req.request_id()));
            continue;
        };
        let same = match (first, &again) {
            (Outcome::Ok(a), Outcome::Ok(b)) => a == b,
            (Outcome::Failed { code: a, .. }, Outcome::Failed { code: b, .. }) => a == b,
            _ => false,
        };
        if !same {
            c.violation(format!(
                "op #{} {} request {:?}: first answer {}, replay answered {}",
                op.id,
                op.req.kind(),
                op.req.request_id(),
                first.to_json(),
                again.to_json()
            ));
        }
    }
    c
}
