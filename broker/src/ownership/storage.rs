//! The storage watch: a broker that cannot reach enough bookies to write gives its bundles up.
//!
//! Cut off from the bookies but not from etcd, a broker would keep its lease, and with it
//! every bundle it owns, while no write of its can complete: its topics would stall until the
//! network heals. Every few seconds the broker asks the registered bookies whether they
//! answer (read-only ones count: a full disk is not a cut, and they still serve reads); when
//! fewer than a new ledger's ensemble have answered for `storage_timeout`,
//! it steps down — drops its topics and revokes its lease, so other brokers take the bundles
//! (fencing the ledgers it was writing, so nothing it acknowledged is lost and nothing more
//! is acknowledged by it) — and stays unregistered until enough bookies answer again.
//! Probes that cannot be made (etcd unreachable) decide nothing: the lease covers that case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bookie::client::LedgerClient;
use tokio_util::sync::CancellationToken;

use super::owner::Ownership;

/// Time between probes.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Bound on each bookie's answer to a probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the watch decides after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changes.
    Stay,
    /// Too few bookies for too long: give the bundles up.
    StepDown,
    /// Enough bookies again: register and serve again.
    Resume,
}

/// The watch's state, without I/O: fed probe outcomes and the time.
#[derive(Debug)]
pub struct Watch {
    needed: usize,
    timeout: Duration,
    short_since: Option<Instant>,
    stepped_down: bool,
}

impl Watch {
    /// A watch that needs `needed` bookies and steps down after `timeout` without them.
    pub fn new(needed: usize, timeout: Duration) -> Self {
        Watch {
            needed,
            timeout,
            short_since: None,
            stepped_down: false,
        }
    }

    /// Whether the broker has stepped down.
    pub fn stepped_down(&self) -> bool {
        self.stepped_down
    }

    /// A probe at `now` found `reachable` bookies answering (`None`: no probe could be made).
    pub fn observe(&mut self, now: Instant, reachable: Option<usize>) -> Decision {
        let Some(reachable) = reachable else {
            return Decision::Stay;
        };
        if reachable >= self.needed {
            self.short_since = None;
            if self.stepped_down {
                self.stepped_down = false;
                return Decision::Resume;
            }
            return Decision::Stay;
        }
        let since = *self.short_since.get_or_insert(now);
        if !self.stepped_down && now.duration_since(since) >= self.timeout {
            self.stepped_down = true;
            return Decision::StepDown;
        }
        Decision::Stay
    }
}

/// Probes until `stop`, telling `ownership` whether the broker may serve.
pub async fn run(
    ownership: Arc<Ownership>,
    client: LedgerClient,
    needed: usize,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut watch = Watch::new(needed, timeout);
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let probe = client.reachable_bookies(PROBE_TIMEOUT).await;
        let reachable = match &probe {
            Ok((n, _)) => Some(*n),
            Err(e) => {
                tracing::debug!(error = %e, "storage probe not made");
                None
            }
        };
        match watch.observe(Instant::now(), reachable) {
            Decision::Stay => {}
            Decision::StepDown => {
                let (n, registered) = probe.unwrap_or_default();
                tracing::error!(
                    reachable = n,
                    registered,
                    needed,
                    "cannot reach enough bookies to write: giving every bundle up until they answer again"
                );
                ownership.set_storage_reachable(false);
            }
            Decision::Resume => {
                tracing::info!("bookies answer again: registering to serve bundles");
                ownership.set_storage_reachable(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn steps_down_only_after_the_timeout_without_enough_bookies() {
        let t0 = Instant::now();
        let mut w = Watch::new(2, Duration::from_secs(10));
        assert_eq!(w.observe(at(t0, 0), Some(3)), Decision::Stay);
        assert_eq!(w.observe(at(t0, 1), Some(1)), Decision::Stay);
        assert_eq!(w.observe(at(t0, 9), Some(0)), Decision::Stay);
        assert_eq!(w.observe(at(t0, 11), Some(1)), Decision::StepDown);
        assert!(w.stepped_down());
        // stays down, and says so once
        assert_eq!(w.observe(at(t0, 20), Some(0)), Decision::Stay);
        assert_eq!(w.observe(at(t0, 21), Some(2)), Decision::Resume);
        assert!(!w.stepped_down());
        assert_eq!(w.observe(at(t0, 22), Some(2)), Decision::Stay);
    }

    #[test]
    fn a_short_dip_resets_and_failed_probes_decide_nothing() {
        let t0 = Instant::now();
        let mut w = Watch::new(2, Duration::from_secs(10));
        assert_eq!(w.observe(at(t0, 0), Some(1)), Decision::Stay);
        assert_eq!(w.observe(at(t0, 5), Some(2)), Decision::Stay);
        assert_eq!(
            w.observe(at(t0, 12), Some(1)),
            Decision::Stay,
            "the clock restarted at 12"
        );
        assert_eq!(w.observe(at(t0, 30), None), Decision::Stay);
        assert_eq!(w.observe(at(t0, 31), None), Decision::Stay);
        assert!(!w.stepped_down());
        assert_eq!(w.observe(at(t0, 32), Some(0)), Decision::StepDown);
    }
}
