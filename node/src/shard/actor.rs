//! The actix adapter around a [`Replica`]: mailbox in, fsync requests and raft messages out.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};

use super::msg::ShardMsg;
use super::replica::{Output, Replica};
use crate::syncer::Syncer;

/// Mailbox bound: beyond it `try_send` fails and the caller answers UNAVAILABLE rather than
/// queue without limit.
pub const MAILBOX_CAPACITY: usize = 65_536;

/// Hooks the replica's outputs go to, provided by the node (peer transport, effect driver).
pub trait ShardHooks: Send + Sync + 'static {
    /// Raft messages for other nodes' replicas of this shard.
    fn send_raft(&self, shard: u32, messages: Vec<raft::prelude::Message>);
    /// This node just became the shard's leader: re-drive the shard's pending effects.
    fn became_leader(&self, shard: u32);
    /// Raft learnt the shard's leader (a node id): where commands for the shard go now.
    fn leader_known(&self, shard: u32, leader_id: u64);
}

pub struct ShardActor {
    replica: Replica,
    syncer: Syncer,
    hooks: Arc<dyn ShardHooks>,
    tick: Duration,
    /// A [`Drive`] is queued behind the mailbox's current contents.
    drive_queued: bool,
}

/// Runs the replica once the mailbox is drained: proposes what arrived and handles the Ready.
///
/// actix handles every message already in the mailbox before it polls the actor's own items,
/// where `notify` puts this. Driving after each message instead proposed the first command
/// of a burst as an entry of its own (the rest waited a raft round for it) and made a Ready,
/// with its engine write and fsync request, for every raft message received.
struct Drive;

impl actix::Message for Drive {
    type Result = ();
}

impl ShardActor {
    pub fn new(replica: Replica, syncer: Syncer, hooks: Arc<dyn ShardHooks>, tick: Duration) -> Self {
        Self { replica, syncer, hooks, tick, drive_queued: false }
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        let mut out = Output::default();
        self.replica.process(&mut out);
        self.dispatch(out, ctx);
    }

    /// Drives the replica after the messages now in the mailbox (see [`Drive`]).
    fn drive_after_mailbox(&mut self, ctx: &mut Context<Self>) {
        if !self.drive_queued {
            self.drive_queued = true;
            ctx.notify(Drive);
        }
    }

    fn dispatch(&mut self, out: Output, ctx: &mut Context<Self>) {
        let shard = self.replica.shard();
        if let Some(number) = out.sync {
            let addr = ctx.address();
            self.syncer.request(Box::new(move |result| match result {
                Ok(()) => addr.do_send(ShardMsg::Persisted { number }),
                Err(e) => addr.do_send(ShardMsg::PersistFailed { error: e.to_string() }),
            }));
        }
        if !out.messages.is_empty() {
            self.hooks.send_raft(shard, out.messages);
        }
        if let Some(leader_id) = out.leader_changed {
            self.hooks.leader_known(shard, leader_id);
        }
        if out.became_leader {
            self.hooks.became_leader(shard);
        }
    }
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.replica.campaign_if_preferred();
        self.drive(ctx);
        ctx.run_interval(self.tick, |actor, ctx| {
            actor.replica.tick();
            actor.drive(ctx);
        });
    }
}

impl Handler<ShardMsg> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: ShardMsg, ctx: &mut Context<Self>) {
        match msg {
            ShardMsg::Propose { cmd, reply } => self.replica.propose(cmd, reply),
            ShardMsg::ProposeMany { proposals } => {
                for (cmd, reply) in proposals {
                    self.replica.propose(cmd, reply);
                }
            }
            ShardMsg::Read { query, reply } => self.replica.read(query, reply),
            ShardMsg::Raft(m) => self.replica.step(*m),
            ShardMsg::Persisted { number } => {
                let mut out = Output::default();
                self.replica.on_persisted(number, &mut out);
                self.dispatch(out, ctx);
            }
            ShardMsg::PersistFailed { error } => {
                self.replica.on_persist_failed(error);
                ctx.stop();
                return;
            }
            ShardMsg::Status { reply } => {
                let _ = reply.send(self.replica.status());
                return;
            }
            ShardMsg::HandOff { reply } => {
                let _ = reply.send(self.replica.hand_off_leadership());
            }
            ShardMsg::FlushState { reply } => {
                self.replica.flush_state_now();
                let _ = reply.send(());
                return;
            }
        }
        self.drive_after_mailbox(ctx);
    }
}

impl Handler<Drive> for ShardActor {
    type Result = ();

    fn handle(&mut self, _: Drive, ctx: &mut Context<Self>) {
        self.drive_queued = false;
        self.drive(ctx);
    }
}

#[cfg(test)]
mod tests {
    use actix::Actor;
    use tokio::sync::oneshot;

    use super::*;
    use crate::ledger::{sim, Applied};
    use crate::shard::replica::tests::lone_leader;

    struct NoPeers;

    impl ShardHooks for NoPeers {
        fn send_raft(&self, _: u32, _: Vec<raft::prelude::Message>) {}
        fn became_leader(&self, _: u32) {}
        fn leader_known(&self, _: u32, _: u64) {}
    }

    async fn commit_index(addr: &actix::Addr<ShardActor>) -> u64 {
        let (reply, status) = oneshot::channel();
        addr.do_send(ShardMsg::Status { reply });
        status.await.expect("the actor answers").commit_index
    }

    #[test]
    fn the_commands_of_one_mailbox_drain_are_proposed_as_one_entry() {
        let (before, after) = actix::System::new().block_on(async {
            let (replica, engine) = lone_leader();
            let (syncer, _sync_thread) = Syncer::start(engine.engine.clone(), engine.wal.clone(), crate::syncer::GroupCommit::IMMEDIATE, Default::default());
            let addr = ShardActor::new(replica, syncer, Arc::new(NoPeers), Duration::from_secs(3_600)).start();
            let before = commit_index(&addr).await;
            // All queued before the actor runs again (this test's thread is its arbiter).
            let answers: Vec<_> = (0..50)
                .map(|i| {
                    let (reply, answer) = oneshot::channel();
                    let cmd = sim::purchase_cmd(&format!("r{i}"), &format!("fan{i}"), "9.99", "USD", &format!("pay-{i}"));
                    addr.do_send(ShardMsg::Propose { cmd, reply });
                    answer
                })
                .collect();
            let mut applied = 0;
            for answer in answers {
                applied += usize::from(matches!(answer.await, Ok(Ok(Applied::Done(Ok(_))))));
            }
            assert_eq!(applied, 50);
            (before, commit_index(&addr).await)
        });
        assert_eq!(after, before + 1, "50 commands, one raft entry");
    }
}
