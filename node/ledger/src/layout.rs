//! Sharding: which shard owns a routing key (an account, a payment reference).

use serde::{Deserialize, Serialize};

/// The number of shards, fixed at bootstrap. `shard_of` must never change: a key moved to another
/// shard would lose its balance, its request ids and its payment references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub shard_count: u32,
}

/// Largest shard count a cluster may be bootstrapped with.
pub const SHARD_COUNT_MAX: u32 = 4096;

const FNV_OFFSET_BASIS_64: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME_64: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, over the bytes.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS_64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME_64))
}

impl Layout {
    /// # Panics
    /// If `shard_count` is not in `1..=4096`.
    pub fn new(shard_count: u32) -> Self {
        assert!((1..=SHARD_COUNT_MAX).contains(&shard_count), "shard_count {shard_count} is outside 1..={SHARD_COUNT_MAX}");
        Layout { shard_count }
    }

    /// FNV-1a 64 of the key's UTF-8 bytes, modulo the shard count.
    pub fn shard_of(&self, routing_key: &str) -> u32 {
        (fnv1a_64(routing_key.as_bytes()) % u64::from(self.shard_count)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn shard_of_is_pinned_for_ever() {
        let layout = Layout::new(16);
        assert_eq!(layout.shard_of("a"), (0xaf63dc4c8601ec8cu64 % 16) as u32);
        assert_eq!(layout.shard_of("foobar"), (0x85944171f73967e8u64 % 16) as u32);
        assert_eq!(Layout::new(1).shard_of("anything"), 0);
        assert_eq!(Layout::new(4096).shard_of("foobar"), (0x85944171f73967e8u64 % 4096) as u32);
    }

    #[test]
    #[should_panic]
    fn zero_shards_is_refused() {
        Layout::new(0);
    }
}
