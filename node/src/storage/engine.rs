use std::sync::Arc;

/// A storage failure. The node treats it as fatal for the shard that saw it: a ledger that
/// cannot write must stop rather than answer from a state it cannot keep.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes every key in `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Writes applied atomically by [`Engine::write`]: after a crash, all or none of them are there.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put(key.into(), value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete(key.into()));
    }

    pub fn delete_range(&mut self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeleteRange(start.into(), end.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// An ordered key/value store shared by all shards of a node.
///
/// Contract (checked by the conformance suite in `conformance.rs` for every implementation):
/// - `write` is atomic and its effects are visible to every later `get`/`scan` at once;
/// - `write_ordered` applies its operations one by one, each visible at once;
/// - after `sync` returns Ok, every earlier `write` survives a crash or power loss;
/// - after a crash, the engine holds a prefix of the writes in the order they were made
///   (a later write is never kept while an earlier one is lost).
///
/// # Errors
/// Every method returns [`StorageError`] on I/O failure. Callers treat it as fatal.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` pairs with `start <= key < end`, ascending, or descending if `reverse`.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize, reverse: bool)
        -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Applies the batch's operations in order, without atomicity: a crash may keep any
    /// prefix of them, never a later one without the earlier ones. For writes that stay
    /// consistent at every prefix (raft entries appended in ascending order, then the hard
    /// state), where atomicity would cost: sled seals and writes out its log buffer for every
    /// atomic batch, which under load is most of the node's work.
    fn write_ordered(&self, batch: WriteBatch) -> Result<()> {
        for op in batch.ops {
            self.write(WriteBatch { ops: vec![op] })?;
        }
        Ok(())
    }

    /// Makes every earlier write durable: a real fsync, not a page-cache flush.
    fn sync(&self) -> Result<()>;
}

pub type SharedEngine = Arc<dyn Engine>;

/// The smallest key greater than every key starting with `prefix` (for range ends).
/// `None` when no such key exists (the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_carries_over_0xff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
