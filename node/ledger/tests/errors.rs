//! Every bad input, with its exact error code, and proof that it changed nothing: the stores of
//! all shards are byte-identical before and after, except the request record a business error
//! is remembered by (and, for a purchase the account's shard refused, the claimed payment
//! reference and the target's effect result and inbox fence, which the rules require).

use std::collections::BTreeSet;

use coinledger_ledger::sim::{cash_out_cmd, dec, gift_cmd, payout_cmd, purchase_cmd, World};
use coinledger_ledger::{
    apply, keys, parse_amount, Applied, Command, EntryContext, ErrorCode, Gift, MemStore, Money, Outcome, Purchase, RateCard, Refund, SetRates,
};

const SHARDS: u32 = 4;

fn changed_keys(before: &[MemStore], after: &[MemStore]) -> BTreeSet<Vec<u8>> {
    let mut changed = BTreeSet::new();
    for (b, a) in before.iter().zip(after) {
        let keys: BTreeSet<&Vec<u8>> = b.map.keys().chain(a.map.keys()).collect();
        changed.extend(keys.into_iter().filter(|k| b.map.get(*k) != a.map.get(*k)).cloned());
    }
    changed
}

/// Submits `cmd`, expects `code`, and checks what changed: nothing for invalid input, only the
/// request record (plus `extra` key prefixes) for a business error. A retry changes nothing.
fn refused_with(world: &mut World, cmd: &Command, code: ErrorCode, extra: &[&[u8]]) {
    let before = world.shards.clone();
    let result = world.submit(cmd);
    assert_eq!(result.as_ref().map_err(|e| e.code), Err(code), "{cmd:?}");
    let message = &result.as_ref().unwrap_err().message;
    assert!(!message.is_empty());
    let changed = changed_keys(&before, &world.shards);
    if cmd.validate().is_err() {
        assert!(changed.is_empty(), "invalid input changed {changed:?}");
    } else {
        let request = keys::request(cmd.request_id().unwrap());
        for key in &changed {
            assert!(*key == request || extra.iter().any(|p| key.starts_with(p)), "{code:?} changed {:?}", String::from_utf8_lossy(key));
        }
        assert!(!code.is_recorded() || changed.contains(&request), "business error {code:?} is remembered");
    }
    let again = world.shards.clone();
    assert_eq!(world.submit(cmd), result, "a retry answers the same");
    if code.is_recorded() {
        assert_eq!(world.shards, again, "a retry changes nothing");
    }
}

fn refused(world: &mut World, cmd: &Command, code: ErrorCode) {
    refused_with(world, cmd, code, &[]);
}

/// fan has 1050 coins; creator has 2000 diamonds.
fn world() -> World {
    let mut world = World::new(SHARDS);
    world.purchase("fund", "fan", "10.00", "USD", "pay-fund").unwrap();
    world.give_diamonds("creator", 2000);
    world
}

fn purchase_dec(amount: rust_decimal::Decimal, currency: &str) -> Command {
    Command::Purchase(Purchase { request_id: "r-bad".into(), account: "fan".into(), amount, currency: currency.into(), payment_ref: "pay-bad".into() })
}

#[test]
fn amounts() {
    let mut w = world();
    refused(&mut w, &purchase_dec(dec("0"), "USD"), ErrorCode::InvalidAmount);
    refused(&mut w, &purchase_dec(dec("-5"), "USD"), ErrorCode::InvalidAmount);
    refused(&mut w, &purchase_dec(dec("79228162514264337593543950335"), "USD"), ErrorCode::InvalidAmount);
    for bad in ["0", "-1", "1e3", "", "abc", "123456789012345678901234567890", "1.0000000000000000000000000001"] {
        assert_eq!(parse_amount(bad).unwrap_err().code, ErrorCode::InvalidAmount, "{bad}");
    }
    refused(&mut w, &purchase_cmd("r1", "fan", "5000.01", "USD", "pay-1"), ErrorCode::AmountTooLarge);
    refused(&mut w, &purchase_cmd("r2", "fan", "9.999", "USD", "pay-2"), ErrorCode::InvalidAmount);
    refused(&mut w, &purchase_cmd("r3", "fan", "1.5", "JPY", "pay-3"), ErrorCode::InvalidAmount);
    refused(&mut w, &purchase_cmd("r4", "fan", "1", "JPY", "pay-4"), ErrorCode::InvalidAmount);
}

#[test]
fn currencies() {
    let mut w = world();
    refused(&mut w, &purchase_cmd("r1", "fan", "1", "XXX", "pay-1"), ErrorCode::UnknownCurrency);
    refused(&mut w, &purchase_cmd("r2", "fan", "1", "usd", "pay-2"), ErrorCode::UnknownCurrency);
    refused(&mut w, &purchase_cmd("r3", "fan", "1", "USDX", "pay-3"), ErrorCode::UnknownCurrency);
    refused(&mut w, &cash_out_cmd("c1", "creator", 1000, "GBP"), ErrorCode::UnknownCurrency);
    refused(&mut w, &cash_out_cmd("c2", "creator", 1000, "eur"), ErrorCode::UnknownCurrency);
}

#[test]
fn ids() {
    let mut w = world();
    let long = "a".repeat(65);
    refused(&mut w, &purchase_cmd("r1", &long, "1", "USD", "pay-1"), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd(&long, "fan", "1", "USD", "pay-1"), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd("r1", "fan", "1", "USD", &"p".repeat(129)), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd("r1", "f an", "1", "USD", "pay-1"), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd("r/1", "fan", "1", "USD", "pay-1"), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd("r1", "fan", "1", "USD", "pay\u{e9}"), ErrorCode::InvalidId);
    refused(&mut w, &purchase_cmd("", "fan", "1", "USD", "pay-1"), ErrorCode::InvalidId);
    refused(&mut w, &gift_cmd("g1", "fan", "", "rose", 1), ErrorCode::InvalidId);
    let Command::Gift(mut gift) = gift_cmd("g1", "fan", "creator", "rose", 1) else { unreachable!() };
    gift.stream_id = "live stream".into();
    refused(&mut w, &Command::Gift(gift), ErrorCode::InvalidId);
    for bad in ["po-1", "tx-0-1-0", "po-0-1-x", "po-0-1-0 "] {
        refused(&mut w, &Command::PostPayout(payout_cmd("p1", bad)), ErrorCode::InvalidId);
    }
}

fn gift_with(request_id: &str, message: &str) -> Command {
    Command::Gift(Gift {
        request_id: request_id.into(),
        sender: "fan".into(),
        recipient: "creator".into(),
        gift_id: "rose".into(),
        quantity: 1,
        message: message.into(),
        stream_id: "s1".into(),
    })
}

#[test]
fn gifts() {
    let mut w = world();
    refused(&mut w, &gift_cmd("g1", "fan", "creator", "unicorn", 1), ErrorCode::UnknownGift);
    refused(&mut w, &gift_cmd("g2", "fan", "creator", "rose", 0), ErrorCode::InvalidQuantity);
    refused(&mut w, &gift_cmd("g3", "fan", "creator", "rose", 10_000), ErrorCode::InvalidQuantity);
    refused(&mut w, &gift_with("m1", &"x".repeat(281)), ErrorCode::MessageTooLong);
    refused(&mut w, &gift_with("m2", &"x".repeat(5000)), ErrorCode::MessageTooLong);
    refused(&mut w, &gift_with("m3", "hi\u{7}"), ErrorCode::MessageTooLong);
    assert!(w.submit(&gift_with("m4", &"\u{e9}".repeat(280))).is_ok(), "280 characters are fine, whatever their bytes");
    refused(&mut w, &gift_cmd("g4", "fan", "fan", "rose", 1), ErrorCode::SelfGift);
    refused(&mut w, &gift_cmd("g5", "fan", "creator", "lion", 1), ErrorCode::InsufficientCoins);
    refused(&mut w, &gift_cmd("g6", "nobody", "creator", "rose", 1), ErrorCode::AccountNotFound);
}

#[test]
fn payment_refs() {
    let mut w = world();
    refused(&mut w, &purchase_cmd("r1", "fan", "1", "USD", "pay-fund"), ErrorCode::DuplicatePaymentRef);
    refused(&mut w, &purchase_cmd("r2", "someone-else", "1", "USD", "pay-fund"), ErrorCode::DuplicatePaymentRef);
    assert_eq!(w.account_opt("someone-else"), None);
}

#[test]
fn request_id_reused_with_another_body_changes_nothing_at_all() {
    let mut w = world();
    w.purchase("r1", "fan", "1", "USD", "pay-1").unwrap();
    let before = w.shards.clone();
    for other in [purchase_cmd("r1", "fan", "2", "USD", "pay-1"), purchase_cmd("r1", "fan", "1", "USD", "pay-other"), gift_cmd("r1", "pay-1", "x", "rose", 1)] {
        if w.layout.shard_of(match other.route().unwrap() { coinledger_ledger::Route::Key(k) => k, _ => unreachable!() }) != w.layout.shard_of("pay-1") {
            continue; // request ids are per shard: another shard has never seen r1
        }
        assert_eq!(w.submit(&other).unwrap_err().code, ErrorCode::RequestIdReused);
        assert_eq!(w.shards, before);
    }
    assert_eq!(w.submit(&gift_cmd("fund", "pay-fund", "x", "rose", 1)).unwrap_err().code, ErrorCode::RequestIdReused);
    assert_eq!(w.shards, before);
}

#[test]
fn cash_outs_and_payouts() {
    let mut w = world();
    refused(&mut w, &cash_out_cmd("c1", "creator", 999, "USD"), ErrorCode::BelowMinimum);
    refused(&mut w, &cash_out_cmd("c2", "creator", 2001, "USD"), ErrorCode::InsufficientDiamonds);
    refused(&mut w, &cash_out_cmd("c3", "creator", 0, "USD"), ErrorCode::InvalidArgument);
    refused(&mut w, &cash_out_cmd("c4", "nobody", 1000, "USD"), ErrorCode::AccountNotFound);
    let Ok(Outcome::CashOut(first)) = w.cash_out("c5", "creator", 1500, "USD") else { panic!() };
    refused(&mut w, &cash_out_cmd("c6", "creator", 1000, "USD"), ErrorCode::InsufficientDiamonds);
    w.void("v1", &first.payout_id).unwrap();
    refused(&mut w, &Command::PostPayout(payout_cmd("p1", &first.payout_id)), ErrorCode::PayoutAlreadyVoided);
    let Ok(Outcome::CashOut(second)) = w.cash_out("c8", "creator", 1000, "EUR") else { panic!() };
    w.post("p2", &second.payout_id).unwrap();
    refused(&mut w, &Command::VoidPayout(payout_cmd("v2", &second.payout_id)), ErrorCode::PayoutAlreadyPosted);
    let unknown = format!("po-{}-9999-0", w.layout.shard_of("creator"));
    refused(&mut w, &Command::PostPayout(payout_cmd("p3", &unknown)), ErrorCode::UnknownPayout);
}

/// Changes a purchase refused in the account's shard may make: the claimed reference and the
/// target's stored effect result and its inbox fence.
const REFUSED_CREDIT: &[&[u8]] = &[b"pref/", b"ibx/", b"ibf/"];

#[test]
fn minors_daily_cap() {
    let mut w = world();
    w.set_limit("l1", "kid", true, Some(Money::new(dec("20"), "EUR"))).unwrap();
    w.purchase("k1", "kid", "15", "EUR", "pay-k1").unwrap();
    refused_with(&mut w, &purchase_cmd("k2", "kid", "5.01", "EUR", "pay-k2"), ErrorCode::LimitExceeded, REFUSED_CREDIT);
    refused_with(&mut w, &purchase_cmd("k3", "kid", "1", "USD", "pay-k3"), ErrorCode::LimitExceeded, REFUSED_CREDIT);
    w.purchase("k4", "kid", "5", "EUR", "pay-k4").unwrap();
    // The next UTC day starts a new count.
    w.clock_ms += coinledger_ledger::DAY_MS;
    w.purchase("k5", "kid", "20", "EUR", "pay-k5").unwrap();
    let kid = w.account("kid");
    assert_eq!(kid.purchased_today, dec("20"));
    // A refused purchase keeps its reference: it cannot be used again, nor refunded.
    refused(&mut w, &purchase_cmd("k6", "kid", "1", "EUR", "pay-k2"), ErrorCode::DuplicatePaymentRef);
    refused(&mut w, &Command::Refund(Refund { request_id: "rf".into(), payment_ref: "pay-k2".into() }), ErrorCode::PurchaseNotCredited);
}

#[test]
fn frozen_accounts() {
    let mut w = world();
    w.set_frozen("f1", "fan", true).unwrap();
    w.set_frozen("f2", "creator", true).unwrap();
    refused_with(&mut w, &purchase_cmd("r1", "fan", "1", "USD", "pay-1"), ErrorCode::AccountFrozen, REFUSED_CREDIT);
    refused(&mut w, &gift_cmd("g1", "fan", "someone", "rose", 1), ErrorCode::AccountFrozen);
    refused(&mut w, &cash_out_cmd("c1", "creator", 1000, "USD"), ErrorCode::AccountFrozen);
    // A frozen account still receives gifts.
    w.purchase("r2", "other", "1", "USD", "pay-2").unwrap();
    assert!(w.gift("g2", "other", "creator", "doughnut", 1).is_ok());
}

#[test]
fn refunds() {
    let mut w = world();
    refused(&mut w, &Command::Refund(Refund { request_id: "rf1".into(), payment_ref: "pay-unknown".into() }), ErrorCode::UnknownPaymentRef);
    w.refund("rf2", "pay-fund").unwrap();
    refused(&mut w, &Command::Refund(Refund { request_id: "rf3".into(), payment_ref: "pay-fund".into() }), ErrorCode::AlreadyRefunded);
}

#[test]
fn refund_while_the_credit_is_in_flight_is_unavailable_and_not_remembered() {
    let mut w = World::new(SHARDS);
    let (account, payment_ref) = w.split_keys();
    let Applied::Pending(_) = w.submit_only(&purchase_cmd("b1", &account, "1", "USD", &payment_ref)) else { panic!() };
    let refund = Command::Refund(Refund { request_id: "rf1".into(), payment_ref: payment_ref.clone() });
    let before = w.shards.clone();
    let Applied::Done(Err(e)) = w.submit_only(&refund) else { panic!() };
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert_eq!(w.shards, before);
    w.drain();
    assert!(matches!(w.submit(&refund), Ok(Outcome::Refund(_))), "the retry with the same request id succeeds");
}

#[test]
fn rate_cards() {
    let mut w = world();
    let mut card = RateCard::default_card();
    card.version = 3;
    refused(&mut w, &Command::SetRates(SetRates { request_id: "s1".into(), card: card.clone() }), ErrorCode::InvalidRateCard);
    card.version = 1;
    card.creator_share_bps = 4000;
    refused(&mut w, &Command::SetRates(SetRates { request_id: "s2".into(), card: card.clone() }), ErrorCode::InvalidRateCard);
    card.version = 2;
    card.gifts.clear();
    refused(&mut w, &Command::SetRates(SetRates { request_id: "s3".into(), card }), ErrorCode::InvalidRateCard);
}

#[test]
fn a_misrouted_command_is_refused_and_not_remembered() {
    let mut w = world();
    let cmd = purchase_cmd("r1", "fan", "1", "USD", "pay-1");
    let wrong = (w.layout.shard_of("pay-1") + 1) % SHARDS;
    let before = w.shards.clone();
    let ctx = EntryContext { shard: wrong, index: 1000, position: 0, timestamp_ms: 1 };
    let Applied::Done(Err(e)) = apply(&mut w.shards[wrong as usize], &w.layout, &ctx, &cmd) else { panic!() };
    assert_eq!(e.code, ErrorCode::Internal);
    assert_eq!(w.shards, before);
}
