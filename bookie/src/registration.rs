//! Keeps the bookie listed in the metadata store: under `bookies/available/<id>` while it
//! accepts writes, `bookies/readonly/<id>` while its ledger or journal disk is too full or its
//! journal has failed (at once, not at the next disk check), always bound to a lease
//! so a dead bookie drops out of placement. A lost lease is re-granted and the bookie
//! re-registered — it does not crash the bookie. The disk check runs here too, because it
//! decides which of the two keys the bookie is under.

use std::sync::Arc;
use std::time::Duration;

use meta::{BookieRegistry, BookieState, Lease, MetadataStore};
use proto::meta::BookieServiceInfo;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::DiskSection;
use crate::disk;
use crate::engine::Engine;
use crate::error::Result;

/// Inputs of the registration task.
pub struct Registration {
    /// The store.
    pub store: Arc<dyn MetadataStore>,
    /// Typed access to registrations.
    pub registry: BookieRegistry,
    /// What to publish.
    pub info: BookieServiceInfo,
    /// Lease TTL.
    pub ttl: Duration,
    /// Read-only thresholds.
    pub disk: DiskSection,
    /// Whose read-only flag to set.
    pub engine: Arc<Engine>,
}

impl Registration {
    /// Runs until `stop` fires, then deregisters (revokes the lease). `registered` fires after
    /// the first successful registration.
    pub async fn run(self, stop: CancellationToken, registered: oneshot::Sender<Result<()>>) {
        let mut registered = Some(registered);
        let mut backoff = Duration::from_millis(100);
        loop {
            let lease = tokio::select! {
                () = stop.cancelled() => return,
                l = Lease::grant(self.store.clone(), self.ttl) => l,
            };
            let lease = match lease {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot grant a registration lease; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut state = self.desired_state(None);
            if let Err(e) = self.registry.register(&self.info, state, lease.id()).await {
                tracing::warn!(error = %e, "bookie registration failed; retrying");
                continue;
            }
            backoff = Duration::from_millis(100);
            tracing::info!(bookie = %self.info.bookie_id, ?state, "bookie registered");
            if let Some(tx) = registered.take() {
                let _ = tx.send(Ok(()));
            }
            let lost = lease.lost();
            let mut tick = tokio::time::interval(self.disk.check_interval);
            let journal_failed = self.engine.journal_failed().clone();
            loop {
                tokio::select! {
                    // At once, not at the next disk check: every add would fail from now on.
                    () = journal_failed.cancelled(), if state != BookieState::ReadOnly => {
                        match self.registry.register(&self.info, BookieState::ReadOnly, lease.id()).await {
                            Ok(()) => {
                                tracing::error!("journal failed: bookie is now read-only until restarted");
                                state = BookieState::ReadOnly;
                            }
                            Err(e) => tracing::warn!(error = %e, "could not publish the bookie state"),
                        }
                    }
                    () = stop.cancelled() => {
                        if let Err(e) = lease.revoke().await {
                            tracing::warn!(error = %e, "could not deregister the bookie; its lease will expire");
                        }
                        return;
                    }
                    () = lost.cancelled() => {
                        tracing::warn!(bookie = %self.info.bookie_id, "registration lease lost; re-registering");
                        break;
                    }
                    _ = tick.tick() => {
                        let next = self.desired_state(Some(state));
                        if next != state {
                            match self.registry.register(&self.info, next, lease.id()).await {
                                Ok(()) => {
                                    tracing::info!(?next, "bookie state changed");
                                    state = next;
                                }
                                Err(e) => tracing::warn!(error = %e, "could not publish the bookie state"),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Read-only above the high-water mark, writable again below the low-water mark; in
    /// between, stay as we are.
    /// The journal directory counts as the ledger directory does: a full journal disk fails
    /// every add just as surely. A failed journal keeps the bookie read-only.
    fn desired_state(&self, current: Option<BookieState>) -> BookieState {
        let ledger_usage = disk::usage(self.engine.storage().dir());
        let journal_usage = disk::usage(self.engine.journal_dir());
        let (ledger_usage, journal_usage) = match (ledger_usage, journal_usage) {
            (Ok(l), Ok(j)) => (l, j),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read disk usage");
                return current.unwrap_or(BookieState::Available);
            }
        };
        metrics::gauge!("bookie_ledger_dir_usage_ratio").set(ledger_usage);
        metrics::gauge!("bookie_journal_dir_usage_ratio").set(journal_usage);
        let usage = ledger_usage.max(journal_usage);
        let next =
            if self.engine.journal_failed().is_cancelled() || usage >= self.disk.usage_threshold {
                BookieState::ReadOnly
            } else if usage < self.disk.usage_lwm_threshold {
                BookieState::Available
            } else {
                current.unwrap_or(BookieState::Available)
            };
        if next == BookieState::ReadOnly && !self.engine.is_read_only() {
            tracing::warn!(
                usage,
                threshold = self.disk.usage_threshold,
                "disk nearly full: bookie is now read-only"
            );
        }
        self.engine.set_read_only(next == BookieState::ReadOnly);
        metrics::gauge!("bookie_SERVER_STATUS").set(if next == BookieState::ReadOnly {
            0.0
        } else {
            1.0
        });
        next
    }
}
