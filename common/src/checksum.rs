//! CRC32C (Castagnoli), the checksum of every on-disk record and wire payload.
//!
//! The `crc32c` crate uses the SSE4.2 / ARMv8 instruction when present, so checksumming is
//! cheap enough to do on every record, twice (writer and reader).

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC32C over more bytes: `extend(crc32c(a), b) == crc32c(a ++ b)`.
/// Lets a record be checksummed from its parts without concatenating them.
pub fn extend(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// CRC32C over the concatenation of `parts`, without copying them together.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0, |crc, p| extend(crc, p))
}

/// A checksum that did not match: the data was torn or corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("crc32c mismatch: stored {expected:#010x}, computed {actual:#010x}")]
pub struct Mismatch {
    /// The checksum stored with the data.
    pub expected: u32,
    /// The checksum of the data as read.
    pub actual: u32,
}

/// Checks `data` against the checksum stored with it.
pub fn verify(data: &[u8], expected: u32) -> Result<(), Mismatch> {
    let actual = crc32c(data);
    if actual == expected {
        Ok(())
    } else {
        Err(Mismatch { expected, actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn parts_equal_whole() {
        assert_eq!(
            crc32c_parts(&[b"1234", b"", b"56789"]),
            crc32c(b"123456789")
        );
    }

    #[test]
    fn verify_detects_a_flipped_bit() {
        let crc = crc32c(b"payload");
        assert!(verify(b"payload", crc).is_ok());
        let err = verify(b"paylaad", crc).unwrap_err();
        assert_eq!(err.expected, crc);
    }
}
