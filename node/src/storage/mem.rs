use std::collections::BTreeMap;
use std::sync::Mutex;

use super::engine::{Engine, Result, WriteBatch, WriteOp};

/// An in-memory engine for tests and simulation. `sync` is free; `durable_copy` returns what
/// a crash right now would keep (everything written before the last `sync`).
#[derive(Default)]
pub struct MemEngine {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new engine holding only what was synced: the state a crash would leave behind.
    pub fn durable_copy(&self) -> MemEngine {
        let state = self.state.lock().expect("mem engine lock");
        let durable = state.durable.clone();
        MemEngine { state: Mutex::new(MemState { live: durable.clone(), durable }) }
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
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.state.lock().expect("mem engine lock");
        state.durable = state.live.clone();
        Ok(())
    }
}
