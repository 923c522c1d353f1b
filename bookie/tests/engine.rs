//! Engine behaviour in-process: durability across reopen, fencing, master keys, deletion,
//! bounded write cache.

use std::path::Path;
use std::time::Duration;

use bookie::engine::{EngineConfig, RecoveryMode};
use bookie::journal::WriterConfig;
use bookie::storage::StorageConfig;
use bookie::{BookieError, Engine, Entry};
use bytes::Bytes;
use common::{EntryId, LedgerId};

fn config(dir: &Path, cache: usize) -> EngineConfig {
    EngineConfig {
        journal: WriterConfig {
            dir: dir.join("journal"),
            max_group_wait: Duration::from_millis(2),
            max_group_bytes: 512 << 10,
            max_group_entries: 10_000,
            flush_when_queue_empty: true,
            max_file_bytes: 1 << 20,
            preallocate_bytes: 64 << 10,
            queue_capacity: 10_000,
            recycle_files: 2,
        },
        storage: StorageConfig {
            dir: dir.join("ledgers"),
            write_cache_bytes: cache,
            max_throttle: Duration::from_millis(100),
            max_open_files: 4,
            max_index_entries: 1 << 20,
        },
        checkpoint_interval: Duration::from_secs(3600),
        recovery_mode: RecoveryMode::Strict,
        fs: common::fs::real(),
    }
}

async fn open(dir: &Path) -> Engine {
    let c = config(dir, 64 << 20);
    tokio::task::spawn_blocking(move || Engine::open(c))
        .await
        .unwrap()
        .unwrap()
}

fn entry(l: u64, e: u64) -> Entry {
    Entry::new(
        LedgerId(l),
        EntryId(e),
        e as i64 - 1,
        (e + 1) * 100,
        Bytes::from(format!("ledger {l} entry {e}").into_bytes()),
    )
}

const KEY: Bytes = Bytes::from_static(b"key");

#[tokio::test]
async fn entries_survive_reopen_from_journal_and_from_ledger_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let eng = open(dir.path()).await;
        for e in 0..50 {
            eng.add(entry(1, e), KEY, false).await.unwrap();
        }
        eng.checkpoint().await.unwrap(); // 0..50 now in ledger files
        for e in 50..100 {
            eng.add(entry(1, e), KEY, false).await.unwrap();
        }
        // Dropped without a checkpoint: 50..100 only in the journal.
    }
    let eng = open(dir.path()).await;
    for e in 0..100 {
        let (got, lac) = eng.read(LedgerId(1), EntryId(e), None).await.unwrap();
        assert_eq!(got, entry(1, e));
        assert_eq!(lac, 98);
    }
    let info = eng.info(LedgerId(1)).await.unwrap();
    assert_eq!((info.entries, info.last_entry), (100, Some(EntryId(99))));
    assert!(matches!(
        eng.read(LedgerId(1), EntryId(100), None).await,
        Err(BookieError::NoEntry { .. })
    ));
    assert!(matches!(
        eng.read(LedgerId(2), EntryId(0), None).await,
        Err(BookieError::NoLedger { .. })
    ));
}

#[tokio::test]
async fn fence_refuses_normal_adds_survives_restart_and_admits_recovery_adds() {
    let dir = tempfile::tempdir().unwrap();
    {
        let eng = open(dir.path()).await;
        eng.add(entry(3, 0), KEY, false).await.unwrap();
        let lac = eng.fence(LedgerId(3), KEY).await.unwrap();
        assert_eq!(lac, -1);
        assert!(matches!(
            eng.add(entry(3, 1), KEY, false).await,
            Err(BookieError::Fenced { .. })
        ));
        // A fence on a ledger this bookie never saw creates it fenced.
        eng.fence(LedgerId(4), KEY).await.unwrap();
    }
    for _ in 0..2 {
        let eng = open(dir.path()).await;
        assert!(matches!(
            eng.add(entry(3, 1), KEY, false).await,
            Err(BookieError::Fenced { .. })
        ));
        assert!(matches!(
            eng.add(entry(4, 0), KEY, false).await,
            Err(BookieError::Fenced { .. })
        ));
        assert!(eng.info(LedgerId(3)).await.unwrap().fenced);
        eng.checkpoint().await.unwrap(); // second round reads the fence from ledger state
    }
    let eng = open(dir.path()).await;
    eng.add(entry(3, 1), KEY, true).await.unwrap();
    assert_eq!(
        eng.read(LedgerId(3), EntryId(1), None).await.unwrap().0,
        entry(3, 1)
    );
}

#[tokio::test]
async fn wrong_master_key_and_bad_checksum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let eng = open(dir.path()).await;
    eng.add(entry(5, 0), KEY, false).await.unwrap();
    let err = eng
        .add(entry(5, 1), Bytes::from_static(b"other"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, BookieError::Unauthorized { .. }), "{err}");
    let err = eng
        .fence(LedgerId(5), Bytes::from_static(b"other"))
        .await
        .unwrap_err();
    assert!(matches!(err, BookieError::Unauthorized { .. }), "{err}");
    let mut bad = entry(5, 1);
    bad.payload = Bytes::from_static(b"tampered");
    let err = eng.add(bad, KEY, false).await.unwrap_err();
    assert!(matches!(err, BookieError::BadRequest(_)), "{err}");
}

#[tokio::test]
async fn delete_frees_disk_at_once_and_is_not_resurrected_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_files = dir.path().join("ledgers/ledgers");
    {
        let eng = open(dir.path()).await;
        for e in 0..20 {
            eng.add(entry(7, e), KEY, false).await.unwrap();
            eng.add(entry(8, e), KEY, false).await.unwrap();
        }
        eng.checkpoint().await.unwrap();
        assert!(ledger_files.join(format!("{:020}.dat", 7)).exists());
        eng.add(entry(7, 20), KEY, false).await.unwrap(); // journal only
        eng.delete(LedgerId(7)).await.unwrap();
        assert!(!ledger_files.join(format!("{:020}.dat", 7)).exists());
        assert!(eng.info(LedgerId(7)).await.is_err());
    }
    let eng = open(dir.path()).await;
    assert!(matches!(
        eng.info(LedgerId(7)).await,
        Err(BookieError::NoLedger { .. })
    ));
    assert_eq!(eng.info(LedgerId(8)).await.unwrap().entries, 20);
}

#[tokio::test]
async fn full_write_cache_throttles_then_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 4096);
    let eng = tokio::task::spawn_blocking(move || Engine::open(c))
        .await
        .unwrap()
        .unwrap();
    let big = |e: u64| Entry::new(LedgerId(9), EntryId(e), -1, 0, Bytes::from(vec![1u8; 1500]));
    eng.add(big(0), KEY, false).await.unwrap();
    eng.add(big(1), KEY, false).await.unwrap();
    // No checkpoint runs (no background task): the third add cannot fit.
    let err = eng.add(big(2), KEY, false).await.unwrap_err();
    assert!(matches!(err, BookieError::TooManyRequests(_)), "{err}");
    eng.checkpoint().await.unwrap();
    eng.add(big(2), KEY, false).await.unwrap();
}

#[tokio::test]
async fn read_lac_long_polls_until_a_newer_lac() {
    let dir = tempfile::tempdir().unwrap();
    let eng = std::sync::Arc::new(open(dir.path()).await);
    eng.add(entry(10, 0), KEY, false).await.unwrap();
    assert_eq!(
        eng.read_lac(LedgerId(10), -5, Duration::ZERO)
            .await
            .unwrap(),
        -1
    );
    let poller = {
        let eng = eng.clone();
        tokio::spawn(async move {
            eng.read_lac(LedgerId(10), -1, Duration::from_secs(10))
                .await
        })
    };
    eng.add(entry(10, 1), KEY, false).await.unwrap(); // carries lac 0
    let lac = tokio::time::timeout(Duration::from_secs(5), poller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(lac, 0);
}

/// Regression (issue 9, defect 2): a checkpoint whose ledger-state write fails for one ledger
/// must keep every ledger not yet written dirty. Before the fix, the ledgers after the failing
/// one lost their dirty flag, the next checkpoint moved the mark past their Fence records, and
/// after a restart a fenced ledger took the old writer's adds again.
#[tokio::test]
async fn a_failed_state_write_keeps_later_ledgers_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("ledgers/ledgers");
    {
        let eng = open(dir.path()).await;
        for l in 21..=23 {
            eng.fence(LedgerId(l), KEY).await.unwrap();
        }
        // Ledger 21's state is written first (ascending ids); make that write fail the way a
        // full disk would, by putting a directory where its temporary file must go.
        let blocker = files.join(format!("{:020}.meta.tmp", 21));
        std::fs::create_dir_all(&blocker).unwrap();
        eng.checkpoint().await.unwrap_err();
        std::fs::remove_dir(&blocker).unwrap();
        // This checkpoint succeeds and moves the mark past all three Fence records.
        eng.checkpoint().await.unwrap();
    }
    let eng = open(dir.path()).await;
    for l in 21..=23 {
        assert!(
            matches!(
                eng.add(entry(l, 0), KEY, false).await,
                Err(BookieError::Fenced { .. })
            ),
            "ledger {l} must still be fenced after the restart"
        );
    }
}

/// Regression (issue 9, defect 3): a master key is taken only once its journal record is
/// queued. Before the fix, a full journal queue refused the MasterKey record while the key
/// stayed set in memory; the ledger's next add was journaled and acknowledged, and after a
/// restart the ledger had no key, so any writer's key was accepted.
///
/// A queue of one record and many ledgers' first adds racing for it make refusals happen; the
/// check holds whichever of them are refused.
#[tokio::test]
async fn a_refused_master_key_record_leaves_the_key_unset() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 64 << 20);
    c.journal.queue_capacity = 1;
    c.journal.flush_when_queue_empty = false;
    c.journal.max_group_wait = Duration::from_millis(1);
    let eng = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || Engine::open(c))
            .await
            .unwrap()
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for l in 100..160u64 {
        let eng = eng.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            // Retry until one add of the ledger is acknowledged.
            for attempt in 0..10_000 {
                match eng.add(entry(l, 0), KEY, false).await {
                    Ok(()) => return refused,
                    Err(BookieError::TooManyRequests(_)) => refused += 1,
                    Err(e) => panic!("ledger {l} attempt {attempt}: {e}"),
                }
                tokio::task::yield_now().await;
            }
            panic!("ledger {l}: no add acknowledged");
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    drop(eng);
    // Every ledger has an acknowledged add; after a restart each must still refuse another key.
    let eng = open(dir.path()).await;
    for l in 100..160u64 {
        let err = eng
            .add(entry(l, 1), Bytes::from_static(b"intruder"), false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BookieError::Unauthorized { .. }),
            "ledger {l} lost its key ({refused} adds were refused by the full queue): {err}"
        );
    }
}

/// Ledger data files this process has open (nextest runs each test in its own process).
fn open_data_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|p| p.extension().is_some_and(|x| x == "dat"))
                .count()
        })
        .unwrap_or(0)
}

/// Issue 9, defect 6: however many ledgers are read, at most `ledger_storage.max_open_files`
/// data files stay open (least recently used closed first), and every entry still reads back.
#[tokio::test]
async fn open_files_stay_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 64 << 20);
    c.storage.max_open_files = 2;
    let eng = tokio::task::spawn_blocking(move || Engine::open(c))
        .await
        .unwrap()
        .unwrap();
    for l in 30..40 {
        for e in 0..20 {
            eng.add(entry(l, e), KEY, false).await.unwrap();
        }
    }
    eng.checkpoint().await.unwrap();
    assert!(eng.storage().open_files() <= 2);
    for round in 0..3 {
        for e in 0..20 {
            for l in 30..40 {
                let (got, _) = eng.read(LedgerId(l), EntryId(e), None).await.unwrap();
                assert_eq!(got, entry(l, e), "round {round}");
                assert!(eng.storage().open_files() <= 2);
            }
        }
    }
    let fds = open_data_files();
    assert!(fds <= 2, "{fds} ledger data files open");
}

/// Review finding 10: a recovery add passes the fence, so it must not rewrite an entry that
/// is stored (the same bytes again are accepted); an entry claiming a LAC at or past its own
/// id is refused (recovery would close the ledger at a made-up entry); an entry larger than
/// replay reads back is refused, never acknowledged.
#[tokio::test]
async fn recovery_adds_do_not_rewrite_and_forged_lacs_and_huge_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let eng = open(dir.path()).await;
    eng.add(entry(7, 0), KEY, false).await.unwrap();
    eng.add(entry(7, 1), KEY, false).await.unwrap();
    eng.fence(LedgerId(7), KEY).await.unwrap();
    let forged = Entry::new(
        LedgerId(7),
        EntryId(1),
        0,
        200,
        Bytes::from_static(b"forged"),
    );
    assert!(matches!(
        eng.add(forged, KEY, true).await,
        Err(BookieError::BadRequest(_))
    ));
    eng.add(entry(7, 1), KEY, true).await.unwrap();
    assert_eq!(
        eng.read(LedgerId(7), EntryId(1), None).await.unwrap().0,
        entry(7, 1)
    );
    // A gap is filled by recovery as before.
    eng.add(entry(7, 2), KEY, true).await.unwrap();
    for lac in [5, 1_000_000_000_000] {
        let e = Entry::new(LedgerId(8), EntryId(5), lac, 100, Bytes::from_static(b"x"));
        assert!(matches!(
            eng.add(e, KEY, false).await,
            Err(BookieError::BadRequest(_))
        ));
    }
    assert_eq!(eng.lac(LedgerId(8)).await.unwrap_or(-1), -1);
    let huge = Entry::new(
        LedgerId(9),
        EntryId(0),
        -1,
        17 << 20,
        Bytes::from(vec![0u8; bookie::engine::MAX_ENTRY_PAYLOAD + 1]),
    );
    assert!(matches!(
        eng.add(huge, KEY, false).await,
        Err(BookieError::BadRequest(_))
    ));
}

/// Fuzz target: bookie gRPC requests, decoded from any bytes and served by the engine as the
/// handlers do (a kind byte, then the encoded request). Each gets an answer or an error,
/// never a panic; ledger ids are folded into a few so requests meet each other's state.
#[test]
fn fuzz_grpc_requests() {
    use bookie::engine::AddItem;
    use prost::Message as _;
    use proto::bookie as pb;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let eng = rt.block_on(open(dir.path()));
    let add = |recovery| pb::AddBatch {
        requests: vec![pb::AddRequest {
            request_id: 1,
            entry: Some(entry(1, 0).to_proto()),
            master_key: KEY,
            recovery,
        }],
    };
    let mut seeds = vec![];
    for (kind, bytes) in [
        (0u8, add(false).encode_to_vec()),
        (0, add(true).encode_to_vec()),
        (
            1,
            pb::ReadRequest {
                ledger_id: 1,
                entry_id: 0,
                fence: true,
                master_key: KEY,
            }
            .encode_to_vec(),
        ),
        (
            2,
            pb::ReadLacRequest {
                ledger_id: 1,
                previous_lac: -1,
                timeout_ms: 5,
            }
            .encode_to_vec(),
        ),
        (
            3,
            pb::FenceRequest {
                ledger_id: 2,
                master_key: KEY,
            }
            .encode_to_vec(),
        ),
        (4, pb::LedgerInfoRequest { ledger_id: 1 }.encode_to_vec()),
        (5, pb::DeleteLedgerRequest { ledger_id: 3 }.encode_to_vec()),
    ] {
        let mut v = vec![kind];
        v.extend(bytes);
        seeds.push(v);
    }
    let fold = |id: u64| LedgerId(id % 8);
    common::fuzz::run("bookie_grpc", &seeds, |input| {
        let [kind, rest @ ..] = input else { return };
        rt.block_on(async {
            match kind % 6 {
                0 => {
                    let Ok(b) = pb::AddBatch::decode(rest) else {
                        return;
                    };
                    let items = b
                        .requests
                        .into_iter()
                        .filter_map(|r| {
                            let mut e = r.entry?;
                            e.ledger_id = fold(e.ledger_id).0;
                            Some(AddItem {
                                entry: Entry::from_proto(e),
                                master_key: r.master_key,
                                recovery: r.recovery,
                            })
                        })
                        .collect();
                    let _ = eng.add_batch(items).await;
                }
                1 => {
                    let Ok(r) = pb::ReadRequest::decode(rest) else {
                        return;
                    };
                    let fence = r.fence.then_some(r.master_key);
                    let _ = eng
                        .read(fold(r.ledger_id), EntryId(r.entry_id), fence)
                        .await;
                }
                2 => {
                    let Ok(r) = pb::ReadLacRequest::decode(rest) else {
                        return;
                    };
                    let wait = Duration::from_millis(u64::from(r.timeout_ms.min(5)));
                    let _ = eng.read_lac(fold(r.ledger_id), r.previous_lac, wait).await;
                }
                3 => {
                    let Ok(r) = pb::FenceRequest::decode(rest) else {
                        return;
                    };
                    let _ = eng.fence(fold(r.ledger_id), r.master_key).await;
                }
                4 => {
                    let Ok(r) = pb::LedgerInfoRequest::decode(rest) else {
                        return;
                    };
                    let _ = eng.info(fold(r.ledger_id)).await;
                }
                _ => {
                    let Ok(r) = pb::DeleteLedgerRequest::decode(rest) else {
                        return;
                    };
                    let _ = eng.delete(fold(r.ledger_id)).await;
                }
            }
        });
    });
}
