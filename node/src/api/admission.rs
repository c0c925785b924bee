//! Admission control: a bound on the client commands a node works on at once.
//!
//! Every command a client sends is a raft proposal, often a cross-shard effect and its
//! completion too, with their answers waiting in memory until they commit. A shard's mailbox
//! bounds its messages, but one message of a SubmitBatch carries up to 8,192 commands, so
//! the node bounds commands itself: past the bound a request is answered UNAVAILABLE at once
//! (the client retries with backoff and the same request ids) instead of queueing work the
//! node cannot finish before its callers give up.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::NodeError;

pub struct Admission {
    slots: Arc<Semaphore>,
    max_commands: u32,
}

impl Admission {
    pub fn new(max_commands: u32) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_commands as usize)), max_commands }
    }

    /// Slots for `commands` commands, held until the returned permit is dropped (the request
    /// is answered), or UNAVAILABLE if the node holds too many already.
    pub fn admit(&self, commands: usize) -> Result<OwnedSemaphorePermit, NodeError> {
        let full = || {
            NodeError::Unavailable(format!(
                "this node is working on its limit of {} commands (--max-commands-in-flight); retry shortly with the same request ids",
                self.max_commands
            ))
        };
        let count = u32::try_from(commands).map_err(|_| full())?;
        self.slots.clone().try_acquire_many_owned(count).map_err(|_| full())
    }

    /// Slots free right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_beyond_the_bound_are_refused_until_earlier_ones_are_answered() {
        let admission = Admission::new(10);
        let batch = admission.admit(8).expect("8 of 10");
        let single = admission.admit(1).expect("9 of 10");
        let refused = admission.admit(2).expect_err("11 of 10");
        assert!(matches!(&refused, NodeError::Unavailable(m) if m.contains("limit of 10 commands")), "{refused:?}");
        assert_eq!(admission.available(), 1, "a refused request holds nothing");
        drop(batch);
        let again = admission.admit(9).expect("the batch's slots are back");
        assert_eq!(admission.available(), 0);
        drop((single, again));
        assert_eq!(admission.available(), 10);
        assert!(admission.admit(11).is_err(), "more than the bound never fits");
        assert!(admission.admit(usize::MAX).is_err());
    }
}
