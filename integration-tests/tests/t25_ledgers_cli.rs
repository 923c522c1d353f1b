//! t25: `magnetar ledgers` against a real cluster: golden outputs (addresses, bookie numbers
//! and timings normalised) and one-line errors.

use std::process::Command;

use integration_tests::TestCluster;
use integration_tests::golden::golden;

fn ledgers(cluster: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(integration_tests::bin::magnetar())
        .arg("ledgers")
        .arg("--meta-url")
        .arg(cluster.meta_url())
        .args(args)
        .env("MAGNETAR_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces what varies between runs: ports, bookie numbers, decimal timings.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            l.push(c);
            if l.ends_with("127.0.0.1:") || l.ends_with("bookie-") {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                l.push('N');
            }
        }
        if l.starts_with("add latency") {
            l = "add latency p50 N ms, p99 N ms".into();
        }
        out += &l;
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_ledgers_cli_golden_outputs() {
    let cluster = TestCluster::start(3).await.unwrap();

    let (ok, out, err) = ledgers(&cluster, &["list-bookies"]);
    assert!(ok, "{err}");
    golden("list-bookies.txt", &normalise(&out));

    let (ok, out, err) = ledgers(
        &cluster,
        &["simpletest", "-e", "3", "-w", "2", "-a", "2", "-n", "100"],
    );
    assert!(ok, "{err}");
    golden("simpletest.txt", &normalise(&out));
    let id: u64 = out
        .split("ledger ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("ledger id in the simpletest output");

    let (ok, out, err) = ledgers(&cluster, &["metadata", &id.to_string()]);
    assert!(ok, "{err}");
    golden(
        "metadata.txt",
        &normalise(&out).replace(&format!("ledger {id}\n"), "ledger ID\n"),
    );

    let (ok, out, _) = ledgers(&cluster, &["--output", "json", "metadata", &id.to_string()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "CLOSED");
    assert_eq!(v["last_entry_id"], 99);

    let (ok, out, _) = ledgers(
        &cluster,
        &["read", &id.to_string(), "--from", "98", "--body"],
    );
    assert!(ok);
    assert!(
        out.starts_with("entry 98: 1024 bytes: simpletest entry 98 xxx"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2);

    // One replica only: with E=3, Qw=2 each bookie holds two thirds of the entries.
    let (ok, out, err) = ledgers(&cluster, &["read", &id.to_string(), "--bookie", "bookie-0"]);
    assert!(ok, "{err}");
    assert!((60..=70).contains(&out.lines().count()), "{out}");

    let (ok, _, err) = ledgers(&cluster, &["delete", &id.to_string()]);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, out, _) = ledgers(&cluster, &["delete", &id.to_string(), "--force"]);
    assert!(ok && out.contains("deleted"));
    let (ok, _, err) = ledgers(&cluster, &["metadata", &id.to_string()]);
    assert!(!ok && err.contains("not found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn t26_bad_meta_url_is_one_clear_line() {
    let out = Command::new(integration_tests::bin::magnetar())
        .args(["ledgers", "--meta-url", "http://localhost", "list-bookies"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected etcd://HOST:PORT"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
