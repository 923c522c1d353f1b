//! t3p: `magnetar perf produce` and `perf consume` (issue 12, item 13): named topics,
//! pulsar-perf's periodic `Throughput …` lines and aggregated lines, end-to-end latency on
//! the consuming side, and `--json` for scripts.

use std::process::Command;

use integration_tests::process::KeptDir;
use integration_tests::standalone::StandaloneProcess;

fn perf(args: &[&str]) -> String {
    let out = Command::new(integration_tests::bin::magnetar())
        .arg("perf")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "perf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3p_perf_produce_and_consume_in_pulsar_perfs_shape() {
    let dir = KeptDir::new("t3p-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.service_url.as_str();
    let topic = "persistent://public/default/perf-named";
    // A consumer on the named topic, started first (it subscribes at the latest message).
    let consumer = {
        let url = url.to_owned();
        std::thread::spawn(move || {
            perf(&[
                "consume",
                "--service-url",
                &url,
                "--topic",
                topic,
                "--duration",
                "6s",
                "--stats-interval",
                "1s",
                "--json",
            ])
        })
    };
    // Let the consumer subscribe before publishing: wait until the subscription exists.
    let admin = sa.http_url.clone();
    integration_tests::wait_for(
        "the perf consumer to subscribe",
        std::time::Duration::from_secs(30),
        || async {
            let (ok, out, _) =
                integration_tests::admin::admin(&admin, &["topics", "subscriptions", topic]);
            (ok && out.contains("perf-sub")).then_some(())
        },
    )
    .await;
    let out = perf(&[
        "produce",
        "--service-url",
        url,
        "--topic",
        topic,
        "--duration",
        "3s",
        "--in-flight",
        "50",
        "--size",
        "100",
        "--stats-interval",
        "1s",
    ]);
    let periodic: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Throughput produced: "))
        .collect();
    assert!(periodic.len() >= 2, "{out}");
    for l in &periodic {
        assert!(
            l.contains(" msg/s --- ")
                && l.contains(" Mbit/s --- Latency: mean: ")
                && l.contains(" - 99.99pct: ")
                && l.contains(" - Max: "),
            "{l}"
        );
    }
    let agg = out
        .lines()
        .find(|l| l.starts_with("Aggregated throughput stats --- "))
        .expect(&out);
    let sent: u64 = agg
        .split(" records sent")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 0, "{agg}");
    assert!(
        out.contains("Aggregated latency stats --- Latency: mean: "),
        "{out}"
    );
    let consumed: serde_json::Value = serde_json::from_str(&consumer.join().unwrap()).unwrap();
    assert_eq!(
        consumed["received"]["messages"], sent,
        "every message produced is received: {consumed}"
    );
    assert!(consumed["received"]["latency_ms"]["p99"].as_f64().unwrap() >= 0.0);
    // JSON from produce too.
    let json: serde_json::Value = serde_json::from_str(&perf(&[
        "produce",
        "--service-url",
        url,
        "--duration",
        "1s",
        "--in-flight",
        "10",
        "--consume",
        "--json",
        "--stats-interval",
        "0s",
    ]))
    .unwrap();
    assert!(json["produced"]["messages"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(
        json["received"]["messages"], json["produced"]["messages"],
        "{json}"
    );
}
