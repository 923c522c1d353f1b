//! The checkpoint mark: the journal position before which everything is durable in ledger
//! storage. Replay starts here; journal files wholly before it are deleted.
//!
//! File `checkpoint` in the ledger directory, replaced atomically (tmp, fsync, rename, fsync
//! dir): magic (8) | version u32 | reserved u32 | journal file u64 | offset u64 | crc32c u32.

use std::path::Path;

use crate::error::{BookieError, Result};
use crate::format::{CHECKPOINT_MAGIC, CHECKPOINT_VERSION};
use crate::journal::JournalPosition;

const FILE: &str = "checkpoint";
const LEN: usize = 36;

/// Reads the mark: `Ok(None)` if there is none yet (a fresh bookie), `Corrupt` if it is
/// unreadable — never mistaken for a fresh start.
pub fn read(dir: &Path) -> Result<Option<JournalPosition>> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BookieError::io(&path)(e)),
    };
    let corrupt = |reason: &str| BookieError::Corrupt {
        location: path.display().to_string(),
        reason: reason.into(),
    };
    if bytes.len() != LEN || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(corrupt("not a checkpoint file"));
    }
    let crc = u32::from_le_bytes(bytes[32..36].try_into().unwrap_or_default());
    if common::checksum::crc32c(&bytes[..32]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != CHECKPOINT_VERSION {
        return Err(BookieError::UnsupportedVersion {
            path,
            found: version,
            supported: CHECKPOINT_VERSION,
        });
    }
    Ok(Some(JournalPosition {
        file: u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default()),
        offset: u64::from_le_bytes(bytes[24..32].try_into().unwrap_or_default()),
    }))
}

/// Writes the mark atomically.
pub fn write(dir: &Path, pos: JournalPosition) -> Result<()> {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(CHECKPOINT_MAGIC);
    b[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&pos.file.to_le_bytes());
    b[24..32].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = common::checksum::crc32c(&b[..32]);
    b[32..].copy_from_slice(&crc.to_le_bytes());
    write_atomic(dir, FILE, &b)
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(BookieError::io(&tmp))?;
    f.write_all(bytes).map_err(BookieError::io(&tmp))?;
    f.sync_all().map_err(BookieError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(BookieError::io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BookieError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_present_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let pos = JournalPosition {
            file: 3,
            offset: 4096,
        };
        write(dir.path(), pos).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(pos));
        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[20] ^= 1;
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert!(matches!(read(dir.path()), Err(BookieError::Corrupt { .. })));
    }
}
