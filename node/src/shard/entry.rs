//! The payload of a normal raft entry: a batch of ledger commands and the leader's clock.
//! Every replica applies the batch with the same timestamp, so nothing the state machine does
//! depends on the replica's own clock.

use serde::{Deserialize, Serialize};

use crate::ledger::Command;

/// Largest encoded entry a shard proposes. Keeps sled records far from its blob threshold
/// and bounds the work one apply round does.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Most commands in one entry (TigerBeetle-style batch bound; SubmitBatch's limit too).
pub const MAX_ENTRY_COMMANDS: usize = 8_192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryBatch {
    /// Milliseconds since the Unix epoch (UTC), never decreasing within a shard.
    pub timestamp_ms: u64,
    pub commands: Vec<Command>,
}

/// First byte of an entry's payload: how the batch after it is encoded. An entry written by
/// a build before these tags is the bare postcard of the batch, which starts with the varint
/// of its timestamp, a byte of 0x80 or more for any clock after 1970-01-01T00:00:00.127Z.
const PLAIN: u8 = 0;
/// lz4 (block format, its decoded size in the first 4 bytes, little-endian) of the postcard.
const LZ4: u8 = 1;

/// Payloads shorter than this are stored plain: lz4's framing would eat the gain.
const COMPRESS_BYTES_MIN: usize = 256;

/// Why an entry's payload could not be decoded (a corrupt or foreign log).
#[derive(Debug, thiserror::Error)]
pub enum EntryDecodeError {
    #[error("empty payload")]
    Empty,
    #[error("unknown payload tag {0}")]
    UnknownTag(u8),
    #[error("compressed payload claims {0} bytes, more than an entry holds")]
    TooLarge(usize),
    #[error("lz4: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
}

impl EntryBatch {
    /// The entry's payload: the postcard of the batch, lz4-compressed when that is shorter.
    /// A batch repeats its account names, gift ids and field layout command after command:
    /// the entries of a batched run compress about 4x (4,540 entries of 7 KB on average,
    /// 32 MB to 7.5 MB, in 31 ms). Every replica writes each entry to sled, which rewrites a
    /// log leaf of up to 16 entries whole when it consolidates or splits it, and the leader
    /// sends it to every follower: the bytes saved are saved several times over.
    pub fn encode(&self) -> Vec<u8> {
        let tagged = postcard::to_extend(self, vec![PLAIN]).expect("encode entry batch");
        let plain = &tagged[1..];
        if plain.len() >= COMPRESS_BYTES_MIN {
            let compressed = lz4_flex::compress_prepend_size(plain);
            if compressed.len() < plain.len() {
                let mut payload = Vec::with_capacity(1 + compressed.len());
                payload.push(LZ4);
                payload.extend_from_slice(&compressed);
                return payload;
            }
        }
        tagged
    }

    pub fn decode(payload: &[u8]) -> Result<Self, EntryDecodeError> {
        let (&tag, rest) = payload.split_first().ok_or(EntryDecodeError::Empty)?;
        match tag {
            PLAIN => Ok(postcard::from_bytes(rest)?),
            LZ4 => {
                let claimed = rest.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                // A batch is cut below MAX_ENTRY_BYTES by its commands' encoded sizes; the
                // margin covers the batch's own framing.
                if claimed > 2 * MAX_ENTRY_BYTES {
                    return Err(EntryDecodeError::TooLarge(claimed));
                }
                Ok(postcard::from_bytes(&lz4_flex::decompress_size_prepended(rest)?)?)
            }
            legacy if legacy >= 0x80 => Ok(postcard::from_bytes(payload)?),
            other => Err(EntryDecodeError::UnknownTag(other)),
        }
    }
}

/// Encoded size of one command, to cut batches below [`MAX_ENTRY_BYTES`].
pub fn command_bytes(cmd: &Command) -> usize {
    postcard::experimental::serialized_size(cmd).unwrap_or(MAX_ENTRY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::sim;

    fn gifts(count: usize) -> EntryBatch {
        let commands = (0..count)
            .map(|i| sim::gift_cmd(&format!("1kBx9{i:06}qZr81mPa0T"), &format!("bench-sender-{:05}", i * 7 % 10_000), &format!("bench-creator-{:03}", i % 100), "doughnut", 1))
            .collect();
        EntryBatch { timestamp_ms: 1_796_000_000_000, commands }
    }

    #[test]
    fn a_batch_of_commands_is_stored_compressed_and_reads_back_whole() {
        let batch = gifts(200);
        let plain = postcard::to_stdvec(&batch).unwrap();
        let payload = batch.encode();
        assert_eq!(payload[0], LZ4);
        assert!(payload.len() * 3 < plain.len(), "{} bytes compressed from {}", payload.len(), plain.len());
        assert_eq!(EntryBatch::decode(&payload).unwrap(), batch);
    }

    #[test]
    fn a_short_batch_is_stored_plain() {
        let batch = gifts(1);
        let payload = batch.encode();
        assert_eq!(payload[0], PLAIN);
        assert_eq!(payload.len(), 1 + postcard::to_stdvec(&batch).unwrap().len());
        assert_eq!(EntryBatch::decode(&payload).unwrap(), batch);
        let empty = EntryBatch { timestamp_ms: 0, commands: Vec::new() };
        assert_eq!(EntryBatch::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn entries_written_before_the_tags_still_decode() {
        for batch in [gifts(1), gifts(50)] {
            let legacy = postcard::to_stdvec(&batch).unwrap();
            assert!(legacy[0] >= 0x80, "a real clock's timestamp starts with a continued varint");
            assert_eq!(EntryBatch::decode(&legacy).unwrap(), batch);
        }
    }

    #[test]
    fn a_damaged_payload_is_an_error_not_a_panic_or_a_huge_allocation() {
        let payload = gifts(100).encode();
        assert!(matches!(EntryBatch::decode(&[]), Err(EntryDecodeError::Empty)));
        assert!(matches!(EntryBatch::decode(&[7, 1, 2]), Err(EntryDecodeError::UnknownTag(7))));
        let mut huge = vec![LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&payload[5..]);
        assert!(matches!(EntryBatch::decode(&huge), Err(EntryDecodeError::TooLarge(_))));
        assert!(EntryBatch::decode(&payload[..payload.len() / 2]).is_err(), "truncated");
        let mut flipped = payload.clone();
        for byte in flipped.iter_mut().skip(5).step_by(3) {
            *byte ^= 0x5a;
        }
        assert_ne!(EntryBatch::decode(&flipped).ok(), Some(gifts(100)));
        assert!(EntryBatch::decode(&[PLAIN, 0xff]).is_err());
    }
}
