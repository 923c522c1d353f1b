//! Broker-wide rates under Pulsar's names — `pulsar_broker_rate_in` / `pulsar_broker_rate_out`
//! (msg/s), `pulsar_broker_throughput_in` / `pulsar_broker_throughput_out` (bytes/s) — and each
//! topic's rates over the last period, which [`crate::topic_metrics`] and `topics stats` show.
//! Also where consumed ledgers get trimmed, on the same period, as each namespace's retention
//! policy allows (`magnetar_trim_passes_total` counts the passes), and where subscriptions
//! are checked against the namespace's message TTL every `message_expiry_check_interval`,
//! idle subscriptions expire and backlog quotas are enforced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::service::BrokerService;

/// Messages published (receipted).
pub static IN_MESSAGES: AtomicU64 = AtomicU64::new(0);
/// Bytes published.
pub static IN_BYTES: AtomicU64 = AtomicU64::new(0);
/// Messages dispatched.
pub static OUT_MESSAGES: AtomicU64 = AtomicU64::new(0);
/// Bytes dispatched.
pub static OUT_BYTES: AtomicU64 = AtomicU64::new(0);

/// How often rates, backlogs and trimming are updated.
pub const PERIOD: Duration = Duration::from_secs(5);

/// Updates the gauges and trims consumed ledgers every [`PERIOD`] until `stop`.
///
/// A change to any namespace's policies (an etcd watch on the namespace records) starts a
/// pass at once, so a policy set by `magnetar admin` applies to loaded topics within moments
/// rather than at the next period.
pub async fn run(service: Arc<BrokerService>, stop: CancellationToken) {
    let mut last = (Instant::now(), [0u64; 4]);
    let mut last_expiry = Instant::now();
    let changed = Arc::new(tokio::sync::Notify::new());
    let _watch = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(watch_policies(
        service.clone(),
        changed.clone(),
    )));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
            () = changed.notified() => {}
        }
        let now =
            [&IN_MESSAGES, &IN_BYTES, &OUT_MESSAGES, &OUT_BYTES].map(|c| c.load(Ordering::Relaxed));
        let secs = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = |i: usize| (now[i] - last.1[i]) as f64 / secs;
        metrics::gauge!("pulsar_broker_rate_in").set(rate(0));
        metrics::gauge!("pulsar_broker_throughput_in").set(rate(1));
        metrics::gauge!("pulsar_broker_rate_out").set(rate(2));
        metrics::gauge!("pulsar_broker_throughput_out").set(rate(3));
        last = (Instant::now(), now);
        // Each namespace's policies, read once per pass.
        let mut policies: std::collections::HashMap<String, NsPolicy> =
            std::collections::HashMap::new();
        let expiry_due = last_expiry.elapsed() >= service.message_expiry_check_interval;
        if expiry_due {
            last_expiry = Instant::now();
        }
        for topic in service.loaded_topics() {
            let subs = topic.subscriptions().await;
            let out: [u64; 2] = subs.iter().fold([0, 0], |acc, s| {
                [
                    acc[0] + s.msg_out.load(Ordering::Relaxed),
                    acc[1] + s.bytes_out.load(Ordering::Relaxed),
                ]
            });
            topic
                .rates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update([
                    topic.msg_in.load(Ordering::Relaxed),
                    topic.bytes_in.load(Ordering::Relaxed),
                    out[0],
                    out[1],
                ]);
            let ns = crate::ownership::bundles::namespace_of(&topic.name).to_owned();
            let policy = match policies.get(&ns) {
                Some(p) => *p,
                None => {
                    let p = NsPolicy::read(&service, &ns).await;
                    policies.insert(ns, p);
                    p
                }
            };
            // A namespace's de-duplication policy changed: applied to its loaded topics.
            match policy.dedup {
                Some(true) => {
                    if let Err(e) = topic.enable_dedup().await {
                        tracing::warn!(topic = topic.name, error = %e, "cannot turn de-duplication on");
                    }
                }
                Some(false) => topic.disable_dedup(),
                None => {}
            }
            if expiry_due && !policy.ttl.is_zero() {
                let cutoff = crate::topic::expiry::cutoff(policy.ttl.as_secs());
                for sub in &subs {
                    if let Err(e) =
                        crate::topic::expiry::expire_before(&topic.ml, sub, cutoff).await
                    {
                        tracing::warn!(topic = topic.name, subscription = sub.name, error = %e, "message expiry failed");
                    }
                }
            }
            if let Some(limit) = policy.subscription_expiration {
                for sub in &subs {
                    if sub.is_durable() && sub.idle_for().is_some_and(|idle| idle > limit) {
                        tracing::info!(
                            topic = topic.name,
                            subscription = sub.name,
                            ?limit,
                            "subscription expired: no consumer for longer than the namespace allows"
                        );
                        metrics::counter!("magnetar_subscriptions_expired_total").increment(1);
                        if let Err(e) = topic.unsubscribe(&sub.name).await {
                            tracing::warn!(topic = topic.name, subscription = sub.name, error = %e, "cannot delete an expired subscription");
                        }
                    }
                }
            }
            if let Some(limit) = policy.max_unacked {
                topic.set_max_unacked(false, Some(limit)).await;
            }
            if let Err(e) = crate::topic::backlog_quota::enforce(&topic, &policy.quotas).await {
                tracing::warn!(topic = topic.name, error = %e, "backlog quota check failed");
            }
            if let Err(e) = topic.trim(policy.retention).await {
                tracing::warn!(topic = topic.name, error = %e, "trimming failed");
            }
        }
        metrics::counter!("magnetar_trim_passes_total").increment(1);
    }
}

/// Notifies `changed` on every change to a namespace record, watching again (after a pause)
/// when the store ends the watch.
async fn watch_policies(service: Arc<BrokerService>, changed: Arc<tokio::sync::Notify>) {
    loop {
        match service.namespaces.watch_policies().await {
            Ok(mut w) => {
                while let Some(Ok(_)) = w.next().await {
                    changed.notify_one();
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch namespace policies"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a pass applies of a namespace's policies.
#[derive(Debug, Clone, Copy)]
struct NsPolicy {
    quotas: crate::topic::backlog_quota::Quotas,
    /// Max unacknowledged entries per consumer (`None`: unknown this pass).
    max_unacked: Option<u32>,
    /// Durable subscriptions without consumers for longer than this are deleted.
    subscription_expiration: Option<Duration>,
    retention: crate::managed_ledger::Retention,
    /// `None`: unknown this pass; change nothing.
    dedup: Option<bool>,
    ttl: Duration,
}

impl NsPolicy {
    async fn read(service: &BrokerService, ns: &str) -> Self {
        use crate::managed_ledger::Retention;
        match service.namespaces.namespace(ns).await {
            Ok(Some((p, _))) => NsPolicy {
                retention: p.retention.map_or_else(Retention::default_policy, |r| {
                    Retention::from_policy(r.time_minutes, r.size_mb)
                }),
                dedup: Some(service.dedup_policy(p.deduplication)),
                ttl: service.message_ttl(p.message_ttl_seconds),
                quotas: crate::topic::backlog_quota::Quotas::of(&p),
                max_unacked: Some(p.max_unacked_messages_per_consumer.unwrap_or(0)),
                subscription_expiration: p
                    .subscription_expiration_minutes
                    .filter(|m| *m > 0)
                    .map(|m| Duration::from_secs(u64::from(m) * 60)),
            },
            // Unknown: keep everything, change nothing this pass.
            _ => NsPolicy {
                retention: Retention::from_policy(-1, -1),
                dedup: None,
                ttl: Duration::ZERO,
                // Unknown: leave the topic as it is (no quota blocks it this pass).
                quotas: Default::default(),
                max_unacked: None,
                subscription_expiration: None,
            },
        }
    }
}
