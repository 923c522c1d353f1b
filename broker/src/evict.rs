//! The cache eviction job (`evict`): every half eviction age, each loaded topic drops the
//! cached entries its active subscriptions have all read, and entries past the age bound, so
//! the broker-wide cache holds what tailing readers are about to need and an idle topic holds
//! nothing. Publishes `pulsar_ml_cache_used_size` (bytes, Pulsar's name).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::BrokerService;

/// Evicts until `stop` fires.
pub async fn run(service: Arc<BrokerService>, stop: CancellationToken) {
    let budget = service.cache_budget().clone();
    let period = (budget.max_age / 2).max(Duration::from_millis(100));
    metrics::describe_gauge!(
        "pulsar_ml_cache_used_size",
        metrics::Unit::Bytes,
        "bytes in the entry caches of every topic (one broker-wide budget)"
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        for topic in service.loaded_topics() {
            topic.evict_cache().await;
        }
        metrics::gauge!("pulsar_ml_cache_used_size").set(budget.used() as f64);
    }
}
