//! The storage seam: every write that must survive a crash goes through [`Fs`], so a test can
//! swap the real file system for [`sim::SimFs`], which remembers what was made durable and can
//! "lose power" — dropping or tearing whatever no fsync covered. SIGKILL keeps the page cache
//! and so never catches a missing fsync; this does.
//!
//! The contract is POSIX's, not ext4's kindness: file data and size are durable after
//! [`File::sync_data`]; a directory entry (create, rename, unlink) only after
//! [`Fs::sync_dir`] of its directory.

pub mod sim;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How to open a file (a subset of `std::fs::OpenOptions`; reading is always allowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for writing too.
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Create the file; fail if it exists.
    pub create_new: bool,
    /// Truncate to zero length on open.
    pub truncate: bool,
}

impl OpenOptions {
    /// Read only; the file must exist.
    pub fn read() -> Self {
        OpenOptions::default()
    }

    /// Read and write; the file must exist.
    pub fn read_write() -> Self {
        OpenOptions {
            write: true,
            ..Self::default()
        }
    }

    /// Read and write, created if absent.
    pub fn create() -> Self {
        OpenOptions {
            write: true,
            create: true,
            ..Self::default()
        }
    }

    /// Read and write, created empty (replacing any content).
    pub fn create_truncate() -> Self {
        OpenOptions {
            write: true,
            create: true,
            truncate: true,
            ..Self::default()
        }
    }

    /// Read and write, newly created; fails if the file exists.
    pub fn create_new() -> Self {
        OpenOptions {
            write: true,
            create_new: true,
            ..Self::default()
        }
    }
}

/// A file system. Implementations: [`RealFs`] and [`sim::SimFs`].
pub trait Fs: Send + Sync + Debug {
    /// Opens a file.
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn File>>;
    /// Renames a file (atomically replacing `to`); durable after `sync_dir` of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unlinks a file; durable after `sync_dir` of its parent.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (names that are not UTF-8 are skipped).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.open(path, OpenOptions::read())?.read_to_end()
    }

    /// Whether a file exists.
    fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.open(path, OpenOptions::read()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An open file. Positioned reads and writes only: no shared cursor to get wrong.
pub trait File: Send + Sync + Debug {
    /// Reads into `buf` at `offset`; returns how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's size.
    fn size(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and size durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Takes an exclusive advisory lock for as long as the file stays open.
    fn try_lock(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` if the file is shorter).
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Reads the whole file.
    fn read_to_end(&self) -> io::Result<Vec<u8>> {
        self.read_from(0)
    }

    /// Reads from `offset` to the end of the file.
    fn read_from(&self, offset: u64) -> io::Result<Vec<u8>> {
        let len = self.size()?.saturating_sub(offset);
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// The real file system (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// The real file system, shared.
pub fn real() -> Arc<dyn Fs> {
    Arc::new(RealFs)
}

impl Fs for RealFs {
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn File>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(opts.write)
            .create(opts.create)
            .create_new(opts.create_new)
            .truncate(opts.truncate)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

#[derive(Debug)]
struct RealFile(std::fs::File);

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn try_lock(&self) -> io::Result<()> {
        self.0.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => {
                io::Error::new(io::ErrorKind::WouldBlock, "locked by another process")
            }
        })
    }
}
