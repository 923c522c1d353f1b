//! t2x: ledgers striped over real bookie processes — writes and reads, ensemble change when
//! a bookie dies, recovery fencing out a live writer, and recovery with a paused bookie
//! (the BookKeeper 2614 shape).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bookie::client::{ClientError, CreateOptions, LedgerClient, LedgerWriter};
use bytes::Bytes;
use common::LedgerId;
use integration_tests::{TestCluster, wait_for};
use proto::meta::LedgerState;

fn opts(e: usize, w: usize, a: usize) -> CreateOptions {
    CreateOptions {
        ensemble: e,
        write_quorum: w,
        ack_quorum: a,
        password: Bytes::new(),
        custom: Default::default(),
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("entry {i} {}", "x".repeat((i % 200) as usize)))
}

async fn read_all(client: &LedgerClient, id: LedgerId, ids: impl IntoIterator<Item = u64>) {
    let reader = client.open_reader(id).await.unwrap();
    for i in ids {
        let e = reader
            .read(i)
            .await
            .unwrap_or_else(|err| panic!("acknowledged entry {id}:{i} unreadable: {err}"));
        assert_eq!(e.payload, payload(i), "entry {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_write_close_read_back() {
    let cluster = TestCluster::start(3).await.unwrap();
    let client = cluster.client().await;
    let writer = client.create(opts(3, 2, 2)).await.unwrap();
    let id = writer.id();
    let mut pending = Vec::new();
    for i in 0..1000 {
        pending.push(writer.append(payload(i)).await.unwrap());
    }
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(
            p.await.unwrap().0,
            i as u64,
            "completions come in entry order"
        );
    }
    let meta = writer.close().await.unwrap();
    assert_eq!(meta.state, LedgerState::Closed as i32);
    assert_eq!(meta.last_entry_id, 999);
    read_all(&client, id, 0..1000).await;
    let err = client
        .open_reader(id)
        .await
        .unwrap()
        .read(1000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::NoSuchEntry { .. } | ClientError::Timeout(_)
        ),
        "{err}"
    );
    // Too few bookies for the ensemble: a typed error.
    let err = client.create(opts(4, 2, 2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::NotEnoughBookies {
                needed: 4,
                available: 3
            }
        ),
        "{err}"
    );
    let err = client.create(opts(2, 3, 2)).await.unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");
    client.delete(id).await.unwrap();
    assert!(matches!(
        client.open_reader(id).await,
        Err(ClientError::NoSuchLedger(_))
    ));
}

/// Appends until told to stop (or an add fails); records every acknowledged entry.
fn spawn_writer(
    writer: Arc<LedgerWriter>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    total: u64,
) -> tokio::task::JoinHandle<Option<ClientError>> {
    tokio::spawn(async move {
        let mut pending = std::collections::VecDeque::new();
        let mut next = 0;
        loop {
            while next < total && pending.len() < 256 {
                match writer.append(payload(next)).await {
                    Ok(p) => pending.push_back((next, p)),
                    Err(e) => return Some(e),
                }
                next += 1;
            }
            let (i, p) = pending.pop_front()?;
            match p.await {
                Ok(e) => {
                    assert_eq!(e.0, i);
                    acked.lock().unwrap().insert(i);
                }
                Err(e) => return Some(e),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_killed_bookie_causes_an_ensemble_change_and_loses_nothing() {
    let mut cluster = TestCluster::start(4).await.unwrap();
    let client = cluster.client().await;
    let writer = Arc::new(client.create(opts(3, 2, 2)).await.unwrap());
    let id = writer.id();
    let (meta, _) = client.ledgers().get(id).await.unwrap();
    let victim = meta.segments[0].bookies[1].clone();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let task = spawn_writer(writer.clone(), acked.clone(), 20_000);
    wait_for("5000 acknowledged adds", Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 5000).then_some(()) }
    })
    .await;
    let i = cluster.index_of(&victim);
    cluster.bookies[i].kill9();
    let err = task.await.unwrap();
    assert!(err.is_none(), "writer failed: {err:?}");
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 20_000);
    let writer = Arc::into_inner(writer).expect("sole owner");
    let meta = writer.close().await.unwrap();
    assert!(
        meta.segments.len() >= 2,
        "no ensemble change: {:?}",
        meta.segments
    );
    assert!(!meta.segments.last().unwrap().bookies.contains(&victim));
    assert_eq!(meta.last_entry_id, 19_999);
    read_all(&client, id, 0..20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t23_recovery_fences_a_live_writer_and_keeps_every_acked_entry() {
    let cluster = TestCluster::start(3).await.unwrap();
    let client = cluster.client().await;
    let writer = Arc::new(client.create(opts(3, 2, 2)).await.unwrap());
    let id = writer.id();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let task = spawn_writer(writer.clone(), acked.clone(), u64::MAX);
    wait_for("acknowledged adds", Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 2000).then_some(()) }
    })
    .await;
    // A second client (a new topic owner) recovers while the writer keeps going.
    let recoverer = cluster.client().await;
    let meta = recoverer.recover(id, b"").await.unwrap();
    assert_eq!(meta.state, LedgerState::Closed as i32);
    let err = task.await.unwrap();
    assert!(
        matches!(err, Some(ClientError::Fenced { .. })),
        "writer got {err:?}"
    );
    let acked = acked.lock().unwrap().clone();
    let max_acked = *acked.last().unwrap() as i64;
    assert!(
        meta.last_entry_id >= max_acked,
        "closed at {} below acked {max_acked}",
        meta.last_entry_id
    );
    read_all(&recoverer, id, 0..=meta.last_entry_id as u64).await;
    // The old writer cannot add any more.
    let err = writer.add(payload(0)).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Fenced { .. } | ClientError::Closed(_)),
        "{err}"
    );
    // Recovering again is a no-op with the same result.
    let again = cluster.client().await.recover(id, b"").await.unwrap();
    assert_eq!(again.last_entry_id, meta.last_entry_id);
    assert!(matches!(
        cluster.client().await.recover(id, b"wrong").await,
        Err(ClientError::Unauthorized(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t24_recovery_with_a_paused_bookie_never_closes_below_what_the_writer_can_get_acked() {
    let cluster = TestCluster::start(3).await.unwrap();
    let client = cluster.client().await;
    // E=Qw=3, Qa=2: fencing needs 2 answers, so recovery proceeds without the paused bookie.
    let writer = Arc::new(client.create(opts(3, 3, 2)).await.unwrap());
    let id = writer.id();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let task = spawn_writer(writer.clone(), acked.clone(), u64::MAX);
    wait_for("acknowledged adds", Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 1000).then_some(()) }
    })
    .await;
    let (meta, _) = client.ledgers().get(id).await.unwrap();
    let paused = cluster.index_of(&meta.segments[0].bookies[2]);
    cluster.bookies[paused].signal("STOP");
    let recovered = cluster.client().await.recover(id, b"").await;
    cluster.bookies[paused].signal("CONT");
    let recovered = recovered.unwrap();
    let err = task.await.unwrap();
    assert!(err.is_some(), "the writer kept going after recovery");
    let acked = acked.lock().unwrap().clone();
    let max_acked = *acked.last().unwrap() as i64;
    assert!(
        recovered.last_entry_id >= max_acked,
        "recovery closed at {} but the writer had {max_acked} acknowledged",
        recovered.last_entry_id
    );
    read_all(&client, id, 0..=recovered.last_entry_id as u64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t27_decommission_moves_every_fragment_off_the_bookie() {
    let mut cluster = TestCluster::start(4).await.unwrap();
    let client = cluster.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let writer = client.create(opts(3, 2, 2)).await.unwrap();
        let mut pending = Vec::new();
        for i in 0..300 {
            pending.push(writer.append(payload(i)).await.unwrap());
        }
        for p in pending {
            p.await.unwrap();
        }
        ids.push(writer.id());
        writer.close().await.unwrap();
    }
    // An idle open ledger on the victim: its writer never adds again, so only the grace
    // period's recovery can move it off.
    let idle = client.create(opts(3, 2, 2)).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..40 {
        pending.push(idle.append(payload(i)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    // The bookie holding the most ledgers.
    let mut count = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let (m, _) = client.ledgers().get(*id).await.unwrap();
        for b in &m.segments[0].bookies {
            *count.entry(b.clone()).or_default() += 1;
        }
    }
    let (idle_meta, _) = client.ledgers().get(idle.id()).await.unwrap();
    let victim = count
        .iter()
        .filter(|(b, _)| idle_meta.segments[0].bookies.contains(b))
        .max_by_key(|(_, n)| **n)
        .unwrap()
        .0
        .clone();

    let out = std::process::Command::new(integration_tests::bin::magnetar())
        .args([
            "ledgers",
            "--meta-url",
            &cluster.meta_url(),
            "decommission",
            &victim,
            "--wait",
            "--open-ledger-grace",
            "2s",
        ])
        .env("MAGNETAR_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("bookie {victim}:")), "{text}");

    for id in &ids {
        let (m, _) = client.ledgers().get(*id).await.unwrap();
        assert!(
            m.segments.iter().all(|s| !s.bookies.contains(&victim)),
            "ledger {id} still names {victim}: {:?}",
            m.segments
        );
    }
    let registry = client.registry();
    assert!(
        registry
            .cookie(&victim.parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "cookie left behind"
    );
    // The idle ledger was recovered (closed at its true end) and moved; its writer is fenced.
    let (m, _) = client.ledgers().get(idle.id()).await.unwrap();
    assert_eq!(m.state, proto::meta::LedgerState::Closed as i32);
    assert_eq!(m.last_entry_id, 39);
    assert!(m.segments.iter().all(|s| !s.bookies.contains(&victim)));
    let late = idle.append(payload(40)).await;
    let fenced = match late {
        Err(_) => true,
        Ok(p) => p.await.is_err(),
    };
    assert!(fenced, "the idle writer could still add after the recovery");
    let i = cluster.index_of(&victim);
    cluster.bookies[i].kill9();
    for id in &ids {
        read_all(&client, *id, 0..300).await;
    }
    read_all(&client, idle.id(), 0..40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t28_sigstopped_writer_process_is_fenced_by_recovery() {
    use std::io::BufRead;
    let cluster = TestCluster::start(3).await.unwrap();
    let mut child = std::process::Command::new(integration_tests::bin::magnetar())
        .args([
            "ledgers",
            "--meta-url",
            &cluster.meta_url(),
            "write",
            "-n",
            "100000000",
        ])
        .env("MAGNETAR_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let id: u64 = rx
        .recv()
        .unwrap()
        .strip_prefix("ledger ")
        .unwrap()
        .parse()
        .unwrap();
    let mut max_acked = -1i64;
    while max_acked < 2000 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writer output");
        max_acked = line.strip_prefix("acked ").unwrap().parse().unwrap();
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    // Everything it printed before the stop was acknowledged.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
        if let Some(n) = line.strip_prefix("acked ") {
            max_acked = n.parse().unwrap();
        }
    }
    let client = cluster.client().await;
    let meta = client.recover(LedgerId(id), b"").await.unwrap();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    while let Ok(line) = rx.try_recv() {
        if let Some(n) = line.strip_prefix("acked ") {
            max_acked = n.parse().unwrap();
        }
    }
    assert!(!status.success(), "the resumed writer should fail");
    assert!(stderr.contains("fenced"), "writer error: {stderr}");
    assert!(
        meta.last_entry_id >= max_acked,
        "closed at {} below the writer's acknowledged {max_acked}",
        meta.last_entry_id
    );
    read_all_prefix(&client, LedgerId(id), meta.last_entry_id as u64).await;
}

async fn read_all_prefix(client: &LedgerClient, id: LedgerId, last: u64) {
    let reader = client.open_reader(id).await.unwrap();
    for i in 0..=last {
        let e = reader
            .read(i)
            .await
            .unwrap_or_else(|err| panic!("entry {id}:{i}: {err}"));
        assert!(
            e.payload.starts_with(format!("entry {i} ").as_bytes()),
            "entry {i}"
        );
    }
}

/// Regression (issue 9, defect 8): with no spare bookie and a paused one that stays
/// registered (its lease outlives the test), pending adds fail with `NotEnoughBookies` after a
/// bounded number of same-bookie retries, while the writer keeps answering. Before the fix the
/// writer slept inside its task and retried until the lease expired, and its adds never failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t29_no_spare_bookie_fails_adds_after_bounded_retries() {
    let cluster = TestCluster::start_with(3, &[("MAGNETAR_META__LEASE_TTL", "300s")])
        .await
        .unwrap();
    let config = bookie::client::ClientConfig {
        add_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        same_bookie_retries: 3,
        ..Default::default()
    };
    let client = LedgerClient::new(cluster.store().await, cluster.keys(), config);
    let writer = client.create(opts(3, 3, 3)).await.unwrap();
    for i in 0..10 {
        writer.add(payload(i)).await.unwrap();
    }
    cluster.bookies[0].signal("STOP");
    let started = std::time::Instant::now();
    let pending = writer.append(payload(10)).await.unwrap();
    // Retries: 1 s timeout each, then 200/400/800 ms: about 6 s; the lease lasts 300 s.
    let res = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the add must fail within a bounded time, not wait for the lease to expire");
    assert!(
        matches!(res, Err(ClientError::NotEnoughBookies { .. })),
        "{res:?}"
    );
    // The writer task is not stuck: a new add is answered at once (with the same failure).
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        writer.append(payload(11)).await.unwrap().await
    })
    .await
    .expect("the writer still answers");
    assert!(next.is_err());
    cluster.bookies[0].signal("CONT");
    eprintln!("adds failed after {:?}", started.elapsed());
    // Everything acknowledged before the pause is readable once the ledger is recovered.
    read_all(&client, writer.id(), 0..10).await;
}

/// Regression (issue 9, defect 9): recovery of a 10,000-entry tail (the bookies' LAC never
/// advanced) with one bookie of the ensemble dead. Before the fix, recovery read one entry at
/// a time with a journaled fence per read, re-added to Qa bookies only, and could not replace
/// a dead bookie, so the ledger — and a topic on it — could not be recovered until it returned.
/// Now the dead bookie is replaced, every recovered entry is on its whole write set, and the
/// tail recovers quickly (the time is printed; benchmarks are not assertions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2a_recovery_replaces_a_dead_bookie_and_re_replicates_a_long_tail() {
    const N: u64 = 10_000;
    let mut cluster = TestCluster::start(4).await.unwrap();
    let client = cluster.client().await;
    let writer = client.create(opts(3, 2, 2)).await.unwrap();
    let id = writer.id();
    drop(writer); // OPEN, nothing written through it
    let (meta, _) = client.ledgers().get(id).await.unwrap();
    let ensemble = meta.segments[0].bookies.clone();
    let key = bookie::client::master_key(b"");
    // A writer that died before any LAC reached the bookies: every entry carries LAC -1.
    let entries: Vec<bookie::Entry> = (0..N)
        .map(|i| bookie::Entry::new(id, common::EntryId(i), -1, (i + 1) * 10, payload(i)))
        .collect();
    for (index, b) in ensemble.iter().enumerate() {
        let mine: Vec<bookie::Entry> = entries
            .iter()
            .filter(|e| bookie::client::distribution::write_set(e.entry.0, 3, 2).contains(&index))
            .cloned()
            .collect();
        let mut bc = cluster.bookies[cluster.index_of(b)].client().await.unwrap();
        let statuses = bc.add_all(&mine, &key, false).await.unwrap();
        assert!(statuses.iter().all(|s| *s == proto::bookie::StatusCode::Ok));
    }
    // One bookie of the ensemble dies for good.
    let dead = ensemble[1].clone();
    let dead_index = cluster.index_of(&dead);
    cluster.bookies[dead_index].kill9();
    let started = std::time::Instant::now();
    let recovered = cluster.client().await.recover(id, b"").await.unwrap();
    eprintln!(
        "recovered a {N}-entry tail with a dead bookie in {:?}",
        started.elapsed()
    );
    assert_eq!(recovered.last_entry_id, N as i64 - 1);
    let last = recovered.segments.last().unwrap();
    assert!(
        !last.bookies.contains(&dead),
        "the dead bookie is still in the last segment: {:?}",
        recovered.segments
    );
    read_all(&client, id, 0..N).await;
    // Every entry is on its whole write set under the final metadata (Qw copies, not Qa).
    for i in (0..N).step_by(97) {
        for b in bookie::client::reader::replicas(&recovered, i) {
            let mut bc = cluster.bookies[cluster.index_of(&b)]
                .client()
                .await
                .unwrap();
            let r = bc.read(id.0, i).await.unwrap();
            assert_eq!(
                r.status(),
                proto::bookie::StatusCode::Ok,
                "entry {i} missing on {b}"
            );
        }
    }
}

/// Issue 9, defect 10: bookie garbage collection. A ledger whose metadata is deleted
/// disappears from every bookie; a ledger whose metadata no longer lists a bookie (as after a
/// re-replication) disappears from that bookie only, once idle for `gc.min_age`; a ledger the
/// metadata still needs stays. The reclaimed bytes are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2b_garbage_collection_removes_only_what_the_metadata_no_longer_needs() {
    let cluster = TestCluster::start_with(
        3,
        &[
            ("MAGNETAR_GC__INTERVAL", "100ms"),
            ("MAGNETAR_GC__MIN_AGE", "1s"),
        ],
    )
    .await
    .unwrap();
    let client = cluster.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let writer = client.create(opts(3, 3, 2)).await.unwrap();
        for i in 0..100 {
            writer.add(payload(i)).await.unwrap();
        }
        ids.push(writer.id());
        writer.close().await.unwrap();
    }
    let [deleted, moved, kept] = ids[..] else {
        unreachable!()
    };
    let status = |b: usize, id: LedgerId| {
        let bk = &cluster.bookies[b];
        async move {
            let mut c = bk.client().await.unwrap();
            c.read(id.0, 0).await.unwrap().status()
        }
    };
    use proto::bookie::StatusCode;
    // 1. Metadata gone: gone from every bookie.
    client.ledgers().delete(deleted, None).await.unwrap();
    for b in 0..3 {
        wait_for(
            "the deleted ledger to be collected",
            Duration::from_secs(20),
            || async move { (status(b, deleted).await == StatusCode::NoLedger).then_some(()) },
        )
        .await;
    }
    // 2. Metadata no longer lists one bookie: gone from that one only.
    let (mut meta, version) = client.ledgers().get(moved).await.unwrap();
    let leaving = meta.segments[0].bookies[0].clone();
    meta.segments[0].bookies[0] = "elsewhere".into();
    client.ledgers().update(moved, meta, version).await.unwrap();
    let leaving_index = cluster.index_of(&leaving);
    wait_for("the unlisted copy to be collected", Duration::from_secs(20), || async move {
        (status(leaving_index, moved).await == StatusCode::NoLedger).then_some(())
    })
    .await;
    for b in (0..3).filter(|b| *b != leaving_index) {
        assert_eq!(
            status(b, moved).await,
            StatusCode::Ok,
            "bookie {b} lost a listed copy"
        );
    }
    // 3. Still needed: kept everywhere, readable.
    for b in 0..3 {
        assert_eq!(status(b, kept).await, StatusCode::Ok);
    }
    read_all(&client, kept, 0..100).await;
    let metrics =
        integration_tests::http_get(cluster.bookies[leaving_index].http.unwrap(), "/metrics").await;
    let reclaimed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bookie_gc_reclaimed_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reclaimed-bytes metric:\n{metrics}"));
    assert!(reclaimed > 0.0, "reclaimed {reclaimed}");
}
