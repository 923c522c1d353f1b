//! Inactive-topic deletion (Pulsar's `brokerDeleteInactiveTopicsEnabled`, mode
//! `delete_when_no_subscriptions`): a loaded topic with no producer and no subscription for
//! `inactive_topic_max_age` is deleted with its ledgers. Without it, every auto-created topic
//! a client ever named would stay loaded, and stored, for good. Partitions of partitioned
//! topics are left alone (their partitioned topic is deleted through the admin API).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::service::BrokerService;

/// Which of `topics` (name, active now) have been inactive for `max_age` by `now`, given
/// when each was first seen inactive (`since`, updated). Pure: unit-tested without I/O.
pub fn due(
    since: &mut HashMap<String, Instant>,
    topics: Vec<(String, bool)>,
    now: Instant,
    max_age: Duration,
) -> Vec<String> {
    let mut seen = HashMap::new();
    let mut due = Vec::new();
    for (name, active) in topics {
        if active {
            continue;
        }
        let first = since.get(&name).copied().unwrap_or(now);
        if now.duration_since(first) >= max_age {
            due.push(name.clone());
        }
        seen.insert(name, first);
    }
    *since = seen;
    due
}

/// Checks every `period` until `stop` fires.
pub async fn run(
    service: Arc<BrokerService>,
    period: Duration,
    max_age: Duration,
    stop: CancellationToken,
) {
    let mut since = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let mut topics = Vec::new();
        for t in service.loaded_topics() {
            if t.name.contains("-partition-") || t.is_closed() {
                continue;
            }
            let active = !t.producers().is_empty() || !t.subscriptions().await.is_empty();
            topics.push((t.name.clone(), active));
        }
        for name in due(&mut since, topics, Instant::now(), max_age) {
            match service.delete_topic(&name, false).await {
                Ok(()) => {
                    metrics::counter!("pulsar_broker_inactive_topics_deleted_total").increment(1);
                    tracing::info!(topic = name, "inactive topic deleted");
                }
                Err(e) => tracing::debug!(topic = name, error = %e, "inactive topic not deleted"),
            }
            since.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_due_after_staying_inactive_for_the_max_age() {
        let mut since = HashMap::new();
        let t0 = Instant::now();
        let age = Duration::from_secs(60);
        let at = |s| t0 + Duration::from_secs(s);
        let list = |a: bool, b: bool| vec![("a".to_owned(), a), ("b".to_owned(), b)];
        assert!(due(&mut since, list(false, true), at(0), age).is_empty());
        assert!(due(&mut since, list(false, false), at(30), age).is_empty());
        assert_eq!(due(&mut since, list(false, false), at(60), age), ["a"]);
        // Activity resets the clock: a is inactive again from 100, b since 30.
        assert!(due(&mut since, list(true, false), at(70), age).is_empty());
        assert_eq!(due(&mut since, list(false, false), at(100), age), ["b"]);
        assert!(due(&mut since, list(false, true), at(159), age).is_empty());
        assert_eq!(due(&mut since, list(false, true), at(160), age), ["a"]);
    }
}
