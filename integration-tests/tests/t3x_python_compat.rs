//! t3x: the official Python client (`pulsar-client`, pinned by scripts/setup.sh) against
//! `magnetar standalone`: produce/consume with and without batching and with every
//! compression type, Shared and Exclusive subscriptions, individual and cumulative acks,
//! redelivery to another consumer, and a SIGKILL + restart mid-stream.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use integration_tests::process::KeptDir;
use integration_tests::standalone::{StandaloneProcess, python, run_scenario, script};

fn check(out: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
}

#[test]
fn t31_produce_consume_10000_batching_and_compression() {
    let dir = KeptDir::new("t31-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    check(
        run_scenario(&sa.service_url, "produce_consume", &["10000"]),
        "produce_consume",
    );
}

#[test]
fn t32_shared_and_exclusive_subscriptions() {
    let dir = KeptDir::new("t32-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    check(run_scenario(&sa.service_url, "shared", &[]), "shared");
}

#[test]
fn t33_individual_and_cumulative_acks_and_redelivery() {
    let dir = KeptDir::new("t33-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    check(run_scenario(&sa.service_url, "acks", &[]), "acks");
}

/// The broker is SIGKILLed while a producer streams: every message the producer saw
/// acknowledged is there after the restart; a consumer that acked resumes after its last
/// persisted ack (redelivery bounded by the cursor flush interval, 1 s).
#[test]
fn t34_sigkill_mid_stream_keeps_every_acked_message() {
    let dir = KeptDir::new("t34-");
    let mut sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/crash";
    // A consumer acks the first 200, then goes away.
    let mut producer = Command::new(python())
        .arg(script("compat.py"))
        .args([&sa.service_url, "produce_fixed", topic, "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut acked = -1i64;
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if acked >= 1500 {
                break;
            }
        }
    }
    sa.kill9();
    let _ = producer.kill();
    let _ = producer.wait();
    sa.restart().unwrap();
    let out = check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "reader"]),
        "consume after restart",
    );
    let got: Vec<i64> = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    for i in 0..=acked {
        assert!(
            got.contains(&i),
            "acknowledged message k-{i} lost (last acked k-{acked})"
        );
    }
    // In order, no duplicates within one subscription's first delivery.
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "duplicates in one delivery pass");

    // Resume after the last persisted ack: consume 200 and ack them, kill, restart.
    let out = check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "resume", "200"]),
        "first 200",
    );
    let first: Vec<i64> = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(first, (0..200).collect::<Vec<_>>());
    sa.kill9();
    sa.restart().unwrap();
    let out = check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "resume", "1"]),
        "resume",
    );
    let next: Vec<i64> = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        next,
        vec![200],
        "the subscription did not resume after its last ack"
    );
}
