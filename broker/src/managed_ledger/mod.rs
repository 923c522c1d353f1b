//! The managed ledger: a topic as a chain of ledgers (Pulsar's ManagedLedger).
//!
//! The ledger list lives at `managed-ledgers/<topic>` and changes only by CAS. Loading a
//! topic recovers (fences and closes) every ledger its previous owner left open — after that no
//! old writer can add to them — then creates a new ledger and CASes it onto the list before
//! accepting writes. Appends go to the one open ledger and roll over by entries, size or age.
//! A bounded cache of recent entries serves tailing consumers without bookie reads.

pub mod ack_set;
pub mod cache;
pub mod cursor;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookie::client::{CreateOptions, LedgerClient, LedgerReader, LedgerWriter, PendingAdd};
use bytes::Bytes;
use common::{EntryId, LedgerId, Position};
use meta::records::{decode, encode};
use meta::{KeyLayout, MetaError, MetadataStore, PutCondition, Version};
use proto::meta::{LedgerState, ManagedLedgerEntry, ManagedLedgerInfo};
use tokio::sync::watch;

use self::cache::{CacheBudget, EntryCache};
use crate::error::{BrokerError, Result};

/// Ledger settings of managed ledgers.
#[derive(Debug, Clone)]
pub struct ManagedLedgerConfig {
    /// Ensemble size of new ledgers.
    pub ensemble: usize,
    /// Write quorum.
    pub write_quorum: usize,
    /// Ack quorum.
    pub ack_quorum: usize,
    /// Roll over after this many entries.
    pub max_entries_per_ledger: u64,
    /// Roll over after this many bytes.
    pub max_ledger_bytes: u64,
    /// Roll over after this long.
    pub max_ledger_age: Duration,
    /// The broker-wide budget of every topic's entry cache.
    pub cache: Arc<CacheBudget>,
}

impl Default for ManagedLedgerConfig {
    fn default() -> Self {
        ManagedLedgerConfig {
            ensemble: 1,
            write_quorum: 1,
            ack_quorum: 1,
            max_entries_per_ledger: 50_000,
            max_ledger_bytes: 1 << 30,
            max_ledger_age: Duration::from_secs(4 * 3600),
            cache: CacheBudget::new(64 << 20, Duration::from_secs(1)),
        }
    }
}

struct WriteState {
    info: ManagedLedgerInfo,
    version: Version,
    writer: Option<LedgerWriter>,
    /// Set when an add to the current ledger failed: the next append replaces the ledger.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// Ownership was lost: no append may open a new ledger.
    abandoned: bool,
    current: LedgerId,
    appended: u64,
    bytes: u64,
    opened: Instant,
}

/// One topic's managed ledger.
pub struct ManagedLedger {
    name: String,
    key: String,
    store: Arc<dyn MetadataStore>,
    client: LedgerClient,
    config: ManagedLedgerConfig,
    write: tokio::sync::Mutex<WriteState>,
    /// Closed ledgers with entries, in order: (ledger, entries).
    ledgers: Mutex<Vec<(LedgerId, u64)>>,
    cache: Mutex<EntryCache>,
    readers: Mutex<std::collections::HashMap<LedgerId, LedgerReader>>,
    /// The last durable position; dispatchers wait on it.
    last: watch::Sender<Option<Position>>,
}

impl std::fmt::Debug for ManagedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedLedger")
            .field("name", &self.name)
            .finish()
    }
}

impl ManagedLedger {
    /// Loads (or creates) the managed ledger of `topic`: recovers the ledgers a previous owner
    /// left open, then opens a new ledger for writes.
    pub async fn open(
        topic: &str,
        store: Arc<dyn MetadataStore>,
        keys: &KeyLayout,
        client: LedgerClient,
        config: ManagedLedgerConfig,
    ) -> Result<Arc<Self>> {
        let key = keys.managed_ledger(topic);
        let (mut info, version) = match store.get(&key).await? {
            Some(kv) => (
                decode::<ManagedLedgerInfo>(&key, &kv.value)?,
                Some(kv.version),
            ),
            None => (ManagedLedgerInfo::default(), None),
        };
        // Fence the previous owner out of every ledger it may still write.
        for l in info.ledgers.iter_mut() {
            let id = LedgerId(l.ledger_id);
            match client.ledgers().get(id).await {
                Ok((m, _)) if m.state == LedgerState::Closed as i32 => {
                    l.entries = (m.last_entry_id + 1) as u64;
                    l.size = m.length;
                }
                Ok(_) => {
                    let m = client.recover(id, b"").await?;
                    l.entries = (m.last_entry_id + 1) as u64;
                    l.size = m.length;
                }
                Err(MetaError::NotFound { .. }) => l.entries = 0,
                Err(e) => return Err(e.into()),
            }
        }
        info.ledgers.retain(|l| l.entries > 0);
        let ledgers: Vec<(LedgerId, u64)> = info
            .ledgers
            .iter()
            .map(|l| (LedgerId(l.ledger_id), l.entries))
            .collect();
        let last = ledgers
            .last()
            .map(|(l, n)| Position::new(*l, EntryId(n - 1)));
        let (writer, info, version) =
            Self::new_ledger(&store, &key, &client, &config, topic, info, version).await?;
        tracing::info!(topic, ledgers = ledgers.len(), current = %writer.id(), "managed ledger opened");
        let current = writer.id();
        Ok(Arc::new(ManagedLedger {
            name: topic.to_owned(),
            key,
            store,
            client,
            cache: Mutex::new(EntryCache::new(config.cache.clone())),
            config,
            write: tokio::sync::Mutex::new(WriteState {
                info,
                version,
                writer: Some(writer),
                failed: Arc::default(),
                abandoned: false,
                current,
                appended: 0,
                bytes: 0,
                opened: Instant::now(),
            }),
            ledgers: Mutex::new(ledgers),
            readers: Mutex::new(Default::default()),
            last: watch::channel(last).0,
        }))
    }

    /// Creates a ledger and CASes it onto the list; `BadVersion` means another broker took
    /// the topic.
    async fn new_ledger(
        store: &Arc<dyn MetadataStore>,
        key: &str,
        client: &LedgerClient,
        config: &ManagedLedgerConfig,
        topic: &str,
        mut info: ManagedLedgerInfo,
        version: Option<Version>,
    ) -> Result<(LedgerWriter, ManagedLedgerInfo, Version)> {
        let writer = client
            .create(CreateOptions {
                ensemble: config.ensemble,
                write_quorum: config.write_quorum,
                ack_quorum: config.ack_quorum,
                password: Bytes::new(),
                custom: [
                    ("application".to_owned(), Bytes::from_static(b"magnetar")),
                    (
                        "component".to_owned(),
                        Bytes::from_static(b"managed-ledger"),
                    ),
                    ("topic".to_owned(), Bytes::copy_from_slice(topic.as_bytes())),
                ]
                .into(),
            })
            .await?;
        info.ledgers.push(ManagedLedgerEntry {
            ledger_id: writer.id().0,
            entries: 0,
            size: 0,
        });
        let cond = version.map_or(PutCondition::Absent, PutCondition::Version);
        let mut rec = info.clone();
        match meta::cas::put_checked(store.as_ref(), key, encode(&mut rec), cond).await {
            Ok(v) => Ok((writer, info, v)),
            Err(MetaError::BadVersion { .. } | MetaError::AlreadyExists { .. }) => {
                Err(BrokerError::NotOwner(topic.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends an entry (a producer's payload section, stored as sent). The returned future
    /// resolves to its position once it is durable on Qa bookies.
    pub async fn append(
        self: &Arc<Self>,
        payload: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<Position>> + use<>> {
        let mut w = self.write.lock().await;
        if w.abandoned {
            return Err(BrokerError::NotOwner(self.name.clone()));
        }
        if w.writer.is_none()
            || w.failed.load(std::sync::atomic::Ordering::SeqCst)
            || w.appended >= self.config.max_entries_per_ledger
            || w.bytes >= self.config.max_ledger_bytes
            || w.opened.elapsed() >= self.config.max_ledger_age
        {
            self.roll(&mut w).await?;
        }
        let writer = w.writer.as_ref().ok_or(BrokerError::ShuttingDown)?;
        let pending: PendingAdd = writer.append(payload.clone()).await?;
        let ledger = w.current;
        let failed = w.failed.clone();
        w.appended += 1;
        w.bytes += payload.len() as u64;
        drop(w);
        let me = self.clone();
        Ok(async move {
            let entry = match pending.await {
                Ok(e) => e,
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(e.into());
                }
            };
            let pos = Position::new(ledger, entry);
            me.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pos, payload);
            me.last.send_if_modified(|cur| {
                if cur.is_none_or(|c| pos > c) {
                    *cur = Some(pos);
                    true
                } else {
                    false
                }
            });
            Ok(pos)
        })
    }

    /// Closes the current ledger and starts a new one. A ledger whose writer failed is
    /// closed by recovery instead (its end is decided by the bookies). If no new ledger can
    /// be created (not enough bookies), appends fail until one can.
    async fn roll(&self, w: &mut WriteState) -> Result<()> {
        let old_id = w.current;
        let closing = w.writer.take();
        let closed = match closing {
            Some(old) if !w.failed.load(std::sync::atomic::Ordering::SeqCst) => {
                match old.close().await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(topic = self.name, ledger = %old_id, error = %e, "close failed; recovering the ledger");
                        None
                    }
                }
            }
            _ => None,
        };
        let closed = match closed {
            Some(m) => Some(m),
            None if w
                .info
                .ledgers
                .iter()
                .any(|l| l.ledger_id == old_id.0 && l.entries == 0) =>
            {
                Some(self.client.recover(old_id, b"").await?)
            }
            None => None,
        };
        if let Some(m) = closed {
            let entries = (m.last_entry_id + 1) as u64;
            if let Some(e) = w
                .info
                .ledgers
                .iter_mut()
                .find(|l| l.ledger_id == m.ledger_id)
            {
                e.entries = entries;
                e.size = m.length;
            }
            let mut closed = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
            if entries > 0 && !closed.iter().any(|(l, _)| l.0 == m.ledger_id) {
                closed.push((LedgerId(m.ledger_id), entries));
            }
        }
        let (writer, info, version) = Self::new_ledger(
            &self.store,
            &self.key,
            &self.client,
            &self.config,
            &self.name,
            w.info.clone(),
            Some(w.version),
        )
        .await?;
        tracing::debug!(topic = self.name, ledger = %writer.id(), "managed ledger rolled over");
        w.current = writer.id();
        w.writer = Some(writer);
        w.failed = Arc::default();
        w.info = info;
        w.version = version;
        w.appended = 0;
        w.bytes = 0;
        w.opened = Instant::now();
        Ok(())
    }

    /// The last durable position (`None`: empty topic).
    pub fn last_position(&self) -> Option<Position> {
        *self.last.borrow()
    }

    /// Watches the last durable position.
    pub fn subscribe_last(&self) -> watch::Receiver<Option<Position>> {
        self.last.subscribe()
    }

    /// The first position of the topic, if it has any entry.
    pub fn first_position(&self) -> Option<Position> {
        let closed = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        closed
            .first()
            .map(|(l, _)| Position::new(*l, EntryId(0)))
            .or_else(|| {
                self.last_position()
                    .map(|p| Position::new(p.ledger, EntryId(0)))
            })
    }

    /// The position after `p` (or the first one for `None`), if it exists yet.
    pub fn next_position(&self, p: Option<Position>) -> Option<Position> {
        let last = self.last_position()?;
        let Some(p) = p else {
            return self.first_position();
        };
        if p >= last {
            return None;
        }
        let closed = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = closed.iter().position(|(l, _)| *l == p.ledger) {
            let (_, n) = closed[i];
            if p.entry.0 + 1 < n {
                return Some(Position::new(p.ledger, EntryId(p.entry.0 + 1)));
            }
            return Some(match closed.get(i + 1) {
                Some((l, _)) => Position::new(*l, EntryId(0)),
                None => Position::new(last.ledger, EntryId(0)),
            });
        }
        if p.ledger == last.ledger {
            return Some(Position::new(p.ledger, EntryId(p.entry.0 + 1)));
        }
        // A ledger before the first one we know (trimmed): start from the first.
        closed
            .iter()
            .find(|(l, _)| *l > p.ledger)
            .map(|(l, _)| Position::new(*l, EntryId(0)))
            .or(Some(Position::new(last.ledger, EntryId(0))))
    }

    /// Entries after `mark` (everything for `None`) up to the last durable one: a
    /// subscription's backlog in entries.
    pub fn entries_after(&self, mark: Option<Position>) -> u64 {
        let Some(last) = self.last_position() else {
            return 0;
        };
        let mut ledgers = self
            .ledgers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !ledgers.iter().any(|(l, _)| *l == last.ledger) {
            ledgers.push((last.ledger, last.entry.0 + 1));
        }
        ledgers
            .iter()
            .map(|(l, n)| match mark {
                None => *n,
                Some(m) if *l < m.ledger => 0,
                Some(m) if *l == m.ledger => n.saturating_sub(m.entry.0 + 1),
                Some(_) => *n,
            })
            .sum()
    }

    /// Removes closed ledgers wholly at or before `mark` (every subscription has consumed
    /// them) from the list — CAS, then deletes them from the bookies. Returns how many went.
    pub async fn trim_before(&self, mark: Position) -> Result<usize> {
        let mut w = self.write.lock().await;
        let doomed: Vec<LedgerId> = {
            let closed = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            closed
                .iter()
                .filter(|(l, n)| *l < mark.ledger || (*l == mark.ledger && mark.entry.0 + 1 >= *n))
                .filter(|(l, _)| *l != w.current)
                .map(|(l, _)| *l)
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut info = w.info.clone();
        info.ledgers
            .retain(|l| !doomed.contains(&LedgerId(l.ledger_id)));
        let mut rec = info.clone();
        match meta::cas::put_checked(
            self.store.as_ref(),
            &self.key,
            encode(&mut rec),
            PutCondition::Version(w.version),
        )
        .await
        {
            Ok(v) => {
                w.info = info;
                w.version = v;
            }
            Err(MetaError::BadVersion { .. }) => {
                return Err(BrokerError::NotOwner(self.name.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        drop(w);
        self.ledgers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(l, _)| !doomed.contains(l));
        for id in &doomed {
            self.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            if let Err(e) = self.client.delete(*id).await {
                tracing::warn!(topic = self.name, ledger = %id, error = %e, "could not delete a trimmed ledger");
            }
        }
        tracing::info!(
            topic = self.name,
            ledgers = doomed.len(),
            "trimmed consumed ledgers"
        );
        Ok(doomed.len())
    }

    /// Evicts cached entries every active reader has passed (`passed`: the slowest one's
    /// last read position; `None`: one has read nothing yet) or older than the age bound.
    pub fn evict_cache(&self, passed: Option<Position>) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evict(passed, Instant::now());
    }

    /// Reads the entry at `p`: cache first, then bookies.
    pub async fn read(&self, p: Position) -> Result<Bytes> {
        if let Some(b) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(p) {
            return Ok(b);
        }
        let reader = {
            let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            readers.get(&p.ledger).cloned()
        };
        let reader = match reader {
            Some(r) => r,
            None => {
                let r = self.client.open_reader(p.ledger).await?;
                self.readers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.ledger, r.clone());
                r
            }
        };
        Ok(reader.read(p.entry.0).await?.payload)
    }

    /// Drops the open ledger's writer without closing it (ownership lost): pending appends
    /// fail, later ones fail; the new owner recovers the ledger.
    pub async fn abandon(&self) {
        let mut w = self.write.lock().await;
        w.writer = None;
        w.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        w.abandoned = true;
    }

    /// Closes the open ledger (graceful shutdown): its last entry is recorded in the metadata.
    pub async fn close(&self) -> Result<()> {
        let mut w = self.write.lock().await;
        if let Some(writer) = w.writer.take() {
            writer.close().await?;
        }
        Ok(())
    }

    /// The metadata store and key layout helpers, for cursors.
    pub(crate) fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }
}
