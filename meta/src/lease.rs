//! [`Lease`]: a lease kept alive in the background, with a notification when it is lost.
//!
//! Brokers hold topic ownership and bookies their registration under a lease. When the lease
//! is lost — it expired because keep-alives did not get through, or someone revoked it — the
//! keys bound to it are gone and the holder must stop acting on them at once. [`Lease::lost`]
//! is that signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{MetaError, Result};
use crate::store::{LeaseId, MetadataStore};

/// A granted lease with a keep-alive task. Dropping it stops the keep-alive (the lease then
/// expires after its TTL); [`Lease::revoke`] ends it at once.
#[derive(Debug)]
pub struct Lease {
    id: LeaseId,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
    store: Arc<dyn MetadataStore>,
}

impl Lease {
    /// Grants a lease of `ttl` and keeps it alive every `ttl / 3`.
    ///
    /// The lease is declared lost when the store says it is gone, or when no keep-alive has
    /// succeeded for a whole `ttl` measured from when the last successful one was sent: past
    /// that point the store may have expired it, and acting as its holder is no longer safe.
    pub async fn grant(store: Arc<dyn MetadataStore>, ttl: Duration) -> Result<Lease> {
        let id = store.grant_lease(ttl).await?;
        let lease = Lease {
            id,
            ttl,
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            store: store.clone(),
        };
        tokio::spawn(keep_alive(
            store,
            id,
            ttl,
            lease.lost.clone(),
            lease.stop.clone(),
        ));
        Ok(lease)
    }

    /// The lease id, to bind keys to it.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The TTL it was granted with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// True once the lease is lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// A token cancelled when the lease is lost; wait on it with `cancelled().await`.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Revokes the lease, deleting its keys now.
    pub async fn revoke(self) -> Result<()> {
        self.stop.cancel();
        match self.store.revoke_lease(self.id).await {
            Ok(()) | Err(MetaError::LeaseExpired { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn keep_alive(
    store: Arc<dyn MetadataStore>,
    id: LeaseId,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    let mut last_ok = Instant::now();
    loop {
        let sent = Instant::now();
        let wait = match tokio::time::timeout(period, store.keep_alive(id)).await {
            Ok(Ok(_)) => {
                last_ok = sent;
                period
            }
            Ok(Err(MetaError::LeaseExpired { .. })) => {
                tracing::warn!(lease = %id, "lease expired");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(lease = %id, error = %e, "lease keep-alive failed");
                period / 4
            }
            Err(_) => {
                tracing::debug!(lease = %id, "lease keep-alive timed out");
                Duration::ZERO
            }
        };
        if last_ok.elapsed() >= ttl {
            tracing::warn!(lease = %id, ttl = ?ttl, "lease lost: no keep-alive succeeded within its ttl");
            lost.cancel();
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
