//! etcd failures: a killed etcd gives a typed `Unavailable` within the request timeout (never
//! a hang), the client recovers when etcd returns, and watches resume without losing events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meta::testing::{EtcdServer, wait_for};
use meta::{EventKind, Lease, MetaError, MetadataStore, PutCondition};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_etcd_is_unavailable_within_timeout_then_recovers() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let opts = etcd.options();
    let timeout = opts.request_timeout;
    let store = meta::EtcdStore::connect(opts).await.unwrap();
    store
        .put("/f/a", b("1"), PutCondition::Always, None)
        .await
        .unwrap();

    etcd.kill();
    for op in ["get", "put", "range", "lease"] {
        let started = Instant::now();
        let res = match op {
            "get" => store.get("/f/a").await.map(drop),
            "put" => store
                .put("/f/b", b("1"), PutCondition::Always, None)
                .await
                .map(drop),
            "range" => store.range("/f/", None, 10).await.map(drop),
            _ => store.grant_lease(Duration::from_secs(5)).await.map(drop),
        };
        let elapsed = started.elapsed();
        match res {
            Err(MetaError::Unavailable { ref endpoints, .. }) => {
                assert!(endpoints.contains(&etcd.endpoint()), "{endpoints}");
            }
            other => panic!("{op}: expected Unavailable, got {other:?}"),
        }
        assert!(
            elapsed <= timeout + Duration::from_secs(1),
            "{op} took {elapsed:?}, timeout is {timeout:?}"
        );
    }

    etcd.restart().await.unwrap();
    // The same client works again once etcd is back.
    wait_for(
        "the client to reconnect",
        Duration::from_secs(30),
        || async { store.get("/f/a").await.ok().flatten() },
    )
    .await;
    store
        .put("/f/c", b("1"), PutCondition::Always, None)
        .await
        .unwrap();
    assert_eq!(store.get("/f/a").await.unwrap().unwrap().value, b("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_dead_endpoint_fails_with_unavailable() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut opts = etcd.options();
    drop(etcd);
    opts.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = meta::EtcdStore::connect(opts).await.unwrap_err();
    assert!(matches!(err, MetaError::Unavailable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_an_etcd_restart_without_losing_events() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let mut w = store.watch("/w/", None).await.unwrap();
    let v1 = store
        .put("/w/1", b("a"), PutCondition::Always, None)
        .await
        .unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!(ev.kv.version, v1);

    etcd.kill();
    etcd.restart().await.unwrap();
    let v2 = wait_for("a put after restart", Duration::from_secs(30), || async {
        store
            .put("/w/2", b("b"), PutCondition::Always, None)
            .await
            .ok()
    })
    .await;
    let v3 = store
        .put("/w/3", b("c"), PutCondition::Always, None)
        .await
        .unwrap();
    for expected in [v2, v3] {
        let ev = tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .expect("watch stalled after restart")
            .unwrap()
            .unwrap();
        assert_eq!((ev.kind, ev.kv.version), (EventKind::Put, expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_holder_is_told_when_etcd_stays_away_past_the_ttl() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let lease = Lease::grant(store, Duration::from_secs(2)).await.unwrap();
    let lost = lease.lost();
    etcd.kill();
    tokio::time::timeout(Duration::from_secs(10), lost.cancelled())
        .await
        .expect("lease holder not notified while etcd was down");
}
