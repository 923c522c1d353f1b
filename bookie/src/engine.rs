//! The storage engine: journal + ledger storage + the per-ledger rules (master key, fencing,
//! LAC). The gRPC handlers are thin wrappers over it.
//!
//! Add path: verify the writer's checksum; reserve write-cache space (throttle, then
//! `TooManyRequests`); under the ledger's lock check the master key and the fence, put the
//! entry in the write cache and queue its journal record; reply when the record is fsynced.
//! Because the queue order is fixed under the ledger's lock, an add queued before a fence is
//! durable before the fence's reply, and an add after it is refused.
//!
//! Start-up: replay the journal from the checkpoint mark into the write cache, checkpoint,
//! then open a fresh journal file. Shutdown: stop accepting, checkpoint, stop the journal.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Largest entry payload a bookie accepts: what journal replay and ledger-file scans read back
/// (a record of at most [`crate::format::MAX_RECORD_LEN`]), less room for the record's header
/// fields.
pub const MAX_ENTRY_PAYLOAD: usize = crate::format::MAX_RECORD_LEN - 4096;

use bytes::Bytes;
use common::fs::{File, Fs, OpenOptions};
use common::{EntryId, LedgerId};
use tokio_util::sync::CancellationToken;

use crate::entry::Entry;
use crate::error::{BookieError, Result};
use crate::journal::file::{holds_batches, list_files, path_of, read_file};
use crate::journal::recycle;
use crate::journal::{JournalPosition, JournalRecord, JournalWriter, WriterConfig};
use crate::storage::{LedgerState, LedgerStorage, StorageConfig, checkpoint};

/// What to do with corruption found in the journal before its tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to start, naming the file and offset.
    #[default]
    Strict,
    /// Skip the rest of the damaged file with an error log (acknowledged data may be lost).
    TolerateCorruption,
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Journal writer settings (its `dir` is the journal directory).
    pub journal: WriterConfig,
    /// Ledger storage settings.
    pub storage: StorageConfig,
    /// Checkpoint at least this often.
    pub checkpoint_interval: Duration,
    /// Journal corruption policy.
    pub recovery_mode: RecoveryMode,
    /// Where the journal, ledger files, ledger state and checkpoint mark are written: the real
    /// file system, or a simulated one in power-loss tests.
    pub fs: Arc<dyn Fs>,
}

/// Per-ledger facts for `LedgerInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerInfo {
    /// Fenced.
    pub fenced: bool,
    /// LAC (-1 none).
    pub lac: i64,
    /// Highest entry stored.
    pub last_entry: Option<EntryId>,
    /// Entries stored.
    pub entries: u64,
    /// Payload bytes stored.
    pub bytes: u64,
}

/// Journal + ledger storage.
#[derive(Debug)]
pub struct Engine {
    storage: Arc<LedgerStorage>,
    journal: JournalWriter,
    fs: Arc<dyn Fs>,
    journal_dir: PathBuf,
    recycle_files: usize,
    /// Exclusive locks on the journal and ledger directories, held while the engine lives.
    _locks: Vec<Box<dyn File>>,
    checkpoint_interval: Duration,
    read_only: AtomicBool,
    shutting_down: AtomicBool,
    /// Adds between acceptance and reply; shutdown waits for them.
    in_flight: AtomicUsize,
    /// When the engine was opened (ledgers with no write since count as written then).
    started: std::time::Instant,
}

/// Counts adds as in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize, usize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// One add of a batch.
#[derive(Debug, Clone)]
pub struct AddItem {
    /// The entry, with the writer's checksum.
    pub entry: Entry,
    /// The ledger's master key as the writer presents it.
    pub master_key: Bytes,
    /// A recovery add (passes a fence and read-only mode).
    pub recovery: bool,
}

impl Engine {
    /// Opens the engine: replays the journal, checkpoints, starts the journal writer.
    /// Blocking; call from `spawn_blocking` or before the runtime starts serving.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let fs = config.fs.clone();
        let jdir = config.journal.dir.clone();
        fs.create_dir_all(&jdir).map_err(BookieError::io(&jdir))?;
        let ldir = config.storage.dir.clone();
        fs.create_dir_all(&ldir).map_err(BookieError::io(&ldir))?;
        let locks = vec![lock_dir(&*fs, &jdir)?, lock_dir(&*fs, &ldir)?];
        let storage = Arc::new(LedgerStorage::open(config.storage.clone(), fs.clone())?);
        let (end, last_seq, replayed) = replay(&storage, &*fs, &jdir, config.recovery_mode)?;
        storage.checkpoint_blocking(end)?;
        let recycle = config.journal.recycle_files;
        recycle::retire_before(&*fs, &jdir, end.file, recycle);
        tracing::info!(
            records = replayed,
            ledgers = storage.ledger_ids().len(),
            "journal replayed"
        );
        let (journal, _thread) = JournalWriter::start(config.journal, last_seq + 1, fs.clone())?;
        Ok(Engine {
            storage,
            journal,
            fs,
            journal_dir: jdir,
            recycle_files: recycle,
            _locks: locks,
            checkpoint_interval: config.checkpoint_interval,
            read_only: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// When the engine was opened.
    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    /// Ledger storage, for status and tools.
    pub fn storage(&self) -> &LedgerStorage {
        &self.storage
    }

    /// Refuse (or accept again) normal adds.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::SeqCst);
    }

    /// Whether normal adds are refused: for lack of disk, or because the journal failed.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::SeqCst) || self.journal_failed().is_cancelled()
    }

    /// Fires once a journal write or fsync has failed: from then on no add can be made
    /// durable, and the bookie stays read-only until it is restarted.
    pub fn journal_failed(&self) -> &CancellationToken {
        self.journal.failed()
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> &std::path::Path {
        &self.journal_dir
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Adds an entry; resolves when it is durable in the journal.
    pub async fn add(&self, entry: Entry, master_key: Bytes, recovery: bool) -> Result<()> {
        let item = AddItem {
            entry,
            master_key,
            recovery,
        };
        self.add_batch(vec![item])
            .await
            .pop()
            .unwrap_or(Err(BookieError::ShuttingDown))
    }

    /// Adds a batch of entries (one writer's ready adds); returns one result per item, in
    /// order, each once its entry is durable in the journal. Per ledger, the checks, the cache
    /// inserts and the journal hand-off happen under one lock acquisition, and the journal
    /// completes the ledger's records with one notification.
    pub async fn add_batch(&self, items: Vec<AddItem>) -> Vec<Result<()>> {
        self.in_flight.fetch_add(items.len(), Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight, items.len());
        let mut results: Vec<Option<Result<()>>> = items.iter().map(|_| None).collect();
        if self.is_shutting_down() {
            return items
                .iter()
                .map(|_| Err(BookieError::ShuttingDown))
                .collect();
        }
        let read_only = self.is_read_only();
        // A recovery add may fill a gap, never replace what is stored: recovery passes the
        // fence, and an entry of a closed ledger must not be rewritten by anyone (its crc32c
        // is a checksum, not a MAC). The same bytes again are fine (a recovery retried).
        for (i, it) in items.iter().enumerate() {
            if !it.recovery {
                continue;
            }
            let storage = self.storage.clone();
            let (id, entry) = (it.entry.ledger, it.entry.entry);
            let stored =
                tokio::task::spawn_blocking(move || storage.read_blocking(id, entry)).await;
            if let Ok(Ok(stored)) = stored
                && (stored.payload != it.entry.payload || stored.lac != it.entry.lac)
            {
                metrics::counter!("bookie_add_rejected_total", "reason" => "rewrite").increment(1);
                results[i] = Some(Err(BookieError::BadRequest(format!(
                    "entry {id}:{entry} is stored already with other content; a recovery add does not replace it"
                ))));
            }
        }
        let mut bytes = 0;
        // Ledgers in first-seen order, each with its items' indices.
        let mut groups: Vec<(LedgerId, Vec<usize>)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if read_only && !it.recovery {
                results[i] = Some(Err(BookieError::ReadOnly));
            } else if !it.entry.verify() {
                metrics::counter!("bookie_add_rejected_total", "reason" => "checksum").increment(1);
                results[i] = Some(Err(BookieError::BadRequest(format!(
                    "entry {}:{} fails its checksum",
                    it.entry.ledger, it.entry.entry
                ))));
            } else if it.entry.payload.len() > MAX_ENTRY_PAYLOAD {
                // Journal replay and ledger-file scans read records up to MAX_RECORD_LEN:
                // an entry they could not read back must never be acknowledged.
                metrics::counter!("bookie_add_rejected_total", "reason" => "size").increment(1);
                results[i] = Some(Err(BookieError::BadRequest(format!(
                    "entry {}:{} has {} bytes, more than the limit of {MAX_ENTRY_PAYLOAD}",
                    it.entry.ledger,
                    it.entry.entry,
                    it.entry.payload.len()
                ))));
            } else if it.entry.lac >= 0 && it.entry.lac as u64 >= it.entry.entry.0 {
                // A writer's LAC is always behind the entry it sends; a forged one would make
                // recovery close the ledger at an entry that does not exist.
                metrics::counter!("bookie_add_rejected_total", "reason" => "lac").increment(1);
                results[i] = Some(Err(BookieError::BadRequest(format!(
                    "entry {}:{} claims last-add-confirmed {}, not before it",
                    it.entry.ledger, it.entry.entry, it.entry.lac
                ))));
            } else {
                bytes += it.entry.footprint();
                match groups.iter_mut().find(|(l, _)| *l == it.entry.ledger) {
                    Some((_, idx)) => idx.push(i),
                    None => groups.push((it.entry.ledger, vec![i])),
                }
            }
        }
        if bytes > 0
            && let Err(e) = self.storage.reserve(bytes).await
        {
            for (_, idx) in &groups {
                for &i in idx {
                    results[i] = Some(Err(e.duplicate()));
                }
            }
            groups.clear();
        }
        let mut waits = Vec::new();
        for (id, idx) in groups {
            let ledger = self.storage.ledger_or_create(id);
            let mut accepted = Vec::with_capacity(idx.len());
            let mut records = Vec::with_capacity(idx.len());
            let mut max_lac = i64::MIN;
            let mut st = ledger.state();
            for i in idx {
                let it = &items[i];
                let verdict = if st.deleted {
                    Err(BookieError::NoLedger { ledger: id })
                } else {
                    self.check_master_key(&mut st, id, it.master_key.clone())
                        .and_then(|()| {
                            if st.meta.fenced && !it.recovery {
                                Err(BookieError::Fenced { ledger: id })
                            } else {
                                Ok(())
                            }
                        })
                };
                match verdict {
                    Ok(()) => {
                        max_lac = max_lac.max(it.entry.lac);
                        records.push(JournalRecord::Add(it.entry.clone()));
                        accepted.push(i);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if accepted.is_empty() {
                continue;
            }
            st.last_write = Some(std::time::Instant::now());
            self.storage
                .insert_many(records.iter().filter_map(|r| match r {
                    JournalRecord::Add(e) => Some(e.clone()),
                    _ => None,
                }));
            match self.journal.submit_many(records) {
                Ok(durable) => {
                    drop(st);
                    waits.push((durable, accepted, ledger, max_lac));
                }
                Err(e) => {
                    for i in accepted {
                        results[i] = Some(Err(e.duplicate()));
                    }
                }
            }
        }
        for (durable, accepted, ledger, max_lac) in waits {
            match durable.await {
                Ok(_) => {
                    ledger.observe_lac(max_lac);
                    for i in accepted {
                        results[i] = Some(Ok(()));
                    }
                }
                Err(e) => {
                    for i in accepted {
                        results[i] = Some(Err(e.duplicate()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(BookieError::ShuttingDown)))
            .collect()
    }

    /// Refuses a wrong master key; records (and journals) the first one a ledger sees. The
    /// key record needs no waiting: the queue is FIFO, so it is durable before whatever record
    /// the caller queues next and waits for.
    fn check_master_key(&self, st: &mut LedgerState, id: LedgerId, key: Bytes) -> Result<()> {
        match &st.meta.master_key {
            Some(k) if *k != key => Err(BookieError::Unauthorized { ledger: id }),
            Some(_) => Ok(()),
            None => {
                // Journal first: if the queue refuses the record, the key is not taken either,
                // so no later add can be journaled for a ledger whose key never was.
                drop(self.journal.submit(JournalRecord::MasterKey {
                    ledger: id,
                    key: key.clone(),
                })?);
                st.meta.master_key = Some(key);
                st.dirty = true;
                Ok(())
            }
        }
    }

    /// Fences a ledger (creating it if unknown, as a recovering client needs every bookie of
    /// the ensemble fenced); resolves with the LAC once the fence is durable.
    pub async fn fence(&self, id: LedgerId, master_key: Bytes) -> Result<i64> {
        if self.is_shutting_down() {
            return Err(BookieError::ShuttingDown);
        }
        let ledger = self.storage.ledger_or_create(id);
        let durable = {
            let mut st = ledger.state();
            self.check_master_key(&mut st, id, master_key)?;
            if st.fence_durable {
                // Already fenced for good: recovery's fencing reads cost no journal write.
                None
            } else {
                st.meta.fenced = true;
                st.dirty = true;
                st.last_write = Some(std::time::Instant::now());
                Some(self.journal.submit(JournalRecord::Fence { ledger: id })?)
            }
        };
        if let Some(durable) = durable {
            durable.await?;
            ledger.state().fence_durable = true;
            metrics::counter!("bookie_fences_total").increment(1);
        }
        self.lac(id).await
    }

    /// The bookie's LAC for a ledger.
    pub async fn lac(&self, id: LedgerId) -> Result<i64> {
        Ok(self.info(id).await?.lac)
    }

    /// Long-polls the LAC: returns as soon as it exceeds `previous`, or at `timeout`.
    pub async fn read_lac(&self, id: LedgerId, previous: i64, timeout: Duration) -> Result<i64> {
        let lac = self.lac(id).await?;
        if lac > previous || timeout.is_zero() {
            return Ok(lac);
        }
        let ledger = self
            .storage
            .ledger(id)
            .ok_or(BookieError::NoLedger { ledger: id })?;
        let mut rx = ledger.subscribe_lac();
        let _ = tokio::time::timeout(
            timeout.min(Duration::from_secs(60)),
            rx.wait_for(|l| *l > previous),
        )
        .await;
        Ok(ledger.lac())
    }

    /// Reads an entry (fencing first if asked) with the bookie's LAC.
    pub async fn read(
        &self,
        id: LedgerId,
        entry: EntryId,
        fence: Option<Bytes>,
    ) -> Result<(Entry, i64)> {
        let lac = match fence {
            Some(key) => Some(self.fence(id, key).await?),
            None => None,
        };
        let storage = self.storage.clone();
        let e = tokio::task::spawn_blocking(move || storage.read_blocking(id, entry))
            .await
            .map_err(|e| BookieError::Io {
                path: "read task".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let lac = match lac {
            Some(l) => l,
            None => self.lac(id).await?,
        };
        Ok((e, lac))
    }

    /// Facts about a ledger. `NoLedger` if this bookie holds nothing of it.
    pub async fn info(&self, id: LedgerId) -> Result<LedgerInfo> {
        let ledger = self
            .storage
            .ledger(id)
            .ok_or(BookieError::NoLedger { ledger: id })?;
        let storage = self.storage.clone();
        let l = ledger.clone();
        let (entries, bytes, last_entry) =
            tokio::task::spawn_blocking(move || storage.info_blocking(&l))
                .await
                .map_err(|e| BookieError::Io {
                    path: "info task".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
        let fenced = ledger.state().meta.fenced;
        Ok(LedgerInfo {
            fenced,
            lac: ledger.lac(),
            last_entry,
            entries,
            bytes,
        })
    }

    /// Deletes a ledger: journaled first (so replay cannot resurrect it), then its files go.
    pub async fn delete(&self, id: LedgerId) -> Result<()> {
        if self.is_shutting_down() {
            return Err(BookieError::ShuttingDown);
        }
        self.storage.begin_delete(id);
        self.journal
            .submit(JournalRecord::Delete { ledger: id })?
            .await?;
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.delete_blocking(id))
            .await
            .map_err(|e| BookieError::Io {
                path: "delete task".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        Ok(())
    }

    /// Moves the write cache into ledger files and advances the checkpoint mark; deletes
    /// journal files the mark has passed.
    pub async fn checkpoint(&self) -> Result<()> {
        let pos = self.journal.durable_position();
        let storage = self.storage.clone();
        let ledgers = storage.ledger_ids().len() as f64;
        metrics::gauge!("bookie_ledgers").set(ledgers);
        metrics::gauge!("bookie_ledgers_count").set(ledgers);
        metrics::gauge!("bookie_write_cache_bytes").set(storage.cache_bytes() as f64);
        metrics::gauge!("bookie_write_cache_size").set(storage.cache_bytes() as f64);
        let jdir = self.journal_dir.clone();
        let keep = self.recycle_files;
        let fs = self.fs.clone();
        tokio::task::spawn_blocking(move || {
            storage.checkpoint_blocking(pos)?;
            recycle::retire_before(&*fs, &jdir, pos.file, keep);
            Ok::<_, BookieError>(())
        })
        .await
        .map_err(|e| BookieError::Io {
            path: "checkpoint task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Checkpoints every `checkpoint_interval`, or sooner when the write cache fills.
    /// Ends when `shutdown` fires.
    pub async fn run_checkpoints(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.checkpoint_interval) => {}
                () = self.storage.flush_wanted.notified() => {}
            }
            if let Err(e) = self.checkpoint().await {
                tracing::error!(error = %e, "checkpoint failed; entries stay in the journal and the write cache");
            }
        }
    }

    /// Stops accepting requests and checkpoints. Adds already queued still complete; the
    /// journal thread ends when the engine is dropped.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutting_down.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while self.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tick.tick().await;
        }
        self.checkpoint().await
    }
}

/// Replays every journal record after the checkpoint mark into storage. Returns the end of
/// the journal, the highest file sequence seen and how many records were applied.
fn replay(
    storage: &LedgerStorage,
    fs: &dyn Fs,
    jdir: &std::path::Path,
    mode: RecoveryMode,
) -> Result<(JournalPosition, u64, usize)> {
    let mark = checkpoint::read(fs, storage.dir())?.unwrap_or_default().pos;
    let seqs = list_files(fs, jdir)?;
    let mut end = mark;
    let mut applied = 0usize;
    let mut last_seq = mark.file;
    for &seq in seqs.iter().filter(|s| **s >= mark.file) {
        last_seq = seq;
        let from = if seq == mark.file { mark.offset } else { 0 };
        let scan = read_file(fs, jdir, seq, from, |record, _pos| {
            apply(storage, record)?;
            applied += 1;
            Ok(())
        });
        let scan = match scan {
            Ok(s) => s,
            // The newest file, its creation cut short (torn header, no batch of its own):
            // nothing in it was acknowledged.
            Err(BookieError::Corrupt { location, reason })
                if Some(&seq) == seqs.last() && !holds_batches(fs, jdir, seq)? =>
            {
                tracing::warn!(%location, %reason, "removing a journal file whose creation a crash cut short");
                let path = path_of(jdir, seq);
                fs.remove_file(&path).map_err(BookieError::io(&path))?;
                fs.sync_dir(jdir).map_err(BookieError::io(jdir))?;
                continue;
            }
            Err(e @ BookieError::Corrupt { .. }) if mode == RecoveryMode::TolerateCorruption => {
                tracing::error!(error = %e, "skipping the rest of a corrupt journal file (recovery_mode = tolerate_corruption)");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some((offset, reason)) = &scan.torn {
            let path = path_of(jdir, seq);
            tracing::warn!(path = %path.display(), offset, reason = %reason, "truncating torn journal tail");
            fs.open(&path, OpenOptions::read_write())
                .and_then(|f| f.set_len(scan.end).and_then(|()| f.sync_data()))
                .map_err(BookieError::io(&path))?;
        }
        end = JournalPosition {
            file: seq,
            offset: scan.end,
        };
    }
    last_seq = last_seq.max(seqs.last().copied().unwrap_or(0));
    Ok((end, last_seq, applied))
}

fn apply(storage: &LedgerStorage, record: JournalRecord) -> Result<()> {
    match record {
        JournalRecord::Add(e) => {
            let ledger = storage.ledger_or_create(e.ledger);
            ledger.observe_lac(e.lac);
            storage.insert(e);
        }
        JournalRecord::MasterKey { ledger, key } => {
            let l = storage.ledger_or_create(ledger);
            let mut st = l.state();
            if st.meta.master_key.is_none() {
                st.meta.master_key = Some(key);
                st.dirty = true;
            }
        }
        JournalRecord::Fence { ledger } => {
            let l = storage.ledger_or_create(ledger);
            let mut st = l.state();
            st.meta.fenced = true;
            st.fence_durable = true;
            st.dirty = true;
        }
        JournalRecord::Lac { ledger, lac } => {
            let l = storage.ledger_or_create(ledger);
            {
                let mut st = l.state();
                st.meta.explicit_lac = st.meta.explicit_lac.max(lac);
                st.dirty = true;
            }
            l.observe_lac(lac);
        }
        JournalRecord::Delete { ledger } => {
            storage.delete_blocking(ledger)?;
        }
    }
    Ok(())
}

/// Takes an exclusive lock on `dir/.lock`, so two bookies never share a directory.
fn lock_dir(fs: &dyn Fs, dir: &std::path::Path) -> Result<Box<dyn File>> {
    let path = dir.join(".lock");
    let f = fs
        .open(&path, OpenOptions::create())
        .map_err(BookieError::io(&path))?;
    f.try_lock().map_err(|e| {
        BookieError::Config(format!(
            "{} is in use by another bookie ({e}); stop it or use another directory",
            dir.display()
        ))
    })?;
    Ok(f)
}
