//! lz4 behind a tag byte, as the shard stores its long records (request pages, account
//! records, history pages): the tag, the plain length (u32, little-endian), then the lz4
//! block. The tag tells a compressed record from a plain one of the same table; each table
//! picks a byte no plain record of it starts with.

/// `tag`, then `plain` lz4-compressed behind its length.
pub fn compress_tagged(tag: u8, plain: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(1 + 4 + lz4_flex::block::get_maximum_output_size(plain.len()));
    stored.push(tag);
    stored.extend_from_slice(&u32::try_from(plain.len()).expect("a record stays far below 4 GiB").to_le_bytes());
    let start = stored.len();
    stored.resize(stored.capacity(), 0);
    let len = lz4_flex::block::compress_into(plain, &mut stored[start..]).expect("the buffer has lz4's maximum output size");
    stored.truncate(start + len);
    stored
}

/// The plain bytes of a record [`compress_tagged`] made (its tag is not checked), or why it
/// is damaged. A stated length lz4 cannot reach (it expands at most 255-fold) is refused
/// before anything is allocated for it.
pub fn decompress_tagged(stored: &[u8]) -> Result<Vec<u8>, String> {
    let compressed = stored.get(1..).unwrap_or_default();
    let plain_len = compressed.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    match plain_len {
        None => Err("compressed record shorter than its length".to_string()),
        Some(len) if len > compressed.len().saturating_mul(255) => Err(format!("compressed record of {} bytes claims {len}", compressed.len())),
        Some(_) => lz4_flex::decompress_size_prepended(compressed).map_err(|e| format!("lz4: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_comes_back_whole_and_damage_is_an_error() {
        let plain = b"gift from sender-00042 to creator-007: rose x1, ".repeat(30);
        let stored = compress_tagged(0x4c, &plain);
        assert_eq!(stored[0], 0x4c);
        assert!(stored.len() * 4 < plain.len(), "{} bytes for {}", stored.len(), plain.len());
        assert_eq!(decompress_tagged(&stored).unwrap(), plain);
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        for bad in [&stored[..stored.len() / 2], &huge[..], &[0x4c][..], &[0x4c, 1, 0][..], &[][..]] {
            assert!(decompress_tagged(bad).is_err(), "{bad:?}");
        }
    }
}
