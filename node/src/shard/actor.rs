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
}

impl ShardActor {
    pub fn new(replica: Replica, syncer: Syncer, hooks: Arc<dyn ShardHooks>, tick: Duration) -> Self {
        Self { replica, syncer, hooks, tick }
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        let mut out = Output::default();
        self.replica.process(&mut out);
        self.dispatch(out, ctx);
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
        self.drive(ctx);
    }
}
