//! The checkpoint mark: the journal position before which everything is durable in ledger
//! storage, and the number of the checkpoint that made it so. Replay starts at the position;
//! journal files wholly before it are deleted. Ledger-file records carry the number of the
//! checkpoint that wrote them, so a record numbered at most the mark's is known to have been
//! fsynced (see `ledger_file`).
//!
//! A checkpoint that will append to ledger files first rewrites the mark with an **intent**:
//! the ids of those ledgers (its number is the mark's + 1). If it never completes, the next
//! start scans exactly those files and truncates what it left, before any later checkpoint
//! reuses its number — so a record can never be mistaken for one a completed checkpoint wrote.
//!
//! File `checkpoint` in the ledger directory, replaced atomically (tmp, fsync, rename, fsync
//! dir). Version 2: magic (8) | version u32 | reserved u32 | journal file u64 | offset u64 |
//! checkpoint number u64 | intent count u32 | intent ledger ids u64 × count | crc32c u32
//! (48 + 8 × count bytes). Version 1 (36 bytes) had no number and no intent; it reads as
//! number 0.

use std::path::Path;

use common::LedgerId;
use common::fs::{Fs, OpenOptions, RealFs};

use crate::error::{BookieError, Result};
use crate::format::{CHECKPOINT_MAGIC, CHECKPOINT_VERSION};
use crate::journal::JournalPosition;

const FILE: &str = "checkpoint";
const LEN_V1: usize = 36;
const FIXED: usize = 48;
/// Most ledgers one intent may name (checked before allocating).
const MAX_INTENT: usize = 1 << 20;

/// What the mark says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mark {
    /// Replay starts here.
    pub pos: JournalPosition,
    /// The checkpoint that wrote this mark; the next one is `number + 1`.
    pub number: u64,
    /// Ledgers checkpoint `number + 1` is appending to (empty: none in progress).
    pub intent: Vec<LedgerId>,
}

/// Reads the mark: `Ok(None)` if there is none yet (a fresh bookie), `Corrupt` if it is
/// unreadable — never mistaken for a fresh start.
pub fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<Mark>> {
    let path = dir.join(FILE);
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BookieError::io(&path)(e)),
    };
    let corrupt = |reason: &str| BookieError::Corrupt {
        location: path.display().to_string(),
        reason: reason.into(),
    };
    if bytes.len() < 12 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(corrupt("not a checkpoint file"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    let len = match version {
        1 => LEN_V1,
        CHECKPOINT_VERSION if bytes.len() >= FIXED => {
            let count = u32::from_le_bytes(bytes[40..44].try_into().unwrap_or_default()) as usize;
            if count > MAX_INTENT {
                return Err(corrupt("intent names too many ledgers"));
            }
            FIXED + 8 * count
        }
        CHECKPOINT_VERSION => return Err(corrupt("shorter than its header")),
        _ => {
            return Err(BookieError::UnsupportedVersion {
                path,
                found: version,
                supported: CHECKPOINT_VERSION,
            });
        }
    };
    if bytes.len() != len {
        return Err(corrupt("wrong length for its version"));
    }
    let crc = u32::from_le_bytes(bytes[len - 4..].try_into().unwrap_or_default());
    if common::checksum::crc32c(&bytes[..len - 4]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let intent = if version == 1 {
        Vec::new()
    } else {
        (44..len - 4)
            .step_by(8)
            .map(|i| LedgerId(u64_at(i)))
            .collect()
    };
    Ok(Some(Mark {
        pos: JournalPosition {
            file: u64_at(16),
            offset: u64_at(24),
        },
        number: if version == 1 { 0 } else { u64_at(32) },
        intent,
    }))
}

/// Writes the mark atomically.
pub fn write(fs: &dyn Fs, dir: &Path, mark: &Mark) -> Result<()> {
    let mut b = Vec::with_capacity(FIXED + 8 * mark.intent.len());
    b.extend_from_slice(CHECKPOINT_MAGIC);
    b.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    b.extend_from_slice(&[0u8; 4]);
    b.extend_from_slice(&mark.pos.file.to_le_bytes());
    b.extend_from_slice(&mark.pos.offset.to_le_bytes());
    b.extend_from_slice(&mark.number.to_le_bytes());
    b.extend_from_slice(&(mark.intent.len() as u32).to_le_bytes());
    for id in &mark.intent {
        b.extend_from_slice(&id.0.to_le_bytes());
    }
    let crc = common::checksum::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    write_atomic(fs, dir, FILE, &b)
}

/// Replaces `dir/name` with `bytes` atomically and durably: write a temporary file, fsync,
/// rename over, fsync the directory.
pub fn write_atomic(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let f = fs
        .open(&tmp, OpenOptions::create_truncate())
        .map_err(BookieError::io(&tmp))?;
    f.write_all_at(bytes, 0)
        .and_then(|()| f.sync_data())
        .map_err(BookieError::io(&tmp))?;
    fs.rename(&tmp, &path).map_err(BookieError::io(&path))?;
    sync_dir(fs, dir)
}

/// [`write_atomic`] on the real file system (cookies, which live outside the storage seam).
pub fn write_atomic_real(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    write_atomic(&RealFs, dir, name, bytes)
}

/// fsyncs a directory, making the entries created, renamed or removed in it durable.
pub fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(BookieError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_present_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&RealFs, dir.path()).unwrap(), None);
        for intent in [vec![], vec![LedgerId(5), LedgerId(9)]] {
            let mark = Mark {
                pos: JournalPosition {
                    file: 3,
                    offset: 4096,
                },
                number: 17,
                intent,
            };
            write(&RealFs, dir.path(), &mark).unwrap();
            assert_eq!(read(&RealFs, dir.path()).unwrap(), Some(mark));
        }
        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[20] ^= 1;
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert!(matches!(
            read(&RealFs, dir.path()),
            Err(BookieError::Corrupt { .. })
        ));
    }

    /// A version 1 mark (golden bytes: file 3, offset 4096) still reads, as checkpoint 0.
    #[test]
    fn version_1_reads_as_checkpoint_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = [0u8; LEN_V1];
        v1[..8].copy_from_slice(CHECKPOINT_MAGIC);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[16..24].copy_from_slice(&3u64.to_le_bytes());
        v1[24..32].copy_from_slice(&4096u64.to_le_bytes());
        let crc = common::checksum::crc32c(&v1[..32]);
        v1[32..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(FILE), v1).unwrap();
        let mark = read(&RealFs, dir.path()).unwrap().unwrap();
        assert_eq!(
            mark.pos,
            JournalPosition {
                file: 3,
                offset: 4096
            }
        );
        assert_eq!(mark.number, 0);
        assert!(mark.intent.is_empty());
        v1[8] = 7;
        std::fs::write(dir.path().join(FILE), v1).unwrap();
        assert!(matches!(
            read(&RealFs, dir.path()),
            Err(BookieError::UnsupportedVersion { found: 7, .. })
        ));
    }
}
