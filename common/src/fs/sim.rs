//! [`SimFs`]: an in-memory file system that knows what is durable, for power-loss tests.
//!
//! Every file keeps its durable image (as of its last `sync_data`) and the writes and
//! truncations made since; every directory keeps its durable entries (as of its last
//! `sync_dir`) and the creates, renames and unlinks made since. [`SimFs::power_loss`] returns
//! what a disk could hold after the power went out: each unsynced write kept, dropped or torn
//! at a random byte, each unsynced directory change kept or dropped (in order; a rename is
//! atomic), independently — so later writes can survive earlier ones, as with a page cache
//! written back in any order. The old instance then fails every call, like a machine that is
//! off, so threads still running against it change nothing.
//!
//! Directories themselves are durable once created (the stores create theirs at start-up).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{File, Fs, OpenOptions};

/// A change to a file not yet covered by a sync.
#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Node {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

/// A change to a directory not yet covered by a sync.
#[derive(Debug, Clone)]
enum DirOp {
    Link { name: String, inode: usize },
    Unlink { name: String },
    Rename { from: String, to: String },
}

#[derive(Debug, Clone, Default)]
struct Dir {
    durable: BTreeMap<String, usize>,
    current: BTreeMap<String, usize>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Default)]
struct State {
    off: bool,
    nodes: Vec<Node>,
    dirs: BTreeMap<PathBuf, Dir>,
    syncs: u64,
}

/// The simulated file system; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

/// What [`SimFs::power_loss`] did to unsynced changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Unsynced writes and truncations kept whole.
    pub kept: usize,
    /// Unsynced writes and truncations lost.
    pub dropped: usize,
    /// Unsynced writes kept only in part.
    pub torn: usize,
    /// Unsynced directory changes kept.
    pub dir_kept: usize,
    /// Unsynced directory changes lost.
    pub dir_dropped: usize,
}

fn off() -> io::Error {
    io::Error::other("simulated power loss: this file system is off")
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((parent, name.to_owned()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// splitmix64: a small, good, seedable generator (no dependency for a test aid).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn apply(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write {
            offset,
            data: bytes,
        } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl State {
    fn check(&self) -> io::Result<()> {
        if self.off { Err(off()) } else { Ok(()) }
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such directory", path.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<usize>> {
        let (parent, name) = split(path)?;
        Ok(self
            .dirs
            .get(&parent)
            .and_then(|d| d.current.get(&name).copied()))
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many file and directory syncs were made (a test can cut power "after N syncs").
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Cuts the power: this instance fails every later call, and the returned one holds what
    /// survived — durable state plus a random subset of the unsynced changes (see the module
    /// docs), chosen by `seed`.
    pub fn power_loss(&self, seed: u64) -> (SimFs, LossReport) {
        let mut st = self.lock();
        st.off = true;
        let mut rng = Rng(seed);
        let mut report = LossReport::default();
        let mut nodes = Vec::with_capacity(st.nodes.len());
        for n in &st.nodes {
            let mut data = n.durable.clone();
            for op in &n.pending {
                match rng.below(3) {
                    0 => {
                        apply(&mut data, op);
                        report.kept += 1;
                    }
                    1 => report.dropped += 1,
                    _ => match op {
                        FileOp::Write {
                            offset,
                            data: bytes,
                        } if !bytes.is_empty() => {
                            let cut = rng.below(bytes.len() as u64) as usize;
                            let torn = FileOp::Write {
                                offset: *offset,
                                data: bytes[..cut].to_vec(),
                            };
                            apply(&mut data, &torn);
                            report.torn += 1;
                        }
                        _ => report.dropped += 1,
                    },
                }
            }
            nodes.push(Node {
                durable: data.clone(),
                current: data,
                pending: Vec::new(),
            });
        }
        let mut dirs = BTreeMap::new();
        for (path, d) in &st.dirs {
            let mut entries = d.durable.clone();
            for op in &d.pending {
                if rng.below(2) == 0 {
                    report.dir_dropped += 1;
                    continue;
                }
                report.dir_kept += 1;
                match op {
                    DirOp::Link { name, inode } => {
                        entries.insert(name.clone(), *inode);
                    }
                    DirOp::Unlink { name } => {
                        entries.remove(name);
                    }
                    DirOp::Rename { from, to } => {
                        if let Some(inode) = entries.remove(from) {
                            entries.insert(to.clone(), inode);
                        }
                    }
                }
            }
            dirs.insert(
                path.clone(),
                Dir {
                    durable: entries.clone(),
                    current: entries,
                    pending: Vec::new(),
                },
            );
        }
        let survivor = SimFs {
            state: Arc::new(Mutex::new(State {
                off: false,
                nodes,
                dirs,
                syncs: 0,
            })),
        };
        (survivor, report)
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn File>> {
        let mut st = self.lock();
        st.check()?;
        let (parent, name) = split(path)?;
        let inode = match st.lookup(path)? {
            Some(_) if opts.create_new => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists", path.display()),
                ));
            }
            Some(inode) => inode,
            None if opts.create || opts.create_new => {
                let inode = st.nodes.len();
                st.nodes.push(Node::default());
                let dir = st.dir_mut(&parent)?;
                dir.current.insert(name.clone(), inode);
                dir.pending.push(DirOp::Link { name, inode });
                inode
            }
            None => return Err(not_found(path)),
        };
        if opts.truncate && opts.write {
            let node = &mut st.nodes[inode];
            node.current.clear();
            node.pending.push(FileOp::SetLen(0));
        }
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode,
            writable: opts.write,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check()?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let inode = st.lookup(from)?.ok_or_else(|| not_found(from))?;
        if from_dir == to_dir {
            let dir = st.dir_mut(&from_dir)?;
            dir.current.remove(&from_name);
            dir.current.insert(to_name.clone(), inode);
            dir.pending.push(DirOp::Rename {
                from: from_name,
                to: to_name,
            });
        } else {
            st.dir_mut(&to_dir)?; // exists?
            let src = st.dir_mut(&from_dir)?;
            src.current.remove(&from_name);
            src.pending.push(DirOp::Unlink { name: from_name });
            let dst = st.dir_mut(&to_dir)?;
            dst.current.insert(to_name.clone(), inode);
            dst.pending.push(DirOp::Link {
                name: to_name,
                inode,
            });
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check()?;
        let (parent, name) = split(path)?;
        let dir = st.dir_mut(&parent)?;
        if dir.current.remove(&name).is_none() {
            return Err(not_found(path));
        }
        dir.pending.push(DirOp::Unlink { name });
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check()?;
        for dir in path.ancestors() {
            st.dirs.entry(dir.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut st = self.lock();
        st.check()?;
        Ok(st.dir_mut(path)?.current.keys().cloned().collect())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check()?;
        st.syncs += 1;
        let dir = st.dir_mut(path)?;
        dir.durable = dir.current.clone();
        dir.pending.clear();
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    inode: usize,
    writable: bool,
}

impl SimFile {
    fn writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file not opened for writing",
            ))
        }
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.fs.lock();
        st.check()?;
        let data = &st.nodes[self.inode].current;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        let mut st = self.fs.lock();
        st.check()?;
        let node = &mut st.nodes[self.inode];
        let op = FileOp::Write {
            offset,
            data: buf.to_vec(),
        };
        apply(&mut node.current, &op);
        node.pending.push(op);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let st = self.fs.lock();
        st.check()?;
        Ok(st.nodes[self.inode].current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut st = self.fs.lock();
        st.check()?;
        let node = &mut st.nodes[self.inode];
        let op = FileOp::SetLen(len);
        apply(&mut node.current, &op);
        node.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check()?;
        st.syncs += 1;
        let node = &mut st.nodes[self.inode];
        node.durable = node.current.clone();
        node.pending.clear();
        Ok(())
    }

    fn try_lock(&self) -> io::Result<()> {
        self.fs.lock().check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synced_data_and_entries_survive_every_power_loss() {
        for seed in 0..50 {
            let fs = SimFs::new();
            fs.create_dir_all(&p("/d")).unwrap();
            let f = fs.open(&p("/d/a"), OpenOptions::create()).unwrap();
            f.write_all_at(b"hello", 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(&p("/d")).unwrap();
            f.write_all_at(b" world", 5).unwrap(); // not synced
            let g = fs.open(&p("/d/b"), OpenOptions::create()).unwrap();
            g.write_all_at(b"x", 0).unwrap();
            g.sync_data().unwrap(); // data synced, entry not
            let (after, _) = fs.power_loss(seed);
            assert!(
                fs.open(&p("/d/a"), OpenOptions::read()).is_err(),
                "old instance is off"
            );
            let a = after.read(&p("/d/a")).unwrap();
            assert!(a.starts_with(b"hello"), "seed {seed}: {a:?}");
            assert!(
                b"hello world".starts_with(&a) || a.len() == 11,
                "seed {seed}: {a:?}"
            );
            if let Ok(b) = after.read(&p("/d/b")) {
                assert_eq!(b, b"x");
            }
        }
    }

    #[test]
    fn unsynced_changes_are_sometimes_lost() {
        let mut lost_entry = false;
        let mut lost_data = false;
        for seed in 0..50 {
            let fs = SimFs::new();
            fs.create_dir_all(&p("/d")).unwrap();
            let f = fs.open(&p("/d/a"), OpenOptions::create()).unwrap();
            f.write_all_at(b"data", 0).unwrap();
            let (after, report) = fs.power_loss(seed);
            match after.read(&p("/d/a")) {
                Err(_) => lost_entry = true,
                Ok(d) if d != b"data" => lost_data = true,
                Ok(_) => {}
            }
            assert_eq!(report.dir_kept + report.dir_dropped, 1);
        }
        assert!(lost_entry && lost_data);
    }

    #[test]
    fn rename_is_atomic_and_needs_a_directory_sync() {
        for seed in 0..50 {
            let fs = SimFs::new();
            fs.create_dir_all(&p("/d")).unwrap();
            let old = fs.open(&p("/d/mark"), OpenOptions::create()).unwrap();
            old.write_all_at(b"old", 0).unwrap();
            old.sync_data().unwrap();
            fs.sync_dir(&p("/d")).unwrap();
            let tmp = fs.open(&p("/d/mark.tmp"), OpenOptions::create()).unwrap();
            tmp.write_all_at(b"new", 0).unwrap();
            tmp.sync_data().unwrap();
            fs.rename(&p("/d/mark.tmp"), &p("/d/mark")).unwrap();
            let (after, _) = fs.power_loss(seed);
            let mark = after.read(&p("/d/mark")).unwrap();
            assert!(mark == b"old" || mark == b"new", "seed {seed}: {mark:?}");
        }
    }
}
