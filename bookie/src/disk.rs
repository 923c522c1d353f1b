//! Disk space of the ledger directory, for read-only mode and `BookieInfo`.

use std::path::Path;

/// (free bytes, total bytes) of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    let total = s.f_blocks.saturating_mul(s.f_frsize);
    Ok((free, total))
}

/// Used fraction of the filesystem holding `path` (0.0 to 1.0).
pub fn usage(path: &Path) -> std::io::Result<f64> {
    let (free, total) = space(path)?;
    if total == 0 {
        return Ok(0.0);
    }
    Ok(1.0 - free as f64 / total as f64)
}
