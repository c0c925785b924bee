use std::collections::BTreeMap;
use std::sync::Mutex;

use super::engine::{Engine, Result, WriteBatch, WriteOp};

/// An in-memory engine for tests and simulation. It keeps what a crash would leave behind:
/// everything synced, plus (like sled) possibly a prefix of the batches written since.
#[derive(Default)]
pub struct MemEngine {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches written since the last sync, in order; `sync` applies them to `durable`.
    unsynced: Vec<WriteBatch>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new engine holding only what was synced: the state a crash would leave behind.
    pub fn durable_copy(&self) -> MemEngine {
        self.crash_copy(0)
    }

    /// The state after a crash that kept the synced writes and the first `unsynced_batches_kept`
    /// batches written since (a storage engine may have written some of them out).
    pub fn crash_copy(&self, unsynced_batches_kept: usize) -> MemEngine {
        let state = self.state.lock().expect("mem engine lock");
        let mut durable = state.durable.clone();
        for batch in state.unsynced.iter().take(unsynced_batches_kept) {
            for op in &batch.ops {
                apply(&mut durable, op);
            }
        }
        MemEngine { state: Mutex::new(MemState { live: durable.clone(), durable, unsynced: Vec::new() }) }
    }

    /// Batches written since the last sync.
    pub fn unsynced_batches(&self) -> usize {
        self.state.lock().expect("mem engine lock").unsynced.len()
    }
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &WriteOp) {
    match op {
        WriteOp::Put(k, v) => {
            map.insert(k.clone(), v.clone());
        }
        WriteOp::Delete(k) => {
            map.remove(k);
        }
        WriteOp::DeleteRange(start, end) => {
            let doomed: Vec<Vec<u8>> =
                map.range(start.clone()..end.clone()).map(|(k, _)| k.clone()).collect();
            for k in doomed {
                map.remove(&k);
            }
        }
    }
}

impl Engine for MemEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.state.lock().expect("mem engine lock").live.get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let state = self.state.lock().expect("mem engine lock");
        let range = state.live.range(start.to_vec()..end.to_vec());
        let pairs = |it: &mut dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>| {
            it.take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Ok(if reverse { pairs(&mut range.rev()) } else { pairs(&mut { range }) })
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut state = self.state.lock().expect("mem engine lock");
        for op in &batch.ops {
            apply(&mut state.live, op);
        }
        state.unsynced.push(batch);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.state.lock().expect("mem engine lock");
        let MemState { durable, unsynced, .. } = &mut *state;
        for batch in unsynced.drain(..) {
            for op in &batch.ops {
                apply(durable, op);
            }
        }
        Ok(())
    }
}
