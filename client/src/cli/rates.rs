//! The rate card: `rates` shows it, `rates set FILE` publishes one, `gifts` lists the catalog.
//!
//! `rates set` reads exactly the shape `rates --json` prints (output.rs), so the workflow is:
//! `coinctl rates --json > card.json`, edit it, bump `version`, `coinctl rates set card.json`.
//! The structs below mirror that shape; unknown fields are refused so a typo in a field name
//! cannot silently publish a zero.

use coinledger_client::proto::*;
use coinledger_client::{Client, ClientError};
use serde::Deserialize;

use super::args::{RatesAction, RatesArgs};
use super::{output, text, Rendered};

pub async fn rates(client: &Client, a: RatesArgs) -> Result<Rendered, ClientError> {
    let card = match a.action {
        None => client.rates(GetRatesRequest {}).await?,
        Some(RatesAction::Set(s)) => {
            let json = std::fs::read_to_string(&s.file)
                .map_err(|e| invalid(format!("{}: {e}", s.file.display())))?;
            let card = card_from_json(&json)?;
            client
                .set_rates(SetRatesRequest {
                    request_id: s.id.or_new(),
                    card: Some(card),
                })
                .await?
        }
    };
    Ok(Rendered::new(output::rates(&card), text::rates(&card)))
}

pub async fn gifts(client: &Client) -> Result<Rendered, ClientError> {
    let r = client.gifts(ListGiftsRequest {}).await?;
    Ok(Rendered::new(
        output::gifts(&r.gifts),
        text::gifts(&r.gifts),
    ))
}

fn invalid(message: String) -> ClientError {
    ClientError::local(ErrorCode::InvalidRateCard, message)
}

/// Parses a card in the `rates --json` shape. `effective_ms` may be present; it is ignored by
/// the node (set at commit).
pub fn card_from_json(json: &str) -> Result<RateCard, ClientError> {
    let c: CardJson = serde_json::from_str(json).map_err(|e| invalid(format!("rate card: {e}")))?;
    Ok(RateCard {
        version: c.version,
        effective_ms: c.effective_ms,
        coin_prices: c
            .coin_prices
            .into_iter()
            .map(|p| CoinPrice {
                currency: p.currency,
                price_per_coin: p.price_per_coin,
                minor_units: p.minor_units,
                max_purchase: p.max_purchase,
            })
            .collect(),
        promotions: c
            .promotions
            .into_iter()
            .map(|p| Promotion {
                id: p.id,
                min_base_coins: p.min_base_coins,
                bonus_bps: p.bonus_bps,
            })
            .collect(),
        creator_share_bps: c.creator_share_bps,
        cashout_rates: c
            .cashout_rates
            .into_iter()
            .map(|r| CashOutRate {
                currency: r.currency,
                fiat_per_diamond: r.fiat_per_diamond,
            })
            .collect(),
        cashout_min_diamonds: c.cashout_min_diamonds,
        cashout_fee_bps: c.cashout_fee_bps,
        max_gift_quantity: c.max_gift_quantity,
        max_message_chars: c.max_message_chars,
        gifts: c
            .gifts
            .into_iter()
            .map(|g| CatalogGift {
                id: g.id,
                name: g.name,
                price_coins: g.price_coins,
            })
            .collect(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardJson {
    version: u64,
    #[serde(default)]
    effective_ms: u64,
    coin_prices: Vec<CoinPriceJson>,
    #[serde(default)]
    promotions: Vec<PromotionJson>,
    creator_share_bps: u32,
    cashout_rates: Vec<CashOutRateJson>,
    cashout_min_diamonds: u64,
    cashout_fee_bps: u32,
    max_gift_quantity: u32,
    max_message_chars: u32,
    gifts: Vec<GiftJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinPriceJson {
    currency: String,
    price_per_coin: String,
    minor_units: u32,
    max_purchase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromotionJson {
    id: String,
    min_base_coins: u64,
    bonus_bps: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CashOutRateJson {
    currency: String,
    fiat_per_diamond: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GiftJson {
    id: String,
    name: String,
    price_coins: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RateCard {
        RateCard {
            version: 2,
            effective_ms: 1_700_000_000_000,
            coin_prices: vec![CoinPrice {
                currency: "USD".into(),
                price_per_coin: "0.01".into(),
                minor_units: 2,
                max_purchase: "500.00".into(),
            }],
            promotions: vec![Promotion {
                id: "bulk-1k".into(),
                min_base_coins: 1000,
                bonus_bps: 500,
            }],
            creator_share_bps: 5000,
            cashout_rates: vec![CashOutRate {
                currency: "USD".into(),
                fiat_per_diamond: "0.005".into(),
            }],
            cashout_min_diamonds: 1000,
            cashout_fee_bps: 250,
            max_gift_quantity: 99,
            max_message_chars: 200,
            gifts: vec![CatalogGift {
                id: "rose".into(),
                name: "Rose".into(),
                price_coins: 10,
            }],
        }
    }

    #[test]
    fn reads_back_what_rates_json_prints() {
        let card = sample();
        let printed = output::rates(&card).to_string();
        assert_eq!(card_from_json(&printed).unwrap(), card);
    }

    #[test]
    fn refuses_typos_and_missing_fields() {
        let mut v = output::rates(&sample());
        v["creator_share_bsp"] = serde_json::json!(1);
        assert_eq!(
            card_from_json(&v.to_string()).unwrap_err().code,
            ErrorCode::InvalidRateCard
        );
        let mut v = output::rates(&sample());
        v.as_object_mut().unwrap().remove("version");
        assert!(card_from_json(&v.to_string()).is_err());
    }
}
