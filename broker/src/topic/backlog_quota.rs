//! Backlog quotas, as Pulsar's: a namespace limits how much (destination_storage, bytes) or
//! how old (message_age, seconds) the backlog of its topics may grow. The backlog is the
//! slowest durable subscription's: the bytes it has not consumed (its entries times the
//! topic's average entry size, as `stats` shows them) and the age of its oldest unconsumed
//! entry. Past a limit, the quota's policy applies:
//! - `producer_request_hold`: new producers are refused with `ProducerBlockedQuotaExceededError`
//!   (clients retry) and connected ones are told to reconnect, so publishing waits;
//! - `producer_exception`: the same with `ProducerBlockedQuotaExceededException` (final:
//!   clients fail their sends);
//! - `consumer_backlog_eviction`: the subscriptions over the limit skip their oldest entries
//!   (by size) or expire them (by age) until they are within it.
//!
//! Checked when a producer is created and every stats period ([`crate::stats`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::meta::NamespacePolicies;

use super::Topic;
use super::expiry::{cutoff, expire_before};
use crate::error::Result;
use crate::protocol::pb::ServerError;

/// What happens past a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse producers with a retriable error.
    ProducerRequestHold,
    /// Refuse producers with a final error.
    ProducerException,
    /// Drop the oldest backlog of the subscriptions over the limit.
    ConsumerBacklogEviction,
}

impl Policy {
    /// From the stored number.
    pub fn from_stored(v: u32) -> Self {
        match v {
            1 => Policy::ProducerException,
            2 => Policy::ConsumerBacklogEviction,
            _ => Policy::ProducerRequestHold,
        }
    }

    /// The stored number.
    pub fn stored(self) -> u32 {
        match self {
            Policy::ProducerRequestHold => 0,
            Policy::ProducerException => 1,
            Policy::ConsumerBacklogEviction => 2,
        }
    }

    /// Pulsar's JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::ProducerRequestHold => "producer_request_hold",
            Policy::ProducerException => "producer_exception",
            Policy::ConsumerBacklogEviction => "consumer_backlog_eviction",
        }
    }

    /// From Pulsar's JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Policy::ProducerRequestHold,
            Policy::ProducerException,
            Policy::ConsumerBacklogEviction,
        ]
        .into_iter()
        .find(|p| p.name() == s)
    }
}

/// A namespace's quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of backlog.
    pub size: Option<(u64, Policy)>,
    /// Age of the oldest unconsumed entry.
    pub age: Option<(Duration, Policy)>,
}

impl Quotas {
    /// From a namespace's policies.
    pub fn of(p: &NamespacePolicies) -> Self {
        Quotas {
            size: p
                .backlog_quota_size
                .as_ref()
                .filter(|q| q.limit >= 0)
                .map(|q| (q.limit as u64, Policy::from_stored(q.policy))),
            age: p
                .backlog_quota_age
                .as_ref()
                .filter(|q| q.limit >= 0)
                .map(|q| {
                    (
                        Duration::from_secs(q.limit as u64),
                        Policy::from_stored(q.policy),
                    )
                }),
        }
    }

    /// Whether there is any.
    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.age.is_none()
    }
}

/// The topic's stored bytes per entry.
async fn average_entry_size(t: &Topic) -> Result<f64> {
    let st = t.ml.stats().await?;
    Ok(st.size() as f64 / st.entries().max(1) as f64)
}

/// The topic's backlog: bytes of the slowest durable subscription, and the age of the
/// oldest entry some durable subscription has not consumed.
async fn backlog(t: &Topic) -> Result<(u64, Option<Duration>)> {
    let avg = average_entry_size(t).await?;
    let mut bytes = 0u64;
    let mut oldest: Option<u64> = None;
    for s in t.subscriptions().await {
        if !s.is_durable() {
            continue;
        }
        bytes = bytes.max((s.backlog() as f64 * avg) as u64);
        if let Some(p) = s.nth_unacked(1) {
            let at = crate::protocol::commands::seek::publish_time(&t.ml, p).await?;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    let age = oldest.map(|at| Duration::from_millis(cutoff(0).saturating_sub(at)));
    Ok((bytes, age))
}

/// The policy that blocks producers now, if a quota is exceeded (the first of size, then
/// age; eviction never blocks).
pub async fn blocking(t: &Topic, q: &Quotas) -> Result<Option<Policy>> {
    if q.is_empty() {
        return Ok(None);
    }
    let (bytes, age) = backlog(t).await?;
    let over_size = q.size.filter(|(limit, _)| bytes > *limit).map(|(_, p)| p);
    let over_age = q
        .age
        .filter(|(limit, _)| age.is_some_and(|a| a > *limit))
        .map(|(_, p)| p);
    Ok([over_size, over_age]
        .into_iter()
        .flatten()
        .find(|p| *p != Policy::ConsumerBacklogEviction))
}

/// The error a refused producer gets.
pub fn refusal(p: Policy) -> (ServerError, String) {
    match p {
        Policy::ProducerException => (
            ServerError::ProducerBlockedQuotaExceededException,
            "Cannot create producer on topic with backlog quota exceeded".into(),
        ),
        _ => (
            ServerError::ProducerBlockedQuotaExceededError,
            "Cannot create producer on topic with backlog quota exceeded".into(),
        ),
    }
}

/// Applies the quotas once (the stats period): evicts, or tells connected producers to
/// reconnect when the topic has just become blocked.
pub async fn enforce(t: &Topic, q: &Quotas) -> Result<()> {
    if q.is_empty() {
        t.quota_blocked.store(false, Ordering::Relaxed);
        return Ok(());
    }
    if let Some((limit, Policy::ConsumerBacklogEviction)) = q.size {
        evict_by_size(t, limit).await?;
    }
    if let Some((limit, Policy::ConsumerBacklogEviction)) = q.age {
        let at = cutoff(limit.as_secs());
        for s in t.subscriptions().await {
            if s.is_durable() {
                expire_before(&t.ml, &s, at).await?;
            }
        }
    }
    let blocked = blocking(t, q).await?.is_some();
    let was = t.quota_blocked.swap(blocked, Ordering::Relaxed);
    if blocked && !was {
        tracing::warn!(
            topic = t.name,
            "backlog quota exceeded: producers are refused"
        );
        metrics::counter!("magnetar_backlog_quota_exceeded_total").increment(1);
        t.tell_producers_to_reconnect();
    }
    Ok(())
}

/// Each durable subscription over `limit` bytes skips its oldest entries down to the limit.
async fn evict_by_size(t: &Topic, limit: u64) -> Result<()> {
    let avg = average_entry_size(t).await?.max(1.0);
    let keep = (limit as f64 / avg) as u64;
    for s in t.subscriptions().await {
        let backlog = s.backlog();
        if !s.is_durable() || backlog <= keep {
            continue;
        }
        if let Some(p) = s.nth_unacked(backlog - keep) {
            let evicted = s.mark_delete_through(p).await?;
            tracing::info!(
                topic = t.name,
                subscription = s.name,
                evicted,
                "backlog quota: evicted the oldest entries"
            );
            metrics::counter!("magnetar_backlog_evicted_entries_total").increment(evicted);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for p in [
            Policy::ProducerRequestHold,
            Policy::ProducerException,
            Policy::ConsumerBacklogEviction,
        ] {
            assert_eq!(Policy::parse(p.name()), Some(p));
            assert_eq!(Policy::from_stored(p.stored()), p);
        }
        assert_eq!(Policy::parse("drop_everything"), None);
    }

    #[test]
    fn quotas_from_policies() {
        let p = NamespacePolicies {
            backlog_quota_size: Some(proto::meta::BacklogQuota {
                limit: 10 << 20,
                policy: 1,
            }),
            ..Default::default()
        };
        let q = Quotas::of(&p);
        assert_eq!(q.size, Some((10 << 20, Policy::ProducerException)));
        assert_eq!(q.age, None);
        assert!(Quotas::of(&NamespacePolicies::default()).is_empty());
    }
}
