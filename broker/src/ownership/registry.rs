//! Broker registration: `brokers/<id>` under the broker's lease, rewritten with a fresh load
//! report every few seconds. A lost lease is reported (every owned bundle is gone with it) and
//! a new one is granted: the broker registers again and can own bundles again. When the
//! storage watch finds the bookies out of reach the broker revokes its lease itself and
//! registers again only once they answer ([`super::storage`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meta::records::encode;
use meta::{Lease, MetadataStore, PutCondition};
use proto::meta::{BrokerInfo, LoadReport};
use tokio_util::sync::CancellationToken;

use super::owner::Ownership;

/// How often the load report is refreshed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the broker registered until `stop` fires; `load` reports the current load.
pub async fn run(
    ownership: Arc<Ownership>,
    load: impl Fn() -> LoadReport + Send + 'static,
    stop: CancellationToken,
) {
    let store = ownership.store().clone();
    let key = ownership.keys().broker(ownership.broker_id());
    let mut backoff = Duration::from_millis(100);
    let mut storage = ownership.subscribe_storage();
    loop {
        // Cut off from the bookies: stay unregistered (owning nothing) until they answer.
        tokio::select! {
            () = stop.cancelled() => return,
            r = storage.wait_for(|ok| *ok) => if r.is_err() { return },
        }
        let lease = tokio::select! {
            () = stop.cancelled() => return,
            l = Lease::grant(store.clone(), ownership.lease_ttl()) => l,
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot grant the broker's lease; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        ownership.set_lease(Some(lease.id()));
        let lost = lease.lost();
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    ownership.set_lease(None);
                    if let Err(e) = lease.revoke().await {
                        tracing::warn!(error = %e, "could not revoke the broker's lease; it will expire");
                    }
                    return;
                }
                () = lost.cancelled() => {
                    tracing::error!("broker lease lost: dropping every owned topic");
                    ownership.lease_lost();
                    break;
                }
                r = storage.changed() => {
                    if r.is_err() || *storage.borrow_and_update() {
                        continue;
                    }
                    // Step down: drop every topic, then let the bundles go with the lease.
                    ownership.lease_lost();
                    if let Err(e) = lease.revoke().await {
                        tracing::warn!(error = %e, "could not revoke the broker's lease; it will expire");
                    }
                    break;
                }
                _ = tick.tick() => {
                    let mut report = load();
                    report.updated_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let mut info = BrokerInfo {
                        broker_id: ownership.broker_id().to_owned(),
                        service_url: ownership.service_url().to_owned(),
                        http_url: ownership.http_url().to_owned(),
                        service_url_tls: ownership.urls().service_url_tls.clone(),
                        http_url_tls: ownership.urls().http_url_tls.clone(),
                        load: Some(report),
                        ..Default::default()
                    };
                    let put = store.put(&key, encode(&mut info), PutCondition::Always, Some(lease.id()));
                    if let Err(e) = put.await {
                        tracing::warn!(error = %e, "could not publish the broker's registration");
                    }
                }
            }
        }
    }
}

/// Reads every live broker's registration.
pub async fn live_brokers(
    store: &Arc<dyn MetadataStore>,
    keys: &meta::KeyLayout,
) -> meta::Result<Vec<BrokerInfo>> {
    let prefix = keys.brokers_prefix();
    let (kvs, _) = meta::range_all(store.as_ref(), &prefix, 1000).await?;
    kvs.iter()
        .map(|kv| meta::records::decode::<BrokerInfo>(&kv.key, &kv.value))
        .collect()
}
