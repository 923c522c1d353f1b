//! Embedded-store behaviour beyond the shared conformance suite: persistence across reopen
//! and across a SIGKILLed process, torn tails, corruption, log compaction, the file lock.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meta::{EmbeddedOptions, EmbeddedStore, MetaError, MetadataStore, PutCondition, Revision};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn open(dir: &std::path::Path) -> meta::Result<EmbeddedStore> {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).await
}

#[tokio::test]
async fn reopen_keeps_plain_keys_and_drops_lease_bound_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (v_keep, last_rev) = {
        let s = open(dir.path()).await.unwrap();
        let v = s
            .put("/k/keep", b("1"), PutCondition::Always, None)
            .await
            .unwrap();
        s.put("/k/gone", b("1"), PutCondition::Always, None)
            .await
            .unwrap();
        s.delete("/k/gone", None).await.unwrap();
        let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
        s.put("/k/leased", b("1"), PutCondition::Always, Some(lease))
            .await
            .unwrap();
        // A lease-bound write over a durable key: the key dies with its owner.
        let last = s
            .put("/k/overwritten", b("1"), PutCondition::Always, None)
            .await
            .unwrap();
        s.put("/k/overwritten", b("2"), PutCondition::Always, Some(lease))
            .await
            .unwrap();
        (v, last)
    };
    let s = open(dir.path()).await.unwrap();
    let kv = s.get("/k/keep").await.unwrap().unwrap();
    assert_eq!((kv.value, kv.version), (b("1"), v_keep));
    for gone in ["/k/gone", "/k/leased", "/k/overwritten"] {
        assert!(s.get(gone).await.unwrap().is_none(), "{gone} survived");
    }
    // Revisions continue past everything written before, so old CAS tokens never match.
    let v = s
        .put("/k/new", b("1"), PutCondition::Always, None)
        .await
        .unwrap();
    assert!(
        v.0 > last_rev.0 + 1,
        "{v} must follow {last_rev} and the lease write"
    );
    // History before the reopen is gone: a watch from there says so.
    let mut w = s.watch("/k/", Some(Revision(1))).await.unwrap();
    assert!(matches!(
        w.next().await,
        Some(Err(MetaError::Compacted { .. }))
    ));
}

#[tokio::test]
async fn second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path()).await.unwrap();
    let err = open(dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
}

#[tokio::test]
async fn torn_tail_is_truncated_and_everything_before_it_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path()).await.unwrap();
        for i in 0..10 {
            s.put(&format!("/t/{i}"), b("v"), PutCondition::Always, None)
                .await
                .unwrap();
        }
    }
    let path = dir.path().join("meta.log");
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A record header promising 1000 bytes, followed by only 10: a write cut short.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&1000u32.to_le_bytes()).unwrap();
    f.write_all(&[0xab; 14]).unwrap();
    drop(f);
    let s = open(dir.path()).await.unwrap();
    for i in 0..10 {
        assert!(s.get(&format!("/t/{i}")).await.unwrap().is_some());
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good_len,
        "tail truncated"
    );
    // And the log is appendable again.
    s.put("/t/after", b("v"), PutCondition::Always, None)
        .await
        .unwrap();
    drop(s);
    let s = open(dir.path()).await.unwrap();
    assert!(s.get("/t/after").await.unwrap().is_some());
}

#[tokio::test]
async fn corruption_before_the_tail_refuses_to_open_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path()).await.unwrap();
        for i in 0..10 {
            s.put(&format!("/t/{i}"), b("value"), PutCondition::Always, None)
                .await
                .unwrap();
        }
    }
    let path = dir.path().join("meta.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 0xff; // inside the first record's payload
    std::fs::write(&path, &bytes).unwrap();
    let err = open(dir.path()).await.unwrap_err();
    assert!(matches!(err, MetaError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("meta.log") && msg.contains("offset 16"),
        "{msg}"
    );
}

#[tokio::test]
async fn log_is_compacted_and_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        compact_threshold_bytes: 16 << 10,
        ..Default::default()
    };
    let value = Bytes::from(vec![7u8; 200]);
    {
        let s = EmbeddedStore::open(dir.path(), options.clone())
            .await
            .unwrap();
        // 20 live keys rewritten 50 times each: ~200 KiB of mutations.
        for round in 0..50 {
            for k in 0..20 {
                s.put(
                    &format!("/c/{k}"),
                    value.clone(),
                    PutCondition::Always,
                    None,
                )
                .await
                .unwrap();
            }
            if round == 49 {
                s.put("/c/last", b("x"), PutCondition::Always, None)
                    .await
                    .unwrap();
            }
        }
    }
    let len = std::fs::metadata(dir.path().join("meta.log"))
        .unwrap()
        .len();
    assert!(len < 80 << 10, "log not compacted: {len} bytes");
    let s = EmbeddedStore::open(dir.path(), options).await.unwrap();
    for k in 0..20 {
        assert_eq!(
            s.get(&format!("/c/{k}")).await.unwrap().unwrap().value,
            value
        );
    }
    assert!(s.get("/c/last").await.unwrap().is_some());
}

/// Child side of the crash test: writes keys forever, printing each one after its put
/// returned. Does nothing unless the parent test set the directory variable.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var("MAGNETAR_TEST_CRASH_DIR") else {
        return;
    };
    let s = Arc::new(open(dir.as_ref()).await.unwrap());
    let start: u64 = std::env::var("MAGNETAR_TEST_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let mut out = std::io::stdout();
    for i in start.. {
        s.put(
            &format!("/crash/{i:08}"),
            b(&i.to_string()),
            PutCondition::Always,
            None,
        )
        .await
        .unwrap();
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
    }
}

/// SIGKILLs a writer process at several points; every acknowledged key survives.
#[test]
fn sigkilled_writer_loses_no_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0u64;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MAGNETAR_TEST_CRASH_DIR", dir.path())
            .env("MAGNETAR_TEST_CRASH_START", acked_total.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let target = 50 + round * 37;
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                let n: u64 = n.parse().unwrap();
                last = Some(n);
                if n >= acked_total + target {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = last.expect("child acknowledged nothing");
        acked_total = last + 1;

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = open(dir.path()).await.unwrap();
            for i in 0..acked_total {
                let kv = s
                    .get(&format!("/crash/{i:08}"))
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("round {round}: acknowledged key {i} lost"));
                assert_eq!(kv.value, b(&i.to_string()));
            }
        });
    }
    assert!(acked_total >= 5 * 50);
}
