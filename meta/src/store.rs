//! The [`MetadataStore`] trait: the one seam between Magnetar and its metadata backend.
//!
//! Semantics follow etcd's, so both backends behave alike: a store-wide revision that every
//! mutation advances by one; every key carries the revision of its last change (its
//! [`Version`]); compare-and-set is on that version; watches deliver every change in revision
//! order; leases expire unless kept alive and take their keys with them.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::Result;

/// A store-wide revision: every committed mutation gets the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

/// A key's version: the revision of its last modification. Monotone across deletes and
/// re-creates, so a compare-and-set on it cannot suffer ABA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// A lease: keys bound to it are deleted when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(Revision, Version, LeaseId);

/// A key with its value and versioning, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The value; empty in a delete event.
    pub value: Bytes,
    /// Revision of the last modification (the CAS token).
    pub version: Version,
    /// Revision at which the key was created.
    pub create_revision: Revision,
    /// The lease the key is bound to, if any.
    pub lease: Option<LeaseId>,
}

/// When a put may take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Unconditionally.
    Always,
    /// Only if the key does not exist; otherwise `AlreadyExists`.
    Absent,
    /// Only if the key exists at exactly this version; otherwise `BadVersion`.
    Version(Version),
}

/// One page of a prefix listing.
#[derive(Debug, Clone)]
pub struct RangePage {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// True if more keys follow; ask again with `start_after` = the last key.
    pub more: bool,
    /// The store revision the page was read at: watch from `revision + 1` to follow changes.
    pub revision: Revision,
}

/// What a transaction compares before it applies its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key to check.
    pub key: String,
    /// What it must be.
    pub expect: Expect,
}

/// Expected state of a compared key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist at this version.
    Version(Version),
}

/// An operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a key (optionally bound to a lease).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Bind the key to this lease.
        lease: Option<LeaseId>,
    },
    /// Delete a key if present.
    Delete {
        /// The key.
        key: String,
    },
}

/// An all-or-nothing multi-key update: if every compare holds, every op applies at one
/// revision; otherwise nothing changes and the first failing compare is reported.
/// A key may appear in at most one op (etcd refuses duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Operations applied when they do.
    pub ops: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to be at `version`.
    pub fn if_version(mut self, key: impl Into<String>, version: Version) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expect: Expect::Version(version),
        });
        self
    }

    /// Requires `key` to be absent.
    pub fn if_absent(mut self, key: impl Into<String>) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expect: Expect::Absent,
        });
        self
    }

    /// Writes `key`.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.ops.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }

    /// Writes `key` bound to `lease`.
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }

    /// Deletes `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(TxnOp::Delete { key: key.into() });
        self
    }

    /// The transaction a conditional put is: the condition as a compare, then the put.
    /// Both backends implement `put` through it, so a put and a one-op txn cannot diverge.
    pub fn conditional_put(
        key: &str,
        value: Bytes,
        condition: PutCondition,
        lease: Option<LeaseId>,
    ) -> Self {
        let txn = match condition {
            PutCondition::Always => Txn::new(),
            PutCondition::Absent => Txn::new().if_absent(key),
            PutCondition::Version(v) => Txn::new().if_version(key, v),
        };
        let mut txn = txn;
        txn.ops.push(TxnOp::Put {
            key: key.to_owned(),
            value,
            lease,
        });
        txn
    }
}

/// Kind of change a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (explicitly, or by lease expiry).
    Delete,
}

/// One change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after a put; for a delete, the key with an empty value and
    /// `version` = the deleting revision.
    pub kv: KeyValue,
}

impl WatchEvent {
    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        Revision(self.kv.version.0)
    }
}

/// A stream of changes, in revision order, with no gaps. Ends (`None`) when the store shuts
/// down; yields one error (`Compacted`, `Unavailable`) and then ends when it cannot go on —
/// the caller re-lists and watches again from the listing's revision.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<Result<WatchEvent>>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl Watcher {
    /// Wraps the receiving end fed by a backend task; dropping the watcher stops the task.
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<WatchEvent>>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Watcher {
            rx,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }

    /// The next change; `None` when the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }
}

/// Capacity of the channel between a backend's watch task and the [`Watcher`]: a slow
/// consumer pauses its own watch, never the store.
pub(crate) const WATCH_BUFFER: usize = 1024;

/// A metadata backend. Implemented by [`EtcdStore`](crate::EtcdStore) and
/// [`EmbeddedStore`](crate::EmbeddedStore); the conformance suite in `testing` holds both to
/// the same contract.
///
/// Contract:
/// - every mutation is durable when its future resolves `Ok` and is seen by every later read;
/// - a conditional operation that fails changes nothing;
/// - errors are typed ([`MetaError`](crate::MetaError)); an unreachable store gives
///   `Unavailable` within the configured request timeout, never a hang;
/// - cancel safety: dropping a mutation's future may or may not apply it (as with any
///   remote call); re-read before retrying a CAS.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Reads a key; `None` if absent.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Writes a key under `condition`, optionally bound to a lease; returns its new version.
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        condition: PutCondition,
        lease: Option<LeaseId>,
    ) -> Result<Version>;

    /// Deletes a key, only at `expected` version if given. `NotFound` if it is absent.
    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<()>;

    /// Lists keys starting with `prefix`, after `start_after` (exclusive), at most `limit`
    /// (> 0) of them, in key order.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage>;

    /// Applies a multi-key transaction; returns the revision it committed at.
    /// If a compare fails: `BadVersion` (or `AlreadyExists` for an `Absent` compare) naming
    /// the first failing key, and nothing changes.
    async fn txn(&self, txn: Txn) -> Result<Revision>;

    /// Follows every change under `prefix` from revision `from` (inclusive), or from now.
    async fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watcher>;

    /// Drops history up to `revision`: watches from older revisions get `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews a lease once; returns its TTL. `LeaseExpired` if it is gone.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration>;

    /// Revokes a lease, deleting its keys. `LeaseExpired` if it was already gone.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
}

impl std::fmt::Debug for dyn MetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn MetadataStore")
    }
}

/// Reads every key under `prefix`, page by page. Returns the keys and the revision of the
/// first page: watching from `revision + 1` then misses nothing (changes between pages may be
/// seen twice; compare versions to ignore the older copy).
pub async fn range_all(
    store: &dyn MetadataStore,
    prefix: &str,
    page_size: usize,
) -> Result<(Vec<KeyValue>, Revision)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    let mut first_revision = None;
    loop {
        let page = store.range(prefix, after.as_deref(), page_size).await?;
        first_revision.get_or_insert(page.revision);
        after = page.kvs.last().map(|kv| kv.key.clone());
        out.extend(page.kvs);
        if !page.more || after.is_none() {
            break;
        }
    }
    Ok((out, first_revision.unwrap_or_default()))
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end).
/// An empty result means "to the end of the key space".
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("a/b"), b"a/c".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
