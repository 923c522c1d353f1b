//! A subscription: its cursor, its consumers and the dispatcher that feeds them.
//!
//! One dispatcher task per subscription. It hands out entries in order — redeliveries first —
//! to a consumer with permits: the only consumer for Exclusive, round-robin over consumers with
//! permits for Shared. Permits count messages (a batch counts its `num_messages`); with no
//! permits nothing is sent, so no per-consumer queue grows without bound. Dispatched entries
//! stay "pending" until acknowledged; when their consumer leaves, or asks, they are
//! redelivered with an incremented redelivery count. On Shared and Key_Shared subscriptions an
//! entry whose `deliver_at_time` is still ahead waits in a delayed queue (dispatched first once
//! due; rebuilt from the ledger after a restart, since it is not acknowledged).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::Position;
use meta::MetadataStore;
use tokio::sync::Notify;

use crate::error::{BrokerError, Result};
use crate::managed_ledger::ManagedLedger;
use crate::managed_ledger::cursor::Cursor;
use crate::protocol::cmd;
use crate::protocol::frame::{self, encode_with_payload, inspect_entry};
use crate::protocol::pb::command_subscribe::SubType;
use crate::topic::key_shared::{ConsumerKey, Selector};

/// Chunked messages whose first chunk went out and whose last has not, routed per
/// subscription at most.
const MAX_CHUNKED_IN_FLIGHT: usize = 10_000;

/// Longest chunked-message uuid routed (Pulsar's are `producer-sequence`).
const MAX_CHUNK_UUID: usize = 1024;

/// How soon a dispatcher looks again at a consumer whose queue was full.
const CONGESTED_RETRY: Duration = Duration::from_millis(20);

/// How often a dirty cursor is persisted.
pub const CURSOR_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer attached to a subscription.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// Unique across the broker (connection id, consumer id).
    pub key: (u64, u64),
    /// The consumer id on its connection.
    pub consumer_id: u64,
    /// Name given by the client.
    pub name: String,
    /// Outbound frames of its connection.
    pub out: crate::outbound::Outbound,
    /// Messages it may still receive.
    pub permits: AtomicI64,
    /// Failover order: lower is preferred (then name).
    pub priority: i32,
    /// Protocol version of its connection (some commands need a minimum).
    pub protocol_version: i32,
    /// REACHED_END_OF_TOPIC was sent to it.
    pub reached_end: std::sync::atomic::AtomicBool,
    /// Its consumer epoch (Pulsar's: raised by a redeliver-all, carried by every MESSAGE so
    /// the client drops messages dispatched before it); -1: the client sends none.
    pub epoch: AtomicI64,
    /// Key_Shared: the mode, sticky ranges and ordering it asked for.
    pub key_shared: Option<crate::protocol::pb::KeySharedMeta>,
    /// Its client reads broker entry metadata (else it is cut off the messages it gets).
    pub broker_entry_metadata: bool,
}

impl ConsumerHandle {
    /// The consumer a SUBSCRIBE on connection `conn` creates.
    pub fn new(
        conn: &crate::connection::Connection,
        c: &crate::protocol::pb::CommandSubscribe,
    ) -> Arc<Self> {
        Arc::new(ConsumerHandle {
            key: (conn.id, c.consumer_id),
            consumer_id: c.consumer_id,
            name: c.consumer_name.clone().unwrap_or_default(),
            out: conn.out.clone(),
            permits: AtomicI64::new(0),
            priority: c.priority_level.unwrap_or(0),
            protocol_version: conn.protocol_version,
            reached_end: Default::default(),
            epoch: AtomicI64::new(c.consumer_epoch.map_or(-1, |e| e as i64)),
            key_shared: c.key_shared_meta.clone(),
            broker_entry_metadata: conn.broker_entry_metadata,
        })
    }
}

struct State {
    /// Exclusive, Shared, …: set by the first consumer, kept while any consumer is attached
    /// (an idle subscription takes the type of the next consumer, as in Pulsar).
    sub_type: SubType,
    cursor: Cursor,
    /// Last position handed out in order (`None`: nothing yet).
    read_position: Option<Position>,
    consumers: Vec<Arc<ConsumerHandle>>,
    next_consumer: usize,
    /// Dispatched, not yet acknowledged: position -> (consumer key, redelivery count).
    pending: BTreeMap<Position, ((u64, u64), u32)>,
    /// To send again: position -> redelivery count.
    redeliver: BTreeMap<Position, u32>,
    /// Key_Shared: which consumer owns which key hash (set up by the first consumer).
    key_shared: Option<Selector>,
    /// Key_Shared: (sticky-key hash, messages) of the entries read and not yet acknowledged.
    key_hashes: BTreeMap<Position, (u32, u32)>,
    /// Key_Shared: the last pass left entries waiting for an acknowledgement (a key held by
    /// another consumer, an unacked limit): an ack wakes the dispatcher.
    keyed_waiting: bool,
    /// Shared: chunked messages (by uuid) whose first chunk went to a consumer: their other
    /// chunks go to it too.
    chunk_owners: std::collections::HashMap<String, ConsumerKey>,
    /// Shared and Key_Shared: entries whose `deliver_at_time` has not come yet, by that time
    /// (ms) → redelivery count. Not persisted: after a restart the dispatcher reads them again
    /// from the mark-delete position and puts them back here.
    delayed: BTreeMap<(u64, Position), u32>,
    closed: bool,
    /// When the last consumer left (or the subscription was loaded without one): what
    /// subscription expiration measures.
    idle_since: Instant,
    /// Set for `read_compacted` consumers: up to its horizon the compacted ledger is read
    /// instead of the topic.
    compacted: Option<Arc<super::compaction::CompactedView>>,
}

/// One subscription of a topic.
pub struct Subscription {
    /// Its name.
    pub name: String,
    ml: Arc<ManagedLedger>,
    store: Arc<dyn MetadataStore>,
    state: Mutex<State>,
    wake: Notify,
    flush_lock: tokio::sync::Mutex<()>,
    /// Messages and bytes dispatched (for stats).
    pub msg_out: std::sync::atomic::AtomicU64,
    /// See `msg_out`.
    pub bytes_out: std::sync::atomic::AtomicU64,
    /// Entries expired (TTL or expire-messages), for stats.
    pub expired: std::sync::atomic::AtomicU64,
    /// A consumer with this many unacknowledged entries gets no more (0: unlimited).
    max_unacked: std::sync::atomic::AtomicU32,
}

/// What `topics stats` / `internalStats` show of a subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    /// Exclusive, Shared, …
    pub sub_type: SubType,
    /// Whether its cursor is persisted.
    pub durable: bool,
    /// Dispatched, not yet acknowledged.
    pub unacked: u64,
    /// (consumer key, name, permits, unacked messages).
    pub consumers: Vec<((u64, u64), String, i64, u64)>,
    /// The cursor's mark-delete position.
    pub mark_delete: Option<Position>,
    /// Last position handed out in order.
    pub read_position: Option<Position>,
    /// Acknowledged runs after the mark-delete: (ledger, first, last).
    pub acked_runs: Vec<(u64, u64, u64)>,
    /// Key_Shared: its mode and each consumer's hash ranges.
    pub key_shared: Option<KeySharedView>,
}

/// What stats show of a Key_Shared subscription.
#[derive(Debug, Clone)]
pub struct KeySharedView {
    /// "AUTO_SPLIT" or "STICKY".
    pub mode: &'static str,
    /// allowOutOfOrderDelivery.
    pub allow_out_of_order: bool,
    /// Each consumer's inclusive hash ranges.
    pub ranges: Vec<(ConsumerKey, Vec<(u32, u32)>)>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish()
    }
}

impl Subscription {
    /// Creates the subscription around a loaded cursor and starts its dispatcher.
    pub fn start(
        name: String,
        sub_type: SubType,
        ml: Arc<ManagedLedger>,
        cursor: Cursor,
    ) -> Arc<Self> {
        let read_position = cursor.mark_delete;
        let sub = Arc::new(Subscription {
            name,
            store: ml.store().clone(),
            ml,
            state: Mutex::new(State {
                sub_type,
                cursor,
                read_position,
                consumers: Vec::new(),
                next_consumer: 0,
                pending: BTreeMap::new(),
                redeliver: BTreeMap::new(),
                key_shared: None,
                key_hashes: BTreeMap::new(),
                keyed_waiting: false,
                chunk_owners: Default::default(),
                delayed: BTreeMap::new(),
                closed: false,
                idle_since: Instant::now(),
                compacted: None,
            }),
            wake: Notify::new(),
            flush_lock: tokio::sync::Mutex::new(()),
            msg_out: Default::default(),
            bytes_out: Default::default(),
            expired: Default::default(),
            max_unacked: Default::default(),
        });
        tokio::spawn(sub.clone().dispatch());
        sub
    }

    /// Resets the subscription to `mark` (the new mark-delete: delivery restarts right after
    /// it), as Pulsar's SEEK does: acknowledgements after it are forgotten, nothing is pending,
    /// every consumer is told to reconnect (CLOSE_CONSUMER; clients re-subscribe and receive
    /// from the new position), and the cursor is persisted.
    pub async fn reset(&self, mark: Option<Position>) -> Result<()> {
        let consumers = {
            let mut st = self.state();
            st.cursor.reset(mark);
            st.read_position = mark;
            st.pending.clear();
            st.redeliver.clear();
            st.key_hashes.clear();
            st.key_shared = None;
            st.chunk_owners.clear();
            st.delayed.clear();
            st.next_consumer = 0;
            std::mem::take(&mut st.consumers)
        };
        for c in consumers {
            let mut buf = BytesMut::new();
            frame::encode(&cmd::close_consumer(c.consumer_id), &mut buf);
            let _ = c.out.try_send(buf.freeze());
        }
        self.wake.notify_one();
        self.flush().await
    }

    /// How many consumers are attached.
    pub fn consumer_count(&self) -> usize {
        self.state().consumers.len()
    }

    /// Whether the consumer `key` is attached.
    pub fn has_consumer(&self, key: (u64, u64)) -> bool {
        self.state().consumers.iter().any(|c| c.key == key)
    }

    /// A snapshot for stats.
    pub fn view(&self) -> SubscriptionView {
        let st = self.state();
        // One pass over the pending entries for all consumers (a stats request per consumer
        // per pending entry would hold the lock for seconds with a large backlog).
        let mut held: std::collections::HashMap<ConsumerKey, u64> = Default::default();
        for (k, _) in st.pending.values() {
            *held.entry(*k).or_default() += 1;
        }
        let consumers = st
            .consumers
            .iter()
            .map(|c| {
                let unacked = held.get(&c.key).copied().unwrap_or(0);
                (
                    c.key,
                    c.name.clone(),
                    c.permits.load(Ordering::Relaxed),
                    unacked,
                )
            })
            .collect();
        let key_shared = st
            .key_shared
            .as_ref()
            .filter(|_| st.sub_type == SubType::KeyShared)
            .map(|sel| {
                let mode = match sel.mode() {
                    crate::protocol::pb::key_shared_meta::KeySharedMode::AutoSplit => "AUTO_SPLIT",
                    crate::protocol::pb::key_shared_meta::KeySharedMode::Sticky => "STICKY",
                };
                let ranges = st
                    .consumers
                    .iter()
                    .map(|c| (c.key, sel.ranges_of(c.key)))
                    .collect();
                KeySharedView {
                    mode,
                    allow_out_of_order: sel.allow_out_of_order(),
                    ranges,
                }
            });
        SubscriptionView {
            key_shared,
            sub_type: st.sub_type,
            durable: st.cursor.is_durable(),
            unacked: st.pending.len() as u64,
            consumers,
            mark_delete: st.cursor.mark_delete,
            read_position: st.read_position,
            acked_runs: st
                .cursor
                .acked
                .runs()
                .take(1000)
                .map(|(l, f, e)| (l.0, f.0, e.0))
                .collect(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscription's current type.
    pub fn sub_type(&self) -> SubType {
        self.state().sub_type
    }

    /// Adds a consumer; enforces the subscription type. Failover keeps the active consumer
    /// first ([`Subscription::order_failover`]).
    pub fn add_consumer(&self, c: Arc<ConsumerHandle>, sub_type: SubType) -> Result<()> {
        let mut st = self.state();
        if st.consumers.is_empty() {
            st.sub_type = sub_type;
        }
        if sub_type != st.sub_type {
            return Err(BrokerError::ConsumerBusy(format!(
                "subscription {} is {:?}, not {:?}",
                self.name, st.sub_type, sub_type
            )));
        }
        if st.sub_type == SubType::Exclusive && !st.consumers.is_empty() {
            return Err(BrokerError::ConsumerBusy(format!(
                "exclusive subscription {} already has a consumer",
                self.name
            )));
        }
        if st.sub_type == SubType::KeyShared {
            let first = st.consumers.is_empty();
            let meta = c.key_shared.as_ref();
            crate::topic::key_shared::join(
                &mut st.key_shared,
                first,
                &self.name,
                c.key,
                &c.name,
                meta,
            )?;
        }
        let before = st.consumers.first().map(|c| c.key);
        st.consumers.push(c);
        if st.sub_type == SubType::Failover {
            self.order_failover(&mut st);
            self.failover_changed(&mut st, before);
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Puts the active Failover consumer first, as Pulsar picks it: on a non-partitioned
    /// topic the first to subscribe at the best priority level (a newcomer never takes over);
    /// on partition `p`, consumer `p mod n` of the `n` at the best level sorted by name, so
    /// a partitioned topic's partitions spread over the consumers.
    fn order_failover(&self, st: &mut State) {
        let partition = cmd::partition_of(self.ml.name());
        if partition < 0 {
            st.consumers.sort_by_key(|c| c.priority); // stable: arrival order within a level
            return;
        }
        st.consumers
            .sort_by(|a, b| (a.priority, &a.name, a.key).cmp(&(b.priority, &b.name, b.key)));
        let best = st.consumers.first().map(|c| c.priority);
        let n = st
            .consumers
            .iter()
            .take_while(|c| Some(c.priority) == best)
            .count();
        if n > 0 {
            st.consumers[..n].rotate_left(partition as usize % n);
        }
    }

    /// After the consumer list changed: if the active failover consumer is another one, its
    /// predecessor's unacknowledged entries go to it, and every consumer is told whether it
    /// is active (ACTIVE_CONSUMER_CHANGE).
    fn failover_changed(&self, st: &mut State, before: Option<(u64, u64)>) {
        let active = st.consumers.first().map(|c| c.key);
        if st.sub_type != SubType::Failover || active == before {
            return;
        }
        let moved: Vec<(Position, u32)> = st
            .pending
            .iter()
            .filter(|(_, (k, _))| Some(*k) != active)
            .map(|(p, (_, n))| (*p, *n))
            .collect();
        for (p, n) in moved {
            st.pending.remove(&p);
            st.redeliver.insert(p, n);
        }
        // ACTIVE_CONSUMER_CHANGE exists from protocol v12 on.
        for c in st.consumers.iter().filter(|c| c.protocol_version >= 12) {
            let mut buf = BytesMut::new();
            frame::encode(
                &cmd::active_consumer_change(c.consumer_id, Some(c.key) == active),
                &mut buf,
            );
            // Advisory: a full queue only delays the client's listener callback.
            let _ = c.out.try_send(buf.freeze());
        }
    }

    /// Removes a consumer; its unacknowledged entries go to the others.
    pub fn remove_consumer(&self, key: (u64, u64)) -> bool {
        let mut st = self.state();
        let before = st.consumers.first().map(|c| c.key);
        st.consumers.retain(|c| c.key != key);
        if st.sub_type == SubType::Failover {
            self.order_failover(&mut st);
        }
        if let Some(selector) = st.key_shared.as_mut() {
            selector.remove(key);
        }
        // Its chunked messages start over: their first chunk goes out again first.
        st.chunk_owners.retain(|_, owner| *owner != key);
        let orphaned: Vec<(Position, u32)> = st
            .pending
            .iter()
            .filter(|(_, (k, _))| *k == key)
            .map(|(p, (_, n))| (*p, *n))
            .collect();
        for (p, n) in orphaned {
            st.pending.remove(&p);
            st.redeliver.insert(p, n + 1);
        }
        self.failover_changed(&mut st, before);
        let empty = st.consumers.is_empty();
        if empty {
            st.idle_since = Instant::now();
        }
        drop(st);
        self.wake.notify_one();
        empty
    }

    /// How long the subscription has had no consumer (`None`: it has one now).
    pub fn idle_for(&self) -> Option<Duration> {
        let st = self.state();
        st.consumers.is_empty().then(|| st.idle_since.elapsed())
    }

    /// Whether any consumer is attached.
    pub fn has_consumers(&self) -> bool {
        !self.state().consumers.is_empty()
    }

    /// For an active subscription (one with consumers), the last position it has read in
    /// order (`Some(None)`: nothing yet); `None` when no consumer is attached.
    pub fn active_read_position(&self) -> Option<Option<Position>> {
        let st = self.state();
        (!st.consumers.is_empty()).then_some(st.read_position)
    }

    /// Whether a consumer other than `key` is attached.
    pub fn has_consumers_other_than(&self, key: (u64, u64)) -> bool {
        self.state().consumers.iter().any(|c| c.key != key)
    }

    /// More permits for a consumer.
    pub fn flow(&self, key: (u64, u64), permits: u32) {
        if let Some(c) = self.state().consumers.iter().find(|c| c.key == key) {
            c.permits.fetch_add(i64::from(permits), Ordering::SeqCst);
        }
        self.wake.notify_one();
    }

    /// Acknowledges entries.
    pub fn ack(&self, positions: &[Position], cumulative: bool) {
        let mut st = self.state();
        if cumulative && matches!(st.sub_type, SubType::Shared | SubType::KeyShared) {
            // As Pulsar: a cumulative ack on a Shared or Key_Shared subscription is ignored
            // (it would acknowledge what other consumers hold).
            tracing::warn!(
                subscription = self.name,
                "cumulative ack on a shared subscription ignored"
            );
            return;
        }
        for &p in positions {
            if cumulative {
                st.cursor.ack_cumulative(p, &self.ml);
                let done: Vec<Position> = st.pending.range(..=p).map(|(p, _)| *p).collect();
                for d in done {
                    st.pending.remove(&d);
                }
                st.redeliver = st.redeliver.split_off(&next_after(p));
                if st
                    .key_hashes
                    .first_key_value()
                    .is_some_and(|(k, _)| *k <= p)
                {
                    st.key_hashes = st.key_hashes.split_off(&next_after(p));
                }
            } else {
                st.cursor.ack(p, &self.ml);
                st.pending.remove(&p);
                st.redeliver.remove(&p);
                st.key_hashes.remove(&p);
            }
        }
        self.wake_if_waiting(st);
    }

    /// Wakes the Key_Shared dispatcher when its last pass waited for an acknowledgement.
    fn wake_if_waiting(&self, mut st: MutexGuard<'_, State>) {
        if std::mem::take(&mut st.keyed_waiting) {
            drop(st);
            self.wake.notify_one();
        }
    }

    /// A batch-index ack of entry `p` (`unacked`: bits of its messages not acknowledged yet);
    /// `cumulative` also acknowledges everything before the entry. The entry stays pending
    /// (and is delivered again, with those bits, if its consumer leaves) until all of it is
    /// acknowledged.
    /// Only an entry dispatched and not yet acknowledged (pending) takes one: an ack set names
    /// messages of a batch the consumer received, and anything else would be stored as is.
    pub fn ack_partial(&self, p: Position, unacked: &[i64], cumulative: bool) {
        if cumulative && let Some(prev) = super::before(p) {
            self.ack(&[prev], true);
        }
        let mut st = self.state();
        if !st.pending.contains_key(&p) {
            return;
        }
        st.cursor.ack_partial(p, unacked, &self.ml);
        if st.cursor.is_acked(p) {
            st.pending.remove(&p);
            st.redeliver.remove(&p);
            st.key_hashes.remove(&p);
            self.wake_if_waiting(st);
        }
    }

    /// Raises consumer `key`'s epoch to `epoch` (a redeliver-all with a newer one): the
    /// messages dispatched from now on carry it.
    pub fn raise_epoch(&self, key: (u64, u64), epoch: u64) {
        if let Some(c) = self.state().consumers.iter().find(|c| c.key == key) {
            c.epoch.fetch_max(epoch as i64, Ordering::SeqCst);
        }
    }

    /// Redelivers a consumer's unacknowledged entries (all of them when `positions` is empty).
    pub fn redeliver(&self, key: (u64, u64), positions: &[Position]) {
        let mut st = self.state();
        // The named entries are looked up one by one (a client may name 300,000 ids in one
        // frame: a scan of every pending entry for each would hold the lock for minutes).
        let mine: Vec<(Position, u32)> = if positions.is_empty() {
            st.pending
                .iter()
                .filter(|(_, (k, _))| *k == key)
                .map(|(p, (_, n))| (*p, *n))
                .collect()
        } else {
            positions
                .iter()
                .filter_map(|p| match st.pending.get(p) {
                    Some((k, n)) if *k == key => Some((*p, *n)),
                    _ => None,
                })
                .collect()
        };
        for (p, n) in mine {
            st.pending.remove(&p);
            st.redeliver.insert(p, n + 1);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The `n`-th entry (1-based) after the mark-delete position that is not acknowledged
    /// yet: what peek and skip count (Pulsar's cursor, individually deleted entries excluded).
    pub fn nth_unacked(&self, n: u64) -> Option<Position> {
        let ledgers = self.ml.ledger_entries();
        let st = self.state();
        st.cursor
            .acked
            .nth_absent(&ledgers, st.cursor.mark_delete, n)
    }

    /// Acknowledges everything up to and including `p` (skip, clear-backlog, expiry — a
    /// mark-delete never moves back this way) and persists the cursor. Returns the entries
    /// that were still unacknowledged before and are not now.
    pub async fn mark_delete_through(&self, p: Position) -> Result<u64> {
        let before = self.backlog();
        self.ack(&[p], true);
        self.wake.notify_one();
        self.flush().await?;
        Ok(before.saturating_sub(self.backlog()))
    }

    /// Entries after the mark-delete position not acknowledged individually.
    pub fn backlog(&self) -> u64 {
        let st = self.state();
        let after = self.ml.entries_after(st.cursor.mark_delete);
        let acked: u64 = st.cursor.acked.runs().map(|(_, f, l)| l.0 - f.0 + 1).sum();
        after.saturating_sub(acked)
    }

    /// The mark-delete position.
    pub fn mark_delete(&self) -> Option<Position> {
        self.state().cursor.mark_delete
    }

    /// The mark-delete position as last persisted: only that may trim ledgers (an ack that
    /// was not yet flushed could still be redelivered after a crash).
    pub fn persisted_mark_delete(&self) -> Option<Position> {
        let st = self.state();
        if st.cursor.is_durable() {
            st.cursor.persisted_mark_delete
        } else {
            // A live reader holds back trimming at where it is.
            st.cursor.mark_delete
        }
    }

    /// Whether the subscription outlives its consumers.
    pub fn is_durable(&self) -> bool {
        self.state().cursor.is_durable()
    }

    /// Persists the cursor now (if it changed). Acks keep flowing while it is written.
    pub async fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let Some(snap) = self.state().cursor.snapshot() else {
            return Ok(());
        };
        let version = Cursor::write(&self.store, &snap).await?;
        self.state().cursor.flushed(version, &snap);
        Ok(())
    }

    /// Stops dispatching and tells every consumer to reconnect (CLOSE_CONSUMER: the client
    /// looks the topic up again). Persists nothing: after a lost lease the new owner's
    /// cursor must not be overwritten; a graceful close flushes separately.
    pub fn abandon(&self) {
        let consumers = {
            let mut st = self.state();
            st.closed = true;
            std::mem::take(&mut st.consumers)
        };
        self.wake.notify_one();
        for c in consumers {
            let mut buf = BytesMut::new();
            frame::encode(&cmd::close_consumer(c.consumer_id), &mut buf);
            let _ = c.out.try_send(buf.freeze());
        }
    }

    /// Stops dispatching and persists the cursor.
    pub async fn close(&self) -> Result<()> {
        self.state().closed = true;
        self.wake.notify_one();
        self.flush().await
    }

    /// Deletes the subscription's cursor.
    pub async fn delete(&self) -> Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let (key, durable) = {
            let mut st = self.state();
            st.closed = true;
            (st.cursor.key().to_owned(), st.cursor.is_durable())
        };
        self.wake.notify_one();
        if durable {
            Cursor::delete_key(&self.store, &key).await?;
        }
        Ok(())
    }

    /// Key_Shared: one dispatch pass. Entries are taken in order — entries to send again
    /// first, then new ones — and each goes to the consumer owning its key's hash
    /// ([`Selector`]) when that consumer has permits and room under the unacked limit and no
    /// other consumer still holds an unacknowledged message of the key (unless the
    /// subscription allows out-of-order delivery). Otherwise the key is blocked for the rest
    /// of the pass, so a key's messages never overtake each other, and a new entry is set
    /// aside (to the entries to send again) so that the entries behind it still reach their
    /// consumers: one consumer without permits does not stall the others. At most
    /// [`LOOKAHEAD_PER_CONSUMER`] entries per consumer are set aside; past that, new entries
    /// wait. A consumer that joins therefore gets a key's messages only once the consumer
    /// that had them acknowledged them (or left, and they were redelivered to it, first).
    fn next_keyed_jobs(&self) -> KeyedJob {
        let mut st = self.state();
        if st.closed || st.consumers.is_empty() {
            return KeyedJob::Idle;
        }
        release_due(&mut st);
        if let Some(md) = st.cursor.mark_delete
            && st
                .key_hashes
                .first_key_value()
                .is_some_and(|(k, _)| *k <= md)
        {
            st.key_hashes = st.key_hashes.split_off(&next_after(md));
        }
        let limit = self.max_unacked.load(Ordering::Relaxed);
        let st = &mut *st;
        let Some(selector) = st.key_shared.as_ref() else {
            return KeyedJob::Idle;
        };
        let mut pass = KeyedPass::new(selector, &st.consumers, &st.pending, &st.key_hashes, limit);
        let mut jobs: Vec<(Position, ConsumerKey, u32)> = Vec::new();
        let mut need: Vec<Position> = Vec::new();
        for (&pos, &count) in &st.redeliver {
            if jobs.len() >= KEYED_BATCH {
                break;
            }
            let Some(&(hash, messages)) = st.key_hashes.get(&pos) else {
                // Its key is unknown: nothing after it may go before it is known.
                need.push(pos);
                break;
            };
            if let Some(owner) = pass.assign(hash, messages) {
                jobs.push((pos, owner, count));
            }
        }
        for (pos, _, _) in &jobs {
            st.redeliver.remove(pos);
        }
        let lookahead = (LOOKAHEAD_PER_CONSUMER * st.consumers.len()).min(LOOKAHEAD_MAX);
        let mut full = false;
        'read: while need.is_empty() && jobs.len() < KEYED_BATCH {
            let Some(mut next) = self.ml.next_position(st.read_position) else {
                break;
            };
            while st.cursor.is_acked(next)
                || st.pending.contains_key(&next)
                || st.redeliver.contains_key(&next)
            {
                st.read_position = Some(next);
                match self.ml.next_position(Some(next)) {
                    Some(n) => next = n,
                    None => break 'read,
                }
            }
            let Some(&(hash, messages)) = st.key_hashes.get(&next) else {
                // Learn the keys of the next few entries (one read each, from the cache).
                let mut p = Some(next);
                while let Some(q) = p.filter(|_| need.len() < KEY_READ_BATCH) {
                    need.push(q);
                    p = self.ml.next_position(Some(q));
                }
                break;
            };
            match pass.assign(hash, messages) {
                Some(owner) => jobs.push((next, owner, 0)),
                None if st.redeliver.len() >= lookahead => {
                    full = true;
                    break;
                }
                // Set aside: the entries behind it may still go to their consumers.
                None => {
                    st.redeliver.insert(next, 0);
                }
            }
            st.read_position = Some(next);
        }
        if jobs.is_empty() {
            if !need.is_empty() {
                return KeyedJob::NeedKeys(need);
            }
            st.keyed_waiting = pass.waits_for_ack || full;
            return KeyedJob::Idle;
        }
        let mut sends = Vec::with_capacity(jobs.len());
        for (pos, owner, count) in jobs {
            let Some(c) = st.consumers.iter().find(|c| c.key == owner) else {
                continue;
            };
            st.pending.insert(pos, (owner, count));
            sends.push((pos, c.clone(), count));
        }
        KeyedJob::Send(sends)
    }

    /// Picks the next entry and consumer, recording the dispatch before any I/O.
    fn next_job(&self) -> Option<(Position, Arc<ConsumerHandle>, u32)> {
        let mut st = self.state();
        if st.closed {
            return None;
        }
        release_due(&mut st);
        // Exclusive and Failover: only the first (active) consumer receives.
        let n = match st.sub_type {
            SubType::Shared | SubType::KeyShared => st.consumers.len(),
            _ => st.consumers.len().min(1),
        };
        let ready = |c: &ConsumerHandle| {
            c.permits.load(Ordering::SeqCst) > 0
                && !c.out.is_congested()
                && !self.at_unacked_limit(&st, c.key)
        };
        // Shared: the best priority level (lowest number) with a consumer ready gets the
        // entry, round-robin within it, as Pulsar's priorityLevel works.
        let level = st.consumers[..n]
            .iter()
            .filter(|c| ready(c))
            .map(|c| c.priority)
            .min()?;
        let consumer = (0..n).map(|i| (st.next_consumer + i) % n).find(|i| {
            let c = &st.consumers[*i];
            c.priority == level && ready(c)
        })?;
        let c = st.consumers[consumer].clone();
        if st.sub_type == SubType::Shared {
            st.next_consumer = (consumer + 1) % n;
        }
        let (pos, count) = if let Some((p, n)) = st.redeliver.pop_first() {
            (p, n)
        } else if let Some(p) = next_compacted(&mut st) {
            st.read_position = Some(p);
            (p, 0)
        } else {
            let mut next = self.ml.next_position(st.read_position)?;
            while st.cursor.is_acked(next) || st.pending.contains_key(&next) {
                st.read_position = Some(next);
                next = self.ml.next_position(Some(next))?;
            }
            st.read_position = Some(next);
            (next, 0)
        };
        st.pending.insert(pos, (c.key, count));
        Some((pos, c, count))
    }

    async fn dispatch(self: Arc<Self>) {
        let mut last = self.ml.subscribe_last();
        let mut flushed = Instant::now();
        loop {
            if self.state().closed {
                return;
            }
            if flushed.elapsed() >= CURSOR_FLUSH_INTERVAL {
                if let Err(e) = self.flush().await {
                    tracing::warn!(subscription = self.name, error = %e, "cursor flush failed");
                }
                flushed = Instant::now();
            }
            let job = if self.sub_type() == SubType::KeyShared {
                match self.next_keyed_jobs() {
                    KeyedJob::Send(jobs) => {
                        for (pos, consumer, count) in jobs {
                            self.send_or_requeue(pos, &consumer, count).await;
                        }
                        continue;
                    }
                    KeyedJob::NeedKeys(positions) => {
                        let mut learned = Vec::with_capacity(positions.len());
                        for p in positions {
                            match self.ml.read(p).await {
                                Ok(payload) => {
                                    let (hash, messages) = match inspect_entry(&payload) {
                                        Ok(i) => (
                                            crate::sticky_key::key_hash(&i.metadata),
                                            i.messages(payload.len()),
                                        ),
                                        Err(_) => (0, 1),
                                    };
                                    learned.push((p, (hash, messages)));
                                }
                                Err(e) => {
                                    tracing::warn!(subscription = self.name, %p, error = %e, "read failed; will retry");
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    break;
                                }
                            }
                        }
                        self.state().key_hashes.extend(learned);
                        continue;
                    }
                    KeyedJob::Idle => None,
                }
            } else {
                self.next_job()
            };
            match job {
                Some((pos, consumer, count)) => self.send_or_requeue(pos, &consumer, count).await,
                None => {
                    self.notify_end_of_topic();
                    // Sleep until something changes, the next delayed entry is due, or the
                    // cursor is due for a flush.
                    let next_due = self
                        .state()
                        .delayed
                        .first_key_value()
                        .map(|((at, _), _)| Duration::from_millis(at.saturating_sub(now_ms())));
                    let mut nap =
                        next_due.map_or(CURSOR_FLUSH_INTERVAL, |d| d.min(CURSOR_FLUSH_INTERVAL));
                    // Nothing wakes the dispatcher when a congested consumer's queue drains:
                    // look again soon.
                    if self.state().consumers.iter().any(|c| c.out.is_congested()) {
                        nap = nap.min(CONGESTED_RETRY);
                    }
                    tokio::select! {
                        () = self.wake.notified() => {}
                        r = last.changed() => if r.is_err() { return },
                        () = tokio::time::sleep(nap) => {}
                    }
                }
            }
        }
    }

    /// Sends an entry; one that cannot be sent goes back to the entries to send again.
    async fn send_or_requeue(&self, pos: Position, consumer: &ConsumerHandle, count: u32) {
        if let Err(e) = self.send(pos, consumer, count).await {
            {
                let mut st = self.state();
                st.pending.remove(&pos);
                st.redeliver.insert(pos, count);
            }
            if matches!(e, BrokerError::TooManyRequests(_)) {
                // A congested consumer: it is passed by until its queue drains.
                metrics::counter!("pulsar_dispatch_consumer_congested_total").increment(1);
                return;
            }
            tracing::warn!(subscription = self.name, %pos, error = %e, "dispatch failed; will retry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// On a terminated topic read to its end (nothing left to redeliver or waiting for its
    /// delivery time), REACHED_END_OF_TOPIC to each consumer not told yet, as Pulsar does.
    fn notify_end_of_topic(&self) {
        let Some(end) = self.ml.terminated_at() else {
            return;
        };
        let st = self.state();
        let read_all = match end {
            None => true,
            Some(e) => st.read_position.is_some_and(|r| r >= e) || st.cursor.is_acked(e),
        };
        if !read_all || !st.redeliver.is_empty() || !st.delayed.is_empty() {
            return;
        }
        for c in &st.consumers {
            if !c.reached_end.swap(true, Ordering::SeqCst) {
                let mut buf = BytesMut::new();
                frame::encode(&cmd::reached_end_of_topic(c.consumer_id), &mut buf);
                let _ = c.out.try_send(buf.freeze());
                tracing::debug!(
                    subscription = self.name,
                    consumer = c.name,
                    "reached end of topic"
                );
            }
        }
    }

    /// Whether consumer `key` holds as many unacknowledged entries as the limit allows
    /// (with a limit, pending entries number at most limit × consumers: counting is cheap).
    fn at_unacked_limit(&self, st: &State, key: (u64, u64)) -> bool {
        let limit = self.max_unacked.load(Ordering::Relaxed);
        limit > 0 && st.pending.values().filter(|(k, _)| *k == key).count() >= limit as usize
    }

    /// Sets the max unacknowledged entries per consumer (0: unlimited).
    pub fn set_max_unacked(&self, limit: u32) {
        if self.max_unacked.swap(limit, Ordering::Relaxed) != limit {
            self.wake.notify_one();
        }
    }

    /// Reads the topic compacted from now on (a `read_compacted` consumer): up to the
    /// view's horizon only what compaction kept, with the original message ids.
    pub fn read_compacted(&self, view: Arc<super::compaction::CompactedView>) {
        self.state().compacted = Some(view);
        self.wake.notify_one();
    }

    /// Wakes the dispatcher (the topic changed: terminated, …).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Shared: every chunk of a chunked message goes to the consumer that got its first
    /// chunk, which reassembles them (Pulsar's SharedConsumerAssignor), even past its permits.
    /// Returns that consumer when it is not `chosen` (the entry is recorded as its). A chunk
    /// whose first chunk was acknowledged before (so no consumer is known) goes to `chosen`,
    /// whose client drops the incomplete message, rather than stalling the subscription.
    fn route_chunk(
        &self,
        pos: Position,
        chosen: &ConsumerHandle,
        meta: &crate::protocol::pb::MessageMetadata,
    ) -> Option<Arc<ConsumerHandle>> {
        let chunks = meta.num_chunks_from_msg.unwrap_or(0);
        let uuid = meta.uuid.as_ref().filter(|_| chunks > 1)?;
        let mut st = self.state();
        if st.sub_type != SubType::Shared {
            return None;
        }
        let chunk = meta.chunk_id.unwrap_or(0);
        let last = chunk.saturating_add(1) >= chunks;
        if chunk == 0 {
            if !last {
                // Bounded: a producer that starts chunked messages and never ends them
                // must not grow this without limit (the oldest route is forgotten; its
                // remaining chunks go to any consumer, which drops the incomplete message).
                if st.chunk_owners.len() >= MAX_CHUNKED_IN_FLIGHT
                    && let Some(k) = st.chunk_owners.keys().next().cloned()
                {
                    st.chunk_owners.remove(&k);
                }
                if uuid.len() <= MAX_CHUNK_UUID {
                    st.chunk_owners.insert(uuid.clone(), chosen.key);
                }
            }
            return None;
        }
        let owner = if last {
            st.chunk_owners.remove(uuid)
        } else {
            st.chunk_owners.get(uuid).copied()
        }?;
        if owner == chosen.key {
            return None;
        }
        let handle = st.consumers.iter().find(|c| c.key == owner)?.clone();
        if let Some(p) = st.pending.get_mut(&pos) {
            p.0 = owner;
        }
        Some(handle)
    }

    async fn send(
        &self,
        pos: Position,
        chosen: &ConsumerHandle,
        redelivery_count: u32,
    ) -> Result<()> {
        let view = self.state().compacted.clone();
        let compacted = match view.filter(|v| pos <= v.horizon) {
            Some(v) => v.read(pos).await?,
            None => None,
        };
        let payload = match compacted {
            Some(p) => p,
            None => self.ml.read(pos).await?,
        };
        let info = inspect_entry(&payload).ok();
        // Delayed delivery (Shared and Key_Shared, as in Pulsar): not before its time.
        if let Some(info) = &info
            && let Some(at) = info.metadata.deliver_at_time
            && at > 0
            && (at as u64) > now_ms()
        {
            let mut st = self.state();
            if matches!(st.sub_type, SubType::Shared | SubType::KeyShared) {
                if st.pending.remove(&pos).is_some() {
                    st.delayed.insert((at as u64, pos), redelivery_count);
                }
                return Ok(());
            }
        }
        let messages = info
            .as_ref()
            .map(|i| i.messages(payload.len()) as i32)
            .unwrap_or(1);
        let routed = info
            .as_ref()
            .and_then(|i| self.route_chunk(pos, chosen, &i.metadata));
        let c: &ConsumerHandle = routed.as_deref().unwrap_or(chosen);
        let partition = cmd::partition_of(self.ml.name());
        let unacked = self.state().cursor.unacked_of(pos).cloned();
        let mut command = cmd::message(c.consumer_id, pos, partition, redelivery_count);
        if let Some(m) = command.message.as_mut() {
            if let Some(bits) = unacked {
                // The client skips the batch's messages already acknowledged.
                m.ack_set = bits;
            }
            let epoch = c.epoch.load(Ordering::SeqCst);
            m.consumer_epoch = u64::try_from(epoch).ok();
        }
        let mut buf = BytesMut::new();
        // The broker entry metadata only for clients that asked for it (Pulsar's rule).
        let sent = match &info {
            Some(i) if !c.broker_entry_metadata => &payload[i.client_offset..],
            _ => &payload[..],
        };
        encode_with_payload(&command, sent, &mut buf);
        // Never wait on a consumer's queue: one that stopped reading would stall every other
        // consumer of the subscription. A full queue sends the entry back to be redelivered.
        match c.out.try_send(buf.freeze()) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                return Err(BrokerError::TooManyRequests(format!(
                    "consumer {} is not reading",
                    c.name
                )));
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(BrokerError::NotFound("consumer connection closed".into()));
            }
        }
        c.permits.fetch_sub(i64::from(messages), Ordering::SeqCst);
        crate::stats::OUT_MESSAGES.fetch_add(messages as u64, Ordering::Relaxed);
        crate::stats::OUT_BYTES.fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.msg_out.fetch_add(messages as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Most entries one Key_Shared pass hands out.
const KEYED_BATCH: usize = 256;

/// Entries whose keys one read learns ahead.
const KEY_READ_BATCH: usize = 128;

/// Entries a Key_Shared subscription sets aside per consumer while their consumers cannot
/// take them (Pulsar: keySharedLookAheadMsgInReplayThresholdPerConsumer).
pub const LOOKAHEAD_PER_CONSUMER: usize = 2000;

/// The most a Key_Shared subscription sets aside (Pulsar:
/// keySharedLookAheadMsgInReplayThresholdPerSubscription).
pub const LOOKAHEAD_MAX: usize = 20_000;

/// What the Key_Shared dispatcher does next.
enum KeyedJob {
    /// Send these entries to these consumers (recorded as pending already).
    Send(Vec<(Position, Arc<ConsumerHandle>, u32)>),
    /// Read these entries first to learn their keys.
    NeedKeys(Vec<Position>),
    /// Nothing to do until something changes.
    Idle,
}

/// The decisions of one Key_Shared pass: which consumer may take an entry of a key now.
/// Pure bookkeeping over the subscription's state, so that it can be tested alone.
struct KeyedPass<'a> {
    selector: &'a Selector,
    /// Key hash → the consumer holding unacknowledged messages of it.
    held: std::collections::HashMap<u32, ConsumerKey>,
    /// Consumer → (permits left, entries it may still hold under the unacked limit).
    room: std::collections::HashMap<ConsumerKey, (i64, i64)>,
    /// Keys an earlier entry of this pass could not go out for: later ones wait too.
    blocked: std::collections::HashSet<u32>,
    /// Some entry waits for an acknowledgement (not for permits or a consumer).
    waits_for_ack: bool,
}

impl<'a> KeyedPass<'a> {
    fn new(
        selector: &'a Selector,
        consumers: &[Arc<ConsumerHandle>],
        pending: &BTreeMap<Position, (ConsumerKey, u32)>,
        key_hashes: &BTreeMap<Position, (u32, u32)>,
        max_unacked: u32,
    ) -> Self {
        let mut held = std::collections::HashMap::new();
        let mut holding: std::collections::HashMap<ConsumerKey, i64> = Default::default();
        for (p, (k, _)) in pending {
            if !selector.allow_out_of_order()
                && let Some((h, _)) = key_hashes.get(p)
            {
                held.insert(*h, *k);
            }
            *holding.entry(*k).or_default() += 1;
        }
        let room = consumers
            .iter()
            .map(|c| {
                let unacked_room = if max_unacked == 0 {
                    i64::MAX
                } else {
                    i64::from(max_unacked) - holding.get(&c.key).copied().unwrap_or(0)
                };
                // A congested consumer takes nothing this pass (as if it had no permits).
                let permits = if c.out.is_congested() {
                    0
                } else {
                    c.permits.load(Ordering::SeqCst)
                };
                (c.key, (permits, unacked_room))
            })
            .collect();
        KeyedPass {
            selector,
            held,
            room,
            blocked: Default::default(),
            waits_for_ack: false,
        }
    }

    /// The consumer an entry of key `hash` with `messages` messages goes to now, if any.
    fn assign(&mut self, hash: u32, messages: u32) -> Option<ConsumerKey> {
        if self.blocked.contains(&hash) {
            return None;
        }
        let owner = self.selector.select(hash);
        let taken = owner.filter(|o| {
            if self.held.get(&hash).is_some_and(|h| h != o) {
                self.waits_for_ack = true;
                return false;
            }
            match self.room.get(o) {
                Some((permits, _)) if *permits <= 0 => false,
                Some((_, unacked)) if *unacked <= 0 => {
                    self.waits_for_ack = true;
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
        match taken {
            Some(o) => {
                if let Some((permits, unacked)) = self.room.get_mut(&o) {
                    *permits -= i64::from(messages);
                    *unacked -= 1;
                }
                if !self.selector.allow_out_of_order() {
                    self.held.insert(hash, o);
                }
                Some(o)
            }
            None => {
                self.blocked.insert(hash);
                None
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Moves delayed entries whose time has come to the redelivery queue (dispatched first).
fn release_due(st: &mut State) {
    let now = now_ms();
    while let Some((&(at, pos), &count)) = st.delayed.first_key_value() {
        if at > now {
            break;
        }
        st.delayed.remove(&(at, pos));
        st.redeliver.insert(pos, count);
    }
}

/// For a compacted reader still before the horizon: the next compacted entry it has not
/// acknowledged nor been handed, skipping what compaction dropped; once past the last one,
/// the read position jumps to the horizon and the topic is read from there.
fn next_compacted(st: &mut State) -> Option<Position> {
    let view = st.compacted.clone()?;
    if st.read_position.is_some_and(|r| r >= view.horizon) {
        return None;
    }
    let mut at = st.read_position;
    while let Some(p) = view.next_after(at) {
        if !st.cursor.is_acked(p) && !st.pending.contains_key(&p) {
            return Some(p);
        }
        at = Some(p);
    }
    st.read_position = Some(view.horizon);
    None
}

/// The smallest position after `p` (a mark "before" a ledger's first entry is that ledger's
/// predecessor at entry `u64::MAX`).
fn next_after(p: Position) -> Position {
    match p.entry.0.checked_add(1) {
        Some(e) => Position::new(p.ledger, common::EntryId(e)),
        None => Position::new(
            common::LedgerId(p.ledger.0.saturating_add(1)),
            common::EntryId(0),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::pb::KeySharedMeta;

    fn consumer(id: u64, permits: i64) -> Arc<ConsumerHandle> {
        let (out, _rx) = crate::outbound::channel(1);
        Arc::new(ConsumerHandle {
            key: (1, id),
            consumer_id: id,
            name: format!("c{id}"),
            out,
            permits: AtomicI64::new(permits),
            priority: 0,
            protocol_version: 19,
            reached_end: Default::default(),
            epoch: AtomicI64::new(-1),
            key_shared: None,
            broker_entry_metadata: false,
        })
    }

    fn sticky(ranges: &[(i32, i32)], out_of_order: bool) -> KeySharedMeta {
        crate::topic::key_shared::sticky_meta(ranges, Some(out_of_order))
    }

    /// What a pass reads: the selector, the consumers, the pending entries, their keys.
    struct Setup {
        selector: Selector,
        consumers: Vec<Arc<ConsumerHandle>>,
        pending: BTreeMap<Position, (ConsumerKey, u32)>,
        hashes: BTreeMap<Position, (u32, u32)>,
    }

    impl Setup {
        /// c1 owns hashes 0-99, c2 100-199; c2 still holds an entry of hash 50 (it owned it
        /// before), and one of hash 150.
        fn new(out_of_order: bool, c1_permits: i64) -> Self {
            let mut selector = Selector::new(Some(&sticky(&[(0, 99)], out_of_order)));
            selector
                .add((1, 1), "c1", Some(&sticky(&[(0, 99)], out_of_order)))
                .unwrap();
            selector
                .add((1, 2), "c2", Some(&sticky(&[(100, 199)], out_of_order)))
                .unwrap();
            let p = |e| Position::new(common::LedgerId(1), common::EntryId(e));
            Setup {
                selector,
                consumers: vec![consumer(1, c1_permits), consumer(2, 10)],
                pending: BTreeMap::from([(p(0), ((1, 2), 0)), (p(1), ((1, 2), 0))]),
                hashes: BTreeMap::from([(p(0), (50, 1)), (p(1), (150, 1))]),
            }
        }

        fn pass(&self, max_unacked: u32) -> KeyedPass<'_> {
            KeyedPass::new(
                &self.selector,
                &self.consumers,
                &self.pending,
                &self.hashes,
                max_unacked,
            )
        }
    }

    #[test]
    fn a_key_held_by_another_consumer_waits_for_its_ack() {
        let setup = Setup::new(false, 10);
        let mut pass = setup.pass(0);
        assert_eq!(pass.assign(50, 1), None, "c2 still holds hash 50");
        assert!(pass.waits_for_ack);
        assert_eq!(
            pass.assign(50, 1),
            None,
            "the key stays blocked in this pass"
        );
        assert_eq!(pass.assign(51, 1), Some((1, 1)), "other keys of c1 go");
        assert_eq!(pass.assign(150, 1), Some((1, 2)), "c2's own key goes to it");
        assert_eq!(pass.assign(300, 1), None, "no range covers 300");
    }

    #[test]
    fn out_of_order_delivery_does_not_wait() {
        let setup = Setup::new(true, 10);
        let mut pass = setup.pass(0);
        assert_eq!(pass.assign(50, 1), Some((1, 1)));
    }

    #[test]
    fn a_consumer_without_permits_blocks_only_its_keys() {
        let setup = Setup::new(false, 0);
        let mut pass = setup.pass(0);
        assert_eq!(pass.assign(10, 1), None);
        assert!(!pass.waits_for_ack, "waiting for permits, not for an ack");
        assert_eq!(pass.assign(150, 1), Some((1, 2)));
        // permits count messages: a batch of 10 uses up c2's 10
        assert_eq!(pass.assign(160, 10), Some((1, 2)));
        assert_eq!(pass.assign(170, 1), None);
    }

    #[test]
    fn the_unacked_limit_counts_held_entries() {
        let setup = Setup::new(false, 10);
        let mut pass = setup.pass(2);
        assert_eq!(pass.assign(150, 1), None, "c2 holds 2 of its 2");
        assert!(pass.waits_for_ack);
        assert_eq!(pass.assign(10, 1), Some((1, 1)));
        assert_eq!(pass.assign(11, 1), Some((1, 1)));
        assert_eq!(pass.assign(12, 1), None, "c1 reached 2 in this pass");
    }
}
