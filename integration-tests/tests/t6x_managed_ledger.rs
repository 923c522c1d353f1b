//! t6x: managed ledgers over real bookies, driven directly (several owners in one test).

use std::sync::Arc;

use bookie::client::{ClientConfig, LedgerClient};
use broker::managed_ledger::{ManagedLedger, ManagedLedgerConfig, Retention};
use bytes::Bytes;
use common::Position;
use integration_tests::TestCluster;

fn config() -> ManagedLedgerConfig {
    ManagedLedgerConfig {
        max_entries_per_ledger: 7,
        ..ManagedLedgerConfig::default()
    }
}

/// Regression (issue 10, defect 2): a topic that moves between owners (A → B → A → …) keeps
/// its positions in order. Each owner here has its own ledger-id allocator, as each broker
/// process does; with ids reserved in blocks per process, the topic's next ledger under A got a
/// smaller id than B's, the last position stopped advancing, and trimming deleted ledgers
/// after the slowest cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_topic_moved_between_owners_keeps_order_and_trims_correctly() {
    let cluster = TestCluster::start(1).await.unwrap();
    let store = cluster.store().await;
    let owners: Vec<LedgerClient> = (0..2)
        .map(|_| LedgerClient::new(store.clone(), cluster.keys(), ClientConfig::default()))
        .collect();
    let topic = "persistent://public/default/moving";
    let mut written: Vec<(Position, Bytes)> = Vec::new();
    let mut ml: Option<Arc<ManagedLedger>> = None;
    for step in 0..6 {
        // The next owner loads the topic: it fences and closes the previous owner's ledger.
        drop(ml.take());
        let owner = owners[step % 2].clone();
        let m = ManagedLedger::open(topic, store.clone(), &cluster.keys(), owner, config())
            .await
            .unwrap();
        for i in 0..10 {
            let payload = Bytes::from(format!("step {step} message {i}"));
            let pos = m.append(payload.clone()).await.unwrap().await.unwrap();
            if let Some((prev, _)) = written.last() {
                assert!(pos > *prev, "step {step}: {pos} after {prev}");
            }
            assert_eq!(m.last_position(), Some(pos));
            written.push((pos, payload));
        }
        ml = Some(m);
    }
    let m = ml.unwrap();
    // Reading forward from the start visits every entry, in order.
    let mut p = None;
    for (want, payload) in &written {
        let next = m.next_position(p).expect("an entry is missing");
        assert_eq!(next, *want);
        assert_eq!(m.read(next).await.unwrap(), *payload);
        p = Some(next);
    }
    assert_eq!(m.next_position(p), None);
    // Trimming at a mark in the middle deletes only ledgers wholly before it.
    let mark = written[29].0;
    m.trim_before(mark, Retention::default_policy())
        .await
        .unwrap();
    for (pos, payload) in &written[30..] {
        assert_eq!(
            m.read(*pos).await.unwrap(),
            *payload,
            "{pos} lost to trimming"
        );
    }
    assert_eq!(m.entries_after(Some(mark)), 30);
}

/// Regression (issue 10, defect 3): writes whose answer is lost after the store applied them
/// (every second one here) neither freeze the topic ("not owner" forever, from a stale cached
/// version) nor stop its cursor persisting: the outcome is read back, never assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_lost_answers_from_the_metadata_store_do_not_freeze_a_topic() {
    use broker::managed_ledger::cursor::Cursor;
    use meta::testing::LosingAnswers;
    let cluster = TestCluster::start(1).await.unwrap();
    let losing = Arc::new(LosingAnswers::new(
        cluster.store().await,
        "managed-ledgers/",
        2,
    ));
    let store: Arc<dyn meta::MetadataStore> = losing.clone();
    let client = LedgerClient::new(store.clone(), cluster.keys(), ClientConfig::default());
    let topic = "persistent://public/default/lossy";
    let m = ManagedLedger::open(topic, store.clone(), &cluster.keys(), client, config())
        .await
        .unwrap();
    let key = cluster.keys().cursor(topic, "sub");
    let mut cursor = Cursor::load_or_create(&store, key, None).await.unwrap();
    let mut written = Vec::new();
    for i in 0..60 {
        // 60 entries, 7 per ledger: eight rolls, each a CAS on the ledger list.
        let pos = m
            .append(Bytes::from(format!("m{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
        written.push(pos);
        cursor.ack(pos, &m);
        let snap = cursor.snapshot().expect("a change to persist");
        let v = Cursor::write(&store, &snap).await.unwrap();
        cursor.flushed(v, &snap);
    }
    // Trimming CASes the list again.
    m.trim_before(written[40], Retention::default_policy())
        .await
        .unwrap();
    assert_eq!(m.read(written[59]).await.unwrap(), Bytes::from("m59"));
    let lost = losing.lost.load(std::sync::atomic::Ordering::SeqCst);
    assert!(lost >= 20, "only {lost} answers were lost");
    // The persisted cursor is the last one written.
    let reloaded = Cursor::load_or_create(&store, cluster.keys().cursor(topic, "sub"), None)
        .await
        .unwrap();
    assert_eq!(reloaded.mark_delete, Some(written[59]));
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Issue 10, item 5: the entry cache is one broker-wide budget. Fifty topics written and read
/// at once never take it past `cache_size`, and once the clients leave it drains to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t63_the_entry_cache_budget_holds_for_any_number_of_topics() {
    use integration_tests::process::KeptDir;
    use integration_tests::standalone::StandaloneProcess;
    let dir = KeptDir::new("t63-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[("MAGNETAR_MANAGED_LEDGER__CACHE_SIZE", "1MiB")],
    )
    .unwrap();
    let http: std::net::SocketAddr = sa
        .http_url
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let mut perf = std::process::Command::new(integration_tests::bin::magnetar())
        .args(["perf", "produce", "--service-url", &sa.service_url])
        .args([
            "--topics",
            "50",
            "--in-flight",
            "20",
            "--size",
            "2048",
            "--duration",
            "3s",
        ])
        .arg("--consume")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0.0f64;
    let mut samples = 0;
    // Sample the gauge ten times a second for as long as the load runs.
    let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
    while perf.try_wait().unwrap().is_none() {
        every.tick().await;
        let m = integration_tests::http_get(http, "/metrics").await;
        if let Some(used) = gauge(&m, "pulsar_ml_cache_used_size") {
            peak = peak.max(used);
            samples += 1;
        }
    }
    let out = perf.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("consume"), "perf failed: {out}");
    assert!(samples > 0, "no cache gauge while the load ran");
    assert!(
        peak <= (1 << 20) as f64,
        "cache at {peak} bytes, over its 1 MiB budget"
    );
    integration_tests::wait_for(
        "the cache to drain",
        std::time::Duration::from_secs(20),
        || async move {
            let m = integration_tests::http_get(http, "/metrics").await;
            (gauge(&m, "pulsar_ml_cache_used_size")? == 0.0).then_some(())
        },
    )
    .await;
}

/// Issue 10, item 6: a roll (close the full ledger, create the next, CAS the ledger list)
/// does not stall the publishers of the topic. With the ledger-list CAS held (a stalled
/// etcd), appends are still queued at once, nothing is acknowledged out of order, and every
/// receipt arrives, in order, once the store answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t64_a_roll_does_not_stall_publishers() {
    use meta::testing::LosingAnswers;
    use std::time::Duration;
    let cluster = TestCluster::start(1).await.unwrap();
    let slow = Arc::new(LosingAnswers::new(
        cluster.store().await,
        "managed-ledgers/",
        0,
    ));
    let store: Arc<dyn meta::MetadataStore> = slow.clone();
    let client = LedgerClient::new(store.clone(), cluster.keys(), ClientConfig::default());
    let topic = "persistent://public/default/rolling";
    let m = ManagedLedger::open(topic, store.clone(), &cluster.keys(), client, config())
        .await
        .unwrap();
    // Fill the first ledger (7 entries per ledger).
    let mut last = None;
    for i in 0..7 {
        last = Some(
            m.append(Bytes::from(format!("m{i}")))
                .await
                .unwrap()
                .await
                .unwrap(),
        );
    }
    slow.hold();
    // The 8th append rolls; its CAS waits. The next 50 must queue without waiting for it.
    let mut pending = Vec::new();
    for i in 7..57 {
        let queued = tokio::time::timeout(
            Duration::from_secs(10),
            m.append(Bytes::from(format!("m{i}"))),
        )
        .await
        .unwrap_or_else(|_| panic!("append {i} waited for the roll"))
        .unwrap();
        pending.push(tokio::spawn(queued));
    }
    integration_tests::wait_for(
        "the roll to reach the store",
        Duration::from_secs(30),
        || {
            let waited = slow.waited.load(std::sync::atomic::Ordering::SeqCst);
            async move { (waited > 0).then_some(()) }
        },
    )
    .await;
    assert!(
        pending.iter().all(|p| !p.is_finished()),
        "acknowledged before the new ledger was on the list"
    );
    assert_eq!(m.last_position(), last);
    slow.release();
    let mut prev = last.unwrap();
    for (i, p) in pending.into_iter().enumerate() {
        let pos = p.await.unwrap().unwrap();
        assert!(pos > prev, "entry {} at {pos}, after {prev}", i + 7);
        assert_eq!(
            m.read(pos).await.unwrap(),
            Bytes::from(format!("m{}", i + 7))
        );
        prev = pos;
    }
}
