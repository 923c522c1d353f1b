//! Test support shared with other crates' tests (feature `testing`):
//!
//! - [`etcd_server`]: starts a real `etcd` (from PATH) on ephemeral loopback ports with a
//!   temporary data dir; kill -9 and restart it;
//! - [`conformance`]: the suite every [`MetadataStore`](crate::MetadataStore) backend must
//!   pass, instantiated per backend with [`conformance_tests!`](crate::conformance_tests);
//! - [`wait_for`]: poll a condition until a deadline (tests never sleep a fixed time).

pub mod conformance;
pub mod etcd_server;

use std::future::Future;
use std::time::Duration;

pub use etcd_server::EtcdServer;

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store with faults in its writes to keys containing `infix`, for tests of ambiguous
/// outcomes and slow metadata:
/// - every `every`-th such put is applied and then reported as `Unavailable`, as when a
///   connection drops after the store committed (`every == 0`: never);
/// - while [`LosingAnswers::hold`] is in force, such puts wait (a stalled etcd).
#[derive(Debug)]
pub struct LosingAnswers {
    inner: std::sync::Arc<dyn crate::MetadataStore>,
    infix: String,
    every: u64,
    puts: std::sync::atomic::AtomicU64,
    held: tokio::sync::watch::Sender<bool>,
    /// Answers lost so far.
    pub lost: std::sync::atomic::AtomicU64,
    /// Puts that waited on a hold so far.
    pub waited: std::sync::atomic::AtomicU64,
}

impl LosingAnswers {
    /// Wraps `inner`.
    pub fn new(inner: std::sync::Arc<dyn crate::MetadataStore>, infix: &str, every: u64) -> Self {
        LosingAnswers {
            inner,
            infix: infix.to_owned(),
            every,
            puts: Default::default(),
            held: tokio::sync::watch::channel(false).0,
            lost: Default::default(),
            waited: Default::default(),
        }
    }

    /// Makes matching puts wait until [`LosingAnswers::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets held puts go on.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

#[async_trait::async_trait]
impl crate::MetadataStore for LosingAnswers {
    async fn get(&self, key: &str) -> crate::Result<Option<crate::KeyValue>> {
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        condition: crate::PutCondition,
        lease: Option<crate::LeaseId>,
    ) -> crate::Result<crate::Version> {
        use std::sync::atomic::Ordering;
        let matching = key.contains(&self.infix);
        if matching && *self.held.borrow() {
            self.waited.fetch_add(1, Ordering::SeqCst);
            let mut rx = self.held.subscribe();
            let _ = rx.wait_for(|held| !held).await;
        }
        let res = self.inner.put(key, value, condition, lease).await;
        if matching
            && res.is_ok()
            && self.every > 0
            && (self.puts.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every)
        {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(crate::MetaError::Unavailable {
                endpoints: "test".into(),
                timeout: Duration::from_millis(1),
                reason: "answer lost after the write applied".into(),
            });
        }
        res
    }

    async fn delete(&self, key: &str, expected: Option<crate::Version>) -> crate::Result<()> {
        self.inner.delete(key, expected).await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> crate::Result<crate::RangePage> {
        self.inner.range(prefix, start_after, limit).await
    }

    async fn txn(&self, txn: crate::Txn) -> crate::Result<crate::Revision> {
        self.inner.txn(txn).await
    }

    async fn watch(
        &self,
        prefix: &str,
        from: Option<crate::Revision>,
    ) -> crate::Result<crate::Watcher> {
        self.inner.watch(prefix, from).await
    }

    async fn compact(&self, revision: crate::Revision) -> crate::Result<()> {
        self.inner.compact(revision).await
    }

    async fn grant_lease(&self, ttl: Duration) -> crate::Result<crate::LeaseId> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: crate::LeaseId) -> crate::Result<Duration> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: crate::LeaseId) -> crate::Result<()> {
        self.inner.revoke_lease(lease).await
    }
}
