//! Per-ledger state that must survive restarts: fenced flag, master key, explicit LAC.
//! Journaled when it changes; written to `ledgers/<id>.meta` at each checkpoint.
//!
//! Layout: magic (8) | version u32 | flags u32 (bit 0: fenced) | explicit LAC i64 |
//! key length u32 | key | crc32c of everything before u32.

use std::path::Path;

use bytes::Bytes;
use common::fs::Fs;

use super::checkpoint::write_atomic;
use crate::error::{BookieError, Result};
use crate::format::{LEDGER_META_MAGIC, LEDGER_META_VERSION};

/// The persisted part of a ledger's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerMeta {
    /// Normal adds are refused.
    pub fenced: bool,
    /// The key writers must present (empty until the first add or fence).
    pub master_key: Option<Bytes>,
    /// Explicit LAC, -1 for none.
    pub explicit_lac: i64,
}

/// Encodes the state file.
pub fn encode(m: &LedgerMeta) -> Vec<u8> {
    let key = m.master_key.as_deref().unwrap_or_default();
    let mut b = Vec::with_capacity(32 + key.len());
    b.extend_from_slice(LEDGER_META_MAGIC);
    b.extend_from_slice(&LEDGER_META_VERSION.to_le_bytes());
    let flags = u32::from(m.fenced) | (u32::from(m.master_key.is_some()) << 1);
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&m.explicit_lac.to_le_bytes());
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    let crc = common::checksum::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a state file read from `path`.
pub fn decode(path: &Path, b: &[u8]) -> Result<LedgerMeta> {
    let corrupt = |reason: &str| BookieError::Corrupt {
        location: path.display().to_string(),
        reason: reason.into(),
    };
    if b.len() < 32 || &b[..8] != LEDGER_META_MAGIC {
        return Err(corrupt("not a ledger state file"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if common::checksum::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(corrupt("checksum mismatch"));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
    if version != LEDGER_META_VERSION {
        return Err(BookieError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: LEDGER_META_VERSION,
        });
    }
    let flags = u32::from_le_bytes(b[12..16].try_into().unwrap_or_default());
    let explicit_lac = i64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
    let key_len = u32::from_le_bytes(b[24..28].try_into().unwrap_or_default()) as usize;
    if body.len() != 28 + key_len {
        return Err(corrupt("key length does not match the file"));
    }
    Ok(LedgerMeta {
        fenced: flags & 1 != 0,
        master_key: (flags & 2 != 0).then(|| Bytes::copy_from_slice(&body[28..])),
        explicit_lac,
    })
}

/// Reads `dir/<name>`; `Ok(None)` if absent.
pub fn read(fs: &dyn Fs, dir: &Path, name: &str) -> Result<Option<LedgerMeta>> {
    let path = dir.join(name);
    match fs.read(&path) {
        Ok(b) => decode(&path, &b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BookieError::io(&path)(e)),
    }
}

/// Writes `dir/<name>` atomically.
pub fn write(fs: &dyn Fs, dir: &Path, name: &str, m: &LedgerMeta) -> Result<()> {
    write_atomic(fs, dir, name, &encode(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(fenced in any::<bool>(), key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)), lac in any::<i64>()) {
            let m = LedgerMeta { fenced, master_key: key.map(Bytes::from), explicit_lac: lac };
            prop_assert_eq!(decode(Path::new("x"), &encode(&m)).unwrap(), m);
        }

        #[test]
        fn any_flip_or_cut_is_an_error(at in 0usize..64, cut in 0usize..64) {
            let m = LedgerMeta { fenced: true, master_key: Some(Bytes::from_static(b"key")), explicit_lac: 5 };
            let mut b = encode(&m);
            let at = at % b.len();
            b[at] ^= 0x10;
            prop_assert!(decode(Path::new("x"), &b).is_err());
            let b = encode(&m);
            let cut = cut % b.len();
            prop_assert!(decode(Path::new("x"), &b[..cut]).is_err());
        }
    }
}
