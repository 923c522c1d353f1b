//! t1x: a bookie process starts from flags, prints its ready line, serves adds and reads,
//! registers itself, exposes metrics, and stops cleanly on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use bookie::Entry;
use bytes::Bytes;
use common::{EntryId, LedgerId};
use integration_tests::process::KeptDir;
use integration_tests::{BookieProcess, EtcdServer, http_get, wait_for};
use meta::{BookieRegistry, BookieState, KeyLayout, MetadataStore};
use proto::bookie::StatusCode;

fn entry(l: u64, e: u64) -> Entry {
    Entry::new(
        LedgerId(l),
        EntryId(e),
        e as i64 - 1,
        e,
        Bytes::from(vec![e as u8; 100]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_bookie_serves_registers_and_stops_cleanly() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t11-");
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "bookie-1");
    bk.start().unwrap();

    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let registry = BookieRegistry::new(store, KeyLayout::for_cluster("standalone"));
    let listed = registry.list(BookieState::Available).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].bookie_id, "bookie-1");
    assert_eq!(listed[0].grpc_address, bk.service.unwrap().to_string());
    assert!(
        registry
            .cookie(&"bookie-1".parse().unwrap())
            .await
            .unwrap()
            .is_some()
    );

    let mut client = bk.client().await.unwrap();
    let entries: Vec<Entry> = (0..200).map(|e| entry(1, e)).collect();
    let statuses = client.add_all(&entries, b"k", false).await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::Ok),
        "{statuses:?}"
    );
    for e in &entries {
        let r = client.read(1, e.entry.0).await.unwrap();
        assert_eq!(r.status(), StatusCode::Ok);
        let got = Entry::from_proto(r.entry.unwrap());
        assert!(got.verify());
        assert_eq!(&got, e);
    }
    let r = client.read(1, 999).await.unwrap();
    assert_eq!(r.status(), StatusCode::NoEntry);
    let r = client.read(2, 0).await.unwrap();
    assert_eq!(r.status(), StatusCode::NoLedger);

    let metrics = http_get(bk.http.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("bookie_journal_fsync_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("bookie_add_seconds"), "{metrics}");
    let state = http_get(bk.http.unwrap(), "/api/v1/bookie/state").await;
    assert!(state.contains("\"readOnly\":false"), "{state}");
    let ready = http_get(bk.http.unwrap(), "/api/v1/bookie/is_ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let status = bk.terminate().expect("bookie did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
    wait_for(
        "the bookie to deregister",
        Duration::from_secs(10),
        || async {
            registry
                .list(BookieState::Available)
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;

    // Restart: everything is still there (from ledger files after the shutdown checkpoint).
    bk.start().unwrap();
    let mut client = bk.client().await.unwrap();
    for e in &entries {
        let r = client.read(1, e.entry.0).await.unwrap();
        assert_eq!(Entry::from_proto(r.entry.unwrap()), *e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_bad_flags_give_one_clear_line() {
    let dir = KeptDir::new("t12-");
    let out = std::process::Command::new(integration_tests::bin::magnetar())
        .args(["bookie", "--meta-url", "http://nope", "--journal-dir"])
        .arg(dir.path().join("j"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("meta.url") && err.contains("etcd://"), "{err}");
    let out = std::process::Command::new(integration_tests::bin::magnetar())
        .args(["bookie", "--meta-url", "etcd://127.0.0.1:1"])
        .env("MAGNETAR_JOURNAL__MAX_GROUP_WAIT", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("journal.max_group_wait"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A bookie started without `--bookie-id` keeps the id in the cookie of its directories when
/// it comes back on another address (a recreated container gets a new IP): its ledgers name
/// that id. A configured id that differs from the disks' is refused with one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1h_a_bookie_without_an_id_keeps_the_id_of_its_disks() {
    use integration_tests::process::{ServerProcess, ready_field};
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t1h-");
    let start = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(integration_tests::bin::magnetar());
        cmd.arg("bookie")
            .args(["--meta-url", &etcd.url()])
            .arg("--journal-dir")
            .arg(dir.path().join("journal"))
            .arg("--ledger-dir")
            .arg(dir.path().join("ledgers"))
            .args(["--bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .args(extra);
        ServerProcess::spawn(cmd, &dir.path().join("bookie.log"), Duration::from_secs(60))
    };
    let first = start(&[]).unwrap();
    let id = ready_field(&first.ready_line, "id").unwrap();
    let first_service = ready_field(&first.ready_line, "service").unwrap();
    assert_eq!(
        id, first_service,
        "a new bookie's id is its advertised address"
    );
    first
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");

    // Back on another port (another address): the same bookie.
    let second = start(&[]).unwrap();
    let second_service = ready_field(&second.ready_line, "service").unwrap();
    assert_ne!(
        second_service, first_service,
        "port 0 gave the same port twice"
    );
    assert_eq!(ready_field(&second.ready_line, "id").unwrap(), id);
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let registry = BookieRegistry::new(store, KeyLayout::for_cluster("standalone"));
    let listed = wait_for("the new registration", Duration::from_secs(30), || async {
        let l = registry.list(BookieState::Available).await.ok()?;
        (l.len() == 1 && l[0].grpc_address == second_service).then_some(l)
    })
    .await;
    assert_eq!(listed[0].bookie_id, id);
    second
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");

    // Another id on the same disks: refused, naming both.
    let err = start(&["--bookie-id", "someone-else"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("holds the cookie of bookie {id}")) && err.contains("someone-else"),
        "{err}"
    );
}
