//! The embedded metadata store: etcd's semantics in-process, persisted to one local log file.
//! `magnetar standalone` runs on it, so a single process needs nothing else installed.
//!
//! - [`state`]: the key space, leases and watch history, with pure transition rules;
//! - [`log`]: the `meta.log` file — append + fdatasync per mutation, snapshot rewrite.
//!
//! Write path: take the log lock (serialises writers), validate against the state, append and
//! fdatasync the mutation, then apply it to the state and wake watchers. Readers take only the
//! state lock, never wait for I/O, and never see a change before it is durable.
//! Leases live in memory: keys bound to them vanish when the process does.

mod log;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use self::log::{LogFile, Replayed};
use self::state::{LeaseState, State};
use crate::error::{MetaError, Result};
use crate::store::{
    KeyValue, LeaseId, MetadataStore, PutCondition, RangePage, Revision, Txn, TxnOp, Version,
    WATCH_BUFFER, Watcher,
};

/// Tuning for [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Rewrite the log as a snapshot once it exceeds this size (and 4× its last snapshot).
    pub compact_threshold_bytes: u64,
    /// Watch events kept in memory for watches that start in the past.
    pub history_limit: usize,
    /// How often expired leases are collected.
    pub lease_check_interval: Duration,
    /// Where `meta.log` is written: the real file system, or a simulated one in power-loss
    /// tests.
    pub fs: Arc<dyn common::fs::Fs>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            compact_threshold_bytes: 64 << 20,
            history_limit: 100_000,
            lease_check_interval: Duration::from_millis(100),
            fs: common::fs::real(),
        }
    }
}

/// In-process [`MetadataStore`] persisted under a directory. Cheap to clone; all clones
/// share one store. Only one process may open a directory at a time (file lock).
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    log: Mutex<LogFile>,
    revision: watch::Sender<u64>,
    options: EmbeddedOptions,
}

/// Locks a mutex, ignoring poisoning: state is only mutated after validation succeeded and
/// nothing inside the critical sections panics on bad input, so a poisoned lock still
/// guards consistent data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if missing), replaying its log. Must be called
    /// inside a tokio runtime: it starts the lease-expiry task.
    pub async fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let log_dir = dir.clone();
        let history_limit = options.history_limit;
        let fs = options.fs.clone();
        let (log, state) = blocking(move || {
            let dir = log_dir;
            let (mut log, records) = LogFile::open(fs, &dir)?;
            let mut state = State::new(history_limit);
            for record in records {
                match record {
                    Replayed::Mutation(rev, ops) => state.replay(rev, &ops)?,
                    Replayed::Snapshot(rev, kvs) => state.restore(rev, kvs),
                }
            }
            if log.needs_upgrade() {
                // One file never mixes record formats: an older log becomes a snapshot in
                // the current format before anything is appended.
                log.rewrite(state.revision, &state.kvs)?;
                tracing::info!("metadata log rewritten in the current format");
            }
            Ok((log, state))
        })
        .await?;
        let (revision, _) = watch::channel(state.revision);
        tracing::info!(
            revision = state.revision,
            keys = state.kvs.len(),
            "embedded metadata store opened"
        );
        let inner = Arc::new(Inner {
            dir,
            state: Mutex::new(state),
            log: Mutex::new(log),
            revision,
            options,
        });
        tokio::spawn(expire_leases(Arc::downgrade(&inner)));
        Ok(EmbeddedStore { inner })
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    async fn commit(
        &self,
        plan: impl FnOnce(&mut State) -> Result<Vec<TxnOp>> + Send + 'static,
    ) -> Result<Revision> {
        let inner = self.inner.clone();
        blocking(move || inner.commit(plan)).await
    }
}

impl Inner {
    /// The write path. `plan` runs under the state lock with the log lock held: it validates
    /// and returns the ops to commit (none: nothing to write).
    fn commit(&self, plan: impl FnOnce(&mut State) -> Result<Vec<TxnOp>>) -> Result<Revision> {
        let mut log = lock(&self.log);
        let (revision, ops) = {
            let mut st = lock(&self.state);
            let ops = plan(&mut st)?;
            (st.revision + 1, ops)
        };
        if ops.is_empty() {
            return Ok(Revision(revision - 1));
        }
        log.append(revision, &ops)?;
        lock(&self.state).apply(revision, &ops);
        self.revision.send_replace(revision);
        if log.wants_rewrite(self.options.compact_threshold_bytes) {
            let st = lock(&self.state);
            let (rev, kvs) = (st.revision, st.kvs.clone());
            drop(st);
            // The mutation is durable already; a failed rewrite only leaves a longer log.
            if let Err(e) = log.rewrite(rev, &kvs) {
                tracing::warn!(error = %e, "metadata log compaction failed");
            }
        }
        Ok(Revision(revision))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MetaError::Backend(format!("metadata I/O task failed: {e}")))?
}

/// Deletes the keys of leases whose deadline passed. Ends when the store is dropped.
async fn expire_leases(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.options.lease_check_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let expired = lock(&inner.state).expired_leases(Instant::now());
        for id in expired {
            tracing::debug!(lease = id, "lease expired");
            let inner = inner.clone();
            let res = blocking(move || inner.commit(move |st| Ok(remove_lease(st, id)))).await;
            if let Err(e) = res {
                tracing::warn!(lease = id, error = %e, "could not delete the keys of an expired lease");
            }
        }
    }
}

fn remove_lease(st: &mut State, id: i64) -> Vec<TxnOp> {
    st.leases
        .remove(&id)
        .map(|l| {
            l.keys
                .into_iter()
                .map(|key| TxnOp::Delete { key })
                .collect()
        })
        .unwrap_or_default()
}

/// Most bytes of keys and values one request writes: etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(MetaError::Invalid("empty key".into()));
    }
    Ok(())
}

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(lock(&self.inner.state).kv(key))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        condition: PutCondition,
        lease: Option<LeaseId>,
    ) -> Result<Version> {
        check_key(key)?;
        let txn = Txn::conditional_put(key, value, condition, lease);
        self.txn(txn).await.map(|r| Version(r.0))
    }

    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<()> {
        let key = key.to_owned();
        self.commit(move |st| {
            match (st.kvs.get(&key), expected) {
                (None, _) => return Err(MetaError::NotFound { key }),
                (Some(e), Some(v)) if e.mod_revision != v.0 => {
                    return Err(MetaError::BadVersion {
                        key,
                        expected: v.to_string(),
                    });
                }
                _ => {}
            }
            Ok(vec![TxnOp::Delete { key }])
        })
        .await
        .map(drop)
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage> {
        if limit == 0 {
            return Err(MetaError::Invalid("range limit must be > 0".into()));
        }
        Ok(lock(&self.inner.state).range(prefix, start_after, limit))
    }

    async fn txn(&self, txn: Txn) -> Result<Revision> {
        let mut bytes = 0usize;
        for op in &txn.ops {
            let (TxnOp::Put { key, .. } | TxnOp::Delete { key }) = op;
            check_key(key)?;
            bytes += key.len();
            if let TxnOp::Put { value, .. } = op {
                bytes += value.len();
            }
        }
        // etcd's limit, so that what standalone accepts a cluster accepts too, and no record
        // grows the log (and its snapshot) past what replay reads back.
        if bytes > MAX_REQUEST_BYTES {
            return Err(MetaError::Invalid(format!(
                "request is too large: {bytes} bytes, the limit is {MAX_REQUEST_BYTES}"
            )));
        }
        self.commit(move |st| {
            st.check(&txn.compares)?;
            st.check_leases(&txn.ops, Instant::now())?;
            Ok(txn.ops)
        })
        .await
    }

    async fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watcher> {
        let mut rev_rx = self.inner.revision.subscribe();
        let next = match from {
            Some(Revision(r)) if r > 0 => r,
            _ => *rev_rx.borrow_and_update() + 1,
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let inner = Arc::downgrade(&self.inner);
        let prefix = prefix.to_owned();
        let task = tokio::spawn(async move {
            let mut next = next;
            loop {
                let batch = match inner.upgrade() {
                    Some(inner) => lock(&inner.state).events_since(next, &prefix),
                    None => return,
                };
                match batch {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Ok((events, n)) => {
                        for ev in events {
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                        next = n;
                    }
                }
                if rev_rx.wait_for(|r| *r >= next).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watcher::new(rx, task))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        lock(&self.inner.state).compact(revision.0)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        if ttl.is_zero() {
            return Err(MetaError::Invalid("lease TTL must be > 0".into()));
        }
        let mut st = lock(&self.inner.state);
        let id = loop {
            let id = rand::random::<i64>() & i64::MAX;
            if id != 0 && !st.leases.contains_key(&id) {
                break id;
            }
        };
        st.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline: Instant::now() + ttl,
                keys: Default::default(),
            },
        );
        Ok(LeaseId(id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let now = Instant::now();
        let mut st = lock(&self.inner.state);
        match st.leases.get_mut(&lease.0) {
            Some(l) if l.deadline > now => {
                l.deadline = now + l.ttl;
                Ok(l.ttl)
            }
            _ => Err(MetaError::LeaseExpired { lease }),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let now = Instant::now();
        self.commit(move |st| match st.leases.get(&lease.0) {
            Some(l) if l.deadline > now => Ok(remove_lease(st, lease.0)),
            _ => Err(MetaError::LeaseExpired { lease }),
        })
        .await
        .map(drop)
    }
}
