//! Commands that move value: purchase, gift, cashout, payout post|void, refund.
//!
//! Each picks its request id before the call (unless given) so the id can be printed with the
//! result, and reused by hand after a TIMEOUT.

use coinledger_client::proto::*;
use coinledger_client::{Client, ClientError};

use super::args::{CashoutArgs, GiftArgs, PayoutCommand, PurchaseArgs, RefundArgs};
use super::{output, text, Rendered};

pub async fn purchase(client: &Client, a: PurchaseArgs) -> Result<Rendered, ClientError> {
    let request_id = a.id.or_new();
    let req = PurchaseRequest {
        request_id: request_id.clone(),
        account: a.account,
        paid: Some(Money {
            amount: a.amount,
            currency: a.currency,
        }),
        payment_ref: a.payment_ref,
    };
    let r = client.purchase(req).await?;
    Ok(Rendered::new(
        output::purchase(&r, &request_id),
        text::purchase(&r),
    ))
}

pub async fn gift(client: &Client, a: GiftArgs) -> Result<Rendered, ClientError> {
    let request_id = a.id.or_new();
    let req = GiftRequest {
        request_id: request_id.clone(),
        sender: a.from,
        recipient: a.to,
        gift_id: a.gift_id,
        quantity: a.quantity,
        message: a.message,
        stream_id: a.stream_id,
    };
    let r = client.gift(req.clone()).await?;
    Ok(Rendered::new(
        output::gift(&r, &request_id),
        text::gift(&r, &req),
    ))
}

pub async fn cashout(client: &Client, a: CashoutArgs) -> Result<Rendered, ClientError> {
    let request_id = a.id.or_new();
    let req = CashOutRequest {
        request_id: request_id.clone(),
        account: a.account,
        diamonds: a.diamonds,
        currency: a.currency,
    };
    let r = client.cash_out(req).await?;
    Ok(Rendered::new(
        output::cashout(&r, &request_id),
        text::cashout(&r),
    ))
}

pub async fn payout(client: &Client, c: PayoutCommand) -> Result<Rendered, ClientError> {
    let (post, a) = match c {
        PayoutCommand::Post(a) => (true, a),
        PayoutCommand::Void(a) => (false, a),
    };
    let request_id = a.id.or_new();
    let req = PayoutRequest {
        request_id: request_id.clone(),
        payout_id: a.payout_id,
    };
    let r = if post {
        client.post_payout(req).await?
    } else {
        client.void_payout(req).await?
    };
    Ok(Rendered::new(
        output::payout(&r, &request_id),
        text::payout(&r),
    ))
}

pub async fn refund(client: &Client, a: RefundArgs) -> Result<Rendered, ClientError> {
    let request_id = a.id.or_new();
    let req = RefundRequest {
        request_id: request_id.clone(),
        payment_ref: a.payment_ref,
    };
    let r = client.refund(req).await?;
    Ok(Rendered::new(
        output::refund(&r, &request_id),
        text::refund(&r),
    ))
}
