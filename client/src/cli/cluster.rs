//! Operator views of the cluster: status and the conservation audit.

use coinledger_client::proto::*;
use coinledger_client::{Client, ClientError};

use super::{output, text, Rendered};

pub async fn status(client: &Client) -> Result<Rendered, ClientError> {
    let r = client.status(StatusRequest {}).await?;
    Ok(Rendered::new(output::status(&r), text::status(&r)))
}

/// Prints the report either way; a violated equation makes the exit code 1 so scripts and
/// the chaos harness can gate on it.
pub async fn audit(client: &Client) -> Result<Rendered, ClientError> {
    let r = client.audit(AuditRequest {}).await?;
    Ok(Rendered {
        json: output::audit(&r),
        text: text::audit(&r),
        ok: r.ok,
    })
}
