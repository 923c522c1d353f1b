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
pub mod rollover;
mod writer;

pub(crate) use writer::topic_ledger_options;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookie::client::{LedgerClient, LedgerReader};
use bytes::Bytes;
use common::{EntryId, LedgerId, Position};
use meta::records::decode;
use meta::{KeyLayout, MetadataStore};
use proto::meta::ManagedLedgerInfo;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use self::cache::{CacheBudget, EntryCache};
use self::rollover::RollLimits;
use self::writer::Cmd;
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
    /// Where namespace policies are read when a ledger is created (a namespace's
    /// persistence policy overrides the quorums above); `None`: never.
    pub policies: Option<meta::Namespaces>,
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
            policies: None,
        }
    }
}

/// What the handle, the write task and the completion task share. Its locks are plain
/// mutexes, never held across an `.await`.
pub(crate) struct Inner {
    name: String,
    key: String,
    store: Arc<dyn MetadataStore>,
    client: LedgerClient,
    config: ManagedLedgerConfig,
    /// Closed ledgers with entries, in order: (ledger, entries).
    ledgers: Mutex<Vec<(LedgerId, u64)>>,
    cache: Mutex<EntryCache>,
    readers: Mutex<std::collections::HashMap<LedgerId, LedgerReader>>,
    /// The last durable position; dispatchers wait on it.
    last: watch::Sender<Option<Position>>,
    /// Cancelled when ownership is lost: nothing more is acknowledged or created.
    abandoned: CancellationToken,
    /// Set once the managed ledger is terminated: its last entry (`None`: it has none).
    terminated: std::sync::OnceLock<Option<Position>>,
}

impl Inner {
    /// An entry became durable: cache it and advance the last position.
    fn durable(&self, pos: Position, payload: Bytes) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pos, payload);
        self.last.send_if_modified(|cur| {
            if cur.is_none_or(|c| pos > c) {
                *cur = Some(pos);
                true
            } else {
                false
            }
        });
    }
}

impl ManagedLedgerConfig {
    fn limits(&self) -> RollLimits {
        RollLimits {
            max_entries: self.max_entries_per_ledger,
            max_bytes: self.max_ledger_bytes,
            max_age: self.max_ledger_age,
        }
    }
}

/// Called once per append, in entry order, when its outcome is known: the durable position,
/// or `Err(())` when it failed (or was not acknowledged because ownership was lost) —
/// whether or not anyone still waits for the append's future (de-duplication bookkeeping
/// must not depend on a producer's connection).
pub type DurableHook = Box<dyn FnOnce(std::result::Result<Position, ()>) + Send>;

/// How long and how much consumed data a topic keeps (Pulsar's retention policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Consumed ledgers younger than this are kept (`None`: forever).
    pub time: Option<Duration>,
    /// Consumed ledgers are kept while the topic is within this many bytes (`None`: no bound).
    pub size: Option<u64>,
}

impl Retention {
    /// Pulsar's default (`defaultRetentionTimeInMinutes = 0`, `defaultRetentionSizeInMB = 0`):
    /// consumed data goes at the next trim.
    pub fn default_policy() -> Self {
        Self::from_policy(0, 0)
    }

    /// From Pulsar's minutes and megabytes (-1: unlimited).
    pub fn from_policy(minutes: i64, mb: i64) -> Self {
        Retention {
            time: (minutes >= 0).then(|| Duration::from_secs(minutes as u64 * 60)),
            size: (mb >= 0).then(|| mb as u64 * 1024 * 1024),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The ledger list as the write task sees it (for `internalStats`).
#[derive(Debug, Clone)]
pub struct LedgerListStats {
    /// (ledger, entries, bytes), oldest first; the open ledger's figures are live.
    pub ledgers: Vec<(LedgerId, u64, u64)>,
    /// The ledger taking writes.
    pub current: Option<LedgerId>,
    /// Entries appended since the topic was loaded.
    pub entries_added: u64,
    /// Pulsar's managed-ledger state name.
    pub state: &'static str,
}

impl LedgerListStats {
    /// Entries in every ledger.
    pub fn entries(&self) -> u64 {
        self.ledgers.iter().map(|l| l.1).sum()
    }

    /// Bytes in every ledger.
    pub fn size(&self) -> u64 {
        self.ledgers.iter().map(|l| l.2).sum()
    }
}

/// One topic's managed ledger: a handle on its write task plus the shared read state.
pub struct ManagedLedger {
    inner: Arc<Inner>,
    write: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for ManagedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedLedger")
            .field("name", &self.inner.name)
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
        writer::fence_previous(&client, &mut info).await?;
        let ledgers: Vec<(LedgerId, u64)> = info
            .ledgers
            .iter()
            .map(|l| (LedgerId(l.ledger_id), l.entries))
            .collect();
        let last = ledgers
            .last()
            .map(|(l, n)| Position::new(*l, EntryId(n - 1)));
        let inner = Arc::new(Inner {
            name: topic.to_owned(),
            key,
            store,
            client,
            cache: Mutex::new(EntryCache::new(config.cache.clone())),
            config,
            ledgers: Mutex::new(ledgers),
            readers: Mutex::new(Default::default()),
            last: watch::channel(last).0,
            abandoned: CancellationToken::new(),
            terminated: std::sync::OnceLock::new(),
        });
        if info.terminated {
            // Terminated: no ledger is opened; the list is as it was left.
            let _ = inner.terminated.set(last);
            let Some(version) = version else {
                return Err(BrokerError::Protocol(format!(
                    "{topic}: a terminated managed ledger without a stored record"
                )));
            };
            tracing::info!(
                topic,
                ledgers = info.ledgers.len(),
                "managed ledger opened (terminated)"
            );
            let write = writer::spawn(inner.clone(), info, version, None);
            return Ok(Arc::new(ManagedLedger { inner, write }));
        }
        let (w, info, version) = writer::new_ledger(&inner, info, version).await?;
        tracing::info!(topic, ledgers = info.ledgers.len() - 1, current = %w.id(), "managed ledger opened");
        let write = writer::spawn(inner.clone(), info, version, Some(w));
        Ok(Arc::new(ManagedLedger { inner, write }))
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Queues an entry (a producer's payload section, stored as sent) for the write task,
    /// waiting only while its queue is full. The returned future resolves to the entry's
    /// position once it is durable on Qa bookies. Entries are stored in the order `append`
    /// was called.
    pub async fn append(
        &self,
        payload: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<Position>> + use<>> {
        self.append_with(payload, None).await
    }

    /// [`ManagedLedger::append`] with a hook told the outcome in entry order.
    pub async fn append_with(
        &self,
        payload: Bytes,
        hook: Option<DurableHook>,
    ) -> Result<impl std::future::Future<Output = Result<Position>> + use<>> {
        let (reply, rx) = oneshot::channel();
        self.write
            .send(Cmd::Append {
                payload,
                reply,
                hook,
            })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        Ok(async move { rx.await.unwrap_or(Err(BrokerError::ShuttingDown)) })
    }

    /// The last durable position (`None`: empty topic).
    pub fn last_position(&self) -> Option<Position> {
        *self.inner.last.borrow()
    }

    /// Watches the last durable position.
    pub fn subscribe_last(&self) -> watch::Receiver<Option<Position>> {
        self.inner.last.subscribe()
    }

    /// The first position of the topic, if it has any entry.
    pub fn first_position(&self) -> Option<Position> {
        let closed = self.inner.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        closed
            .first()
            .map(|(l, _)| Position::new(*l, EntryId(0)))
            .or_else(|| {
                self.last_position()
                    .map(|p| Position::new(p.ledger, EntryId(0)))
            })
    }

    /// Whether `p` is an entry of the topic: durable, in a ledger of its list (not trimmed),
    /// within that ledger's entries. What a client names in an ack or seek is checked with
    /// it: a position that does not exist must not reach a cursor.
    pub fn contains(&self, p: Position) -> bool {
        let Some(last) = self.last_position() else {
            return false;
        };
        if p > last {
            return false;
        }
        if p.ledger == last.ledger {
            return true;
        }
        let closed = self.inner.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        // Ledger ids come from a counter, so the list is in ascending order.
        closed
            .binary_search_by_key(&p.ledger, |(l, _)| *l)
            .is_ok_and(|i| p.entry.0 < closed[i].1)
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
        let closed = self.inner.ledgers.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Every ledger with entries up to the last durable position: (ledger, entries), in order.
    pub fn ledger_entries(&self) -> Vec<(LedgerId, u64)> {
        let Some(last) = self.last_position() else {
            return Vec::new();
        };
        let mut ledgers = self
            .inner
            .ledgers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !ledgers.iter().any(|(l, _)| *l == last.ledger) {
            ledgers.push((last.ledger, last.entry.0 + 1));
        }
        ledgers
    }

    /// Entries after `mark` (everything for `None`) up to the last durable one: a
    /// subscription's backlog in entries.
    pub fn entries_after(&self, mark: Option<Position>) -> u64 {
        self.ledger_entries()
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
    /// them) that `retention` does not keep from the list — CAS, by the write task — then
    /// deletes them from the bookies. Returns how many went.
    pub async fn trim_before(&self, mark: Position, retention: Retention) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.write
            .send(Cmd::Trim {
                mark,
                retention,
                reply,
            })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        let doomed = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
        for id in &doomed {
            self.inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            if let Err(e) = self.inner.client.delete(*id).await {
                tracing::warn!(topic = self.inner.name, ledger = %id, error = %e, "could not delete a trimmed ledger");
            }
        }
        if !doomed.is_empty() {
            tracing::info!(
                topic = self.inner.name,
                ledgers = doomed.len(),
                "trimmed consumed ledgers"
            );
        }
        Ok(doomed.len())
    }

    /// Evicts cached entries every active reader has passed (`passed`: the slowest one's
    /// last read position; `None`: one has read nothing yet) or older than the age bound.
    pub fn evict_cache(&self, passed: Option<Position>) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evict(passed, Instant::now());
    }

    /// Reads the entry at `p`: cache first, then bookies.
    pub async fn read(&self, p: Position) -> Result<Bytes> {
        if let Some(b) = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(p)
        {
            return Ok(b);
        }
        let reader = {
            let readers = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            readers.get(&p.ledger).cloned()
        };
        let reader = match reader {
            Some(r) => r,
            None => {
                let r = self.inner.client.open_reader(p.ledger).await?;
                self.inner
                    .readers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.ledger, r.clone());
                r
            }
        };
        Ok(reader.read(p.entry.0).await?.payload)
    }

    /// Ownership was lost: from now on no append is acknowledged (not even one already
    /// written), no ledger is created, and the open ledger is left OPEN for the new owner to
    /// recover. Takes effect at once, ahead of anything queued.
    pub fn abandon(&self) {
        self.inner.abandoned.cancel();
    }

    /// Terminates the managed ledger after every queued append, as Pulsar's `terminate`: the
    /// open ledger is closed and the list record marked terminated (CAS), so no entry is
    /// added again, by this broker or a later owner. Returns the last entry (`None`: the
    /// topic has none). Terminating a terminated ledger returns the same.
    pub async fn terminate(&self) -> Result<Option<Position>> {
        let (reply, rx) = oneshot::channel();
        self.write
            .send(Cmd::Terminate { reply })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)?
    }

    /// `Some(last entry)` once terminated.
    pub fn terminated_at(&self) -> Option<Option<Position>> {
        self.inner.terminated.get().copied()
    }

    /// Closes the open ledger (graceful unload) after every queued append: its last entry is
    /// recorded in the metadata. Later appends are refused.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.write
            .send(Cmd::Close { reply })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)?
    }

    /// The ledger list with live figures for the open ledger.
    pub async fn stats(&self) -> Result<LedgerListStats> {
        let (reply, rx) = oneshot::channel();
        self.write
            .send(Cmd::Stats { reply })
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        rx.await.map_err(|_| BrokerError::ShuttingDown)
    }

    /// Deletes the managed ledger: closes the open ledger, then deletes every ledger of the
    /// list from the bookies and the list itself. Appends are refused from the close on.
    pub async fn delete(&self) -> Result<()> {
        self.close().await?;
        let Some(kv) = self.inner.store.get(&self.inner.key).await? else {
            return Ok(());
        };
        let info: ManagedLedgerInfo = decode(&self.inner.key, &kv.value)?;
        for l in &info.ledgers {
            let id = LedgerId(l.ledger_id);
            match self.inner.client.delete(id).await {
                Ok(()) | Err(bookie::client::ClientError::NoSuchLedger(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.inner
            .store
            .delete(&self.inner.key, Some(kv.version))
            .await?;
        Ok(())
    }

    /// The metadata store and key layout helpers, for cursors.
    pub(crate) fn client(&self) -> &LedgerClient {
        &self.inner.client
    }

    pub(crate) fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.store
    }
}
