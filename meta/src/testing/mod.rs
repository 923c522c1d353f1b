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
