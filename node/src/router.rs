//! Routes commands and reads to shard leaders and drives cross-shard effects.
//!
//! A command goes to the leader of the shard of its routing key (this node's replica, or one
//! forwarding hop). If its home shard answers `Pending` (a gift to a creator in another shard,
//! a purchase credited to an account in another shard, a refund's claw-back), the router
//! proposes the effect to the target shard, where it is deduplicated by effect id, answers the
//! client as soon as that commits, and completes the effect on the home shard in the
//! background. Effects whose driver died (client timeout, node crash) are re-driven by the new
//! leader of their home shard and by a periodic sweep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use raft::prelude::Message as RaftMessage;
use tokio::sync::oneshot;

use crate::error::{NodeError, NodeResult};
use crate::ledger::{
    self, Applied, Command, CompleteEffect, Effect, EffectDelivery, LedgerError, Layout, Outcome, PendingEffect, Route,
};
use crate::placement::Placement;
use crate::shard::{ReadAnswer, ReadQuery, ShardActor, ShardMsg, ShardStatus};
use crate::transport::{PeerReply, PeerRequest, Peers};

/// Most pending effects re-driven concurrently by one sweep of one shard.
const SWEEP_BATCH: usize = 256;
/// Attempts to reach a shard's leader (following hints, waiting out elections) per call.
const ROUTE_ATTEMPTS_MAX: u32 = 60;
const ROUTE_BACKOFF_MS_MIN: u64 = 5;
const ROUTE_BACKOFF_MS_MAX: u64 = 250;
/// Deadline of one forwarded call. Past it the guessed leader is presumed gone (paused, cut
/// off) and the next replica is tried; the caller's own deadline bounds the whole operation.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one shard's effect sweep.
pub const SWEEP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Router {
    node_id: u64,
    layout: Layout,
    placement: Placement,
    /// This node's replica of each shard, if it hosts one.
    shards: Vec<Option<Addr<ShardActor>>>,
    peers: Peers,
    /// Last known leader of each shard (a node id), refined by NOT_LEADER answers.
    leaders: Vec<AtomicU64>,
}

impl Router {
    pub fn new(node_id: u64, layout: Layout, placement: Placement, shards: Vec<Option<Addr<ShardActor>>>, peers: Peers) -> Self {
        assert_eq!(shards.len(), layout.shard_count as usize, "one slot per shard");
        let leaders = (0..layout.shard_count).map(|s| AtomicU64::new(placement.preferred_leader(s))).collect();
        Self { node_id, layout, placement, shards, peers, leaders }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Where a hosted replica's raft says the shard's leader now is: later calls go there
    /// directly instead of learning it from a NOT_LEADER answer.
    pub fn note_leader(&self, shard: u32, leader_id: u64) {
        if let Some(slot) = self.leaders.get(shard as usize) {
            slot.store(leader_id, Ordering::Relaxed);
        }
    }

    /// This node's guess of every shard's leader (a node id per shard, in shard order): what
    /// its replicas' raft last said, or what forwarding last learnt for shards it does not host.
    pub fn leader_guesses(&self) -> Vec<u64> {
        self.leaders.iter().map(|slot| slot.load(Ordering::Relaxed)).collect()
    }

    pub fn shard_of_key(&self, key: &str) -> u32 {
        self.layout.shard_of(key)
    }

    pub fn hosts(&self, shard: u32) -> bool {
        self.shards.get(shard as usize).is_some_and(|s| s.is_some())
    }

    fn actor(&self, shard: u32) -> NodeResult<&Addr<ShardActor>> {
        self.shards
            .get(shard as usize)
            .and_then(|s| s.as_ref())
            .ok_or(NodeError::NotLeader { shard, leader_id: None, leader_hint: None })
    }

    fn send(&self, shard: u32, msg: ShardMsg) -> NodeResult<()> {
        self.actor(shard)?.try_send(msg).map_err(|e| match e {
            actix::dev::SendError::Full(_) => {
                NodeError::Unavailable(format!("shard {shard} queue is full"))
            }
            actix::dev::SendError::Closed(_) => {
                NodeError::Internal(format!("shard {shard} has stopped"))
            }
        })
    }

    /// Hands a raft message from a peer to the local replica (dropped if it cannot take it).
    pub fn step(&self, shard: u32, msg: RaftMessage) {
        if let Some(Some(actor)) = self.shards.get(shard as usize) {
            let _ = actor.try_send(ShardMsg::Raft(Box::new(msg)));
        }
    }

    /// Proposes to this node's replica; NOT_LEADER if it does not lead the shard.
    pub async fn propose_local(&self, shard: u32, cmd: Command) -> NodeResult<Applied> {
        let (reply, rx) = oneshot::channel();
        self.send(shard, ShardMsg::Propose { cmd, reply })?;
        rx.await.map_err(|_| NodeError::Unavailable(format!("shard {shard} dropped the proposal")))?
    }

    /// Proposes `cmds` to this node's replica in one mailbox message (they share the shard's
    /// next entry, as concurrent single proposals would); each command gets its own answer,
    /// in order. A batch's commands went through a task, an oneshot, a timer and a mailbox
    /// message each, which cost more of the node's gRPC threads than decoding them.
    pub async fn propose_local_many(&self, shard: u32, cmds: Vec<Command>) -> Vec<NodeResult<Applied>> {
        let mut answers = Vec::with_capacity(cmds.len());
        let proposals = cmds
            .into_iter()
            .map(|cmd| {
                let (reply, rx) = oneshot::channel();
                answers.push(rx);
                (cmd, reply)
            })
            .collect();
        if let Err(e) = self.send(shard, ShardMsg::ProposeMany { proposals }) {
            return answers.iter().map(|_| Err(e.clone())).collect();
        }
        let mut results = Vec::with_capacity(answers.len());
        // All are answered together (one entry, or a few in a row): awaiting them in order
        // costs no more than awaiting them at once.
        for rx in answers {
            results.push(rx.await.unwrap_or_else(|_| Err(NodeError::Unavailable(format!("shard {shard} dropped the proposal")))));
        }
        results
    }

    /// Reads from this node's replica (ReadIndex); NOT_LEADER if it does not lead the shard.
    pub async fn read_local(&self, shard: u32, query: ReadQuery) -> NodeResult<ReadAnswer> {
        let (reply, rx) = oneshot::channel();
        self.send(shard, ShardMsg::Read { query, reply })?;
        rx.await.map_err(|_| NodeError::Unavailable(format!("shard {shard} dropped the read")))?
    }

    /// Sends `question` to every local replica and gathers the answers (None: the replica's
    /// mailbox refused it or it dropped the reply).
    async fn ask_local<T>(&self, question: impl Fn(oneshot::Sender<T>) -> ShardMsg) -> Vec<Option<T>> {
        let asks = (0..self.layout.shard_count).filter(|&s| self.hosts(s)).map(|shard| {
            let (reply, rx) = oneshot::channel();
            let sent = self.send(shard, question(reply)).is_ok();
            async move { if sent { rx.await.ok() } else { None } }
        });
        futures::future::join_all(asks).await
    }

    /// Asks every local replica that leads its shard to hand leadership over (planned stop);
    /// returns how many transfers started.
    pub async fn hand_off_leadership(&self) -> usize {
        self.ask_local(|reply| ShardMsg::HandOff { reply }).await.into_iter().filter(|&started| started == Some(true)).count()
    }

    /// Asks every local replica to write its cached state to the engine (planned stop);
    /// returns how many did.
    pub async fn flush_state(&self) -> usize {
        self.ask_local(|reply| ShardMsg::FlushState { reply }).await.into_iter().filter(Option::is_some).count()
    }

    /// Shards this node's replicas lead right now.
    pub async fn shards_led(&self) -> usize {
        let asks = (0..self.layout.shard_count).filter(|&s| self.hosts(s)).map(|shard| self.status(shard));
        futures::future::join_all(asks).await.into_iter().filter(|st| st.as_ref().is_ok_and(|st| st.role == "leader")).count()
    }

    /// The status of this node's replica of `shard`.
    pub async fn status(&self, shard: u32) -> NodeResult<ShardStatus> {
        let (reply, rx) = oneshot::channel();
        self.send(shard, ShardMsg::Status { reply })?;
        rx.await.map_err(|_| NodeError::Unavailable(format!("shard {shard} did not answer")))
    }

    /// Runs `request` on the shard's leader, wherever it is: locally, or forwarded one hop.
    /// NOT_LEADER answers move the guess to the hinted leader (or the next replica while an
    /// election runs); retrying is safe because every command is idempotent.
    async fn on_leader(&self, request: PeerRequest) -> NodeResult<PeerReply> {
        let shard = request.shard();
        let slot = &self.leaders[shard as usize];
        let mut backoff_ms = ROUTE_BACKOFF_MS_MIN;
        let mut last_err = NodeError::Unavailable(format!("shard {shard} has no reachable leader"));
        for _ in 0..ROUTE_ATTEMPTS_MAX {
            let target = slot.load(Ordering::Relaxed);
            let result = if target == self.node_id {
                match &request {
                    PeerRequest::Propose { cmd, .. } => self.propose_local(shard, cmd.clone()).await.map(PeerReply::Applied),
                    PeerRequest::ProposeMany { cmds, .. } => Ok(PeerReply::AppliedMany(self.propose_local_many(shard, cmds.clone()).await)),
                    PeerRequest::Read { query, .. } => self.read_local(shard, query.clone()).await.map(PeerReply::Read),
                }
            } else {
                self.peers.forward(target, request.clone(), FORWARD_TIMEOUT).await
            };
            let remote = target != self.node_id;
            let next = match &result {
                Err(NodeError::NotLeader { leader_id: Some(leader), .. }) if *leader != target => Some(*leader),
                result if try_elsewhere(result, remote) => Some(self.next_replica(shard, target)),
                _ => None,
            };
            match next {
                None => return result,
                Some(next) => {
                    let hinted = matches!(&result, Err(NodeError::NotLeader { leader_id: Some(l), .. }) if *l == next);
                    last_err = result.expect_err("only errors are retried");
                    slot.store(next, Ordering::Relaxed);
                    if !hinted {
                        // No leader known: an election is running or a node is down.
                        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                        backoff_ms = (backoff_ms * 2).min(ROUTE_BACKOFF_MS_MAX);
                    }
                }
            }
        }
        Err(last_err)
    }

    fn next_replica(&self, shard: u32, after: u64) -> u64 {
        let replicas = self.placement.replicas(shard);
        let pos = replicas.iter().position(|&n| n == after).map_or(0, |p| p + 1);
        replicas[pos % replicas.len()]
    }

    pub async fn propose(&self, shard: u32, cmd: Command) -> NodeResult<Applied> {
        match self.on_leader(PeerRequest::Propose { shard, cmd }).await? {
            PeerReply::Applied(applied) => Ok(applied),
            other => Err(NodeError::Internal(format!("proposal answered {other:?}"))),
        }
    }

    /// [`Router::propose`] for many commands of one shard: one message to the shard's guessed
    /// leader (this node's replica, or one Forward request). Commands answered with a routing
    /// error (NOT_LEADER, UNAVAILABLE, a forward that timed out) go through
    /// [`Router::propose`] one by one, which follows leader hints and waits out elections;
    /// every command is idempotent, so resending is safe.
    pub async fn propose_many(&self, shard: u32, cmds: Vec<Command>) -> Vec<NodeResult<Applied>> {
        let slot = &self.leaders[shard as usize];
        let target = slot.load(Ordering::Relaxed);
        let remote = target != self.node_id;
        let mut answers = if remote {
            let count = cmds.len();
            let request = PeerRequest::ProposeMany { shard, cmds: cmds.clone() };
            match self.peers.forward(target, request, FORWARD_TIMEOUT).await {
                Ok(PeerReply::AppliedMany(answers)) if answers.len() == count => answers,
                Ok(other) => vec![Err(NodeError::Internal(format!("node {target} answered {count} proposals with {other:?}"))); count],
                Err(e) => vec![Err(e); count],
            }
        } else {
            self.propose_local_many(shard, cmds.clone()).await
        };
        let retry = |answer: &NodeResult<Applied>| try_elsewhere(answer, remote);
        if !answers.iter().any(retry) {
            return answers;
        }
        if let Some(Err(NodeError::NotLeader { leader_id: Some(leader), .. })) = answers.iter().find(|a| matches!(a, Err(NodeError::NotLeader { .. }))) {
            if *leader != target {
                slot.store(*leader, Ordering::Relaxed);
            }
        }
        let again: Vec<usize> = (0..answers.len()).filter(|&i| retry(&answers[i])).collect();
        let retried = futures::future::join_all(again.iter().map(|&i| self.propose(shard, cmds[i].clone()))).await;
        for (i, answer) in again.into_iter().zip(retried) {
            answers[i] = answer;
        }
        answers
    }

    /// [`Router::execute`] for a batch of client commands, answered in order, each on its own:
    /// the commands of one home shard go out as one proposal message ([`Router::propose_many`]),
    /// then their cross-shard effects as one per target shard, then the completions as one
    /// per home shard (in the background). A stage that misses `deadline` answers its
    /// commands TIMEOUT (a retry with the same request id finds their outcome); the others
    /// keep theirs.
    pub async fn execute_batch(self: &Arc<Self>, cmds: Vec<Command>, deadline: Duration) -> Vec<NodeResult<Outcome>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut results: Vec<Option<NodeResult<Outcome>>> = (0..cmds.len()).map(|_| None).collect();
        let mut homes: BTreeMap<u32, (Vec<usize>, Vec<Command>)> = BTreeMap::new();
        let mut singles = Vec::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            match self.home_of(&cmd) {
                Ok(Some(shard)) => {
                    let (positions, group) = homes.entry(shard).or_default();
                    positions.push(i);
                    group.push(cmd);
                }
                Ok(None) => singles.push((i, cmd)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let proposed = futures::future::join_all(homes.into_iter().map(|(shard, (positions, group))| async move {
            let count = group.len();
            let answers = tokio::time::timeout_at(until, self.propose_many(shard, group))
                .await
                .unwrap_or_else(|_| vec![Err(NodeError::Timeout); count]);
            (positions, answers)
        }));
        let alone = futures::future::join_all(singles.into_iter().map(|(i, cmd)| async move {
            (i, tokio::time::timeout_at(until, self.execute(cmd)).await.unwrap_or(Err(NodeError::Timeout)))
        }));
        let (proposed, alone) = futures::future::join(proposed, alone).await;
        for (i, result) in alone {
            results[i] = Some(result);
        }
        let mut targets: BTreeMap<u32, Vec<(usize, PendingEffect)>> = BTreeMap::new();
        for (positions, answers) in proposed {
            for (i, answer) in positions.into_iter().zip(answers) {
                match answer {
                    Ok(Applied::Done(result)) => results[i] = Some(result.map_err(NodeError::from)),
                    Ok(Applied::Pending(pending)) => {
                        let target = self.layout.shard_of(&pending.effect.target_account);
                        targets.entry(target).or_default().push((i, pending));
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        let delivered = futures::future::join_all(targets.into_iter().map(|(target, pending)| async move {
            let deliveries = pending.iter().map(|(_, p)| Command::ApplyEffect(p.delivery())).collect();
            let count = pending.len();
            let answers = tokio::time::timeout_at(until, self.propose_many(target, deliveries))
                .await
                .unwrap_or_else(|_| vec![Err(NodeError::Timeout); count]);
            (target, pending, answers)
        }))
        .await;
        let mut completions: BTreeMap<u32, Vec<Command>> = BTreeMap::new();
        for (target, pending, answers) in delivered {
            for ((i, pending), answer) in pending.into_iter().zip(answers) {
                let result = match answer {
                    Ok(Applied::Done(Ok(Outcome::EffectApplied(result)))) => result,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                    other => {
                        let id = &pending.effect.id;
                        results[i] = Some(Err(NodeError::Internal(format!("effect {id} on shard {target} answered {other:?}"))));
                        continue;
                    }
                };
                let (outcome, completion) = settle(&pending, result);
                results[i] = Some(outcome);
                if let Some(completion) = completion {
                    completions.entry(completion.home_shard).or_default().push(Command::CompleteEffect(completion));
                }
            }
        }
        if !completions.is_empty() {
            let router = self.clone();
            tokio::spawn(async move {
                let completing = completions.into_iter().map(|(home, cmds)| router.propose_many(home, cmds));
                for answer in futures::future::join_all(completing).await.into_iter().flatten() {
                    if let Err(e) = answer {
                        tracing::debug!(error = %e, "completing an effect failed; the sweep retries");
                    }
                }
            });
        }
        results.into_iter().map(|r| r.expect("every command of the batch is answered")).collect()
    }

    /// The home shard of a client command (validated first), or None for a command every
    /// shard carries.
    fn home_of(&self, cmd: &Command) -> NodeResult<Option<u32>> {
        cmd.validate()?;
        match cmd.route()? {
            Route::AllShards => Ok(None),
            Route::Key(key) => Ok(Some(self.layout.shard_of(key))),
            Route::Shard(shard) if shard < self.layout.shard_count => Ok(Some(shard)),
            Route::Shard(shard) => Err(NodeError::Ledger(LedgerError::new(
                ledger::ErrorCode::UnknownPayout,
                format!("no shard {shard} in a cluster of {} shards", self.layout.shard_count),
            ))),
        }
    }

    pub async fn read(&self, shard: u32, query: ReadQuery) -> NodeResult<ReadAnswer> {
        match self.on_leader(PeerRequest::Read { shard, query }).await? {
            PeerReply::Read(answer) => Ok(answer),
            other => Err(NodeError::Internal(format!("read answered {other:?}"))),
        }
    }

    /// Executes a client command to its final outcome.
    pub async fn execute(self: &Arc<Self>, cmd: Command) -> NodeResult<Outcome> {
        let Some(shard) = self.home_of(&cmd)? else {
            return self.execute_everywhere(cmd).await;
        };
        match self.propose(shard, cmd).await? {
            Applied::Done(result) => Ok(result?),
            Applied::Pending(pending) => self.finish_pending(pending).await,
        }
    }

    /// Admin changes every shard must carry (the rate card). Shards apply it in order; a retry
    /// with the same request id is answered from each shard's record.
    async fn execute_everywhere(&self, cmd: Command) -> NodeResult<Outcome> {
        let mut last = None;
        for shard in 0..self.layout.shard_count {
            match self.propose(shard, cmd.clone()).await? {
                Applied::Done(result) => last = Some(result?),
                Applied::Pending(_) => {
                    return Err(NodeError::Internal("an all-shard command produced an effect".into()))
                }
            }
        }
        last.ok_or_else(|| NodeError::Internal("cluster has no shards".into()))
    }

    /// Applies a command's cross-shard effect on its target and answers as soon as that is
    /// committed: the outcome is a pure function of the home's record and the target's
    /// (deduplicated) result. Completing the effect at home, which records the same outcome
    /// under the request id and clears the outbox, continues in the background; if it is lost
    /// (crash), a retry or the sweep completes it, with the same outcome.
    async fn finish_pending(self: &Arc<Self>, pending: PendingEffect) -> NodeResult<Outcome> {
        let result = self.apply_effect(pending.delivery()).await?;
        let (outcome, completion) = settle(&pending, result);
        if let Some(completion) = completion {
            let router = self.clone();
            tokio::spawn(async move {
                let id = completion.effect_id.clone();
                if let Err(e) = router.complete_effect(completion).await {
                    tracing::debug!(effect = %id, error = %e, "completing effect failed; the sweep retries");
                }
            });
        }
        outcome
    }

    async fn apply_effect(&self, delivery: EffectDelivery) -> NodeResult<ledger::EffectResult> {
        let target = self.layout.shard_of(&delivery.effect.target_account);
        let id = delivery.effect.id.clone();
        match self.propose(target, Command::ApplyEffect(delivery)).await? {
            Applied::Done(Ok(Outcome::EffectApplied(result))) => Ok(result),
            other => Err(NodeError::Internal(format!("effect {id} on shard {target} answered {other:?}"))),
        }
    }

    async fn complete_effect(&self, completion: CompleteEffect) -> NodeResult<()> {
        match self.propose(completion.home_shard, Command::CompleteEffect(completion)).await? {
            Applied::Done(_) => Ok(()),
            Applied::Pending(p) => Err(NodeError::Internal(format!("completing effect {} left it pending", p.effect.id))),
        }
    }

    /// Drives a pending effect found in an outbox to completion; `completed_below` is the
    /// index of the oldest effect in that outbox (everything below it is completed).
    async fn redrive_effect(&self, effect: &Effect, completed_below: u64) -> NodeResult<()> {
        let result = self.apply_effect(EffectDelivery { effect: effect.clone(), completed_below }).await?;
        self.complete_effect(CompleteEffect { effect_id: effect.id.clone(), home_shard: effect.home_shard, result }).await
    }

    /// Re-drives the effects pending in `shard`'s outbox that were committed at least
    /// `min_age_ms` ago (0: all of them, after a leader change or a crash). Younger ones are
    /// normally still being driven by the request that created them, maybe on another node;
    /// driving them twice is harmless but doubles their raft rounds. Reads the outbox
    /// linearizably, so nothing committed is missed.
    pub async fn sweep_effects(&self, shard: u32, min_age_ms: u64) -> NodeResult<usize> {
        let mut effects = match self.read(shard, ReadQuery::PendingEffects).await? {
            ReadAnswer::PendingEffects(effects) => effects,
            other => return Err(NodeError::Internal(format!("pending effects read answered {other:?}"))),
        };
        // The outbox is in index order: everything below its oldest effect is completed.
        let completed_below = match effects.first() {
            Some(oldest) => ledger::parse_tx_id(&oldest.id).map_err(|e| NodeError::Internal(e.message))?.1,
            None => return Ok(0),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        effects.retain(|e| now_ms.saturating_sub(effect_timestamp_ms(e)) >= min_age_ms);
        let count = effects.len();
        for chunk in effects.chunks(SWEEP_BATCH) {
            let drives = chunk.iter().map(|effect| async move {
                if let Err(e) = self.redrive_effect(effect, completed_below).await {
                    tracing::warn!(shard, effect = %effect.id, error = %e, "effect re-drive failed; will retry");
                }
            });
            futures::future::join_all(drives).await;
        }
        Ok(count)
    }

    /// Conservation over every shard, reading each linearizably.
    pub async fn audit(&self) -> NodeResult<ledger::GlobalAudit> {
        let mut audits = Vec::with_capacity(self.layout.shard_count as usize);
        for shard in 0..self.layout.shard_count {
            match self.read(shard, ReadQuery::Audit).await? {
                ReadAnswer::Audit(a) => audits.push(a),
                other => return Err(NodeError::Internal(format!("audit read answered {other:?}"))),
            }
        }
        // An effect pending at home may already be applied at its target; ask the target.
        let mut applied = std::collections::HashSet::new();
        for effect in audits.iter().flat_map(|a| a.pending_effects.iter()) {
            let target = self.layout.shard_of(&effect.target_account);
            if let ReadAnswer::EffectResult(Some(_)) =
                self.read(target, ReadQuery::EffectResult(effect.id.clone())).await?
            {
                applied.insert(effect.id.clone());
            }
        }
        Ok(ledger::audit::global_audit(&audits, &|e: &Effect| applied.contains(&e.id)))
    }
}

/// Whether an answer from a shard's guessed leader (`remote`: on another node) says to try
/// the command at another replica: NOT_LEADER, UNAVAILABLE, or a forward that timed out
/// (that node is paused or cut off). Resending is safe: every command is idempotent by
/// request id.
fn try_elsewhere<T>(result: &NodeResult<T>, remote: bool) -> bool {
    match result {
        Err(NodeError::NotLeader { .. }) | Err(NodeError::Unavailable(_)) => true,
        Err(NodeError::Timeout) => remote,
        _ => false,
    }
}

/// A client's outcome from its home's pending record and the target's (deduplicated) result,
/// with the completion the home must record (None when there is nothing to complete).
fn settle(pending: &PendingEffect, result: ledger::EffectResult) -> (NodeResult<Outcome>, Option<CompleteEffect>) {
    if result == ledger::EffectResult::Forgotten {
        // Another driver completed the effect meanwhile (a race with a retry or the sweep):
        // the outcome is recorded at home, where a retry finds it.
        let message = format!("effect {} was completed by another delivery; retry with the same request id", pending.effect.id);
        return (Err(NodeError::Unavailable(message)), None);
    }
    let outcome = match ledger::final_outcome(&pending.finish, &pending.effect, &result) {
        Ok(outcome) => outcome.map_err(NodeError::from),
        Err(e) => return (Err(NodeError::Internal(e.message)), None),
    };
    let completion = CompleteEffect { effect_id: pending.effect.id.clone(), home_shard: pending.effect.home_shard, result };
    (outcome, Some(completion))
}

/// When the effect's home entry was committed (leader's clock).
fn effect_timestamp_ms(effect: &Effect) -> u64 {
    match &effect.kind {
        ledger::EffectKind::CreditPurchase { timestamp_ms, .. }
        | ledger::EffectKind::CreditGift { timestamp_ms, .. }
        | ledger::EffectKind::Clawback { timestamp_ms, .. } => *timestamp_ms,
    }
}

/// Periodic safety net: re-drives pending effects, older than one period, of the shards this
/// node leads (an effect whose driver gave up: a client timeout, a crashed forwarding node).
pub async fn sweep_forever(router: Arc<Router>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first round takes every pending effect: whatever was left when the node last
    // stopped has no driver any more.
    let mut min_age_ms = 0;
    loop {
        interval.tick().await;
        // Shards are swept concurrently, each within a bound: a shard that cannot commit (no
        // quorum) must not hold up the others, nor the next period.
        let sweeps = (0..router.layout.shard_count).filter(|&s| router.hosts(s)).map(|shard| {
            let router = router.clone();
            async move {
                let Ok(st) = router.status(shard).await else { return };
                if st.role != "leader" {
                    return;
                }
                match tokio::time::timeout(SWEEP_TIMEOUT, router.sweep_effects(shard, min_age_ms)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(shard, effects = n, "sweep re-drove abandoned cross-shard effects"),
                    Ok(Err(e)) => tracing::info!(shard, error = %e, "effect sweep failed; next period retries"),
                    Err(_) => tracing::info!(shard, "effect sweep timed out; next period retries"),
                }
            }
        });
        futures::future::join_all(sweeps).await;
        min_age_ms = every.as_millis() as u64;
    }
}
