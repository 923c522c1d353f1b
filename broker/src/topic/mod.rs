//! A topic: its managed ledger and subscriptions ([`subscription`]: consumers and the
//! dispatcher that feeds them). Topics are loaded on first use (auto-creation) by the owner of
//! their bundle, and kept while it owns it. Loading a topic loads every durable
//! subscription stored for it, with or without consumers: trimming goes by all of them.

pub mod backlog_quota;
pub mod compaction;
pub mod dedup;
pub mod expiry;
pub mod key_shared;
pub mod stats;
pub mod subscription;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use common::Position;
use meta::KeyLayout;

use self::subscription::Subscription;
use crate::error::Result;
use crate::managed_ledger::ManagedLedger;
use crate::managed_ledger::cursor::Cursor;
use crate::protocol::pb::command_subscribe::{InitialPosition, SubType};

/// A mark-delete position just before `p`, so delivery starts at `p`: the last entry of the
/// ledger before it when `p` opens a ledger (the managed ledger resolves the next position).
pub fn before(p: Position) -> Option<Position> {
    match p.entry.0.checked_sub(1) {
        Some(e) => Some(Position::new(p.ledger, common::EntryId(e))),
        None if p.ledger.0 == 0 => None,
        None => Some(Position::new(
            common::LedgerId(p.ledger.0 - 1),
            common::EntryId(u64::MAX),
        )),
    }
}

/// The sequence ids an entry carries: (first, highest) — a batch's highest is its
/// `highest_sequence_id`, or first + messages - 1 when the client did not set it.
pub fn sequence_range(m: &crate::protocol::pb::MessageMetadata) -> (u64, u64) {
    let first = m.sequence_id;
    let n = u64::from(m.num_messages_in_batch.unwrap_or(1).max(1) as u32);
    let highest = match m.highest_sequence_id {
        Some(h) if h > first => h,
        _ => first.saturating_add(n - 1),
    };
    (first, highest)
}

/// Writes a de-duplication snapshot (only the owner writes it; a late, older one only makes
/// the next replay longer).
pub async fn write_dedup_snapshot(
    store: &Arc<dyn meta::MetadataStore>,
    key: &str,
    (position, highest): (Option<Position>, std::collections::HashMap<String, u64>),
) -> Result<()> {
    let mut rec = proto::meta::DedupSnapshot {
        position: position.map(|p| proto::meta::PositionInfo {
            ledger_id: p.ledger.0,
            entry_id: p.entry.0,
        }),
        highest: highest.into_iter().collect(),
        ..Default::default()
    };
    store
        .put(
            key,
            meta::records::encode(&mut rec),
            meta::PutCondition::Always,
            None,
        )
        .await?;
    Ok(())
}

/// A producer attached to the topic.
/// A WaitForExclusive producer waiting for the topic to be free.
#[derive(Debug)]
struct Waiter {
    key: (u64, u64),
    name: String,
    out: crate::outbound::Outbound,
    request_id: u64,
    fenced: Arc<std::sync::atomic::AtomicBool>,
}

/// What `add_producer` did.
#[derive(Debug)]
pub enum Added {
    /// Attached; the flag marks it fenced later.
    Ready(Arc<std::sync::atomic::AtomicBool>),
    /// WaitForExclusive on a busy topic: queued; it gets a second PRODUCER_SUCCESS (ready)
    /// once every other producer is gone.
    Waiting(Arc<std::sync::atomic::AtomicBool>),
}

#[derive(Debug)]
struct ProducerEntry {
    /// Its connection's outbound queue (to tell it to reconnect).
    out: crate::outbound::Outbound,
    name: String,
    since: std::time::SystemTime,
    /// It holds the topic exclusively (Exclusive, WaitForExclusive, ExclusiveWithFencing).
    exclusive: bool,
    /// Set when another producer fenced it: its sends are refused from then on.
    fenced: Arc<std::sync::atomic::AtomicBool>,
}

/// Pulsar's producer access modes (`CommandProducer.producer_access_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Any number of producers (the default).
    Shared,
    /// Only this one; refused (`ProducerFenced`) if any producer is attached.
    Exclusive,
    /// Only this one, waiting until the topic is free (not supported yet: refused while it
    /// is not free).
    WaitForExclusive,
    /// Only this one: every attached producer is fenced.
    ExclusiveWithFencing,
}

impl AccessMode {
    /// From the wire value (unknown: Shared).
    pub fn from_wire(v: i32) -> Self {
        match v {
            1 => AccessMode::Exclusive,
            2 => AccessMode::WaitForExclusive,
            3 => AccessMode::ExclusiveWithFencing,
            _ => AccessMode::Shared,
        }
    }
}

/// One loaded topic.
#[derive(Debug)]
pub struct Topic {
    /// Full name, `persistent://tenant/ns/topic`.
    pub name: String,
    /// Its chain of ledgers.
    pub ml: Arc<ManagedLedger>,
    keys: KeyLayout,
    subscriptions: tokio::sync::Mutex<HashMap<String, Arc<Subscription>>>,
    producer_names: Mutex<u64>,
    /// Producers attached: (connection id, producer id) → that connection's outbound queue,
    /// so an unload can tell each client to reconnect.
    producers: Mutex<HashMap<(u64, u64), ProducerEntry>>,
    /// WaitForExclusive producers in arrival order (guarded with `producers`' lock held
    /// first).
    waiters: Mutex<std::collections::VecDeque<Waiter>>,
    /// Messages and bytes published (receipted) since the topic was loaded.
    pub msg_in: std::sync::atomic::AtomicU64,
    /// See `msg_in`.
    pub bytes_in: std::sync::atomic::AtomicU64,
    /// Rates over the last stats period (see [`stats`]).
    pub rates: Mutex<stats::Rates>,
    /// Producer de-duplication state (`None`: off for this topic).
    pub dedup: Arc<Mutex<Option<dedup::Dedup>>>,
    /// Unloaded or dropped: a connection's producer or consumer on it is stale, and a
    /// client re-creating it with the same id gets the topic loaded afresh.
    closed: std::sync::atomic::AtomicBool,
    /// A backlog quota refuses producers (see [`backlog_quota`]): set by the stats period.
    pub quota_blocked: std::sync::atomic::AtomicBool,
    /// Max unacknowledged entries per consumer: the topic's own policy (`u32::MAX`: unset)
    /// and its namespace's (0: unlimited).
    max_unacked: [std::sync::atomic::AtomicU32; 2],
    /// The last compaction's horizon: trimming never passes it (compacted readers read the
    /// topic after it).
    compaction_horizon: Mutex<Option<Position>>,
    /// The compacted view, loaded when a `read_compacted` consumer first needs it.
    compacted: tokio::sync::Mutex<Option<Arc<compaction::CompactedView>>>,
    /// What `GET …/compaction` reports.
    pub compaction_status: Mutex<compaction::Status>,
    /// Storage write latency (ms) of its entries, in Pulsar's buckets.
    pub write_latency_ms: crate::topic_metrics::Buckets,
    /// Size of its entries (bytes), in Pulsar's buckets.
    pub entry_size: crate::topic_metrics::Buckets,
}

impl Topic {
    /// Wraps a loaded managed ledger.
    pub fn new(name: String, ml: Arc<ManagedLedger>, keys: KeyLayout) -> Arc<Self> {
        Arc::new(Topic {
            name,
            ml,
            keys,
            subscriptions: tokio::sync::Mutex::new(HashMap::new()),
            producer_names: Mutex::new(0),
            producers: Mutex::new(HashMap::new()),
            waiters: Mutex::new(Default::default()),
            msg_in: Default::default(),
            bytes_in: Default::default(),
            rates: Mutex::new(stats::Rates::default()),
            dedup: Arc::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
            quota_blocked: std::sync::atomic::AtomicBool::new(false),
            max_unacked: [
                std::sync::atomic::AtomicU32::new(u32::MAX),
                std::sync::atomic::AtomicU32::new(0),
            ],
            compaction_horizon: Mutex::new(None),
            compacted: tokio::sync::Mutex::new(None),
            compaction_status: Mutex::new(compaction::Status::NotRun),
            write_latency_ms: Default::default(),
            entry_size: Default::default(),
        })
    }

    /// A broker-generated producer name, unique per topic load.
    pub fn next_producer_name(&self, prefix: &str) -> String {
        let mut n = self
            .producer_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *n += 1;
        format!("{prefix}-{}", *n)
    }

    /// The subscription `name`, created (with its durable cursor) if new. A non-durable one
    /// (a reader's) starts at `start` (inclusive; `None`: the initial position) and keeps its
    /// cursor in memory.
    pub async fn subscription(
        &self,
        name: &str,
        sub_type: SubType,
        initial: InitialPosition,
        durable: bool,
        start: Option<Position>,
    ) -> Result<Arc<Subscription>> {
        let mut subs = self.subscriptions.lock().await;
        if let Some(s) = subs.get(name) {
            return Ok(s.clone());
        }
        let initial: Option<Position> = match initial {
            InitialPosition::Earliest => None,
            InitialPosition::Latest => self.ml.last_position(),
        };
        let cursor = if durable {
            let key = self.keys.cursor(&self.name, name);
            Cursor::load_or_create(self.ml.store(), key, initial).await?
        } else {
            Cursor::in_memory(start.map(before).unwrap_or(initial))
        };
        let sub = Subscription::start(name.to_owned(), sub_type, self.ml.clone(), cursor);
        sub.set_max_unacked(self.max_unacked());
        subs.insert(name.to_owned(), sub.clone());
        Ok(sub)
    }

    /// Creates a durable subscription whose delivery starts right after `mark` (`None`: the
    /// first entry), as `topics create-subscription` does; `AlreadyExists` when it exists.
    pub async fn create_subscription(&self, name: &str, mark: Option<Position>) -> Result<()> {
        let mut subs = self.subscriptions.lock().await;
        let key = self.keys.cursor(&self.name, name);
        if subs.contains_key(name) {
            return Err(meta::MetaError::AlreadyExists { key }.into());
        }
        if self.ml.store().get(&key).await?.is_some() {
            return Err(meta::MetaError::AlreadyExists { key }.into());
        }
        let cursor = Cursor::load_or_create(self.ml.store(), key, mark).await?;
        let sub = Subscription::start(name.to_owned(), SubType::Exclusive, self.ml.clone(), cursor);
        sub.set_max_unacked(self.max_unacked());
        subs.insert(name.to_owned(), sub);
        Ok(())
    }

    /// The loaded subscription `name`, if any.
    pub async fn existing_subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.subscriptions.lock().await.get(name).cloned()
    }

    /// Loads every durable subscription stored for the topic that is not loaded yet (at topic
    /// load: a subscription whose consumers are offline still holds its backlog, as in
    /// Pulsar). Its type is set by its next consumer.
    pub async fn load_subscriptions(&self) -> Result<usize> {
        let prefix = self.keys.cursors_prefix(&self.name);
        let (kvs, _) = meta::range_all(self.ml.store().as_ref(), &prefix, 1000).await?;
        let mut subs = self.subscriptions.lock().await;
        let mut loaded = 0;
        for kv in kvs {
            let Some(name) = kv.key.strip_prefix(&prefix) else {
                continue;
            };
            if subs.contains_key(name) {
                continue;
            }
            let cursor = Cursor::load_or_create(self.ml.store(), kv.key.clone(), None).await?;
            let sub =
                Subscription::start(name.to_owned(), SubType::Exclusive, self.ml.clone(), cursor);
            sub.set_max_unacked(self.max_unacked());
            subs.insert(name.to_owned(), sub);
            loaded += 1;
        }
        Ok(loaded)
    }

    /// Drops a non-durable subscription once its last consumer left.
    pub async fn release(&self, name: &str) {
        let mut subs = self.subscriptions.lock().await;
        if let Some(s) = subs.get(name)
            && !s.is_durable()
            && !s.has_consumers()
        {
            let s = subs.remove(name);
            drop(subs);
            if let Some(s) = s {
                let _ = s.delete().await;
            }
        }
    }

    /// Removes a subscription and its cursor.
    pub async fn unsubscribe(&self, name: &str) -> Result<()> {
        let sub = self.subscriptions.lock().await.remove(name);
        if let Some(s) = sub {
            s.delete().await?;
        }
        Ok(())
    }

    /// Evicts cached entries every active subscription has read (all of them when none is
    /// active) or that are older than the cache's age bound.
    pub async fn evict_cache(&self) {
        let active: Vec<Option<Position>> = {
            let subs = self.subscriptions.lock().await;
            subs.values()
                .filter_map(|s| s.active_read_position())
                .collect()
        };
        let passed = if active.iter().any(Option::is_none) {
            None
        } else {
            Some(active.into_iter().flatten().min().unwrap_or(Position::MAX))
        };
        self.ml.evict_cache(passed);
    }

    /// Deletes ledgers every subscription has consumed — all closed ones when the topic has
    /// no subscription, as in Pulsar — unless `retention` keeps them.
    pub async fn trim(&self, retention: crate::managed_ledger::Retention) -> Result<usize> {
        let marks: Vec<Option<Position>> = {
            let subs = self.subscriptions.lock().await;
            subs.values().map(|s| s.persisted_mark_delete()).collect()
        };
        let mark = if marks.is_empty() {
            self.ml.last_position()
        } else if marks.iter().any(Option::is_none) {
            None
        } else {
            marks.into_iter().flatten().min()
        };
        // Compacted readers read the topic after the horizon: keep it.
        let horizon = *self
            .compaction_horizon
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mark = match (mark, horizon) {
            (Some(m), Some(h)) => Some(m.min(h)),
            (m, _) => m,
        };
        match mark {
            Some(mark) => self.ml.trim_before(mark, retention).await,
            None => Ok(0),
        }
    }

    /// Reads the compaction record's horizon (at load).
    pub async fn load_compaction_horizon(&self) -> Result<()> {
        let key = self.keys.compaction(&self.name);
        if let Some(kv) = self.ml.store().get(&key).await? {
            let info: proto::meta::CompactionInfo = meta::records::decode(&key, &kv.value)?;
            *self
                .compaction_horizon
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = info
                .horizon
                .map(|h| Position::new(common::LedgerId(h.ledger_id), common::EntryId(h.entry_id)));
        }
        Ok(())
    }

    /// The compacted view for `read_compacted` consumers (`None`: never compacted).
    pub async fn compacted_view(&self) -> Result<Option<Arc<compaction::CompactedView>>> {
        let mut cached = self.compacted.lock().await;
        if cached.is_none() {
            *cached = compaction::load(self, self.ml.client()).await?;
        }
        Ok(cached.clone())
    }

    /// Compacts the topic (`topics compact`): status RUNNING, then SUCCESS or ERROR; a
    /// compacted view loaded before is replaced by the new one for later subscriptions.
    pub async fn compact(self: Arc<Self>, quorums: (usize, usize, usize)) {
        let result = compaction::compact(&self, self.ml.client(), quorums).await;
        let status = match result {
            Ok(()) => {
                *self.compacted.lock().await = None;
                if let Err(e) = self.load_compaction_horizon().await {
                    tracing::warn!(topic = self.name, error = %e, "cannot read the new compaction horizon");
                }
                compaction::Status::Success
            }
            Err(e) => {
                tracing::warn!(topic = self.name, error = %e, "compaction failed");
                compaction::Status::Error(e.to_string())
            }
        };
        *self
            .compaction_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Turns de-duplication on: the state is the stored snapshot plus a replay of the entries
    /// after it; with no snapshot (first enabled) it starts at the end of the topic, as in
    /// Pulsar, and writes its first snapshot there at once (a broker killed before the next
    /// one must not leave its successor starting at a later end). A no-op when it is on already.
    pub async fn enable_dedup(&self) -> Result<()> {
        if self
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let key = self.keys.dedup(&self.name);
        let store = self.ml.store().clone();
        let stored = store.get(&key).await?;
        let first = stored.is_none();
        let mut d = match stored {
            Some(kv) => {
                let snap: proto::meta::DedupSnapshot = meta::records::decode(&key, &kv.value)?;
                let pos = snap.position.map(|p| {
                    Position::new(common::LedgerId(p.ledger_id), common::EntryId(p.entry_id))
                });
                dedup::Dedup::from_snapshot(pos, snap.highest.into_iter().collect())
            }
            None => dedup::Dedup::from_snapshot(self.ml.last_position(), Default::default()),
        };
        // Replay what the snapshot does not reflect.
        let mut at = d.applied();
        let mut replayed = 0u64;
        while let Some(p) = self.ml.next_position(at) {
            let payload = self.ml.read(p).await?;
            if let Ok(info) = crate::protocol::frame::inspect_entry(&payload) {
                let m = &info.metadata;
                let highest = sequence_range(m).1;
                d.replay(&m.producer_name, highest, p);
            }
            at = Some(p);
            replayed += 1;
        }
        tracing::info!(topic = self.name, replayed, "de-duplication on");
        let snapshot = if first {
            Some(d.snapshot_now())
        } else {
            d.take_snapshot(true)
        };
        *self.dedup.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        if let Some(s) = snapshot {
            write_dedup_snapshot(&store, &key, s).await?;
        }
        Ok(())
    }

    /// The key of the topic's de-duplication snapshot.
    pub fn dedup_key(&self) -> String {
        self.keys.dedup(&self.name)
    }

    /// Turns de-duplication off (the stored snapshot stays, for when it is turned on again).
    pub fn disable_dedup(&self) {
        *self.dedup.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Writes the de-duplication snapshot if anything changed since the last one.
    pub async fn flush_dedup(&self) -> Result<()> {
        let snap = self
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|d| d.take_snapshot(true));
        match snap {
            Some(s) => write_dedup_snapshot(self.ml.store(), &self.keys.dedup(&self.name), s).await,
            None => Ok(()),
        }
    }

    /// Whether the topic was unloaded or dropped (see the field).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Attaches a producer as its access mode allows, as Pulsar does: a Shared producer is
    /// refused while an exclusive one holds the topic, or while a producer of the same name is
    /// attached (`ProducerBusy`); an Exclusive one while any producer is attached
    /// (`ProducerFenced`); ExclusiveWithFencing fences every attached producer (told to
    /// reconnect; its sends are refused); WaitForExclusive waits (queued) while any producer
    /// is attached. Returns whether it is attached or waiting, with the flag that marks it
    /// fenced.
    pub fn add_producer(
        &self,
        key: (u64, u64),
        name: String,
        mode: AccessMode,
        out: crate::outbound::Outbound,
        request_id: u64,
    ) -> Result<Added> {
        use crate::error::BrokerError;
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        let others = producers.iter().filter(|(k, _)| **k != key);
        if mode == AccessMode::WaitForExclusive && others.clone().next().is_some() {
            // Queued (once: a client re-sending its create waits in its first place).
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = waiters.iter().find(|w| w.key == key) {
                return Ok(Added::Waiting(w.fenced.clone()));
            }
            let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
            waiters.push_back(Waiter {
                key,
                name,
                out,
                request_id,
                fenced: fenced.clone(),
            });
            return Ok(Added::Waiting(fenced));
        }
        match mode {
            AccessMode::Shared => {
                if let Some((_, e)) = others.clone().find(|(_, e)| e.exclusive) {
                    return Err(BrokerError::ProducerBusy(format!(
                        "topic {} has an exclusive producer ({})",
                        self.name, e.name
                    )));
                }
                if others.clone().any(|(_, e)| e.name == name) {
                    return Err(BrokerError::ProducerBusy(format!(
                        "producer with name '{name}' is already connected to topic {}",
                        self.name
                    )));
                }
            }
            AccessMode::Exclusive | AccessMode::WaitForExclusive => {
                if let Some((_, e)) = others.clone().next() {
                    return Err(BrokerError::ProducerFenced(format!(
                        "topic {} has an existing producer ({})",
                        self.name, e.name
                    )));
                }
            }
            AccessMode::ExclusiveWithFencing => {
                let fenced: Vec<(u64, u64)> = others.map(|(k, _)| *k).collect();
                for k in fenced {
                    if let Some(e) = producers.remove(&k) {
                        e.fenced.store(true, std::sync::atomic::Ordering::SeqCst);
                        let mut buf = BytesMut::new();
                        crate::protocol::frame::encode(
                            &crate::protocol::cmd::close_producer(k.1),
                            &mut buf,
                        );
                        let _ = e.out.try_send(buf.freeze());
                        tracing::info!(topic = self.name, producer = e.name, "producer fenced");
                    }
                }
            }
        }
        let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        producers.insert(
            key,
            ProducerEntry {
                out,
                name,
                since: std::time::SystemTime::now(),
                exclusive: mode != AccessMode::Shared,
                fenced: fenced.clone(),
            },
        );
        Ok(Added::Ready(fenced))
    }

    /// A producer left: once none is attached, the first WaitForExclusive producer waiting
    /// gets the topic and its second PRODUCER_SUCCESS (ready).
    fn grant_waiter(&self, producers: &mut HashMap<(u64, u64), ProducerEntry>) {
        if !producers.is_empty() {
            return;
        }
        let Some(w) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
        else {
            return;
        };
        let ready = crate::protocol::pb::BaseCommand {
            r#type: crate::protocol::pb::base_command::Type::ProducerSuccess as i32,
            producer_success: Some(crate::protocol::pb::CommandProducerSuccess {
                request_id: w.request_id,
                producer_name: w.name.clone(),
                last_sequence_id: Some(self.last_sequence_id(&w.name)),
                producer_ready: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        crate::protocol::frame::encode(&ready, &mut buf);
        let _ = w.out.try_send(buf.freeze());
        tracing::info!(
            topic = self.name,
            producer = w.name,
            "waiting exclusive producer granted the topic"
        );
        producers.insert(
            w.key,
            ProducerEntry {
                out: w.out,
                name: w.name,
                since: std::time::SystemTime::now(),
                exclusive: true,
                fenced: w.fenced,
            },
        );
    }

    /// The producer's highest durable sequence id when the topic de-duplicates, else -1.
    pub fn last_sequence_id(&self, name: &str) -> i64 {
        self.dedup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(-1, |d| d.last_sequence_id(name))
    }

    /// Whether the producer `key` is attached (not removed, fenced or dropped).
    pub fn has_producer(&self, key: (u64, u64)) -> bool {
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
    }

    /// (producer id, name, connected since) of every producer.
    pub fn producers(&self) -> Vec<(u64, String, std::time::SystemTime)> {
        let mut v: Vec<_> = self
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((_, id), e)| (*id, e.name.clone(), e.since))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    /// Every subscription, by name.
    pub async fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        let mut v: Vec<_> = self.subscriptions.lock().await.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Forgets a producer.
    pub fn remove_producer(&self, key: (u64, u64)) {
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        producers.remove(&key);
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|w| w.key != key);
        self.grant_waiter(&mut producers);
    }

    /// The broker no longer owns the topic (its lease was lost): every producer and consumer
    /// is told to reconnect (CLOSE_PRODUCER / CLOSE_CONSUMER, after which clients look the
    /// topic up again), dispatch stops, and the open ledger is abandoned — not closed, and
    /// no cursor written: the new owner fences and recovers them.
    pub async fn drop_unowned(&self) {
        for s in self.stop_everyone().await {
            s.abandon();
        }
        self.ml.abandon();
    }

    /// Marks the topic closed, tells every producer to reconnect and takes every subscription
    /// out (the caller abandons, deletes or flushes them).
    async fn stop_everyone(&self) -> Vec<Arc<Subscription>> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.tell_producers_to_reconnect();
        self.subscriptions
            .lock()
            .await
            .drain()
            .map(|(_, s)| s)
            .collect()
    }

    /// The max unacknowledged entries per consumer in force: the topic's policy, else its
    /// namespace's (0: unlimited).
    pub fn max_unacked(&self) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        match self.max_unacked[0].load(Relaxed) {
            u32::MAX => self.max_unacked[1].load(Relaxed),
            own => own,
        }
    }

    /// The topic's own max-unacked policy (`None`: follow the namespace).
    pub fn topic_max_unacked(&self) -> Option<u32> {
        Some(self.max_unacked[0].load(std::sync::atomic::Ordering::Relaxed))
            .filter(|v| *v != u32::MAX)
    }

    /// Sets the topic's own (`topic`) or its namespace's max-unacked policy and applies the
    /// result to every subscription.
    pub async fn set_max_unacked(&self, topic: bool, limit: Option<u32>) {
        let (slot, unset) = if topic { (0, u32::MAX) } else { (1, 0) };
        self.max_unacked[slot].store(limit.unwrap_or(unset), std::sync::atomic::Ordering::Relaxed);
        let effective = self.max_unacked();
        for s in self.subscriptions().await {
            s.set_max_unacked(effective);
        }
    }

    /// Terminates the topic (`topics terminate`): no message is published again — producers
    /// are told to reconnect and refused with TopicTerminatedError — and each subscription's
    /// consumers get REACHED_END_OF_TOPIC once they have read to the end. Returns the last
    /// message's position (`None`: the topic is empty).
    pub async fn terminate(&self) -> Result<Option<Position>> {
        let last = self.ml.terminate().await?;
        self.tell_producers_to_reconnect();
        for s in self.subscriptions().await {
            s.wake();
        }
        Ok(last)
    }

    /// CLOSE_PRODUCER to every producer: its client looks the topic up again.
    pub fn tell_producers_to_reconnect(&self) {
        let mut producers: Vec<((u64, u64), ProducerEntry)> = self
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        // Waiting producers too: they wait again wherever the topic is served next.
        let waiting = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        producers.extend(waiting.into_iter().map(|w| {
            let entry = ProducerEntry {
                out: w.out,
                name: w.name,
                since: std::time::SystemTime::now(),
                exclusive: true,
                fenced: w.fenced,
            };
            (w.key, entry)
        }));
        for ((_, id), ProducerEntry { out, .. }) in producers {
            let mut buf = BytesMut::new();
            crate::protocol::frame::encode(&crate::protocol::cmd::close_producer(id), &mut buf);
            let _ = out.try_send(buf.freeze());
        }
    }

    /// Whether any producer or consumer is attached.
    pub async fn is_in_use(&self) -> bool {
        let producers = !self
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        producers
            || self
                .subscriptions
                .lock()
                .await
                .values()
                .any(|s| s.has_consumers())
    }

    /// Deletes the topic: clients told to reconnect, dispatch stopped, then every cursor and
    /// the managed ledger (its ledgers and list) removed.
    pub async fn delete(&self) -> Result<()> {
        for s in self.stop_everyone().await {
            s.abandon();
            s.delete().await?;
        }
        // Cursors stored but never loaded (none should remain, but the prefix is the truth).
        let prefix = self.keys.cursors_prefix(&self.name);
        let store = self.ml.store().clone();
        let (kvs, _) = meta::range_all(store.as_ref(), &prefix, 1000).await?;
        for kv in kvs {
            store.delete(&kv.key, None).await?;
        }
        match store.delete(&self.keys.dedup(&self.name), None).await {
            Ok(()) | Err(meta::MetaError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.ml.delete().await
    }

    /// Persists every cursor and closes the open ledger (graceful shutdown).
    pub async fn close(&self) -> Result<()> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        // Clients first: they look the topic up again (and, while this broker drains, are
        // told to retry) and reconnect to the next owner once this one lets the bundle go.
        self.tell_producers_to_reconnect();
        let subs: Vec<_> = self.subscriptions.lock().await.values().cloned().collect();
        for s in &subs {
            s.abandon();
        }
        for s in subs {
            s.flush().await?;
        }
        self.flush_dedup().await?;
        self.ml.close().await
    }
}
