//! Account commands: balance, history, and the admin ones (set-limit, freeze, unfreeze).

use coinledger_client::proto::*;
use coinledger_client::{Client, ClientError};

use super::args::{AccountArg, AccountCommand, HistoryArgs};
use super::{output, text, Rendered};

pub async fn balance(client: &Client, a: AccountArg) -> Result<Rendered, ClientError> {
    let r = client
        .balance(BalanceRequest { account: a.account })
        .await?;
    Ok(Rendered::new(output::balance(&r), text::balance(&r)))
}

pub async fn history(client: &Client, a: HistoryArgs) -> Result<Rendered, ClientError> {
    let req = HistoryRequest {
        account: a.account,
        limit: a.limit.unwrap_or(0),
        cursor: a.cursor,
    };
    let r = client.history(req).await?;
    Ok(Rendered::new(output::history(&r), text::history(&r)))
}

/// The admin commands answer the account's new balance record, rendered like `balance`.
pub async fn admin(client: &Client, c: AccountCommand) -> Result<Rendered, ClientError> {
    let r = match c {
        AccountCommand::SetLimit(a) => {
            let cap = a.daily_cap.map(|amount| Money {
                amount,
                currency: a.currency,
            });
            let req = SetLimitRequest {
                request_id: a.id.or_new(),
                account: a.account,
                minor: a.minor,
                daily_purchase_cap: cap,
            };
            client.set_limit(req).await?
        }
        AccountCommand::Freeze(a) => set_frozen(client, a, true).await?,
        AccountCommand::Unfreeze(a) => set_frozen(client, a, false).await?,
    };
    Ok(Rendered::new(output::balance(&r), text::balance(&r)))
}

async fn set_frozen(
    client: &Client,
    a: super::args::FreezeArgs,
    frozen: bool,
) -> Result<BalanceReply, ClientError> {
    let req = SetFrozenRequest {
        request_id: a.id.or_new(),
        account: a.account,
        frozen,
    };
    client.set_frozen(req).await
}
