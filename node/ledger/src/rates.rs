//! The published rate card: coin prices, promotions, creator share, cash-out rates and fees,
//! limits and the gift catalog. Mirrors the proto `RateCard`.

use std::collections::BTreeSet;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::check_id;
use crate::money::{check_currency, check_precision};

/// Basis points in one whole (100%).
pub const BPS_ONE: u32 = 10_000;
/// Most fractional digits a currency may have.
pub const MINOR_UNITS_MAX: u32 = 4;
/// The hard limit on a gift message, in bytes, whatever the card says.
pub const MESSAGE_BYTES_MAX: usize = 4096;
pub const GIFT_NAME_CHARS_MAX: usize = 64;
/// Bounds on the lists of a card, so a card stays small.
pub const CARD_LIST_LEN_MAX: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinPrice {
    pub currency: String,
    /// Fiat per coin.
    pub price_per_coin: Decimal,
    /// ISO 4217 minor units: fractional digits allowed in amounts.
    pub minor_units: u32,
    /// Largest fiat amount of a single purchase.
    pub max_purchase: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: String,
    pub min_base_coins: u64,
    /// Bonus = floor(base_coins * bonus_bps / 10000).
    pub bonus_bps: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashOutRate {
    pub currency: String,
    pub fiat_per_diamond: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogGift {
    pub id: String,
    pub name: String,
    pub price_coins: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCard {
    pub version: u64,
    /// Commit time of this version (ms since the epoch); set by the ledger, ignored on input.
    pub effective_ms: u64,
    pub coin_prices: Vec<CoinPrice>,
    pub promotions: Vec<Promotion>,
    pub creator_share_bps: u32,
    pub cashout_rates: Vec<CashOutRate>,
    pub cashout_min_diamonds: u64,
    pub cashout_fee_bps: u32,
    pub max_gift_quantity: u32,
    pub max_message_chars: u32,
    pub gifts: Vec<CatalogGift>,
}

/// floor(amount * bps / 10000), for a share of at most 100%.
///
/// # Panics
/// If `bps` exceeds 10000 (cards are validated, so this is a bug).
pub fn share_of(amount: u64, bps: u32) -> u64 {
    assert!(bps <= BPS_ONE, "a share of {bps} bps is more than the whole");
    let share = u128::from(amount) * u128::from(bps) / u128::from(BPS_ONE);
    u64::try_from(share).expect("a share is at most the amount")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("literal decimal")
}

impl RateCard {
    /// Version 1, in force until the first SetRates.
    pub fn default_card() -> Self {
        let price = |currency: &str, per_coin: &str, minor_units, max: &str| CoinPrice {
            currency: currency.into(),
            price_per_coin: dec(per_coin),
            minor_units,
            max_purchase: dec(max),
        };
        let gift = |id: &str, name: &str, price_coins| CatalogGift { id: id.into(), name: name.into(), price_coins };
        RateCard {
            version: 1,
            effective_ms: 0,
            coin_prices: vec![
                price("USD", "0.01", 2, "5000"),
                price("EUR", "0.0095", 2, "5000"),
                price("GBP", "0.0085", 2, "5000"),
                price("JPY", "1.5", 0, "750000"),
            ],
            promotions: vec![
                Promotion { id: "bulk-1k".into(), min_base_coins: 1000, bonus_bps: 500 },
                Promotion { id: "bulk-10k".into(), min_base_coins: 10_000, bonus_bps: 1000 },
            ],
            creator_share_bps: 5000,
            cashout_rates: vec![
                CashOutRate { currency: "USD".into(), fiat_per_diamond: dec("0.005") },
                CashOutRate { currency: "EUR".into(), fiat_per_diamond: dec("0.0046") },
            ],
            cashout_min_diamonds: 1000,
            cashout_fee_bps: 250,
            max_gift_quantity: 9999,
            max_message_chars: 280,
            gifts: vec![
                gift("rose", "Rose", 1),
                gift("finger-heart", "Finger Heart", 5),
                gift("ice-cream", "Ice Cream", 9),
                gift("doughnut", "Doughnut", 30),
                gift("confetti", "Confetti", 100),
                gift("sunglasses", "Sunglasses", 199),
                gift("corgi", "Corgi", 299),
                gift("galaxy", "Galaxy", 1000),
                gift("lion", "Lion", 29_999),
                gift("universe", "Universe", 44_999),
            ],
        }
    }

    pub fn coin_price(&self, currency: &str) -> Result<&CoinPrice, LedgerError> {
        check_currency(currency)?;
        self.coin_prices.iter().find(|p| p.currency == currency).ok_or_else(|| {
            LedgerError::new(ErrorCode::UnknownCurrency, format!("no coin price is published for {currency} (rate card v{})", self.version))
        })
    }

    pub fn cashout_rate(&self, currency: &str) -> Result<&CashOutRate, LedgerError> {
        check_currency(currency)?;
        self.cashout_rates.iter().find(|r| r.currency == currency).ok_or_else(|| {
            LedgerError::new(ErrorCode::UnknownCurrency, format!("no cash-out rate is published for {currency} (rate card v{})", self.version))
        })
    }

    pub fn gift(&self, id: &str) -> Result<&CatalogGift, LedgerError> {
        self.gifts.iter().find(|g| g.id == id).ok_or_else(|| {
            LedgerError::new(ErrorCode::UnknownGift, format!("gift {id:?} is not in the catalog (rate card v{})", self.version))
        })
    }

    /// The matching promotion with the largest `min_base_coins <= base_coins` (first listed on a tie).
    pub fn promotion_for(&self, base_coins: u64) -> Option<&Promotion> {
        self.promotions
            .iter()
            .filter(|p| p.min_base_coins <= base_coins)
            .fold(None, |best: Option<&Promotion>, p| match best {
                Some(b) if b.min_base_coins >= p.min_base_coins => Some(b),
                _ => Some(p),
            })
    }

    /// Minor units of a currency: from its coin price, else 2 (a cash-out-only currency).
    pub fn minor_units(&self, currency: &str) -> u32 {
        self.coin_prices.iter().find(|p| p.currency == currency).map_or(2, |p| p.minor_units)
    }

    /// The card with `effective_ms` cleared, to compare contents.
    pub fn without_effective_ms(&self) -> RateCard {
        RateCard { effective_ms: 0, ..self.clone() }
    }

    /// Stateless checks of a card (the version rule is checked at apply). INVALID_RATE_CARD.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |message: String| LedgerError::new(ErrorCode::InvalidRateCard, message);
        let listed = |what: &str, len: usize, min: usize| {
            if len < min || len > CARD_LIST_LEN_MAX {
                Err(bad(format!("rate card lists {len} {what}, it must list {min} to {CARD_LIST_LEN_MAX}")))
            } else {
                Ok(())
            }
        };
        listed("coin prices", self.coin_prices.len(), 1)?;
        listed("promotions", self.promotions.len(), 0)?;
        listed("cash-out rates", self.cashout_rates.len(), 0)?;
        listed("gifts", self.gifts.len(), 1)?;
        unique("coin price currency", self.coin_prices.iter().map(|p| p.currency.as_str()))?;
        unique("promotion id", self.promotions.iter().map(|p| p.id.as_str()))?;
        unique("cash-out currency", self.cashout_rates.iter().map(|r| r.currency.as_str()))?;
        unique("gift id", self.gifts.iter().map(|g| g.id.as_str()))?;
        for p in &self.coin_prices {
            check_currency(&p.currency).map_err(|e| bad(e.message))?;
            if p.minor_units > MINOR_UNITS_MAX {
                return Err(bad(format!("{} has {} minor units, at most {MINOR_UNITS_MAX}", p.currency, p.minor_units)));
            }
            if p.price_per_coin <= Decimal::ZERO || p.max_purchase <= Decimal::ZERO {
                return Err(bad(format!("{} price per coin and max purchase must be > 0", p.currency)));
            }
            check_precision(p.max_purchase, p.minor_units).map_err(|e| bad(e.message))?;
        }
        for p in &self.promotions {
            check_id("promotion id", &p.id, 1, 64).map_err(|e| bad(e.message))?;
            if p.min_base_coins == 0 || p.bonus_bps > BPS_ONE {
                return Err(bad(format!("promotion {} needs min_base_coins >= 1 and bonus_bps <= {BPS_ONE}", p.id)));
            }
        }
        for r in &self.cashout_rates {
            check_currency(&r.currency).map_err(|e| bad(e.message))?;
            if r.fiat_per_diamond <= Decimal::ZERO {
                return Err(bad(format!("{} fiat per diamond must be > 0", r.currency)));
            }
        }
        for g in &self.gifts {
            check_id("gift id", &g.id, 1, 64).map_err(|e| bad(e.message))?;
            let name_chars = g.name.chars().count();
            if g.price_coins == 0 || name_chars == 0 || name_chars > GIFT_NAME_CHARS_MAX {
                return Err(bad(format!("gift {} needs a price >= 1 coin and a name of 1 to {GIFT_NAME_CHARS_MAX} chars", g.id)));
            }
        }
        if self.creator_share_bps > BPS_ONE || self.cashout_fee_bps > BPS_ONE {
            return Err(bad(format!("creator share and cash-out fee must be at most {BPS_ONE} bps")));
        }
        if self.cashout_min_diamonds == 0 || self.max_gift_quantity == 0 {
            return Err(bad("cash-out minimum and max gift quantity must be at least 1".into()));
        }
        if self.max_message_chars as usize > MESSAGE_BYTES_MAX {
            return err(ErrorCode::InvalidRateCard, format!("max_message_chars must be at most {MESSAGE_BYTES_MAX}"));
        }
        Ok(())
    }
}

fn unique<'a>(what: &str, values: impl Iterator<Item = &'a str>) -> Result<(), LedgerError> {
    let mut seen = BTreeSet::new();
    for value in values {
        if !seen.insert(value) {
            return err(ErrorCode::InvalidRateCard, format!("{what} {value:?} is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_card_is_valid_and_as_published() {
        let card = RateCard::default_card();
        card.validate().unwrap();
        assert_eq!(card.version, 1);
        assert_eq!(card.coin_price("JPY").unwrap().minor_units, 0);
        assert_eq!(card.gift("universe").unwrap().price_coins, 44_999);
        assert_eq!(card.gifts.len(), 10);
    }

    #[test]
    fn largest_matching_promotion_applies() {
        let card = RateCard::default_card();
        assert_eq!(card.promotion_for(999), None);
        assert_eq!(card.promotion_for(1000).unwrap().id, "bulk-1k");
        assert_eq!(card.promotion_for(50_000).unwrap().id, "bulk-10k");
    }

    #[test]
    fn invalid_cards_are_refused() {
        let mutations: Vec<fn(&mut RateCard)> = vec![
            |c| c.coin_prices.clear(),
            |c| c.coin_prices[0].price_per_coin = Decimal::ZERO,
            |c| c.coin_prices[0].minor_units = 5,
            |c| c.coin_prices[1].currency = "USD".into(),
            |c| c.creator_share_bps = 10_001,
            |c| c.cashout_fee_bps = 10_001,
            |c| c.gifts[0].price_coins = 0,
            |c| c.gifts[1].id = "rose".into(),
            |c| c.max_gift_quantity = 0,
            |c| c.max_message_chars = 5000,
            |c| c.cashout_rates[0].currency = "usd".into(),
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut card = RateCard::default_card();
            mutate(&mut card);
            assert_eq!(card.validate().unwrap_err().code, ErrorCode::InvalidRateCard, "mutation {i}");
        }
    }
}
