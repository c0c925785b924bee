//! Cross-shard effects. `apply_once` runs on the TARGET shard (the account's), deduplicated by
//! effect id; `complete` runs on the HOME shard with that result, finishes the originating
//! command and removes the outbox record. The target keeps results in pages per home shard
//! and forgets them once a delivery says the home completed them (see `EffectDelivery`).

use rust_decimal::Decimal;

use crate::book::{self, Finish, OutboxRecord, RequestRecord, RequestState};
use crate::context::DAY_MS;
use crate::error::{err, ErrorCode, LedgerError};
use crate::ids::parse_tx_id;
use crate::keys;
use crate::model::{Account, CommandResult, Effect, EffectDelivery, EffectKind, EffectResult, EntryKind, HistoryEntry, Outcome, PaymentStatus, PurchaseReceipt, RefundReceipt};
use crate::money::Money;
use crate::overlay::Overlay;
use crate::store::Store;

/// Applies a delivered effect to its target account once; a repeat returns the kept result,
/// and a late duplicate of a completed effect returns `Forgotten` and changes nothing. Then
/// forgets what the delivery says the home completed.
pub(crate) fn apply_once(store: &mut dyn Store, delivery: &EffectDelivery) -> EffectResult {
    let effect = &delivery.effect;
    let (home, index, position) = parse_tx_id(&effect.id).expect("effect ids are validated before apply");
    book::deliver_once(store, home, index, position, delivery.completed_below, |store| apply_here(store, effect))
}

/// Applies an effect to its account, without deduplication: for a delivery that is not a
/// repeat, or for home and target in one shard. A rejected effect changes nothing.
pub(crate) fn apply_here(store: &mut dyn Store, effect: &Effect) -> EffectResult {
    let mut overlay = Overlay::new(store);
    match apply_kind(&mut overlay, effect) {
        Ok(result) => {
            overlay.commit();
            result
        }
        Err(rejection) => EffectResult::Rejected(rejection),
    }
}

fn apply_kind(store: &mut dyn Store, effect: &Effect) -> Result<EffectResult, LedgerError> {
    let id = effect.target_account.as_str();
    match &effect.kind {
        EffectKind::CreditPurchase { .. } => credit_purchase(store, effect),
        EffectKind::CreditGift { sender, diamonds, coins_debited, platform_coins, gift_id, quantity, message, stream_id, rate_version, timestamp_ms } => {
            let before = book::account(store, id).unwrap_or_else(|| Account::open(id));
            let mut after = before.clone();
            // Never refused: diamonds credited never exceed coins ever issued, which fit a u64.
            after.diamonds = before.diamonds.checked_add(*diamonds).expect("diamond balance overflow");
            let mut totals = book::totals(store);
            totals.diamonds_credited = totals.diamonds_credited.checked_add(*diamonds).expect("diamonds credited overflow");
            book::save_totals(store, &totals);
            let mut entry = HistoryEntry::borrowed(EntryKind::GiftReceived, &effect.id, *timestamp_ms);
            entry.counterparty = sender;
            entry.rate_version = *rate_version;
            entry.gift_id = gift_id;
            entry.quantity = *quantity;
            entry.message = message;
            entry.stream_id = stream_id;
            entry.base_coins = *coins_debited;
            entry.platform_coins = *platform_coins;
            book::save_account(store, &before, &mut after, entry);
            Ok(EffectResult::GiftCredited { diamonds_balance: after.diamonds })
        }
        EffectKind::Clawback { payment_ref, coins, refunded, timestamp_ms } => {
            let before = book::existing_account(store, id)?;
            let mut after = before.clone();
            let recovered = (*coins).min(before.coins);
            let unrecovered = coins - recovered;
            after.coins = before.coins - recovered;
            if unrecovered > 0 {
                after.frozen = true;
            }
            let mut totals = book::totals(store);
            totals.coins_recovered = totals.coins_recovered.checked_add(recovered).expect("recovered <= issued");
            book::save_totals(store, &totals);
            let mut entry = HistoryEntry::new(EntryKind::Refund, &effect.id, *timestamp_ms);
            entry.fiat = Some(refunded.clone());
            entry.reference = payment_ref.clone();
            book::save_account(store, &before, &mut after, entry);
            Ok(EffectResult::ClawedBack { recovered, unrecovered, frozen: unrecovered > 0 })
        }
    }
}

fn credit_purchase(store: &mut dyn Store, effect: &Effect) -> Result<EffectResult, LedgerError> {
    let EffectKind::CreditPurchase { payment_ref, base_coins, bonus_coins, paid, rate_version, timestamp_ms, .. } = &effect.kind else {
        unreachable!("called for purchase credits only")
    };
    let id = effect.target_account.as_str();
    let before = book::account(store, id).unwrap_or_else(|| Account::open(id));
    if before.frozen {
        return err(ErrorCode::AccountFrozen, format!("account {id} is frozen: it cannot buy coins"));
    }
    let mut after = before.clone();
    if let Some(cap) = &before.daily_purchase_cap {
        if paid.currency != cap.currency {
            return err(ErrorCode::LimitExceeded, format!("account {id} has a daily cap in {0}: it can only buy in {0}, not {1}", cap.currency, paid.currency));
        }
        // A credit applied late (its day already past) still counts against the current day.
        let day = timestamp_ms / DAY_MS;
        let today = if day > before.purchased_day { Decimal::ZERO } else { before.purchased_today };
        let total = today.checked_add(paid.amount).ok_or_else(|| LedgerError::new(ErrorCode::AmountTooLarge, "daily purchase total overflow"))?;
        if total > cap.amount {
            return err(
                ErrorCode::LimitExceeded,
                format!("account {id} may buy at most {cap} a day; it bought {today} {} today and this purchase is {paid}", cap.currency),
            );
        }
        after.purchased_day = day.max(before.purchased_day);
        after.purchased_today = total;
    }
    let coins = base_coins.checked_add(*bonus_coins).ok_or_else(|| LedgerError::new(ErrorCode::AmountTooLarge, "purchase coins overflow"))?;
    after.coins = before.coins.checked_add(coins).ok_or_else(|| {
        LedgerError::new(ErrorCode::AmountTooLarge, format!("account {id} has {} coins; {coins} more would overflow the balance", before.coins))
    })?;
    let mut totals = book::totals(store);
    totals.coins_issued = totals.coins_issued.checked_add(coins).ok_or_else(|| LedgerError::new(ErrorCode::AmountTooLarge, "the shard's issued coins would overflow"))?;
    book::save_totals(store, &totals);
    let mut entry = HistoryEntry::new(EntryKind::Purchase, &effect.id, *timestamp_ms);
    entry.fiat = Some(paid.clone());
    entry.rate_version = *rate_version;
    entry.base_coins = *base_coins;
    entry.bonus_coins = *bonus_coins;
    entry.reference = payment_ref.clone();
    book::save_account(store, &before, &mut after, entry);
    Ok(EffectResult::Credited { coins_balance: after.coins })
}

/// The final outcome of a command whose effect answered `result`: a pure function of what
/// the home shard recorded (`finish`, `effect`) and the target's deduplicated result, so the
/// node can answer as soon as the target committed, and the later CompleteEffect (or a retry)
/// arrives at the very same outcome. Err if the result does not fit the effect (a node bug).
pub fn final_outcome(finish: &Finish, effect: &Effect, result: &EffectResult) -> Result<CommandResult, LedgerError> {
    let mismatch = || LedgerError::new(ErrorCode::Internal, format!("effect {} cannot complete with {result:?}", effect.id));
    Ok(match (finish, &effect.kind, result) {
        (Finish::Purchase, EffectKind::CreditPurchase { payment_ref, base_coins, bonus_coins, promotion_id, coin_price, rate_version, timestamp_ms, .. }, _) => match result {
            EffectResult::Credited { coins_balance } => Ok(Outcome::Purchase(PurchaseReceipt {
                tx_id: effect.id.clone(),
                account: effect.target_account.clone(),
                coins_credited: base_coins + bonus_coins,
                base_coins: *base_coins,
                bonus_coins: *bonus_coins,
                promotion_id: promotion_id.clone(),
                coin_price: coin_price.clone(),
                rate_version: *rate_version,
                coins_balance: *coins_balance,
                timestamp_ms: *timestamp_ms,
                payment_ref: payment_ref.clone(),
            })),
            EffectResult::Rejected(rejection) => Err(rejection.clone()),
            _ => return Err(mismatch()),
        },
        (Finish::Gift(receipt), EffectKind::CreditGift { .. }, EffectResult::GiftCredited { .. }) => Ok(Outcome::Gift(receipt.clone())),
        (Finish::Refund, EffectKind::Clawback { payment_ref, coins, refunded, timestamp_ms }, _) => match result {
            EffectResult::ClawedBack { recovered, unrecovered, frozen } => Ok(Outcome::Refund(RefundReceipt {
                tx_id: effect.id.clone(),
                account: effect.target_account.clone(),
                payment_ref: payment_ref.clone(),
                coins_purchased: *coins,
                coins_recovered: *recovered,
                coins_unrecovered: *unrecovered,
                account_frozen: *frozen,
                refunded: Money::clone(refunded),
                timestamp_ms: *timestamp_ms,
            })),
            EffectResult::Rejected(rejection) => Err(rejection.clone()),
            _ => return Err(mismatch()),
        },
        _ => return Err(mismatch()),
    })
}

/// The outcome of a command that is known when its home applies it, whatever its effect's
/// result: a gift's (its credit is never refused), recorded under the request id right away,
/// so that completing the gift only releases its outbox record. None for purchases and
/// refunds, whose outcome is the target's result.
pub(crate) fn known_outcome(finish: &Finish) -> Option<CommandResult> {
    match finish {
        Finish::Gift(receipt) => Some(Ok(Outcome::Gift(receipt.clone()))),
        Finish::Purchase | Finish::Refund => None,
    }
}

/// The effect a request recorded by [`known_outcome`] may still wait for: its credit is
/// pending as long as the home's outbox holds it. None for every other outcome.
pub(crate) fn recorded_early(result: &CommandResult) -> Option<&str> {
    match result {
        Ok(Outcome::Gift(receipt)) => Some(&receipt.tx_id),
        _ => None,
    }
}

/// Whether completing an effect with `result` only releases its outbox record: the result of
/// a gift credit, whose command's outcome was recorded by [`known_outcome`].
pub(crate) fn completes_by_release(result: &EffectResult) -> bool {
    matches!(result, EffectResult::GiftCredited { .. })
}

/// Brings a shard written before gifts recorded their outcome at the debit (storage format 7)
/// up to date: each gift still in the outbox gets its request recorded as done, as
/// [`known_outcome`] would have, since its completion will now only release the outbox record.
/// Idempotent; returns the requests it recorded.
pub fn record_pending_gift_outcomes(store: &mut dyn Store) -> usize {
    let mut recorded = 0;
    for (key, bytes) in store.scan(keys::OUTBOX_PREFIX, usize::MAX) {
        let record: OutboxRecord = book::decode(&key, &bytes);
        let Some(outcome) = known_outcome(&record.finish) else { continue };
        let request_key = keys::request(&record.request_id);
        let mut request: RequestRecord = book::get(store, &request_key).unwrap_or_else(|| panic!("effect {} has no request {}", record.effect.id, record.request_id));
        if request.state == RequestState::Pending(record.effect.id.clone()) {
            request.state = RequestState::Done(outcome);
            book::put(store, &request_key, &request);
            recorded += 1;
        }
    }
    recorded
}

/// The home half of a command whose effect answered `result`: its payment record (for a
/// purchase) is settled and its final outcome returned; the caller records that outcome under
/// the request id. Err if the result does not fit the effect (a node bug): then nothing may
/// be written.
pub(crate) fn finish(store: &mut dyn Store, record: &OutboxRecord, result: &EffectResult) -> Result<CommandResult, LedgerError> {
    let effect = &record.effect;
    let outcome = final_outcome(&record.finish, effect, result)?;
    if let EffectKind::CreditPurchase { payment_ref, .. } = &effect.kind {
        let mut payment = book::payment(store, payment_ref).unwrap_or_else(|| panic!("purchase {} lost its payment record", effect.id));
        payment.status = if outcome.is_ok() { PaymentStatus::Credited } else { PaymentStatus::Rejected };
        book::put(store, &keys::payment(payment_ref), &payment);
    }
    Ok(outcome)
}

/// Completion at home of an effect from the outbox: the command's final outcome is stored
/// under its request id and returned, and the outbox record removed. Err as for [`finish`].
pub(crate) fn complete(store: &mut dyn Store, record: &OutboxRecord, result: &EffectResult) -> Result<CommandResult, LedgerError> {
    let effect = &record.effect;
    let outcome = finish(store, record, result)?;
    store.delete(&keys::outbox_of(&effect.id));
    let request_key = keys::request(&record.request_id);
    let mut request: RequestRecord = book::get(store, &request_key).unwrap_or_else(|| panic!("effect {} has no request {}", effect.id, record.request_id));
    assert_eq!(request.state, RequestState::Pending(effect.id.clone()), "request {} is not waiting for effect {}", record.request_id, effect.id);
    request.state = RequestState::Done(outcome.clone());
    book::put(store, &request_key, &request);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use crate::sim::{gift_cmd, World};
    use crate::{Applied, EffectResult};

    fn keys_under(world: &World, shard: usize, prefix: &[u8]) -> usize {
        world.shards[shard].map.keys().filter(|key| key.starts_with(prefix)).count()
    }

    #[test]
    fn a_late_duplicate_of_a_completed_effect_is_forgotten_and_changes_nothing() {
        let mut world = World::new(16);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        let Applied::Pending(first) = world.submit_only(&gift_cmd("g1", "fan", &creator, "doughnut", 1)) else { panic!() };
        world.drain();
        // The next delivery from fan's shard tells the creator's shard that g1 was completed.
        world.gift("g2", "fan", &creator, "doughnut", 1).unwrap();
        let (home_before, creator_before) = (world.store_of("fan").clone(), world.account(&creator));
        world.effects.push(first.effect.clone());
        assert_eq!(world.deliver_effect(0), EffectResult::Forgotten);
        world.deliver_completion(0);
        assert_eq!(world.store_of("fan"), &home_before, "the home did not change");
        assert_eq!(world.account(&creator), creator_before, "the creator was not credited twice");
        assert_eq!(creator_before.diamonds, 30);
        assert_eq!(crate::read::effect_result(world.store_of(&creator), &first.effect.id), Some(EffectResult::Forgotten));
        assert!(world.audit().ok);
    }

    #[test]
    fn the_inbox_keeps_a_few_pages_not_a_key_per_effect() {
        let mut world = World::new(2);
        world.purchase("buy", "fan", "99.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        for i in 0..300 {
            world.gift(&format!("g{i}"), "fan", &creator, "rose", 1).unwrap();
        }
        let (home, target) = (world.layout.shard_of("fan") as usize, world.layout.shard_of(&creator) as usize);
        // 300 gifts are 600 home entries (gift and completion): 300 pages of 2 indexes were written.
        assert!(keys_under(&world, target, b"ibx/") <= 2, "{} inbox pages", keys_under(&world, target, b"ibx/"));
        assert_eq!(keys_under(&world, target, b"ibf/"), 1);
        assert_eq!(keys_under(&world, home, b"obx/"), 0);
        assert_eq!(world.account(&creator).history_seq, 300);
        assert!(world.audit().ok);
    }

    #[test]
    fn a_gift_within_one_shard_leaves_no_outbox_or_inbox_record() {
        let mut world = World::new(1);
        world.purchase("buy", "fan", "9.99", "USD", "pay-1").unwrap();
        world.gift("g1", "fan", "creator", "doughnut", 1).unwrap();
        assert_eq!(world.account("creator").diamonds, 15);
        for prefix in [&b"obx/"[..], b"ibx/", b"ibf/"] {
            assert_eq!(keys_under(&world, 0, prefix), 0, "{}", String::from_utf8_lossy(prefix));
        }
    }

    #[test]
    fn a_shard_of_format_7_gets_its_pending_gifts_recorded_once() {
        use crate::book::{self, RequestRecord, RequestState};
        use crate::keys;
        let mut world = World::new(16);
        world.purchase("buy", "fan", "99.99", "USD", "pay-1").unwrap();
        let creator = world.key_in_other_shard("fan", "creator");
        let Applied::Pending(pending) = world.submit_only(&gift_cmd("g1", "fan", &creator, "doughnut", 1)) else { panic!() };
        let home = world.layout.shard_of("fan") as usize;
        let store = &mut world.shards[home];
        // As a build before this one recorded it: pending until the completion.
        let mut request: RequestRecord = book::get(store, &keys::request("g1")).unwrap();
        let RequestState::Done(outcome) = request.state.clone() else { panic!("recorded at the debit") };
        request.state = RequestState::Pending(pending.effect.id.clone());
        book::put(store, &keys::request("g1"), &request);
        assert_eq!(super::record_pending_gift_outcomes(store), 1);
        let migrated: RequestRecord = book::get(store, &keys::request("g1")).unwrap();
        assert_eq!(migrated.state, RequestState::Done(outcome));
        let once = store.clone();
        assert_eq!(super::record_pending_gift_outcomes(store), 0, "idempotent");
        assert_eq!(store, &once);
        world.drain();
        assert_eq!(world.account(&creator).diamonds, 15);
        assert!(world.audit().ok);
    }
}
