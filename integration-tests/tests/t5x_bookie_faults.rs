//! t5x: bookie faults on the real binary — SIGKILL mid-stream, a torn journal tail, fencing
//! across restarts, a wiped disk, a full disk. Each checks that no acknowledged entry is lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bookie::Entry;
use bytes::Bytes;
use common::{EntryId, LedgerId};
use integration_tests::process::KeptDir;
use integration_tests::{BookieProcess, EtcdServer, wait_for};
use meta::{BookieRegistry, BookieState, KeyLayout, MetadataStore};
use proto::bookie::{AddBatch, AddRequest, StatusCode};
use rand::Rng;

const KEY: &[u8] = b"master-key";

fn entry(l: u64, e: u64, size: usize) -> Entry {
    let payload: Vec<u8> = (0..size).map(|i| (e as usize * 31 + i) as u8).collect();
    Entry::new(
        LedgerId(l),
        EntryId(e),
        e as i64 - 1,
        e * 1000,
        Bytes::from(payload),
    )
}

/// Streams adds (window of 64, ledgers 1..=3, sizes 10 B–20 KiB) until the bookie stops
/// answering; counts acknowledgements in `acks` as they arrive and returns every acknowledged
/// entry and the next unused entry id.
async fn write_until_killed(
    mut client: integration_tests::BookieClient,
    first: u64,
    acks: Arc<AtomicUsize>,
) -> (Vec<Entry>, u64) {
    let (tx, mut responses) = client.add_stream().await.unwrap();
    let sent: Arc<Mutex<BTreeMap<u64, Entry>>> = Arc::default();
    let window = Arc::new(tokio::sync::Semaphore::new(64));
    let sender = {
        let (sent, window) = (sent.clone(), window.clone());
        tokio::spawn(async move {
            let mut id = first;
            loop {
                let Ok(permit) = window.acquire().await else {
                    return;
                };
                permit.forget();
                let size = rand::rng().random_range(10..20_000);
                let e = entry(1 + id % 3, id, size);
                sent.lock().unwrap().insert(id, e.clone());
                let req = AddRequest {
                    request_id: id,
                    entry: Some(e.to_proto()),
                    master_key: Bytes::from_static(KEY),
                    recovery: false,
                };
                if tx
                    .send(AddBatch {
                        requests: vec![req],
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                id += 1;
            }
        })
    };
    let mut acked = Vec::new();
    while let Ok(Some(batch)) = responses.message().await {
        for r in batch.responses {
            window.add_permits(1);
            if r.status() == StatusCode::Ok {
                acked.push(sent.lock().unwrap()[&r.request_id].clone());
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    window.close();
    sender.abort();
    let next = sent
        .lock()
        .unwrap()
        .keys()
        .next_back()
        .map_or(first, |k| k + 1);
    (acked, next)
}

async fn assert_all_readable(bk: &BookieProcess, acked: &[Entry], round: usize) {
    let mut client = bk.client().await.unwrap();
    for e in acked {
        let r = client.read(e.ledger.0, e.entry.0).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::Ok,
            "round {round}: acknowledged entry {}:{} lost: {}",
            e.ledger,
            e.entry,
            r.message
        );
        let got = Entry::from_proto(r.entry.unwrap());
        assert!(
            got.verify(),
            "round {round}: {}:{} fails its checksum",
            e.ledger,
            e.entry
        );
        assert_eq!(&got, e, "round {round}: {}:{} differs", e.ledger, e.entry);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_sigkill_mid_stream_loses_no_acknowledged_entry() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t51-");
    // Frequent checkpoints and small journal files, so kills land during checkpoints and
    // file rolls too.
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "crash-bookie")
        .with_env("MAGNETAR_LEDGER_STORAGE__CHECKPOINT_INTERVAL", "100ms")
        .with_env("MAGNETAR_JOURNAL__MAX_FILE_SIZE", "2MiB")
        .with_env("MAGNETAR_JOURNAL__PREALLOCATE", "1MiB");
    bk.start().unwrap();
    let mut all_acked: Vec<Entry> = Vec::new();
    let mut next_id = 0;
    for round in 0..5 {
        let target = rand::rng().random_range(200..1500);
        let acks = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(write_until_killed(
            bk.client().await.unwrap(),
            next_id,
            acks.clone(),
        ));
        // Kill once `target` adds were acknowledged, while adds are still streaming.
        wait_for("adds to be acknowledged", Duration::from_secs(60), || {
            let n = acks.load(Ordering::SeqCst);
            async move { (n >= target).then_some(()) }
        })
        .await;
        bk.kill9();
        let (acked, next) = writer.await.unwrap();
        next_id = next;
        assert!(
            acked.len() >= target,
            "round {round}: only {} acks",
            acked.len()
        );
        all_acked.extend(acked);
        bk.start().unwrap();
        assert_all_readable(&bk, &all_acked, round).await;
    }
    assert!(
        all_acked.len() >= 5 * 100,
        "{} entries acknowledged",
        all_acked.len()
    );
    // The kills landed across journal rolls and recycled files, not in one fresh file.
    let seqs = bookie::journal::file::list_files(&common::fs::RealFs, &bk.journal_dir()).unwrap();
    let newest = *seqs.last().unwrap();
    assert!(newest >= 5, "journal never rolled (newest file {newest})");
    eprintln!(
        "{} entries acknowledged over 5 kills, none lost; newest journal file {newest}",
        all_acked.len()
    );
}

/// The end of the valid data in the newest journal file, and that file's path.
fn journal_tail(bk: &BookieProcess) -> (std::path::PathBuf, u64) {
    let jdir = bk.journal_dir();
    let seqs = bookie::journal::file::list_files(&common::fs::RealFs, &jdir).unwrap();
    let seq = *seqs.last().expect("a journal file");
    let scan = bookie::journal::file::read_file(&common::fs::RealFs, &jdir, seq, 0, |_, _| Ok(()))
        .unwrap();
    (bookie::journal::file::path_of(&jdir, seq), scan.end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_torn_journal_tail_is_truncated_and_everything_before_it_served() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t52-");
    // No checkpoint during the test: the entries live only in the journal.
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "torn-bookie")
        .with_env("MAGNETAR_LEDGER_STORAGE__CHECKPOINT_INTERVAL", "1h");
    bk.start().unwrap();
    let entries: Vec<Entry> = (0..300).map(|e| entry(7, e, 500)).collect();
    let mut client = bk.client().await.unwrap();
    let statuses = client.add_all(&entries, KEY, false).await.unwrap();
    assert!(statuses.iter().all(|s| *s == StatusCode::Ok));
    bk.kill9();

    // A crash mid-write: a batch header promising 4000 bytes, then only part of them.
    let (path, end) = journal_tail(&bk);
    let mut batch = bytes::BytesMut::new();
    let extra = [bookie::journal::JournalRecord::Add(entry(7, 300, 4000))];
    let seq = bookie::journal::file::list_files(&common::fs::RealFs, &bk.journal_dir())
        .unwrap()
        .last()
        .copied()
        .unwrap();
    bookie::journal::file::encode_batch(seq, &extra, &mut batch);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &batch[..batch.len() / 2], end).unwrap();
    drop(f);

    bk.start().unwrap();
    assert_all_readable(&bk, &entries, 0).await;
    let mut client = bk.client().await.unwrap();
    assert_eq!(
        client.read(7, 300).await.unwrap().status(),
        StatusCode::NoEntry
    );
    let log = std::fs::read_to_string(bk.log()).unwrap();
    assert!(
        log.contains("truncating torn journal tail"),
        "no warning in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t53_corruption_before_the_tail_stops_start_up_naming_file_and_offset() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t53-");
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "corrupt-bookie")
        .with_env("MAGNETAR_LEDGER_STORAGE__CHECKPOINT_INTERVAL", "1h");
    bk.start().unwrap();
    let mut client = bk.client().await.unwrap();
    for chunk in 0..3 {
        let entries: Vec<Entry> = (chunk * 10..chunk * 10 + 10)
            .map(|e| entry(8, e, 200))
            .collect();
        client.add_all(&entries, KEY, false).await.unwrap();
    }
    bk.kill9();
    let (path, _) = journal_tail(&bk);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside one of the first batches (how the adds were grouped varies); later batches,
    // written after it was fsynced, are intact.
    bytes[64 + 24 + 8 + 20] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = bk.start_expecting_failure().unwrap();
    assert!(
        err.contains(&path.display().to_string())
            && err.contains("at offset ")
            && err.contains("a valid batch follows"),
        "{err}"
    );
    assert!(
        err.contains("recovery_mode"),
        "the error should say how to override: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t54_fence_survives_restart() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t54-");
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "fence-bookie")
        .with_env("MAGNETAR_LEDGER_STORAGE__CHECKPOINT_INTERVAL", "1h");
    bk.start().unwrap();
    let mut client = bk.client().await.unwrap();
    let first: Vec<Entry> = (0..10).map(|e| entry(9, e, 100)).collect();
    client.add_all(&first, KEY, false).await.unwrap();
    assert_eq!(
        client.fence(9, b"wrong key").await.unwrap(),
        StatusCode::Unauthorized
    );
    assert_eq!(client.fence(9, KEY).await.unwrap(), StatusCode::Ok);
    // Killed right after the fence reply: the fence is only in the journal.
    bk.kill9();
    for restart in 0..2 {
        bk.start().unwrap();
        let mut client = bk.client().await.unwrap();
        let next = [entry(9, 10, 100)];
        assert_eq!(
            client.add_all(&next, KEY, false).await.unwrap(),
            vec![StatusCode::Fenced],
            "restart {restart}: a normal add passed the fence"
        );
        if restart == 0 {
            bk.terminate(); // clean stop: the fence moves into ledger state
        }
    }
    let mut client = bk.client().await.unwrap();
    let recovered = [entry(9, 10, 100)];
    assert_eq!(
        client.add_all(&recovered, KEY, true).await.unwrap(),
        vec![StatusCode::Ok]
    );
    assert_all_readable(&bk, &first, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_wiped_ledger_dir_is_refused_by_the_cookie_check() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t55-");
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "cookie-bookie");
    bk.start().unwrap();
    let mut client = bk.client().await.unwrap();
    client
        .add_all(&[entry(1, 0, 10)], KEY, false)
        .await
        .unwrap();
    assert!(bk.terminate().is_some_and(|s| s.success()));
    std::fs::remove_dir_all(bk.ledger_dir()).unwrap();
    let err = bk.start_expecting_failure().unwrap();
    assert!(
        err.contains("cookie") && err.contains("wiped or swapped"),
        "{err}"
    );
    assert!(
        err.contains("decommission"),
        "the error should say what to do: {err}"
    );
}

/// A small tmpfs for the ledger directory (root only); `None` where mounting is not allowed.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t56_full_disk_turns_read_only_and_back() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t56-");
    // Journal and ledger directories on one small disk: either filling up makes the bookie
    // read-only, and here both do.
    let disk = dir.path().join("small-disk");
    let ledger_dir = disk.join("ledgers");
    let journal_dir = disk.join("journal");
    let (mut bk, fill, _tmpfs) = match Tmpfs::mount(&disk, "32m") {
        Some(t) => {
            let bk = BookieProcess::new(&etcd.url(), &dir.path(), "full-bookie")
                .with_ledger_dir(&ledger_dir)
                .with_journal_dir(&journal_dir)
                .with_env("MAGNETAR_JOURNAL__PREALLOCATE", "1MiB")
                .with_env("MAGNETAR_DISK__USAGE_THRESHOLD", "0.5")
                .with_env("MAGNETAR_DISK__USAGE_LWM_THRESHOLD", "0.3")
                .with_env("MAGNETAR_DISK__CHECK_INTERVAL", "50ms");
            (bk, 20u64 << 20, Some(t))
        }
        None => {
            // No tmpfs: put the thresholds just above the real disk's usage instead.
            std::fs::create_dir_all(&disk).unwrap();
            let (free, total) = bookie::disk::space(&disk).unwrap();
            let used = 1.0 - free as f64 / total as f64;
            let step = (512u64 << 20) as f64 / total as f64;
            let bk = BookieProcess::new(&etcd.url(), &dir.path(), "full-bookie")
                .with_ledger_dir(&ledger_dir)
                .with_journal_dir(&journal_dir)
                .with_env(
                    "MAGNETAR_DISK__USAGE_THRESHOLD",
                    &format!("{}", used + 2.0 * step),
                )
                .with_env(
                    "MAGNETAR_DISK__USAGE_LWM_THRESHOLD",
                    &format!("{}", used + step),
                )
                .with_env("MAGNETAR_DISK__CHECK_INTERVAL", "50ms");
            (bk, 3 * (512u64 << 20), None)
        }
    };
    bk.start().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let registry = BookieRegistry::new(store, KeyLayout::for_cluster("standalone"));
    let ids = |v: Vec<proto::meta::BookieServiceInfo>| {
        v.into_iter().map(|b| b.bookie_id).collect::<Vec<_>>()
    };
    let mut client = bk.client().await.unwrap();
    assert_eq!(
        client
            .add_all(&[entry(2, 0, 10)], KEY, false)
            .await
            .unwrap(),
        vec![StatusCode::Ok]
    );

    let filler = disk.join("filler");
    let status = std::process::Command::new("fallocate")
        .args(["-l", &fill.to_string()])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        "the bookie to turn read-only",
        Duration::from_secs(20),
        || async {
            (ids(registry.list(BookieState::ReadOnly).await.unwrap()) == ["full-bookie"])
                .then_some(())
        },
    )
    .await;
    assert!(
        registry
            .list(BookieState::Available)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        client
            .add_all(&[entry(2, 1, 10)], KEY, false)
            .await
            .unwrap(),
        vec![StatusCode::ReadOnly]
    );
    // Reads still work on a read-only bookie.
    assert_eq!(client.read(2, 0).await.unwrap().status(), StatusCode::Ok);

    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "the bookie to turn writable again",
        Duration::from_secs(20),
        || async {
            (ids(registry.list(BookieState::Available).await.unwrap()) == ["full-bookie"])
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        client
            .add_all(&[entry(2, 1, 10)], KEY, false)
            .await
            .unwrap(),
        vec![StatusCode::Ok]
    );
    bk.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t57_lost_registration_lease_is_re_registered_without_a_crash() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = KeptDir::new("t57-");
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "lease-bookie");
    bk.start().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let keys = KeyLayout::for_cluster("standalone");
    let key = keys.bookie_available(&"lease-bookie".parse().unwrap());
    let kv = store.get(&key).await.unwrap().expect("registered");
    let lease = kv.lease.expect("registration is lease-bound");
    // Someone (an operator, an etcd hiccup) kills the lease: the key goes with it.
    store.revoke_lease(lease).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
    let again = wait_for(
        "the bookie to re-register",
        Duration::from_secs(20),
        || async {
            store
                .get(&key)
                .await
                .unwrap()
                .filter(|kv| kv.lease != Some(lease))
        },
    )
    .await;
    assert!(again.lease.is_some());
    // Still serving.
    let mut client = bk.client().await.unwrap();
    assert_eq!(
        client
            .add_all(&[entry(3, 0, 10)], KEY, false)
            .await
            .unwrap(),
        vec![StatusCode::Ok]
    );
    let log = std::fs::read_to_string(bk.log()).unwrap();
    assert!(
        log.contains("re-registering"),
        "no log line about the lost lease"
    );
}

fn fallocate(path: &std::path::Path, bytes: u64) {
    let status = std::process::Command::new("fallocate")
        .args(["-l", &bytes.to_string()])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "fallocate {}", path.display());
}

/// Regression (issue 9, defect 7): when a journal write fails (here: its disk is full), the
/// bookie turns read-only at once — not at the next disk check, which is an hour away — and
/// answers adds with READ_ONLY instead of taking them and failing every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t58_journal_failure_turns_the_bookie_read_only_at_once() {
    let dir = KeptDir::new("t58-");
    let journal_dir = dir.path().join("journal-disk");
    let Some(_tmpfs) = Tmpfs::mount(&journal_dir, "4m") else {
        eprintln!("t58 skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let etcd = EtcdServer::start().await.unwrap();
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "journal-bookie")
        .with_journal_dir(&journal_dir)
        .with_env("MAGNETAR_JOURNAL__PREALLOCATE", "256KiB")
        .with_env("MAGNETAR_JOURNAL__RECYCLE_FILES", "0")
        .with_env("MAGNETAR_DISK__USAGE_THRESHOLD", "1.0")
        .with_env("MAGNETAR_DISK__USAGE_LWM_THRESHOLD", "1.0")
        .with_env("MAGNETAR_DISK__CHECK_INTERVAL", "1h");
    bk.start().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let registry = BookieRegistry::new(store, KeyLayout::for_cluster("standalone"));
    let mut client = bk.client().await.unwrap();
    let (free, _) = bookie::disk::space(&journal_dir).unwrap();
    fallocate(&journal_dir.join("filler"), free);
    // Adds until the journal cannot write: it overwrites its zeroed window first.
    let mut failed_at = None;
    for e in 0..200u64 {
        let status = client
            .add_all(&[entry(4, e, 64 << 10)], KEY, false)
            .await
            .unwrap()[0];
        if status != StatusCode::Ok {
            failed_at = Some((e, status));
            break;
        }
    }
    let (e, status) = failed_at.expect("the journal disk never filled up");
    eprintln!("add {e} failed with {status:?}");
    wait_for(
        "the bookie to register read-only",
        Duration::from_secs(5),
        || async {
            let ro = registry.list(BookieState::ReadOnly).await.unwrap();
            (ro.len() == 1).then_some(())
        },
    )
    .await;
    assert!(
        registry
            .list(BookieState::Available)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        client
            .add_all(&[entry(4, e + 1, 10)], KEY, false)
            .await
            .unwrap(),
        vec![StatusCode::ReadOnly]
    );
    // Reads of what was acknowledged still work.
    assert_eq!(client.read(4, 0).await.unwrap().status(), StatusCode::Ok);
    let log = std::fs::read_to_string(bk.log()).unwrap();
    assert!(log.contains("journal failed"), "no log line about it");
    bk.kill9();
}

/// Issue 9, defect 7: the journal directory's usage counts for read-only mode as the ledger
/// directory's does (a bookie whose journal disk is nearly full turns read-only, and back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t59_full_journal_disk_turns_read_only_and_back() {
    let dir = KeptDir::new("t59-");
    let journal_dir = dir.path().join("journal-disk");
    let Some(_tmpfs) = Tmpfs::mount(&journal_dir, "32m") else {
        eprintln!("t59 skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    // The ledger directory is on the real disk: put the thresholds between its usage and 1.
    let ledger_dir = dir.path().join("ledgers");
    std::fs::create_dir_all(&ledger_dir).unwrap();
    let used = bookie::disk::usage(&ledger_dir).unwrap();
    let high = used + (1.0 - used) * 0.6;
    let low = used + (1.0 - used) * 0.3;
    if 1.0 - used < 0.05 {
        eprintln!("t59 skipped: the real disk is {used:.2} full");
        return;
    }
    let etcd = EtcdServer::start().await.unwrap();
    let mut bk = BookieProcess::new(&etcd.url(), &dir.path(), "jdisk-bookie")
        .with_ledger_dir(&ledger_dir)
        .with_journal_dir(&journal_dir)
        .with_env("MAGNETAR_JOURNAL__PREALLOCATE", "1MiB")
        .with_env("MAGNETAR_DISK__USAGE_THRESHOLD", &format!("{high}"))
        .with_env("MAGNETAR_DISK__USAGE_LWM_THRESHOLD", &format!("{low}"))
        .with_env("MAGNETAR_DISK__CHECK_INTERVAL", "50ms");
    bk.start().unwrap();
    let store: Arc<dyn MetadataStore> = Arc::new(etcd.store().await.unwrap());
    let registry = BookieRegistry::new(store, KeyLayout::for_cluster("standalone"));
    let state = |want: BookieState| {
        let registry = registry.clone();
        async move { (registry.list(want).await.unwrap().len() == 1).then_some(()) }
    };
    let filler = journal_dir.join("filler");
    let (free, _) = bookie::disk::space(&journal_dir).unwrap();
    fallocate(&filler, free - (1 << 20));
    wait_for("read-only", Duration::from_secs(20), || {
        state(BookieState::ReadOnly)
    })
    .await;
    std::fs::remove_file(&filler).unwrap();
    wait_for("writable again", Duration::from_secs(20), || {
        state(BookieState::Available)
    })
    .await;
    bk.kill9();
}
