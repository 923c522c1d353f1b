//! The contract every metadata backend passes. Each case takes a fresh, empty store;
//! [`conformance_tests!`](crate::conformance_tests) turns them into `#[tokio::test]`s for
//! one backend, so `cargo test` lists each case per backend.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{BookieId, LedgerId};
use proto::meta::{BookieServiceInfo, Cookie, LedgerMetadata, LedgerState, Segment};

use super::wait_for;
use crate::{
    BookieRegistry, BookieState, EventKind, KeyLayout, Lease, LedgerStore, MetaError,
    MetadataStore, PutCondition, Revision, Txn, Version, range_all,
};

type Store = Arc<dyn MetadataStore>;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Lease TTL for the lease cases: etcd's minimum is about 2 s.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

/// Instantiates every conformance case as a `#[tokio::test]` for one backend.
/// `$fixture` is an async expression evaluating to `(Arc<dyn MetadataStore>, guard)`; the
/// guard (a server process, a temp dir) lives until the case ends.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            put_get_and_versions, create_if_absent, concurrent_cas_one_winner_per_round,
            delete_on_version, range_pages_cover_prefix_exactly, txn_is_all_or_nothing,
            watch_delivers_every_event_in_order, watch_resumes_from_revision,
            watch_from_compacted_revision_fails_then_resyncs,
            lease_expiry_deletes_keys_and_notifies_holder, keep_alive_holds_keys_past_three_ttls,
            put_on_revoked_lease_is_lease_expired, concurrent_id_allocation_is_unique,
            ledger_metadata_crud, bookie_registration_and_cookies,
            oversized_request_is_refused);
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (store, _guard) = $fixture.await;
            $crate::testing::conformance::$case(store).await;
        }
    )*};
}

/// Puts return increasing versions; get returns value and version.
pub async fn put_get_and_versions(s: Store) {
    assert!(s.get("/t/a").await.unwrap().is_none());
    let v1 = s
        .put("/t/a", b("1"), PutCondition::Always, None)
        .await
        .unwrap();
    let v2 = s
        .put("/t/a", b("2"), PutCondition::Always, None)
        .await
        .unwrap();
    assert!(v2 > v1, "versions increase: {v1} then {v2}");
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(kv.value, b("2"));
    assert_eq!(kv.version, v2);
    assert_eq!(kv.create_revision, Revision(v1.0));
    assert_eq!(kv.lease, None);
}

/// Create-if-absent succeeds once, then reports `AlreadyExists`.
pub async fn create_if_absent(s: Store) {
    s.put("/t/c", b("x"), PutCondition::Absent, None)
        .await
        .unwrap();
    let err = s
        .put("/t/c", b("y"), PutCondition::Absent, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MetaError::AlreadyExists { ref key } if key == "/t/c"),
        "{err}"
    );
    assert_eq!(s.get("/t/c").await.unwrap().unwrap().value, b("x"));
    // A CAS on a missing key is a version mismatch, not a create.
    let err = s
        .put(
            "/t/missing",
            b("z"),
            PutCondition::Version(Version(1)),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::BadVersion { .. }), "{err}");
}

/// N writers read the same version and CAS concurrently: exactly one wins each round.
pub async fn concurrent_cas_one_winner_per_round(s: Store) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 15;
    let mut version = s
        .put("/t/cas", b("0"), PutCondition::Always, None)
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.put(
                        "/t/cas",
                        b(&format!("{round}-{w}")),
                        PutCondition::Version(version),
                        None,
                    )
                    .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (w, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(v) => winners.push((w, v)),
                Err(MetaError::BadVersion { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (w, v) = winners[0];
        let kv = s.get("/t/cas").await.unwrap().unwrap();
        assert_eq!(kv.value, b(&format!("{round}-{w}")));
        assert_eq!(kv.version, v);
        version = v;
    }
}

/// Delete honours the expected version and reports missing keys.
pub async fn delete_on_version(s: Store) {
    let v = s
        .put("/t/d", b("1"), PutCondition::Always, None)
        .await
        .unwrap();
    let err = s
        .delete("/t/d", Some(Version(v.0 + 100)))
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::BadVersion { .. }), "{err}");
    assert!(s.get("/t/d").await.unwrap().is_some());
    s.delete("/t/d", Some(v)).await.unwrap();
    assert!(s.get("/t/d").await.unwrap().is_none());
    let err = s.delete("/t/d", None).await.unwrap_err();
    assert!(matches!(err, MetaError::NotFound { .. }), "{err}");
    let err = s.delete("/t/d", Some(v)).await.unwrap_err();
    assert!(matches!(err, MetaError::NotFound { .. }), "{err}");
    // Re-created keys get a fresh version: an old CAS token cannot match.
    let v2 = s
        .put("/t/d", b("2"), PutCondition::Absent, None)
        .await
        .unwrap();
    assert!(v2 > v);
}

/// Paginated listing returns every key under the prefix once, in order, and nothing else.
pub async fn range_pages_cover_prefix_exactly(s: Store) {
    for i in 0..23 {
        s.put(&format!("/t/r/{i:03}"), b("v"), PutCondition::Always, None)
            .await
            .unwrap();
    }
    for outside in ["/t/r", "/t/r0", "/t/q/1", "/t/s"] {
        s.put(outside, b("x"), PutCondition::Always, None)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.range("/t/r/", after.as_deref(), 7).await.unwrap();
        pages += 1;
        assert!(page.kvs.len() <= 7);
        after = page.kvs.last().map(|kv| kv.key.clone());
        seen.extend(page.kvs.into_iter().map(|kv| kv.key));
        if !page.more {
            break;
        }
    }
    let expected: Vec<String> = (0..23).map(|i| format!("/t/r/{i:03}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    let (all, rev) = range_all(s.as_ref(), "/t/r/", 5).await.unwrap();
    assert_eq!(all.len(), 23);
    assert!(rev.0 > 0);
    assert!(
        s.range("/t/r/", None, 0).await.is_err(),
        "limit 0 is refused"
    );
}

/// A transaction applies all its ops when every compare holds, and nothing otherwise.
pub async fn txn_is_all_or_nothing(s: Store) {
    let va = s
        .put("/t/x/a", b("a1"), PutCondition::Always, None)
        .await
        .unwrap();
    s.put("/t/x/c", b("c1"), PutCondition::Always, None)
        .await
        .unwrap();
    let rev = s
        .txn(
            Txn::new()
                .if_version("/t/x/a", va)
                .if_absent("/t/x/b")
                .put("/t/x/a", b("a2"))
                .put("/t/x/b", b("b1"))
                .delete("/t/x/c"),
        )
        .await
        .unwrap();
    let a = s.get("/t/x/a").await.unwrap().unwrap();
    let bkv = s.get("/t/x/b").await.unwrap().unwrap();
    assert_eq!((a.value.clone(), a.version.0), (b("a2"), rev.0));
    assert_eq!(bkv.version.0, rev.0, "every op commits at one revision");
    assert!(s.get("/t/x/c").await.unwrap().is_none());

    // Stale version on a: nothing changes, and the error names a.
    let err = s
        .txn(
            Txn::new()
                .if_version("/t/x/a", va)
                .put("/t/x/a", b("a3"))
                .delete("/t/x/b"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, MetaError::BadVersion { ref key, .. } if key == "/t/x/a"),
        "{err}"
    );
    // b exists: the absent compare fails with AlreadyExists naming b.
    let err = s
        .txn(Txn::new().if_absent("/t/x/b").put("/t/x/z", b("z")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MetaError::AlreadyExists { ref key } if key == "/t/x/b"),
        "{err}"
    );
    assert_eq!(s.get("/t/x/a").await.unwrap().unwrap().value, b("a2"));
    assert!(s.get("/t/x/b").await.unwrap().is_some());
    assert!(s.get("/t/x/z").await.unwrap().is_none());
}

/// Concurrent writers; a watcher sees every change under its prefix, in revision order,
/// and replaying them reproduces the final state.
pub async fn watch_delivers_every_event_in_order(s: Store) {
    let mut w = s.watch("/t/w/", None).await.unwrap();
    s.put("/t/other", b("x"), PutCondition::Always, None)
        .await
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|wr| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let key = format!("/t/w/{}", (wr * 7 + i) % 10);
                    if i % 5 == 4 {
                        let _ = s.delete(&key, None).await;
                    } else {
                        s.put(&key, b(&format!("{wr}-{i}")), PutCondition::Always, None)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in writers {
        t.await.unwrap();
    }
    let (final_kvs, _) = range_all(s.as_ref(), "/t/w/", 100).await.unwrap();
    // A sentinel marks the end of the stream to read.
    let end = s
        .put("/t/w/~end", b(""), PutCondition::Always, None)
        .await
        .unwrap();
    let mut replayed: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut last = 0;
    while last < end.0 {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
            .expect("watch error");
        assert!(
            ev.kv.key.starts_with("/t/w/"),
            "outside prefix: {}",
            ev.kv.key
        );
        assert!(
            ev.revision().0 > last,
            "out of order: {} after {last}",
            ev.revision()
        );
        last = ev.revision().0;
        match ev.kind {
            EventKind::Put => {
                replayed.insert(ev.kv.key, ev.kv.value);
            }
            EventKind::Delete => {
                replayed.remove(&ev.kv.key);
            }
        }
    }
    assert_eq!(last, end.0);
    replayed.remove("/t/w/~end");
    let expected: BTreeMap<String, Bytes> =
        final_kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(replayed, expected);
}

/// A watch from a past revision replays history from exactly that revision.
pub async fn watch_resumes_from_revision(s: Store) {
    let mut versions = Vec::new();
    for i in 0..10 {
        versions.push(
            s.put(&format!("/t/h/{i}"), b("v"), PutCondition::Always, None)
                .await
                .unwrap(),
        );
    }
    let from = versions[4];
    let mut w = s.watch("/t/h/", Some(Revision(from.0))).await.unwrap();
    for (i, v) in versions.iter().enumerate().skip(4) {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        assert_eq!(ev.kv.key, format!("/t/h/{i}"));
        assert_eq!(ev.kv.version, *v);
    }
    // And it keeps following live changes.
    let v = s
        .put("/t/h/live", b("v"), PutCondition::Always, None)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch stalled")
        .unwrap()
        .unwrap();
    assert_eq!((ev.kv.key.as_str(), ev.kv.version), ("/t/h/live", v));
}

/// A watch from before the compaction point fails with `Compacted`; re-listing and watching
/// from the listing's revision recovers every later change.
pub async fn watch_from_compacted_revision_fails_then_resyncs(s: Store) {
    let first = s
        .put("/t/k/a", b("1"), PutCondition::Always, None)
        .await
        .unwrap();
    let mut last = first;
    for i in 0..5 {
        last = s
            .put("/t/k/a", b(&format!("{i}")), PutCondition::Always, None)
            .await
            .unwrap();
    }
    s.compact(Revision(last.0)).await.unwrap();
    let mut w = s.watch("/t/k/", Some(Revision(first.0))).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch stalled")
        .expect("watch ended without an error");
    match res {
        Err(MetaError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, Revision(first.0));
            assert!(compacted.0 >= last.0, "{compacted} < {last}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Resync: list, then watch from the listing's revision + 1.
    let (kvs, rev) = range_all(s.as_ref(), "/t/k/", 10).await.unwrap();
    assert_eq!(kvs.len(), 1);
    let mut w = s.watch("/t/k/", Some(Revision(rev.0 + 1))).await.unwrap();
    let v = s
        .put("/t/k/b", b("new"), PutCondition::Always, None)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch stalled")
        .unwrap()
        .unwrap();
    assert_eq!((ev.kv.key.as_str(), ev.kv.version), ("/t/k/b", v));
}

/// A lease that is not kept alive expires, deleting its keys (watchers see the deletes);
/// a kept-alive lease whose lease is revoked elsewhere notifies its holder.
pub async fn lease_expiry_deletes_keys_and_notifies_holder(s: Store) {
    let lease = s.grant_lease(LEASE_TTL).await.unwrap();
    s.put("/t/l/a", b("1"), PutCondition::Always, Some(lease))
        .await
        .unwrap();
    s.put("/t/l/b", b("1"), PutCondition::Always, Some(lease))
        .await
        .unwrap();
    assert_eq!(s.get("/t/l/a").await.unwrap().unwrap().lease, Some(lease));
    let mut w = s.watch("/t/l/", None).await.unwrap();
    let mut deleted = HashSet::new();
    while deleted.len() < 2 {
        let ev = tokio::time::timeout(LEASE_TTL * 5, w.next())
            .await
            .expect("lease did not expire in 5 TTLs")
            .unwrap()
            .unwrap();
        assert_eq!(ev.kind, EventKind::Delete);
        deleted.insert(ev.kv.key);
    }
    assert!(s.get("/t/l/a").await.unwrap().is_none());
    let err = s.keep_alive(lease).await.unwrap_err();
    assert!(matches!(err, MetaError::LeaseExpired { .. }), "{err}");

    // The holder of a kept-alive lease learns when it is taken away.
    let held = Lease::grant(s.clone(), LEASE_TTL).await.unwrap();
    s.put("/t/l/held", b("1"), PutCondition::Always, Some(held.id()))
        .await
        .unwrap();
    assert!(!held.is_lost());
    s.revoke_lease(held.id()).await.unwrap();
    let lost = held.lost();
    tokio::time::timeout(LEASE_TTL * 3, lost.cancelled())
        .await
        .expect("holder was not notified of the lost lease");
    assert!(s.get("/t/l/held").await.unwrap().is_none());
}

/// Keep-alive holds a lease's keys well past its TTL; revoking deletes them at once.
pub async fn keep_alive_holds_keys_past_three_ttls(s: Store) {
    let lease = Lease::grant(s.clone(), LEASE_TTL).await.unwrap();
    s.put("/t/ka", b("1"), PutCondition::Always, Some(lease.id()))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    wait_for("3 x TTL to pass with the key held", LEASE_TTL * 6, || {
        let s = s.clone();
        let lease_lost = lease.is_lost();
        async move {
            assert!(!lease_lost, "lease lost while kept alive");
            assert!(
                s.get("/t/ka").await.unwrap().is_some(),
                "key vanished while kept alive"
            );
            (start.elapsed() >= LEASE_TTL * 3).then_some(())
        }
    })
    .await;
    lease.revoke().await.unwrap();
    assert!(s.get("/t/ka").await.unwrap().is_none());
}

/// Binding a key to a revoked lease fails with `LeaseExpired`.
pub async fn put_on_revoked_lease_is_lease_expired(s: Store) {
    let lease = s.grant_lease(LEASE_TTL).await.unwrap();
    s.revoke_lease(lease).await.unwrap();
    let err = s
        .put("/t/dead", b("1"), PutCondition::Always, Some(lease))
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::LeaseExpired { .. }), "{err}");
    assert!(s.get("/t/dead").await.unwrap().is_none());
    let err = s.revoke_lease(lease).await.unwrap_err();
    assert!(matches!(err, MetaError::LeaseExpired { .. }), "{err}");
}

/// Several allocators (as in different processes) never hand out the same ledger id.
pub async fn concurrent_id_allocation_is_unique(s: Store) {
    const ALLOCATORS: u64 = 4;
    const PER: usize = 100;
    let tasks: Vec<_> = (0..ALLOCATORS)
        .map(|i| {
            let ledgers =
                LedgerStore::new(s.clone(), KeyLayout::with_root("/t/ids")).with_id_block(3 + i);
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(PER);
                for _ in 0..PER {
                    ids.push(ledgers.next_id().await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "ledger id {id} handed out twice");
            assert!(id.0 >= crate::ledgers::FIRST_LEDGER_ID);
        }
    }
    assert_eq!(all.len(), ALLOCATORS as usize * PER);
}

/// Ledger metadata: create with a fresh id, read, CAS update, stale update refused, list,
/// delete.
pub async fn ledger_metadata_crud(s: Store) {
    let ledgers = LedgerStore::new(s.clone(), KeyLayout::with_root("/t/cl"));
    let meta = LedgerMetadata {
        state: LedgerState::Open as i32,
        ensemble_size: 3,
        write_quorum: 2,
        ack_quorum: 2,
        segments: vec![Segment {
            first_entry_id: 0,
            bookies: vec!["b1:1".into(), "b2:1".into(), "b3:1".into()],
        }],
        last_entry_id: -1,
        ..Default::default()
    };
    let (id, v1) = ledgers.create(meta.clone()).await.unwrap();
    let (id2, _) = ledgers.create(meta.clone()).await.unwrap();
    assert_ne!(id, id2);
    let (read, v) = ledgers.get(id).await.unwrap();
    assert_eq!(v, v1);
    assert_eq!(read.ledger_id, id.0);
    assert_eq!(read.segments, meta.segments);
    assert!(read.ctime_ms > 0);
    let mut closed = read.clone();
    closed.state = LedgerState::Closed as i32;
    closed.last_entry_id = 41;
    let v2 = ledgers.update(id, closed.clone(), v1).await.unwrap();
    let err = ledgers.update(id, read, v1).await.unwrap_err();
    assert!(matches!(err, MetaError::BadVersion { .. }), "{err}");
    let (now, v) = ledgers.get(id).await.unwrap();
    assert_eq!((now.last_entry_id, v), (41, v2));
    let (ids, more) = ledgers.list(None, 10).await.unwrap();
    assert_eq!(ids, vec![id, id2]);
    assert!(!more);
    ledgers.delete(id, Some(v2)).await.unwrap();
    let err = ledgers.get(id).await.unwrap_err();
    assert!(matches!(err, MetaError::NotFound { .. }), "{err}");
    let err = ledgers.get(LedgerId(999_999)).await.unwrap_err();
    assert!(matches!(err, MetaError::NotFound { .. }), "{err}");
}

/// Bookies register under available, move to read-only in one step, vanish with their
/// lease; cookies are created once and compared-and-set.
pub async fn bookie_registration_and_cookies(s: Store) {
    let reg = BookieRegistry::new(s.clone(), KeyLayout::with_root("/t/bk"));
    let lease = s.grant_lease(LEASE_TTL).await.unwrap();
    let info = |id: &str| BookieServiceInfo {
        bookie_id: id.into(),
        grpc_address: format!("{id}:3181"),
        ..Default::default()
    };
    reg.register(&info("b1"), BookieState::Available, lease)
        .await
        .unwrap();
    reg.register(&info("b2"), BookieState::Available, lease)
        .await
        .unwrap();
    let ids = |v: Vec<BookieServiceInfo>| v.into_iter().map(|i| i.bookie_id).collect::<Vec<_>>();
    assert_eq!(
        ids(reg.list(BookieState::Available).await.unwrap()),
        ["b1", "b2"]
    );
    reg.register(&info("b2"), BookieState::ReadOnly, lease)
        .await
        .unwrap();
    assert_eq!(ids(reg.list(BookieState::Available).await.unwrap()), ["b1"]);
    assert_eq!(ids(reg.list(BookieState::ReadOnly).await.unwrap()), ["b2"]);
    assert!(
        reg.register(&info("bad/id"), BookieState::Available, lease)
            .await
            .is_err()
    );
    s.revoke_lease(lease).await.unwrap();
    assert!(reg.list(BookieState::Available).await.unwrap().is_empty());
    assert!(reg.list(BookieState::ReadOnly).await.unwrap().is_empty());

    let instance = reg.instance_id().await.unwrap();
    assert_eq!(
        reg.instance_id().await.unwrap(),
        instance,
        "instance id is stable"
    );
    let b1 = BookieId::new("b1").unwrap();
    assert!(reg.cookie(&b1).await.unwrap().is_none());
    let cookie = Cookie {
        bookie_id: "b1".into(),
        instance_id: instance,
        journal_dirs: vec!["/j".into()],
        ledger_dirs: vec!["/l".into()],
        ..Default::default()
    };
    let v = reg.put_cookie(&cookie, PutCondition::Absent).await.unwrap();
    let err = reg
        .put_cookie(&cookie, PutCondition::Absent)
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::AlreadyExists { .. }), "{err}");
    let (read, rv) = reg.cookie(&b1).await.unwrap().unwrap();
    assert_eq!((read.journal_dirs, rv), (cookie.journal_dirs.clone(), v));
    reg.delete_cookie(&b1, Some(v)).await.unwrap();
    assert!(reg.cookie(&b1).await.unwrap().is_none());
}

/// A request over etcd's 1.5 MiB limit is refused whole, and nothing of it is stored (the
/// embedded store keeps etcd's limit, so no record outgrows what its log replays).
pub async fn oversized_request_is_refused(s: Store) {
    let big = Bytes::from(vec![b'x'; 2 << 20]);
    assert!(
        s.put("/t/big", big.clone(), PutCondition::Always, None)
            .await
            .is_err()
    );
    assert!(s.get("/t/big").await.unwrap().is_none());
    let half = Bytes::from(vec![b'y'; 1 << 20]);
    s.put("/t/ok", half.clone(), PutCondition::Always, None)
        .await
        .unwrap();
    assert_eq!(s.get("/t/ok").await.unwrap().unwrap().value, half);
}
