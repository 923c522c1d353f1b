//! Ledger storage: where entries live once the journal has them.
//!
//! - [`write_cache`]: entries not yet in ledger files, bounded in memory;
//! - [`ledger_file`]: one data file per ledger with an in-memory index (deletion = unlink);
//! - [`ledger_meta`]: per-ledger fenced flag, master key and explicit LAC;
//! - [`open_files`]: which data files stay open (LRU within a file and index-memory budget);
//! - [`checkpoint`]: the journal position up to which ledger storage is durable.
//!
//! Checkpoint path: capture the journal's durable position, swap the write-cache generations,
//! append each ledger's entries to its file (records numbered with this checkpoint), fsync the
//! files, fsync the directory if a file was created or a ledger deleted, write changed ledger
//! state, then write the mark with its number. Entries enter the cache before they are
//! journaled, so everything the journal holds before the captured position is in the swapped
//! generation.

pub mod checkpoint;
pub mod ledger_file;
pub mod ledger_meta;
pub mod open_files;
pub mod write_cache;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::fs::Fs;
use common::{EntryId, LedgerId};
use tokio::sync::{Notify, watch};

use self::ledger_file::LedgerFile;
use self::ledger_meta::LedgerMeta;
use self::write_cache::WriteCache;
use crate::entry::{Entry, NO_ENTRY};
use crate::error::{BookieError, Result};
use crate::journal::JournalPosition;

/// Sizing of ledger storage.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The ledger directory.
    pub dir: PathBuf,
    /// Memory for the write cache (both generations).
    pub write_cache_bytes: usize,
    /// How long an add may wait for the cache to drain before `TooManyRequests`.
    pub max_throttle: Duration,
    /// Ledger data files open at most (least recently used closed first).
    pub max_open_files: usize,
    /// Index entries of open files held in memory at most (about
    /// [`INDEX_ENTRY_BYTES`] bytes each).
    pub max_index_entries: usize,
}

/// Memory one in-memory index entry takes, for sizing `ledger_storage.index_cache_size`.
pub const INDEX_ENTRY_BYTES: usize = 48;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Mutable state of one ledger.
#[derive(Debug, Default)]
pub struct LedgerState {
    /// What survives restarts.
    pub meta: LedgerMeta,
    /// `meta` changed since the last checkpoint.
    pub dirty: bool,
    /// Deleted; nothing may be written for it any more.
    pub deleted: bool,
    /// `meta.fenced` is durable (its Fence record fsynced, or read back from disk), so a
    /// repeated fence — every recovery read fences — needs no journal write.
    pub fence_durable: bool,
    /// Last add or fence accepted here since start (`None`: none yet); garbage collection
    /// leaves recently written ledgers alone.
    pub last_write: Option<std::time::Instant>,
}

/// One ledger on this bookie.
#[derive(Debug)]
pub struct Ledger {
    /// Its id.
    pub id: LedgerId,
    state: Mutex<LedgerState>,
    file: Mutex<Option<LedgerFile>>,
    /// Highest LAC seen (piggybacked or explicit); long-pollers watch it.
    lac: watch::Sender<i64>,
}

impl Ledger {
    fn new(id: LedgerId, meta: LedgerMeta) -> Self {
        let lac = meta.explicit_lac;
        Ledger {
            id,
            state: Mutex::new(LedgerState {
                fence_durable: meta.fenced,
                meta,
                dirty: false,
                deleted: false,
                last_write: None,
            }),
            file: Mutex::new(None),
            lac: watch::channel(lac).0,
        }
    }

    /// Locks the ledger's state. Held briefly; never across I/O or `.await`.
    pub fn state(&self) -> MutexGuard<'_, LedgerState> {
        lock(&self.state)
    }

    /// The bookie's LAC for this ledger.
    pub fn lac(&self) -> i64 {
        *self.lac.borrow()
    }

    /// Raises the LAC (never lowers it).
    pub fn observe_lac(&self, lac: i64) {
        self.lac.send_if_modified(|cur| {
            if lac > *cur {
                *cur = lac;
                true
            } else {
                false
            }
        });
    }

    /// Watches LAC changes (long-poll reads).
    pub fn subscribe_lac(&self) -> watch::Receiver<i64> {
        self.lac.subscribe()
    }
}

/// Ledger storage for one ledger directory.
#[derive(Debug)]
pub struct LedgerStorage {
    config: StorageConfig,
    fs: Arc<dyn Fs>,
    files_dir: PathBuf,
    cache: Mutex<WriteCache>,
    ledgers: Mutex<HashMap<LedgerId, Arc<Ledger>>>,
    checkpoint_lock: Mutex<()>,
    /// Number of the last checkpoint whose mark is on disk.
    committed: AtomicU64,
    /// Open data files, within budget.
    open_files: Mutex<open_files::OpenFiles>,
    /// The mark as last written by a completed checkpoint.
    mark: Mutex<checkpoint::Mark>,
    /// Ledgers whose deletion is under way: their files must be gone, durably, before a mark
    /// passes their Delete record (else a power cut brings them back with nothing to replay).
    deleting: Mutex<Vec<LedgerId>>,
    /// Signalled when a checkpoint frees cache space.
    space_freed: Notify,
    /// Signalled when the active generation is half the budget: time to checkpoint.
    pub flush_wanted: Notify,
}

impl LedgerStorage {
    /// Opens storage in `config.dir` on `fs`, loading every ledger's state (not its data).
    pub fn open(config: StorageConfig, fs: Arc<dyn Fs>) -> Result<Self> {
        let files_dir = config.dir.join("ledgers");
        fs.create_dir_all(&files_dir)
            .map_err(BookieError::io(&files_dir))?;
        let mut ledgers = HashMap::new();
        for name in fs
            .list_dir(&files_dir)
            .map_err(BookieError::io(&files_dir))?
        {
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(id) = stem.parse::<u64>() else {
                continue;
            };
            if !matches!(ext, "dat" | "meta") || ledgers.contains_key(&LedgerId(id)) {
                continue;
            }
            let meta = ledger_meta::read(&*fs, &files_dir, &meta_name(LedgerId(id)))?.unwrap_or(
                LedgerMeta {
                    explicit_lac: NO_ENTRY,
                    ..Default::default()
                },
            );
            ledgers.insert(LedgerId(id), Arc::new(Ledger::new(LedgerId(id), meta)));
        }
        let mark = checkpoint::read(&*fs, &config.dir)?.unwrap_or_default();
        // A checkpoint that was cut short: clean up what it left in the files it named, before
        // any later checkpoint reuses its number.
        for id in &mark.intent {
            LedgerFile::open(&*fs, &files_dir, *id, false, mark.number)?;
        }
        if !mark.intent.is_empty() {
            tracing::info!(
                ledgers = mark.intent.len(),
                "checked the ledger files a cut-short checkpoint had written"
            );
        }
        let committed = mark.number;
        let open_files =
            open_files::OpenFiles::new(config.max_open_files, config.max_index_entries);
        Ok(LedgerStorage {
            open_files: Mutex::new(open_files),
            config,
            fs,
            mark: Mutex::new(checkpoint::Mark {
                intent: Vec::new(),
                ..mark
            }),
            files_dir,
            cache: Mutex::new(WriteCache::default()),
            ledgers: Mutex::new(ledgers),
            checkpoint_lock: Mutex::new(()),
            committed: AtomicU64::new(committed),
            deleting: Mutex::new(Vec::new()),
            space_freed: Notify::new(),
            flush_wanted: Notify::new(),
        })
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// A known ledger.
    pub fn ledger(&self, id: LedgerId) -> Option<Arc<Ledger>> {
        lock(&self.ledgers).get(&id).cloned()
    }

    /// A ledger, created (empty, unfenced, no key) if unknown.
    pub fn ledger_or_create(&self, id: LedgerId) -> Arc<Ledger> {
        lock(&self.ledgers)
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Ledger::new(
                    id,
                    LedgerMeta {
                        explicit_lac: NO_ENTRY,
                        ..Default::default()
                    },
                ))
            })
            .clone()
    }

    /// Every ledger id held here, ascending.
    pub fn ledger_ids(&self) -> Vec<LedgerId> {
        let mut ids: Vec<_> = lock(&self.ledgers).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Waits (up to `max_throttle`) until the cache can take `bytes` more; then
    /// `TooManyRequests`. Memory stays bounded: adds are never buffered without limit.
    pub async fn reserve(&self, bytes: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.max_throttle;
        loop {
            let notified = self.space_freed.notified();
            let (total, active) = {
                let c = lock(&self.cache);
                (c.bytes(), c.active.bytes)
            };
            if active + bytes > self.config.write_cache_bytes / 2 {
                self.flush_wanted.notify_one();
            }
            if total + bytes <= self.config.write_cache_bytes {
                return Ok(());
            }
            metrics::counter!("bookie_write_cache_throttled_total").increment(1);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                metrics::counter!("bookie_add_rejected_total", "reason" => "write_cache_full")
                    .increment(1);
                return Err(BookieError::TooManyRequests(format!(
                    "write cache full ({} bytes); raise `ledger_storage.write_cache_size` or add bookies",
                    self.config.write_cache_bytes
                )));
            }
        }
    }

    /// Puts an entry in the write cache (call [`LedgerStorage::reserve`] first).
    pub fn insert(&self, entry: Entry) {
        lock(&self.cache).insert(entry);
    }

    /// Puts several entries in the write cache under one lock.
    pub fn insert_many(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut cache = lock(&self.cache);
        for e in entries {
            cache.insert(e);
        }
    }

    /// Reads an entry: write cache, then the ledger's file. Blocking (file I/O).
    pub fn read_blocking(&self, id: LedgerId, entry: EntryId) -> Result<Entry> {
        if let Some(e) = lock(&self.cache).get(id, entry) {
            return Ok(e);
        }
        let ledger = self
            .ledger(id)
            .ok_or(BookieError::NoLedger { ledger: id })?;
        let mut file = lock(&ledger.file);
        self.load_file(&ledger, &mut file)?;
        // Checked after the file: a checkpoint may have moved it from the cache meanwhile.
        if let Some(e) = lock(&self.cache).get(id, entry) {
            return Ok(e);
        }
        let found = file
            .as_ref()
            .map(|f| f.read(id, entry))
            .transpose()?
            .flatten();
        let entries = file.as_ref().map(LedgerFile::index_entries);
        drop(file);
        if let Some(n) = entries {
            self.note_use(id, n);
        }
        found.ok_or(BookieError::NoEntry { ledger: id, entry })
    }

    /// Counts a use of a ledger's open file and closes the least recently used others beyond
    /// the budget. Called with no ledger's file lock held; a busy file, or one with appends
    /// not yet fsynced (its checkpoint syncs it through this handle), is left open for now.
    fn note_use(&self, id: LedgerId, index_entries: usize) {
        let victims = lock(&self.open_files).touch(id, index_entries);
        for v in victims {
            let Some(l) = self.ledger(v) else { continue };
            let Ok(mut f) = l.file.try_lock() else {
                continue;
            };
            if f.as_ref().is_some_and(|f| !f.unsynced()) {
                *f = None;
                metrics::counter!("bookie_ledger_files_closed_total").increment(1);
            }
        }
    }

    /// Ledger data files counted as open.
    pub fn open_files(&self) -> usize {
        lock(&self.open_files).len()
    }

    /// (entries, payload bytes, last entry) of a ledger. Blocking.
    pub fn info_blocking(&self, ledger: &Ledger) -> Result<(u64, u64, Option<EntryId>)> {
        let mut file = lock(&ledger.file);
        self.load_file(ledger, &mut file)?;
        let cache = lock(&self.cache);
        let cached_last = cache.last_entry(ledger.id).map(EntryId);
        let (mut n, mut bytes, file_last) = match file.as_ref() {
            Some(f) => (f.entries() as u64, f.bytes(), f.last_entry()),
            None => (0, 0, None),
        };
        for generation in [Some(&cache.active.entries), cache.flushing.as_deref()]
            .into_iter()
            .flatten()
        {
            for ((_, e), entry) in generation.range((ledger.id.0, 0)..=(ledger.id.0, u64::MAX)) {
                if !file.as_ref().is_some_and(|f| f.contains(EntryId(*e))) {
                    n += 1;
                    bytes += entry.payload.len() as u64;
                }
            }
        }
        Ok((n, bytes, cached_last.max(file_last)))
    }

    /// Opens a ledger's file if not yet open, and raises its LAC from the last stored entry.
    fn load_file(&self, ledger: &Ledger, file: &mut Option<LedgerFile>) -> Result<()> {
        if file.is_none()
            && let Some(f) = LedgerFile::open(
                &*self.fs,
                &self.files_dir,
                ledger.id,
                false,
                self.committed.load(Ordering::SeqCst),
            )?
        {
            if let Some(last) = f.last_entry()
                && let Ok(Some(e)) = f.read(ledger.id, last)
            {
                ledger.observe_lac(e.lac);
            }
            *file = Some(f);
        }
        Ok(())
    }

    /// Announces a deletion before its Delete record is journaled: from now on a checkpoint
    /// removes the ledger's files itself (and fsyncs the directory) before writing its mark.
    pub fn begin_delete(&self, id: LedgerId) {
        lock(&self.deleting).push(id);
    }

    /// Deletes a ledger's entries and files, durably (the directory is fsynced); the disk
    /// space returns at once. Blocking.
    pub fn delete_blocking(&self, id: LedgerId) -> Result<bool> {
        let existed = self.remove_files(id)?;
        checkpoint::sync_dir(&*self.fs, &self.files_dir)?;
        lock(&self.deleting).retain(|d| *d != id);
        Ok(existed)
    }

    /// Forgets a ledger and unlinks its files (not yet durable). The ledger's file lock is
    /// held throughout, so a checkpoint writing its data or state file (under the same lock,
    /// after checking `deleted`) cannot bring a file back after the unlink.
    fn remove_files(&self, id: LedgerId) -> Result<bool> {
        let ledger = lock(&self.ledgers).remove(&id);
        let _io = ledger.as_ref().map(|l| {
            l.state().deleted = true;
            let mut file = lock(&l.file);
            *file = None;
            file
        });
        lock(&self.cache).remove_ledger(id);
        lock(&self.open_files).forget(id);
        let mut existed = ledger.is_some();
        for name in [ledger_file::data_file_name(id), meta_name(id)] {
            match self.fs.remove_file(&self.files_dir.join(&name)) {
                Ok(()) => existed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BookieError::io(self.files_dir.join(name))(e)),
            }
        }
        Ok(existed)
    }

    /// Writes the write cache to ledger files and records `pos` as the checkpoint. Blocking.
    pub fn checkpoint_blocking(&self, pos: JournalPosition) -> Result<()> {
        let _only_one = lock(&self.checkpoint_lock);
        // Read after `pos` was captured: a deletion announced later has its Delete record
        // after `pos`, so this mark does not pass it.
        let deleting = lock(&self.deleting).clone();
        let snapshot = {
            let mut c = lock(&self.cache);
            let generation = std::mem::take(&mut c.active);
            let snap = Arc::new(generation.entries);
            c.flushing = Some(snap.clone());
            c.flushing_bytes = generation.bytes;
            snap
        };
        let started = std::time::Instant::now();
        let result = self.write_snapshot(&snapshot, pos, &deleting);
        metrics::histogram!("bookie_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(
            entries = snapshot.len(),
            bytes = lock(&self.cache).flushing_bytes,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            ok = result.is_ok(),
            "checkpoint"
        );
        {
            let mut c = lock(&self.cache);
            c.flushing = None;
            c.flushing_bytes = 0;
            if result.is_err() {
                // Keep the entries readable (and flushable later); newer copies win.
                for (k, e) in snapshot.iter() {
                    if !c.active.entries.contains_key(k) {
                        c.insert(e.clone());
                    }
                }
            }
        }
        self.space_freed.notify_waiters();
        result
    }

    fn write_snapshot(
        &self,
        snapshot: &write_cache::CacheMap,
        pos: JournalPosition,
        deleting: &[LedgerId],
    ) -> Result<()> {
        let number = self.committed.load(Ordering::SeqCst) + 1;
        let mut intent: Vec<LedgerId> = snapshot.keys().map(|(l, _)| LedgerId(*l)).collect();
        intent.dedup();
        if !intent.is_empty() {
            let prev = lock(&self.mark).clone();
            checkpoint::write(
                &*self.fs,
                &self.config.dir,
                &checkpoint::Mark { intent, ..prev },
            )?;
        }
        let mut touched = Vec::new();
        let mut dir_changed = false;
        let mut iter = snapshot.iter().peekable();
        while let Some(((lid, _), _)) = iter.peek() {
            let id = LedgerId(*lid);
            let mut group = Vec::new();
            while let Some(((l, _), e)) = iter.peek() {
                if *l != id.0 {
                    break;
                }
                group.push(*e);
                iter.next();
            }
            let Some(ledger) = self.ledger(id) else {
                continue;
            };
            let mut file = lock(&ledger.file);
            if ledger.state().deleted {
                continue;
            }
            if file.is_none() {
                *file = LedgerFile::open(&*self.fs, &self.files_dir, id, true, number - 1)?;
                dir_changed |= file.as_ref().is_some_and(LedgerFile::created);
            }
            if let Some(f) = file.as_mut() {
                f.append(&group, number)?;
            }
            drop(file);
            touched.push(ledger);
        }
        for ledger in &touched {
            let entries = {
                let mut file = lock(&ledger.file);
                match file.as_mut() {
                    Some(f) => {
                        f.sync()?;
                        Some(f.index_entries())
                    }
                    None => None,
                }
            };
            if let Some(n) = entries {
                self.note_use(ledger.id, n);
            }
        }
        for id in deleting {
            self.remove_files(*id)?;
            dir_changed = true;
        }
        // New files' directory entries (and deletions) durable before the mark relies on them.
        if dir_changed {
            checkpoint::sync_dir(&*self.fs, &self.files_dir)?;
        }
        // Each flag is cleared when its state is captured (a change after that sets it again);
        // if a write fails, that ledger and every one not yet written are marked dirty again,
        // so the mark never passes a Fence or MasterKey record whose state is not on disk.
        let ledgers: Vec<Arc<Ledger>> = lock(&self.ledgers).values().cloned().collect();
        let mut dirty: Vec<(Arc<Ledger>, LedgerMeta)> = ledgers
            .into_iter()
            .filter_map(|l| {
                let meta = {
                    let mut st = l.state();
                    if !st.dirty || st.deleted {
                        return None;
                    }
                    st.dirty = false;
                    st.meta.clone()
                };
                Some((l, meta))
            })
            .collect();
        dirty.sort_unstable_by_key(|(l, _)| l.id);
        for (i, (ledger, meta)) in dirty.iter().enumerate() {
            let _io = lock(&ledger.file);
            if ledger.state().deleted {
                continue;
            }
            if let Err(e) =
                ledger_meta::write(&*self.fs, &self.files_dir, &meta_name(ledger.id), meta)
            {
                for (unwritten, _) in &dirty[i..] {
                    unwritten.state().dirty = true;
                }
                return Err(e);
            }
        }
        let mark = checkpoint::Mark {
            pos,
            number,
            intent: Vec::new(),
        };
        checkpoint::write(&*self.fs, &self.config.dir, &mark)?;
        *lock(&self.mark) = mark;
        self.committed.store(number, Ordering::SeqCst);
        metrics::counter!("bookie_checkpoints_total").increment(1);
        Ok(())
    }

    /// Bytes currently in the write cache.
    pub fn cache_bytes(&self) -> usize {
        lock(&self.cache).bytes()
    }
}

fn meta_name(id: LedgerId) -> String {
    format!("{:020}.meta", id.0)
}
