//! Journal file recycling. Appending to a file makes every fdatasync commit block
//! allocation and size metadata too; overwriting allocated blocks does not, and on the disks
//! we measured it is several times cheaper. So journal files the checkpoint has passed are
//! not deleted but kept (up to `journal.recycle_files`) as `<seq>.free`, and the writer's
//! next file is one of them: its header is rewritten with the new sequence number and fsynced
//! before it is renamed into place, and batches carry their file's sequence number, so the
//! old incarnation's data after the new data reads as the end of the file.

use std::path::{Path, PathBuf};

use common::fs::{File, Fs, OpenOptions};

use super::file::{header, path_of};
use crate::error::{BookieError, Result};

const FREE_SUFFIX: &str = ".free";

fn free_files(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs
        .list_dir(dir)
        .map_err(BookieError::io(dir))?
        .into_iter()
        .filter(|name| name.ends_with(FREE_SUFFIX))
        .map(|name| dir.join(name))
        .collect();
    out.sort();
    Ok(out)
}

/// Retires journal files wholly before `file` (the checkpoint's): keeps up to `keep` of
/// them for reuse, deletes the rest.
pub fn retire_before(fs: &dyn Fs, dir: &Path, file: u64, keep: usize) {
    let Ok(seqs) = super::file::list_files(fs, dir) else {
        return;
    };
    let mut free = free_files(fs, dir).map(|f| f.len()).unwrap_or(keep);
    for seq in seqs.into_iter().filter(|s| *s < file) {
        let path = path_of(dir, seq);
        let res = if free < keep {
            free += 1;
            fs.rename(&path, &dir.join(format!("{seq:016x}{FREE_SUFFIX}")))
        } else {
            fs.remove_file(&path)
        };
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not retire an old journal file");
        }
    }
}

/// Takes a recycled file for journal file `seq`, if any: rewrites and fsyncs its header,
/// renames it into place and fsyncs the directory. Returns the file and its length.
pub fn take(fs: &dyn Fs, dir: &Path, seq: u64) -> Result<Option<(Box<dyn File>, u64)>> {
    let Some(free) = free_files(fs, dir)?.into_iter().next() else {
        return Ok(None);
    };
    let file = fs
        .open(&free, OpenOptions::read_write())
        .map_err(BookieError::io(&free))?;
    let len = file.size().map_err(BookieError::io(&free))?;
    file.write_all_at(&header(seq), 0)
        .and_then(|()| file.sync_data())
        .map_err(BookieError::io(&free))?;
    let path = path_of(dir, seq);
    fs.rename(&free, &path).map_err(BookieError::io(&path))?;
    fs.sync_dir(dir).map_err(BookieError::io(dir))?;
    Ok(Some((file, len)))
}
