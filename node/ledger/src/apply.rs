//! THE entry point: applies one committed command to a shard. Deterministic: the same commands
//! in the same order give byte-identical stores and outcomes on every replica.

use crate::model::PendingEffect;
use crate::book::{self, OutboxRecord, RequestRecord, RequestState};
use crate::cmd::{admin, cashout, effect, gift, payout, purchase, refund, Command, Route, Step};
use crate::context::EntryContext;
use crate::error::{ErrorCode, LedgerError};
use crate::keys;
use crate::layout::Layout;
use crate::model::{Applied, CompleteEffect, Outcome, PayoutState};
use crate::overlay::Overlay;
use crate::store::Store;

/// Applies one command on shard `ctx.shard`.
///
/// * Checks the command again ([`Command::validate`]): a replica never trusts the proposer.
///   An invalid or misrouted command changes nothing and is not remembered.
/// * Client commands are idempotent by request id: the same id with the same body returns the
///   first outcome (or `Pending` again) and changes nothing; with another body it is refused
///   with REQUEST_ID_REUSED. Business errors are outcomes too and are remembered; transient ones
///   (UNAVAILABLE) are not.
/// * A command's writes are all-or-nothing: a refused command changes nothing but its request
///   record.
///
/// # Panics
/// When an invariant of the money path would break (holds above balance, an outbox record
/// without its request): the shard must stop rather than commit a corrupt state.
pub fn apply(store: &mut dyn Store, layout: &Layout, ctx: &EntryContext, cmd: &Command) -> Applied {
    if let Err(invalid) = cmd.validate().and_then(|()| check_route(layout, ctx, cmd)) {
        return Applied::Done(Err(invalid));
    }
    match cmd {
        Command::ApplyEffect(delivery) => Applied::Done(Ok(Outcome::EffectApplied(effect::apply_once(store, delivery)))),
        Command::CompleteEffect(completion) => complete_effect(store, completion),
        _ => apply_client(store, layout, ctx, cmd),
    }
}

fn check_route(layout: &Layout, ctx: &EntryContext, cmd: &Command) -> Result<(), LedgerError> {
    let shard = match cmd.route()? {
        Route::Key(key) => Some(layout.shard_of(key)),
        Route::Shard(shard) => Some(shard),
        Route::AllShards => None,
    };
    if ctx.shard >= layout.shard_count || shard.is_some_and(|shard| shard != ctx.shard) {
        let message = format!("command for shard {shard:?} reached shard {} of {}", ctx.shard, layout.shard_count);
        return Err(LedgerError::new(ErrorCode::Internal, message));
    }
    Ok(())
}

fn apply_client(store: &mut dyn Store, layout: &Layout, ctx: &EntryContext, cmd: &Command) -> Applied {
    let request_id = cmd.request_id().expect("client commands carry a request id");
    let request_key = keys::request(request_id);
    let body = book::encode(cmd);
    if let Some(request) = book::get::<RequestRecord>(store, &request_key) {
        return replay(store, request, &body, request_id);
    }
    let mut overlay = Overlay::new(store);
    let step = match execute(&mut overlay, ctx, cmd) {
        Ok(step) => step,
        Err(refused) => {
            drop(overlay);
            if refused.code.is_recorded() {
                book::put(store, &request_key, &RequestRecord { body, state: RequestState::Done(Err(refused.clone())) });
            }
            return Applied::Done(Err(refused));
        }
    };
    let applied = match step {
        Step::Done(outcome) => {
            book::put(&mut overlay, &request_key, &RequestRecord { body, state: RequestState::Done(Ok(outcome.clone())) });
            Applied::Done(Ok(outcome))
        }
        Step::Effect(record) if layout.shard_of(&record.effect.target_account) == ctx.shard => {
            // Home is the target: both halves in this one entry. Nothing can deliver this
            // effect again, so it needs neither an outbox nor an inbox record.
            let result = effect::apply_here(&mut overlay, &record.effect);
            let outcome = effect::finish(&mut overlay, &record, &result).expect("a local effect's result fits it");
            book::put(&mut overlay, &request_key, &RequestRecord { body, state: RequestState::Done(outcome.clone()) });
            Applied::Done(outcome)
        }
        Step::Effect(record) => {
            let state = match effect::known_outcome(&record.finish) {
                Some(outcome) => RequestState::Done(outcome),
                None => RequestState::Pending(record.effect.id.clone()),
            };
            book::put(&mut overlay, &request_key, &RequestRecord { body, state });
            book::put(&mut overlay, &keys::outbox_of(&record.effect.id), &record);
            // Stored: its parts move on to the router (cloning them was 8 string copies a gift).
            Applied::Pending(PendingEffect { effect: record.effect, finish: record.finish, completed_below: 0 })
        }
    };
    overlay.commit();
    applied
}

fn replay(store: &dyn Store, request: RequestRecord, body: &[u8], request_id: &str) -> Applied {
    if request.body != body {
        let message = format!("request id {request_id} was already used with a different request");
        return Applied::Done(Err(LedgerError::new(ErrorCode::RequestIdReused, message)));
    }
    let waiting = |record: OutboxRecord| Applied::Pending(PendingEffect { effect: record.effect, finish: record.finish, completed_below: 0 });
    match request.state {
        // Recorded when the sender was debited, but its credit may still be on its way: while
        // the effect is in the outbox a retry waits for the credit, as the first attempt did,
        // so that an answer is never given before the credit is committed.
        RequestState::Done(result) => match effect::recorded_early(&result).and_then(|id| book::get::<OutboxRecord>(store, &keys::outbox_of(id))) {
            Some(record) => waiting(record),
            None => Applied::Done(result),
        },
        RequestState::Pending(effect_id) => {
            let record: OutboxRecord = book::get(store, &keys::outbox_of(&effect_id)).unwrap_or_else(|| panic!("request {request_id} waits for effect {effect_id}, which is not in the outbox"));
            waiting(record)
        }
    }
}

fn execute(store: &mut dyn Store, ctx: &EntryContext, cmd: &Command) -> Result<Step, LedgerError> {
    match cmd {
        Command::Purchase(c) => purchase::execute(store, ctx, c),
        Command::Gift(c) => gift::execute(store, ctx, c),
        Command::CashOut(c) => cashout::execute(store, ctx, c),
        Command::PostPayout(c) => payout::settle(store, ctx, c, PayoutState::Posted),
        Command::VoidPayout(c) => payout::settle(store, ctx, c, PayoutState::Voided),
        Command::Refund(c) => refund::execute(store, ctx, c),
        Command::SetRates(c) => admin::set_rates(store, ctx, c),
        Command::SetLimit(c) => admin::set_limit(store, ctx, c),
        Command::SetFrozen(c) => admin::set_frozen(store, ctx, c),
        Command::ApplyEffect(_) | Command::CompleteEffect(_) => unreachable!("effects are not client commands"),
    }
}

/// Finishes the command waiting for this effect. Unknown or already completed: nothing to do.
fn complete_effect(store: &mut dyn Store, completion: &CompleteEffect) -> Applied {
    let outbox_key = keys::outbox_of(&completion.effect_id);
    if effect::completes_by_release(&completion.result) {
        // A gift's outcome was recorded with its request when the sender was debited: the
        // outbox record only has to go. Neither it nor the request record is decoded, which
        // was about half of this command's cost under batched gifts.
        let mut pending = false;
        store.read_with(&outbox_key, &mut |record| pending = record.is_some());
        if pending {
            store.delete(&outbox_key);
        }
        return Applied::Done(Ok(Outcome::EffectCompleted));
    }
    let Some(record) = book::get::<OutboxRecord>(store, &outbox_key) else {
        return Applied::Done(Ok(Outcome::EffectCompleted));
    };
    assert_eq!(record.effect.id, completion.effect_id, "outbox key and effect id disagree");
    let mut overlay = Overlay::new(store);
    match effect::complete(&mut overlay, &record, &completion.result) {
        Ok(outcome) => {
            overlay.commit();
            Applied::Done(outcome)
        }
        Err(mismatch) => Applied::Done(Err(mismatch)),
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::{gift_cmd, purchase_cmd, World};
    use crate::{Applied, ErrorCode};

    #[test]
    fn a_retry_answers_the_first_outcome_and_changes_nothing() {
        let mut world = World::new(1);
        let buy = purchase_cmd("r1", "fan", "9.99", "USD", "pay-1");
        let first = world.submit(&buy);
        let before = world.shards.clone();
        assert_eq!(world.submit(&buy), first);
        assert_eq!(world.shards, before);
        let other = purchase_cmd("r1", "fan", "1.00", "USD", "pay-1");
        assert_eq!(world.submit(&other).unwrap_err().code, ErrorCode::RequestIdReused);
        assert_eq!(world.shards, before);
    }

    #[test]
    fn a_business_error_is_the_first_outcome_even_after_the_state_changes() {
        let mut world = World::new(1);
        world.purchase("r0", "fan", "0.01", "USD", "pay-0").unwrap();
        let gift = gift_cmd("g1", "fan", "creator", "doughnut", 1);
        assert_eq!(world.submit(&gift).unwrap_err().code, ErrorCode::InsufficientCoins);
        world.purchase("r1", "fan", "9.99", "USD", "pay-1").unwrap();
        assert_eq!(world.submit(&gift).unwrap_err().code, ErrorCode::InsufficientCoins, "the retry sees the first outcome");
    }

    #[test]
    fn a_pending_command_replays_as_pending_then_as_its_final_outcome() {
        let mut world = World::new(8);
        let (account, payment_ref) = world.split_keys();
        let buy = purchase_cmd("r1", &account, "9.99", "USD", &payment_ref);
        let pending = world.submit_only(&buy);
        assert!(matches!(pending, Applied::Pending(_)));
        let before = world.shards.clone();
        assert_eq!(world.submit_only(&buy), pending);
        assert_eq!(world.shards, before);
        world.drain();
        let Applied::Done(Ok(_)) = world.submit_only(&buy) else { panic!() };
        assert_eq!(world.account(&account).coins, 999, "credited once despite the duplicate delivery");
    }
}
