//! Key_Shared routing: a message's sticky key (ordering key, else partition key, else a fixed
//! key) hashed with Murmur3-32 into 0..65536, as Pulsar does, so hash ranges mean the same
//! thing to clients and brokers.

use crate::protocol::pb::MessageMetadata;

/// Size of the hash space split among Key_Shared consumers.
pub const RANGE: u32 = 65_536;

/// The key used for messages that carry none (Pulsar's `NONE_KEY`).
pub const NONE_KEY: &[u8] = b"NONE_KEY";

/// Murmur3 x86 32-bit, seed 0.
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let rest = chunks.remainder();
    let mut k: u32 = 0;
    for (i, b) in rest.iter().enumerate() {
        k |= u32::from(*b) << (8 * i);
    }
    if !rest.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The sticky-key hash of a message, in 0..RANGE.
pub fn key_hash(meta: &MessageMetadata) -> u32 {
    let key: &[u8] = match (&meta.ordering_key, &meta.partition_key) {
        (Some(k), _) if !k.is_empty() => k,
        (_, Some(k)) if !k.is_empty() => k.as_bytes(),
        _ => NONE_KEY,
    };
    (murmur3_32(key) & i32::MAX as u32) % RANGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_vectors() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }
}
