//! t8x: tenants, namespaces and partitioned topics through `magnetar admin` and the
//! `/admin/v2` REST API, against `magnetar standalone` and a two-broker cluster.

use integration_tests::admin::{admin, fails, ok};
use integration_tests::process::KeptDir;
use integration_tests::standalone::{StandaloneProcess, check, consumed, run_scenario};
use integration_tests::{http_put, http_request};

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Every verb of `magnetar admin` for clusters, tenants, namespaces and topics, with the
/// outputs and errors Pulsar's tools give; and Pulsar's REST status codes for missing,
/// duplicate, invalid and malformed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_admin_verbs_and_rest_status_codes() {
    let dir = KeptDir::new("t81-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    // What exists from the first start, as in Pulsar.
    assert_eq!(ok(url, &["clusters", "list"]), "standalone\n");
    assert!(ok(url, &["clusters", "get", "standalone"]).contains("brokerServiceUrl"));
    assert_eq!(ok(url, &["tenants", "list"]), "public\n");
    assert_eq!(
        ok(url, &["namespaces", "list", "public"]),
        "public/default\n"
    );
    // Tenants.
    ok(url, &["tenants", "create", "acme", "-r", "ops,dev"]);
    assert_eq!(ok(url, &["tenants", "list"]), "acme\npublic\n");
    let t: serde_json::Value = serde_json::from_str(&ok(url, &["tenants", "get", "acme"])).unwrap();
    assert_eq!(t["adminRoles"], serde_json::json!(["ops", "dev"]));
    assert_eq!(t["allowedClusters"], serde_json::json!(["standalone"]));
    ok(url, &["tenants", "update", "acme", "-r", "ops"]);
    let t: serde_json::Value = serde_json::from_str(&ok(url, &["tenants", "get", "acme"])).unwrap();
    assert_eq!(t["adminRoles"], serde_json::json!(["ops"]));
    assert!(fails(url, &["tenants", "create", "acme"]).contains("HTTP 409"));
    assert!(fails(url, &["tenants", "get", "nobody"]).contains("HTTP 404"));
    assert!(fails(url, &["tenants", "create", "bad$name"]).contains("HTTP 412"));
    assert!(fails(url, &["tenants", "create", "x", "-c", "elsewhere"]).contains("HTTP 412"));
    // Namespaces.
    ok(url, &["namespaces", "create", "acme/orders"]);
    ok(url, &["namespaces", "create", "acme/audit", "-b", "4"]);
    assert_eq!(
        ok(url, &["namespaces", "list", "acme"]),
        "acme/audit\nacme/orders\n"
    );
    let p: serde_json::Value =
        serde_json::from_str(&ok(url, &["namespaces", "policies", "acme/orders"])).unwrap();
    assert_eq!(p["bundles"]["numBundles"], 4);
    assert_eq!(p["bundles"]["boundaries"].as_array().unwrap().len(), 5);
    assert_eq!(p["replication_clusters"], serde_json::json!(["standalone"]));
    assert!(fails(url, &["namespaces", "create", "acme/orders"]).contains("HTTP 409"));
    assert!(fails(url, &["namespaces", "create", "nobody/x"]).contains("HTTP 404"));
    assert!(fails(url, &["namespaces", "policies", "acme/none"]).contains("HTTP 404"));
    assert!(fails(url, &["tenants", "delete", "acme"]).contains("HTTP 409"));
    // Topics: a client cannot use a namespace that does not exist; it can use one that does.
    let out = run_scenario(
        &sa.service_url,
        "produce_fixed",
        &["persistent://acme/none/t", "1"],
    );
    assert!(
        !out.status.success(),
        "produced into a namespace that does not exist"
    );
    check(
        run_scenario(
            &sa.service_url,
            "produce_fixed",
            &["persistent://acme/orders/t1", "5"],
        ),
        "produce into a created namespace",
    );
    ok(url, &["topics", "create", "persistent://acme/orders/t2"]);
    assert_eq!(
        ok(url, &["topics", "list", "acme/orders"]),
        "persistent://acme/orders/t1\npersistent://acme/orders/t2\n"
    );
    assert!(fails(url, &["topics", "create", "persistent://acme/orders/t2"]).contains("HTTP 409"));
    ok(
        url,
        &[
            "topics",
            "create-partitioned-topic",
            "acme/orders/p",
            "-p",
            "3",
        ],
    );
    assert_eq!(
        ok(url, &["topics", "list-partitioned-topics", "acme/orders"]),
        "persistent://acme/orders/p\n"
    );
    let m: serde_json::Value = serde_json::from_str(&ok(
        url,
        &["topics", "get-partitioned-topic-metadata", "acme/orders/p"],
    ))
    .unwrap();
    assert_eq!(m["partitions"], 3);
    ok(
        url,
        &[
            "topics",
            "update-partitioned-topic",
            "acme/orders/p",
            "-p",
            "4",
        ],
    );
    assert!(
        fails(
            url,
            &[
                "topics",
                "update-partitioned-topic",
                "acme/orders/p",
                "-p",
                "2"
            ]
        )
        .contains("can only be increased")
    );
    assert!(
        fails(
            url,
            &[
                "topics",
                "create-partitioned-topic",
                "acme/orders/t1",
                "-p",
                "2"
            ]
        )
        .contains("HTTP 409")
    );
    assert!(fails(url, &["topics", "list", "acme/none"]).contains("HTTP 404"));
    assert_eq!(
        ok(url, &["topics", "lookup", "acme/orders/t1"]).trim(),
        format!("\"{}\"", sa.service_url)
    );
    ok(url, &["topics", "unload", "acme/orders/t1"]);
    // REST: malformed and invalid bodies answer 400/406 with a reason.
    let r = http_put_body(
        url,
        "/admin/v2/persistent/acme/orders/q/partitions",
        "{nope",
    )
    .await;
    assert_eq!(status(&r), 400, "{r}");
    assert!(r.contains("reason"), "{r}");
    let r = http_put_body(url, "/admin/v2/persistent/acme/orders/q/partitions", "0").await;
    assert_eq!(status(&r), 406, "{r}");
    // The count as a JSON string, as the Rust crate's own tests send it: accepted.
    let r = http_put_body(
        url,
        "/admin/v2/persistent/acme/orders/q/partitions",
        "\"3\"",
    )
    .await;
    assert_eq!(status(&r), 204, "{r}");
    assert!(
        ok(
            url,
            &["topics", "get-partitioned-topic-metadata", "acme/orders/q"]
        )
        .contains("\"partitions\": 3")
    );
    ok(
        url,
        &["topics", "delete-partitioned-topic", "acme/orders/q"],
    );
    let r = http_put(&format!("{url}/admin/v2/clusters/other")).await;
    assert_eq!(status(&r), 412, "{r}");
    // Deleting: a namespace with topics needs --force; a tenant needs to be empty.
    assert!(fails(url, &["namespaces", "delete", "acme/orders"]).contains("HTTP 409"));
    ok(url, &["topics", "delete", "acme/orders/t2"]);
    assert!(fails(url, &["topics", "delete", "acme/orders/t2"]).contains("HTTP 404"));
    ok(
        url,
        &["topics", "delete-partitioned-topic", "acme/orders/p"],
    );
    ok(url, &["namespaces", "delete", "acme/orders", "--force"]);
    ok(url, &["namespaces", "delete", "acme/audit"]);
    ok(url, &["tenants", "delete", "acme"]);
    assert_eq!(ok(url, &["tenants", "list"]), "public\n");
    let r = http_request(
        "DELETE",
        url.strip_prefix("http://").unwrap().parse().unwrap(),
        "/admin/v2/tenants/acme",
    )
    .await;
    assert_eq!(status(&r), 404, "{r}");
}

/// PUT with a body (the harness's helpers send none).
async fn http_put_body(base: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A partitioned topic with 4 partitions: the official Python client produces to it (its
/// messages spread over the partitions) and consumes every message back; each partition is
/// a topic of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_partitioned_topic_with_the_python_client() {
    let dir = KeptDir::new("t82-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let topic = "persistent://public/default/orders";
    ok(
        url,
        &["topics", "create-partitioned-topic", topic, "-p", "4"],
    );
    check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "400"]),
        "produce",
    );
    let mut got = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s"]),
        "consume",
    ));
    got.sort_unstable();
    assert_eq!(got, (0..400).collect::<Vec<i64>>());
    let listed = ok(url, &["topics", "list", "public/default"]);
    for i in 0..4 {
        assert!(
            listed.contains(&format!("{topic}-partition-{i}\n")),
            "partition {i} has no topic: {listed}"
        );
    }
    // The stats: every partition took part, the sums add up, nothing is left in the backlog.
    let stats: serde_json::Value = serde_json::from_str(&ok(
        url,
        &["topics", "partitioned-stats", topic, "--per-partition"],
    ))
    .unwrap();
    assert_eq!(stats["msgInCounter"], 400, "{stats}");
    assert_eq!(stats["metadata"]["partitions"], 4);
    assert_eq!(stats["subscriptions"]["s"]["msgBacklog"], 0, "{stats}");
    for i in 0..4 {
        let p = &stats["partitions"][format!("{topic}-partition-{i}")];
        assert!(
            p["msgInCounter"].as_u64().unwrap() > 0,
            "partition {i} got nothing: {p}"
        );
    }
    let part = format!("{topic}-partition-0");
    let internal: serde_json::Value =
        serde_json::from_str(&ok(url, &["topics", "stats-internal", &part])).unwrap();
    assert_eq!(internal["state"], "LedgerOpened");
    assert!(
        internal["cursors"]["s"]["markDeletePosition"].is_string(),
        "{internal}"
    );
    assert_eq!(ok(url, &["topics", "subscriptions", &part]), "s\n");
}

/// A namespace's persistence policy decides the quorums of its topics' next ledgers: set to
/// E=3 Qw=3 Qa=2 on a broker whose default is 2/2/2, a topic loaded afterwards writes to a
/// 3-bookie ledger; removed again, the next ledger (after an unload) is 2/2/2. A policy the
/// cluster cannot satisfy is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_persistence_policy_sets_the_next_ledgers_quorums() {
    use integration_tests::TestCluster;
    use integration_tests::standalone::BrokerProcess;
    let cluster = TestCluster::start(3).await.unwrap();
    let b = BrokerProcess::start_with(
        &cluster.meta_url(),
        (2, 2, 2),
        &cluster.dir().join("broker.log"),
        &[],
    )
    .unwrap();
    let url = b.http_url.as_str();
    ok(url, &["namespaces", "create", "public/replicated"]);
    assert_eq!(
        ok(url, &["namespaces", "get-persistence", "public/replicated"]).trim(),
        "null"
    );
    ok(
        url,
        &[
            "namespaces",
            "set-persistence",
            "public/replicated",
            "-e",
            "3",
            "-w",
            "3",
            "-a",
            "2",
        ],
    );
    let p: serde_json::Value = serde_json::from_str(&ok(
        url,
        &["namespaces", "get-persistence", "public/replicated"],
    ))
    .unwrap();
    assert_eq!(p["bookkeeperEnsemble"], 3);
    assert_eq!(p["bookkeeperAckQuorum"], 2);
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-persistence",
                "public/replicated",
                "-e",
                "4",
                "-w",
                "3",
                "-a",
                "2"
            ]
        )
        .contains("writable bookies")
    );
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-persistence",
                "public/replicated",
                "-e",
                "2",
                "-w",
                "3",
                "-a",
                "2"
            ]
        )
        .contains("HTTP 412")
    );
    let topic = "persistent://public/replicated/t";
    check(
        run_scenario(&b.service_url, "produce_fixed", &[topic, "10"]),
        "produce",
    );
    let store = cluster.store().await;
    let quorums = async |topic: &str| -> Vec<(u32, u32, u32)> {
        let key = cluster.keys().managed_ledger(topic);
        let kv = store.get(&key).await.unwrap().unwrap();
        let info: proto::meta::ManagedLedgerInfo = meta::records::decode(&key, &kv.value).unwrap();
        let mut out = Vec::new();
        for l in info.ledgers {
            let lk = cluster.keys().ledger(common::LedgerId(l.ledger_id));
            let kv = store.get(&lk).await.unwrap().unwrap();
            let m: proto::meta::LedgerMetadata = meta::records::decode(&lk, &kv.value).unwrap();
            out.push((m.ensemble_size, m.write_quorum, m.ack_quorum));
        }
        out
    };
    assert_eq!(quorums(topic).await, [(3, 3, 2)]);
    ok(
        url,
        &["namespaces", "remove-persistence", "public/replicated"],
    );
    ok(url, &["topics", "unload", topic]);
    check(
        run_scenario(&b.service_url, "produce_fixed", &[topic, "10", "10"]),
        "produce again",
    );
    assert_eq!(quorums(topic).await, [(3, 3, 2), (2, 2, 2)]);
}

/// The Rust `pulsar` crate on a partitioned topic created with `magnetar admin`: its
/// producer spreads messages over the partitions, its consumer (subscribed to the
/// partitioned topic) receives every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_partitioned_topic_with_the_rust_client() {
    use futures_util::TryStreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
    let dir = KeptDir::new("t84-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/rust-partitioned";
    ok(
        &sa.http_url,
        &["topics", "create-partitioned-topic", topic, "-p", "4"],
    );
    let client: Pulsar<_> = Pulsar::builder(sa.service_url.clone(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(topic)
        .with_subscription("rust-sub")
        .with_subscription_type(SubType::Shared)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    const N: usize = 200;
    for i in 0..N {
        producer
            .send_non_blocking(format!("r-{i}").into_bytes())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut got = std::collections::BTreeSet::new();
    while got.len() < N {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), consumer.try_next())
            .await
            .expect("consumer stalled")
            .unwrap()
            .expect("stream ended");
        consumer.ack(&msg).await.unwrap();
        got.insert(String::from_utf8(msg.payload.data.clone()).unwrap());
    }
    assert_eq!(got.len(), N);
    let stats: serde_json::Value = serde_json::from_str(&ok(
        &sa.http_url,
        &["topics", "partitioned-stats", topic, "--per-partition"],
    ))
    .unwrap();
    assert_eq!(stats["msgInCounter"], N as u64, "{stats}");
    let used = (0..4)
        .filter(|i| {
            stats["partitions"][format!("{topic}-partition-{i}")]["msgInCounter"]
                .as_u64()
                .unwrap_or(0)
                > 0
        })
        .count();
    assert!(used > 1, "the producer used {used} partition(s): {stats}");
}

/// The `magnetar_trim_passes_total` counter of a broker.
async fn trim_passes(http_url: &str) -> u64 {
    let metrics = integration_tests::http_body(&format!("{http_url}/metrics")).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("magnetar_trim_passes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until two more trim passes have run (so a trim that could happen, did).
async fn two_trim_passes(http_url: &str) {
    let start = trim_passes(http_url).await;
    integration_tests::wait_for(
        "two trim passes",
        std::time::Duration::from_secs(30),
        || async { (trim_passes(http_url).await >= start + 2).then_some(()) },
    )
    .await;
}

fn ledger_count(url: &str, topic: &str) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&ok(url, &["topics", "stats-internal", topic])).unwrap();
    v["ledgers"].as_array().map_or(0, Vec::len)
}

/// Retention, as in Pulsar: a topic without subscriptions keeps its consumed (here: all)
/// closed ledgers only while its namespace's retention says so — unlimited keeps them,
/// 0/0 (the default) deletes them at the next trim — and a subscription's backlog is never
/// trimmed, whatever the retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_retention_decides_what_consumed_data_is_kept() {
    let dir = KeptDir::new("t85-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[("MAGNETAR_MANAGED_LEDGER__MAX_ENTRIES_PER_LEDGER", "10")],
    )
    .unwrap();
    let url = sa.http_url.as_str();
    ok(url, &["namespaces", "create", "public/kept"]);
    ok(
        url,
        &[
            "namespaces",
            "set-retention",
            "public/kept",
            "--time",
            "-1",
            "--size",
            "-1",
        ],
    );
    let r: serde_json::Value =
        serde_json::from_str(&ok(url, &["namespaces", "get-retention", "public/kept"])).unwrap();
    assert_eq!(r["retentionTimeInMinutes"], -1);
    assert_eq!(r["retentionSizeInMB"], -1);
    let p: serde_json::Value =
        serde_json::from_str(&ok(url, &["namespaces", "policies", "public/kept"])).unwrap();
    assert_eq!(p["retention_policies"]["retentionSizeInMB"], -1, "{p}");
    let kept = "persistent://public/kept/no-subscription";
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[kept, "50"]),
        "produce",
    );
    assert!(ledger_count(url, kept) >= 5);
    two_trim_passes(url).await;
    assert!(
        ledger_count(url, kept) >= 5,
        "unlimited retention lost ledgers"
    );
    ok(
        url,
        &[
            "namespaces",
            "set-retention",
            "public/kept",
            "--time",
            "0",
            "--size",
            "0",
        ],
    );
    integration_tests::wait_for(
        "the consumed ledgers to be trimmed",
        std::time::Duration::from_secs(30),
        || async { (ledger_count(url, kept) <= 1).then_some(()) },
    )
    .await;
    // A subscription's backlog stays, with the default retention (0/0).
    let backlog = "persistent://public/default/with-backlog";
    check(
        run_scenario(&sa.service_url, "consume_fixed", &[backlog, "s", "0"]),
        "subscribe",
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[backlog, "50"]),
        "produce",
    );
    two_trim_passes(url).await;
    assert!(
        ledger_count(url, backlog) >= 5,
        "a subscription's backlog was trimmed"
    );
    let got = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[backlog, "s"]),
        "consume",
    ));
    assert_eq!(got, (0..50).collect::<Vec<i64>>());
    integration_tests::wait_for(
        "the consumed backlog to be trimmed",
        std::time::Duration::from_secs(30),
        || async { (ledger_count(url, backlog) <= 1).then_some(()) },
    )
    .await;
}

/// `last <n>` and `done <n>` of the `dedup_produce` scenario.
fn dedup_produce(service_url: &str, topic: &str, first: u64, count: u64) -> (i64, i64) {
    let out = check(
        run_scenario(
            service_url,
            "dedup_produce",
            &[topic, "named", &first.to_string(), &count.to_string()],
        ),
        "dedup_produce",
    );
    let num = |prefix: &str| -> i64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
    };
    (num("last "), num("done "))
}

/// Issue 12, item 2: producer de-duplication, switched on by namespace policy. Sends that
/// repeat sequence ids already stored are acknowledged and not stored; the producer learns
/// its last sequence id on (re)creation; and the state survives SIGKILL and restart (a
/// snapshot every 1,000 entries plus a replay of the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_deduplication_survives_a_restart() {
    let dir = KeptDir::new("t86-");
    let mut sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.clone();
    ok(&url, &["namespaces", "create", "public/dedup"]);
    assert_eq!(
        ok(&url, &["namespaces", "get-deduplication", "public/dedup"]).trim(),
        "null"
    );
    ok(
        &url,
        &[
            "namespaces",
            "set-deduplication",
            "public/dedup",
            "--enable",
        ],
    );
    assert_eq!(
        ok(&url, &["namespaces", "get-deduplication", "public/dedup"]).trim(),
        "true"
    );
    let topic = "persistent://public/dedup/orders";
    check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    assert_eq!(dedup_produce(&sa.service_url, topic, 0, 1500), (-1, 1499));
    // Repeats of stored ids, in one session and in the next: not stored.
    assert_eq!(
        dedup_produce(&sa.service_url, topic, 1400, 100),
        (1499, 1499)
    );
    sa.kill9();
    sa.restart().unwrap();
    assert_eq!(
        dedup_produce(&sa.service_url, topic, 1450, 100),
        (1499, 1549)
    );
    let got = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s"]),
        "consume",
    ));
    assert_eq!(
        got,
        (0..1550).collect::<Vec<i64>>(),
        "each id exactly once, in order"
    );
    // Fewer entries than one periodic snapshot, then SIGKILL: the state is the first
    // snapshot (written when de-duplication came on) plus a replay, not "start at the end".
    let few = "persistent://public/dedup/few";
    check(
        run_scenario(&sa.service_url, "consume_fixed", &[few, "s", "0"]),
        "subscribe to the few",
    );
    assert_eq!(dedup_produce(&sa.service_url, few, 0, 300), (-1, 299));
    sa.kill9();
    sa.restart().unwrap();
    assert_eq!(dedup_produce(&sa.service_url, few, 250, 100), (299, 349));
    let got = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[few, "s"]),
        "consume the few",
    ));
    assert_eq!(got, (0..350).collect::<Vec<i64>>(), "each id exactly once");
    // Off again: a repeat is stored.
    let url = sa.http_url.clone();
    ok(
        &url,
        &[
            "namespaces",
            "set-deduplication",
            "public/dedup",
            "--disable",
        ],
    );
    let other = "persistent://public/dedup/later";
    dedup_produce(&sa.service_url, other, 0, 3);
    dedup_produce(&sa.service_url, other, 0, 3);
    let got = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[other, "s"]),
        "consume without de-duplication",
    ));
    assert_eq!(got.len(), 6);
}

/// Unload in the middle of a stream, with the Rust `pulsar` crate: sends the broker received
/// for the closed topic get no error (the producer was told to reconnect and resends them),
/// so every send is acknowledged and every message is there once the topic is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t87_rust_producer_resends_across_an_unload() {
    use pulsar::{Pulsar, TokioExecutor};
    let dir = KeptDir::new("t87-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/rust-unload";
    check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    let client: Pulsar<_> = Pulsar::builder(sa.service_url.clone(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    // Up to 100 sends in flight (the crate refuses more with SlowDown), the unload among them.
    let mut in_flight = Vec::new();
    for i in 0..600 {
        if i == 150 {
            let answer = integration_tests::http_put(&format!(
                "{}/admin/v2/persistent/public/default/rust-unload/unload",
                sa.http_url
            ))
            .await;
            assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        }
        in_flight.push((
            i,
            producer
                .send_non_blocking(format!("k-{i}").into_bytes())
                .await
                .unwrap(),
        ));
        if in_flight.len() == 100 || i == 599 {
            for (n, r) in in_flight.drain(..) {
                tokio::time::timeout(std::time::Duration::from_secs(60), r)
                    .await
                    .unwrap_or_else(|_| panic!("send {n} never acknowledged"))
                    .unwrap_or_else(|e| panic!("send {n} failed: {e}"));
            }
        }
    }
    let got: std::collections::BTreeSet<i64> = consumed(&check(
        run_scenario(&sa.service_url, "consume_fixed", &[topic, "s"]),
        "consume",
    ))
    .into_iter()
    .collect();
    let lost: Vec<i64> = (0..600).filter(|i| !got.contains(i)).collect();
    assert!(lost.is_empty(), "lost across the unload: {lost:?}");
}

/// `brokers list|leader-broker|healthcheck|shutdown` on a two-broker cluster: both listed, the
/// first registered leads, health fails with the reason when too few bookies are writable,
/// and a shutdown over the API hands over and exits (the other broker then leads alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_brokers_list_leader_health_and_shutdown() {
    use integration_tests::TestCluster;
    use integration_tests::standalone::BrokerProcess;
    use std::time::Duration;
    let cluster = TestCluster::start_with(2, &[("MAGNETAR_META__LEASE_TTL", "2s")])
        .await
        .unwrap();
    let start = |i: usize| {
        BrokerProcess::start(
            &cluster.meta_url(),
            (2, 2, 2),
            &cluster.dir().join(format!("broker-{i}.log")),
        )
        .unwrap()
    };
    let a = start(0);
    // registered (the first report) before the second starts, so it is the older one
    integration_tests::wait_for(
        "the first broker listed",
        Duration::from_secs(30),
        || async {
            admin(&a.http_url, &["brokers", "list", "standalone"])
                .0
                .then_some(())
        },
    )
    .await;
    let b = start(1);
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let mut both = vec![host(&a.http_url), host(&b.http_url)];
    both.sort();
    let listed =
        integration_tests::wait_for("both brokers listed", Duration::from_secs(30), || async {
            let out = ok(&b.http_url, &["brokers", "list", "standalone"]);
            let mut l: Vec<String> = out.lines().map(str::to_owned).collect();
            l.sort();
            (l == both).then_some(l)
        })
        .await;
    assert_eq!(listed.len(), 2);
    let leader: serde_json::Value =
        serde_json::from_str(&ok(&b.http_url, &["brokers", "leader-broker"])).unwrap();
    assert_eq!(leader["serviceUrl"], a.http_url.as_str(), "{leader}");
    assert!(fails(&a.http_url, &["brokers", "list", "other"]).contains("HTTP 404"));
    for broker in [&a, &b] {
        assert_eq!(
            ok(&broker.http_url, &["brokers", "healthcheck"]).trim(),
            "ok"
        );
    }

    // One bookie of two gone: new ledgers (E=2) cannot be created, and health says so.
    let mut cluster = cluster;
    cluster.bookies[1].kill9();
    let reason = integration_tests::wait_for("health to fail", Duration::from_secs(30), || async {
        let (success, _, err) = admin(&a.http_url, &["brokers", "healthcheck"]);
        (!success).then_some(err)
    })
    .await;
    assert!(
        reason.contains("1 writable bookies registered, new ledgers need 2")
            && reason.contains("HTTP 503"),
        "{reason}"
    );
    cluster.bookies[1].start().unwrap();
    integration_tests::wait_for("health back", Duration::from_secs(30), || async {
        admin(&a.http_url, &["brokers", "healthcheck"])
            .0
            .then_some(())
    })
    .await;

    // A graceful shutdown over the API: `brokers shutdown` returns once the broker is gone.
    ok(&a.http_url, &["brokers", "shutdown", "--timeout", "60"]);
    assert!(!admin(&a.http_url, &["brokers", "healthcheck"]).0);
    assert_eq!(
        ok(&b.http_url, &["brokers", "list", "standalone"]).trim(),
        host(&b.http_url)
    );
    let leader: serde_json::Value =
        serde_json::from_str(&ok(&b.http_url, &["brokers", "leader-broker"])).unwrap();
    assert_eq!(leader["serviceUrl"], b.http_url.as_str(), "{leader}");
}

/// The storage watch: a broker that reaches fewer bookies than an ensemble (one of two is
/// paused) for `ownership.storage_timeout` gives its bundles up — unregistered, health says
/// why — and registers and serves again once the bookie answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t89_a_broker_cut_from_its_bookies_steps_down_and_comes_back() {
    use integration_tests::TestCluster;
    use integration_tests::standalone::BrokerProcess;
    use std::time::Duration;
    let cluster = TestCluster::start(2).await.unwrap();
    let broker = BrokerProcess::start_with(
        &cluster.meta_url(),
        (2, 2, 2),
        &cluster.dir().join("broker.log"),
        &[("MAGNETAR_OWNERSHIP__STORAGE_TIMEOUT", "3s")],
    )
    .unwrap();
    let url = broker.http_url.clone();
    let topic = "persistent://public/default/storage-watch";
    check(
        run_scenario(&broker.service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    check(
        run_scenario(&broker.service_url, "produce_fixed", &[topic, "10", "0"]),
        "produce before",
    );
    assert_eq!(ok(&url, &["brokers", "healthcheck"]).trim(), "ok");
    cluster.bookies[1].signal("STOP");
    let reason = integration_tests::wait_for(
        "the broker to step down",
        Duration::from_secs(30),
        || async {
            let (success, _, err) = admin(&url, &["brokers", "healthcheck"]);
            (!success && err.contains("too few bookies answer")).then_some(err)
        },
    )
    .await;
    assert!(reason.contains("HTTP 503"), "{reason}");
    integration_tests::wait_for(
        "its registration to go",
        Duration::from_secs(30),
        || async {
            ok(&url, &["brokers", "list", "standalone"])
                .trim()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    cluster.bookies[1].signal("CONT");
    integration_tests::wait_for("the broker back", Duration::from_secs(30), || async {
        admin(&url, &["brokers", "healthcheck"]).0.then_some(())
    })
    .await;
    check(
        run_scenario(&broker.service_url, "produce_fixed", &[topic, "10", "10"]),
        "produce after",
    );
    let got = consumed(&check(
        run_scenario(&broker.service_url, "consume_fixed", &[topic, "s"]),
        "consume",
    ));
    assert_eq!(got, (0..20).collect::<Vec<i64>>());
}
