//! t8s: a topic's subscriptions and messages through `magnetar admin` (issue 11, item 4):
//! create and delete subscriptions, skip, clear the backlog, reset the cursor, expire
//! messages, peek / examine / get a message by id, the last message id — and the namespace
//! policies that act on subscriptions and clients: message TTL, max producers per topic,
//! max consumers per subscription. Against `magnetar standalone`, with the official Python
//! client producing and the Rust `pulsar` crate holding consumers.

mod support;

use std::time::Duration;

use integration_tests::admin::{fails, json, ok};
use integration_tests::process::KeptDir;
use integration_tests::standalone::{StandaloneProcess, check, run_scenario};
use integration_tests::wait_for;

fn backlog(url: &str, topic: &str, sub: &str) -> u64 {
    let stats = json(url, &["topics", "stats", topic]);
    stats["subscriptions"][sub]["msgBacklog"]
        .as_u64()
        .unwrap_or_else(|| panic!("no backlog for {sub}: {stats}"))
}

/// The payloads a peek/examine output shows, from its hex dumps' text column.
fn shown(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("|0000"))
        .map(|l| {
            l.rsplit_once('|')
                .map(|(rest, _)| rest.rsplit_once('|').map_or("", |(_, t)| t))
                .unwrap_or("")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// Every subscription verb, with pulsar-admin's outputs and errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8s_subscription_verbs_peek_and_message_ids() {
    let dir = KeptDir::new("t8s-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let topic = "persistent://public/default/ops";
    ok(url, &["topics", "create", topic]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "audit",
            "-m",
            "earliest",
        ],
    );
    assert_eq!(
        fails(
            url,
            &["topics", "create-subscription", topic, "-s", "audit"]
        ),
        "magnetar: Subscription already exists for topic (HTTP 409)"
    );
    assert_eq!(ok(url, &["topics", "subscriptions", topic]), "audit\n");
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "10"]),
        "produce",
    );
    assert_eq!(backlog(url, topic, "audit"), 10);
    let last = json(url, &["topics", "last-message-id", topic]);
    assert_eq!(last["entryId"], 9, "{last}");
    let ledger = last["ledgerId"].as_u64().unwrap().to_string();

    // Peek: pulsar-admin's text, without consuming.
    let out = ok(
        url,
        &["topics", "peek-messages", topic, "-s", "audit", "-n", "2"],
    );
    assert!(
        out.starts_with(&format!("Message ID: {ledger}:0\nPublish time: ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("\nMessage ID: {ledger}:1\n")),
        "{out}"
    );
    assert!(
        out.contains(
            "\n-------------------------------------------------------------------------\n"
        ),
        "{out}"
    );
    assert!(out.contains("|00000000| 6b 2d 30 "), "{out}");
    assert_eq!(shown(&out), ["k-0", "k-1"]);
    assert_eq!(backlog(url, topic, "audit"), 10, "peeking consumes nothing");
    // More than there is: what there is.
    let out = ok(
        url,
        &["topics", "peek-messages", topic, "-s", "audit", "-n", "50"],
    );
    assert_eq!(shown(&out).len(), 10);

    // Skip, then peek from where the subscription is.
    ok(url, &["topics", "skip", topic, "-s", "audit", "-n", "3"]);
    assert_eq!(backlog(url, topic, "audit"), 7);
    let out = ok(url, &["topics", "peek-messages", topic, "-s", "audit"]);
    assert_eq!(shown(&out), ["k-3"]);

    // Examine and get by id.
    let first = ok(
        url,
        &[
            "topics",
            "examine-messages",
            topic,
            "-i",
            "earliest",
            "-m",
            "1",
        ],
    );
    assert_eq!(shown(&first), ["k-0"]);
    let newest = ok(url, &["topics", "examine-messages", topic]);
    assert_eq!(shown(&newest), ["k-9"]);
    let by_id = ok(
        url,
        &[
            "topics",
            "get-message-by-id",
            topic,
            "-l",
            &ledger,
            "-e",
            "5",
        ],
    );
    assert!(
        by_id.starts_with(&format!("Message ID: {ledger}:5\n")),
        "{by_id}"
    );
    assert_eq!(shown(&by_id), ["k-5"]);
    assert_eq!(
        fails(
            url,
            &[
                "topics",
                "get-message-by-id",
                topic,
                "-l",
                &ledger,
                "-e",
                "99"
            ]
        ),
        "magnetar: Message not found (HTTP 404)"
    );
    assert_eq!(
        fails(url, &["topics", "examine-messages", topic, "-m", "11"]),
        "magnetar: Message not found (HTTP 404)"
    );

    // Reset: to the start, to a time before everything, to a message (inclusive or not).
    ok(
        url,
        &[
            "topics",
            "reset-cursor",
            topic,
            "-s",
            "audit",
            "-m",
            "earliest",
        ],
    );
    assert_eq!(backlog(url, topic, "audit"), 10);
    ok(url, &["topics", "clear-backlog", topic, "-s", "audit"]);
    assert_eq!(backlog(url, topic, "audit"), 0);
    ok(
        url,
        &["topics", "reset-cursor", topic, "-s", "audit", "-t", "1h"],
    );
    assert_eq!(backlog(url, topic, "audit"), 10);
    let at4 = format!("{ledger}:4");
    ok(
        url,
        &["topics", "reset-cursor", topic, "-s", "audit", "-m", &at4],
    );
    assert_eq!(backlog(url, topic, "audit"), 6);
    ok(
        url,
        &[
            "topics",
            "reset-cursor",
            topic,
            "-s",
            "audit",
            "-m",
            &at4,
            "-e",
        ],
    );
    assert_eq!(backlog(url, topic, "audit"), 5);
    let out = ok(url, &["topics", "peek-messages", topic, "-s", "audit"]);
    assert_eq!(shown(&out), ["k-5"]);

    // Expire: nothing is an hour old; up to a message; everything published before now.
    ok(
        url,
        &[
            "topics",
            "reset-cursor",
            topic,
            "-s",
            "audit",
            "-m",
            "earliest",
        ],
    );
    ok(
        url,
        &[
            "topics",
            "expire-messages",
            topic,
            "-s",
            "audit",
            "-t",
            "1h",
        ],
    );
    assert_eq!(backlog(url, topic, "audit"), 10);
    let at1 = format!("{ledger}:1");
    ok(
        url,
        &[
            "topics",
            "expire-messages",
            topic,
            "-s",
            "audit",
            "-p",
            &at1,
        ],
    );
    assert_eq!(backlog(url, topic, "audit"), 8);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "second",
            "-m",
            "earliest",
        ],
    );
    ok(
        url,
        &[
            "topics",
            "expire-messages-all-subscriptions",
            topic,
            "-t",
            "0",
        ],
    );
    assert_eq!(backlog(url, topic, "audit"), 0);
    assert_eq!(backlog(url, topic, "second"), 0);
    let stats = json(url, &["topics", "stats", topic]);
    assert_eq!(
        stats["subscriptions"]["second"]["totalMsgExpired"], 10,
        "{stats}"
    );

    // A subscription at a message id; then one created at "latest" has no backlog.
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "from7",
            "-m",
            &format!("{ledger}:7"),
        ],
    );
    assert_eq!(backlog(url, topic, "from7"), 3);
    ok(url, &["topics", "create-subscription", topic, "-s", "new"]);
    assert_eq!(backlog(url, topic, "new"), 0);

    // Unsubscribe; missing ones and bad input are one clear line.
    ok(url, &["topics", "unsubscribe", topic, "-s", "new"]);
    assert_eq!(
        fails(url, &["topics", "unsubscribe", topic, "-s", "new"]),
        "magnetar: Subscription not found (HTTP 404)"
    );
    assert_eq!(
        fails(
            url,
            &[
                "topics",
                "skip",
                "persistent://public/default/none",
                "-s",
                "a",
                "-n",
                "1"
            ]
        ),
        "magnetar: Topic persistent://public/default/none not found (HTTP 404)"
    );
    assert!(
        fails(
            url,
            &["topics", "reset-cursor", topic, "-s", "audit", "-m", "7"]
        )
        .contains("expected latest, earliest or L:E")
    );

    // Batches: each message of an entry shown with its batch index and properties.
    let batched = "persistent://public/default/ops-batched";
    ok(url, &["topics", "create", batched]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            batched,
            "-s",
            "peek",
            "-m",
            "earliest",
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_batched", &[batched, "6", "3"]),
        "produce batched",
    );
    let out = ok(
        url,
        &["topics", "peek-messages", batched, "-s", "peek", "-n", "4"],
    );
    assert_eq!(shown(&out), ["b-0", "b-1", "b-2", "b-3"], "{out}");
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Batch Message ID: "))
        .collect();
    assert_eq!(ids.len(), 4, "{out}");
    assert!(
        ids[0].ends_with(":0:0") && ids[2].ends_with(":0:2") && ids[3].ends_with(":1:0"),
        "{ids:?}"
    );
    assert!(out.contains("Properties:\n{\n  \"n\": \"1\"\n}\n"), "{out}");
}

/// Consumers held by the Rust crate: a subscription with connected consumers is deleted only
/// with --force; the namespace's producer and consumer limits refuse the one too many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8t_limits_and_a_busy_subscription() {
    use pulsar::SubType;
    let dir = KeptDir::new("t8t-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    ok(url, &["namespaces", "create", "public/limited"]);
    ok(
        url,
        &[
            "namespaces",
            "set-max-producers-per-topic",
            "public/limited",
            "-p",
            "1",
        ],
    );
    ok(
        url,
        &[
            "namespaces",
            "set-max-consumers-per-subscription",
            "public/limited",
            "-c",
            "2",
        ],
    );
    assert_eq!(
        ok(
            url,
            &[
                "namespaces",
                "get-max-producers-per-topic",
                "public/limited"
            ]
        )
        .trim(),
        "1"
    );
    let policies = json(url, &["namespaces", "policies", "public/limited"]);
    assert_eq!(policies["max_consumers_per_subscription"], 2, "{policies}");
    assert!(policies["max_consumers_per_topic"].is_null(), "{policies}");
    let topic = "persistent://public/limited/t";
    let client = support::client(&sa.service_url).await;
    let c1 = support::consumer(&client, topic, "busy", SubType::Shared).await;
    let c2 = support::consumer(&client, topic, "busy", SubType::Shared).await;
    // The one too many, with the official Python client (the Rust crate retries a busy
    // answer until its own timeout, as it does against Pulsar).
    let try_client = |what: &[&str]| {
        let mut args = vec![topic];
        args.extend_from_slice(what);
        check(
            run_scenario(&sa.service_url, "try_client", &args),
            "try a client",
        )
    };
    let third = try_client(&["consumer", "busy"]);
    assert!(
        third.contains("refused Pulsar error: ConsumerBusy"),
        "{third}"
    );
    let p1 = client.producer().with_topic(topic).build().await.unwrap();
    let second = try_client(&["producer"]);
    assert!(
        second.contains("refused Pulsar error: ProducerBusy"),
        "{second}"
    );
    assert_eq!(
        fails(url, &["topics", "unsubscribe", topic, "-s", "busy"]),
        "magnetar: Subscription has active connected consumers (HTTP 412)"
    );
    ok(url, &["topics", "unsubscribe", topic, "-s", "busy", "-f"]);
    drop((c1, c2, p1));
    // Limits removed: a second producer is fine.
    ok(
        url,
        &[
            "namespaces",
            "remove-max-producers-per-topic",
            "public/limited",
        ],
    );
    assert_eq!(
        ok(
            url,
            &[
                "namespaces",
                "get-max-producers-per-topic",
                "public/limited"
            ]
        )
        .trim(),
        "null"
    );
    let _a = client.producer().with_topic(topic).build().await.unwrap();
    let another = try_client(&["producer"]);
    assert!(another.lines().any(|l| l == "created"), "{another}");
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-max-producers-per-topic",
                "public/none",
                "-p",
                "1"
            ]
        )
        .contains("Namespace does not exist (HTTP 404)")
    );
}

/// The namespace's message TTL expires what a subscription leaves unacknowledged; a
/// namespace without one keeps its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8u_message_ttl_expires_unacknowledged_messages() {
    let dir = KeptDir::new("t8u-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[("MAGNETAR_MESSAGE_EXPIRY_CHECK_INTERVAL", "1s")],
    )
    .unwrap();
    let url = sa.http_url.as_str();
    ok(url, &["namespaces", "create", "public/ttl"]);
    ok(
        url,
        &[
            "namespaces",
            "set-message-ttl",
            "public/ttl",
            "--messageTTL",
            "2",
        ],
    );
    assert_eq!(
        ok(url, &["namespaces", "get-message-ttl", "public/ttl"]).trim(),
        "2"
    );
    let expiring = "persistent://public/ttl/t";
    let kept = "persistent://public/default/no-ttl";
    for t in [expiring, kept] {
        ok(url, &["topics", "create", t]);
        ok(
            url,
            &[
                "topics",
                "create-subscription",
                t,
                "-s",
                "idle",
                "-m",
                "earliest",
            ],
        );
        check(
            run_scenario(&sa.service_url, "produce_fixed", &[t, "5"]),
            "produce",
        );
    }
    wait_for(
        "the TTL to expire the backlog",
        Duration::from_secs(60),
        || async { (backlog(url, expiring, "idle") == 0).then_some(()) },
    )
    .await;
    let stats = json(url, &["topics", "stats", expiring]);
    assert_eq!(
        stats["subscriptions"]["idle"]["totalMsgExpired"], 5,
        "{stats}"
    );
    assert_eq!(backlog(url, kept, "idle"), 5);
    ok(url, &["namespaces", "remove-message-ttl", "public/ttl"]);
    assert_eq!(
        ok(url, &["namespaces", "get-message-ttl", "public/ttl"]).trim(),
        "null"
    );
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-message-ttl",
                "public/ttl",
                "--messageTTL",
                "soon"
            ]
        )
        .contains("expected e.g. 30s")
    );
}

/// The subscription's backlog in bytes as `stats` shows it.
fn backlog_size(url: &str, topic: &str, sub: &str) -> u64 {
    let stats = json(url, &["topics", "stats", topic]);
    stats["subscriptions"][sub]["backlogSize"]
        .as_u64()
        .unwrap_or_else(|| panic!("no backlogSize for {sub}: {stats}"))
}

/// Backlog quotas: producer_exception refuses producers once the backlog passes the limit
/// (connected ones are told to reconnect and fail) until it is consumed;
/// consumer_backlog_eviction drops the oldest backlog down to the limit (by size) or what is
/// older than the limit (by age), while producers go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8v_backlog_quotas() {
    let dir = KeptDir::new("t8v-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    for ns in ["public/strict", "public/evict", "public/aged"] {
        ok(url, &["namespaces", "create", ns]);
    }
    ok(
        url,
        &[
            "namespaces",
            "set-backlog-quota",
            "public/strict",
            "-l",
            "10K",
            "-p",
            "producer_exception",
        ],
    );
    ok(
        url,
        &[
            "namespaces",
            "set-backlog-quota",
            "public/evict",
            "-l",
            "20K",
            "-p",
            "consumer_backlog_eviction",
        ],
    );
    ok(
        url,
        &[
            "namespaces",
            "set-backlog-quota",
            "public/aged",
            "-t",
            "message_age",
            "--limitTime",
            "2s",
            "-p",
            "consumer_backlog_eviction",
        ],
    );
    let quotas = json(url, &["namespaces", "get-backlog-quotas", "public/strict"]);
    assert_eq!(
        quotas,
        serde_json::json!({"destination_storage": {
            "limit": 10240, "limitSize": 10240, "limitTime": -1, "policy": "producer_exception"}}),
    );
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-backlog-quota",
                "public/strict",
                "-l",
                "1K",
                "-p",
                "drop_all"
            ]
        )
        .contains("unknown backlog quota policy \"drop_all\": producer_request_hold, producer_exception or consumer_backlog_eviction (HTTP 400)")
    );
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-backlog-quota",
                "public/strict",
                "-l",
                "0",
                "-p",
                "producer_exception"
            ]
        )
        .contains("limitSize (bytes) must be greater than 0 (HTTP 412)")
    );

    // producer_exception: the producer's sends fail once the backlog is over 10 KiB.
    let strict = "persistent://public/strict/t";
    ok(url, &["topics", "create", strict]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            strict,
            "-s",
            "slow",
            "-m",
            "earliest",
        ],
    );
    let out = check(
        run_scenario(
            &sa.service_url,
            "produce_until_refused",
            &[strict, "1024", "60"],
        ),
        "produce until refused",
    );
    assert!(
        out.contains("refused Pulsar error: ProducerBlockedQuotaExceededException"),
        "{out}"
    );
    assert!(backlog_size(url, strict, "slow") > 10 * 1024);
    let again = check(
        run_scenario(&sa.service_url, "try_client", &[strict, "producer"]),
        "try",
    );
    assert!(
        again.contains("refused Pulsar error: ProducerBlockedQuotaExceededException"),
        "{again}"
    );
    ok(url, &["topics", "clear-backlog", strict, "-s", "slow"]);
    let after = check(
        run_scenario(&sa.service_url, "try_client", &[strict, "producer"]),
        "try",
    );
    assert!(after.lines().any(|l| l == "created"), "{after}");
    // producer_request_hold: past the limit a new producer is refused with the retriable
    // error until the backlog is consumed.
    ok(
        url,
        &[
            "namespaces",
            "set-backlog-quota",
            "public/strict",
            "-l",
            "10K",
            "-p",
            "producer_request_hold",
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_sized", &[strict, "20", "1024"]),
        "produce",
    );
    let held = check(
        run_scenario(&sa.service_url, "try_client", &[strict, "producer"]),
        "try",
    );
    assert!(
        held.contains("refused Pulsar error: ProducerBlockedQuotaExceededError"),
        "{held}"
    );
    ok(url, &["topics", "clear-backlog", strict, "-s", "slow"]);
    let after = check(
        run_scenario(&sa.service_url, "try_client", &[strict, "producer"]),
        "try",
    );
    assert!(after.lines().any(|l| l == "created"), "{after}");

    // consumer_backlog_eviction by size: the oldest backlog goes, the newest stays.
    let evict = "persistent://public/evict/t";
    ok(url, &["topics", "create", evict]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            evict,
            "-s",
            "slow",
            "-m",
            "earliest",
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_sized", &[evict, "100", "1024"]),
        "produce",
    );
    let before = backlog(url, evict, "slow");
    assert_eq!(before, 100);
    wait_for(
        "eviction down to the quota",
        Duration::from_secs(60),
        || async { (backlog_size(url, evict, "slow") <= 20 * 1024).then_some(()) },
    )
    .await;
    let left = backlog(url, evict, "slow");
    assert!(left > 0 && left < 100, "{left} entries left");
    let peeked = ok(url, &["topics", "peek-messages", evict, "-s", "slow"]);
    assert!(!peeked.contains("|s-0-"), "the oldest went first: {peeked}");

    // consumer_backlog_eviction by age.
    let aged = "persistent://public/aged/t";
    ok(url, &["topics", "create", aged]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            aged,
            "-s",
            "slow",
            "-m",
            "earliest",
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[aged, "5"]),
        "produce",
    );
    wait_for(
        "eviction of what is older than 2 s",
        Duration::from_secs(60),
        || async { (backlog(url, aged, "slow") == 0).then_some(()) },
    )
    .await;

    ok(
        url,
        &["namespaces", "remove-backlog-quota", "public/strict"],
    );
    assert_eq!(
        json(url, &["namespaces", "get-backlog-quotas", "public/strict"]),
        serde_json::json!({})
    );
}

/// The namespace's auto topic creation policy: off (a client cannot create a topic; an
/// admin can), or partitioned (a producer's first lookup creates N partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8w_auto_topic_creation_per_namespace() {
    let dir = KeptDir::new("t8w-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let try_producer = |topic: &str| {
        check(
            run_scenario(&sa.service_url, "try_client", &[topic, "producer"]),
            "try",
        )
    };
    ok(url, &["namespaces", "create", "public/manual"]);
    ok(
        url,
        &[
            "namespaces",
            "set-auto-topic-creation",
            "public/manual",
            "--disable",
        ],
    );
    assert_eq!(
        json(
            url,
            &["namespaces", "get-auto-topic-creation", "public/manual"]
        ),
        serde_json::json!({"allowAutoTopicCreation": false, "topicType": "non-partitioned"})
    );
    let manual = "persistent://public/manual/t";
    let refused = try_producer(manual);
    assert!(
        refused.contains("refused Pulsar error: TopicNotFound"),
        "{refused}"
    );
    ok(url, &["topics", "create", manual]);
    let created = try_producer(manual);
    assert!(created.lines().any(|l| l == "created"), "{created}");
    // public/default follows the broker (on).
    let created = try_producer("persistent://public/default/implicit");
    assert!(created.lines().any(|l| l == "created"), "{created}");

    ok(url, &["namespaces", "create", "public/parts"]);
    assert!(
        fails(
            url,
            &[
                "namespaces",
                "set-auto-topic-creation",
                "public/parts",
                "-e",
                "-t",
                "partitioned"
            ]
        )
        .contains("[defaultNumPartitions] cannot be less than 1 for partition type. (HTTP 412)")
    );
    ok(
        url,
        &[
            "namespaces",
            "set-auto-topic-creation",
            "public/parts",
            "-e",
            "-t",
            "partitioned",
            "-n",
            "3",
        ],
    );
    let parts = "persistent://public/parts/orders";
    let created = try_producer(parts);
    assert!(created.lines().any(|l| l == "created"), "{created}");
    let meta = json(url, &["topics", "get-partitioned-topic-metadata", parts]);
    assert_eq!(meta["partitions"], 3, "{meta}");
    assert_eq!(
        ok(url, &["topics", "list-partitioned-topics", "public/parts"]),
        format!("{parts}\n")
    );
    let policies = json(url, &["namespaces", "policies", "public/parts"]);
    assert_eq!(
        policies["autoTopicCreationOverride"]["defaultNumPartitions"], 3,
        "{policies}"
    );
    ok(
        url,
        &["namespaces", "remove-auto-topic-creation", "public/manual"],
    );
    let created = try_producer("persistent://public/manual/now-allowed");
    assert!(created.lines().any(|l| l == "created"), "{created}");
}

/// Subscription expiration (the policy is in minutes, so this test waits a minute): a
/// durable subscription without consumers that long is deleted, one with a consumer stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8y_idle_subscriptions_expire() {
    let dir = KeptDir::new("t8y-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    ok(url, &["namespaces", "create", "public/expiring"]);
    ok(
        url,
        &[
            "namespaces",
            "set-subscription-expiration-time",
            "public/expiring",
            "-t",
            "1",
        ],
    );
    assert_eq!(
        ok(
            url,
            &[
                "namespaces",
                "get-subscription-expiration-time",
                "public/expiring"
            ]
        )
        .trim(),
        "1"
    );
    let topic = "persistent://public/expiring/t";
    ok(url, &["topics", "create", topic]);
    ok(url, &["topics", "create-subscription", topic, "-s", "idle"]);
    let client = support::client(&sa.service_url).await;
    let _held = support::consumer(&client, topic, "held", pulsar::SubType::Exclusive).await;
    let started = std::time::Instant::now();
    wait_for(
        "the idle subscription to expire",
        Duration::from_secs(150),
        || async { (ok(url, &["topics", "subscriptions", topic]) == "held\n").then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(55),
        "expired early: {:?}",
        started.elapsed()
    );
}

/// The value of the sample `name{labels…}` (labels given as `k="v"` pieces, any order).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|piece| l.contains(piece)))
        .and_then(|l| l.rsplit(' ').next()?.trim().parse().ok())
}

/// Issue 11, item 6: the broker's topic and subscription metrics under Pulsar's names and
/// labels (gone when the topic goes), Pulsar's `_le_` buckets, real histograms for our own
/// `_seconds` names, and the bookie's BookKeeper names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8z_metrics_by_pulsar_and_bookkeeper_names() {
    let dir = KeptDir::new("t8z-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let topic = "persistent://public/default/metered";
    ok(url, &["topics", "create", topic]);
    ok(
        url,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "s",
            "-m",
            "earliest",
        ],
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "20"]),
        "produce",
    );
    let metrics_url = format!("{url}/metrics");
    let t = format!("topic=\"{topic}\"");
    let base = [
        "cluster=\"standalone\"",
        "namespace=\"public/default\"",
        t.as_str(),
    ];
    let m = integration_tests::http_body(&metrics_url).await;
    assert_eq!(
        sample(&m, "pulsar_in_messages_total", &base),
        Some(20.0),
        "{m}"
    );
    assert!(sample(&m, "pulsar_rate_in", &base).is_some(), "{m}");
    assert_eq!(sample(&m, "pulsar_msg_backlog", &base), Some(20.0));
    assert_eq!(sample(&m, "pulsar_subscriptions_count", &base), Some(1.0));
    assert!(sample(&m, "pulsar_storage_size", &base).unwrap() > 0.0);
    let mut sub = base.to_vec();
    sub.push("subscription=\"s\"");
    assert_eq!(sample(&m, "pulsar_subscription_back_log", &sub), Some(20.0));
    // Pulsar's bucket gauges: every entry counted once.
    let buckets: f64 = [
        "0_5", "1", "5", "10", "20", "50", "100", "200", "1000", "overflow",
    ]
    .iter()
    .map(|b| sample(&m, &format!("pulsar_storage_write_latency_le_{b}"), &base).unwrap())
    .sum();
    assert_eq!(buckets, 20.0, "{m}");
    assert_eq!(sample(&m, "pulsar_entry_size_count", &base), Some(20.0));
    assert_eq!(
        sample(&m, "pulsar_entry_size_le_128", &base),
        Some(20.0),
        "small entries"
    );
    assert!(
        m.contains("pulsar_storage_write_latency_seconds_bucket{le="),
        "a real histogram: {m}"
    );
    assert!(
        sample(
            &m,
            "bookkeeper_server_ADD_ENTRY_REQUEST",
            &["success=\"true\"", "quantile=\"0.99\""]
        )
        .is_some(),
        "{m}"
    );
    assert!(
        sample(&m, "bookie_journal_JOURNAL_SYNC", &["quantile=\"0.5\""]).is_some(),
        "{m}"
    );
    assert!(m.lines().any(|l| l == "bookie_SERVER_STATUS 1"), "{m}");
    // Set at each checkpoint.
    let m = wait_for("bookie_ledgers_count", Duration::from_secs(60), || async {
        let m = integration_tests::http_body(&metrics_url).await;
        m.lines()
            .any(|l| l.starts_with("bookie_ledgers_count "))
            .then_some(m)
    })
    .await;
    // Every metric the shipped Grafana dashboard queries is exported.
    let dashboard = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/magnetar-overview.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() > 15);
    for e in &exprs {
        let names = e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("pulsar_") || w.starts_with("bookie"));
        for name in names {
            assert!(
                m.lines().any(|l| l.starts_with(name)),
                "the dashboard queries {name}, which /metrics lacks"
            );
        }
    }
    // A valid exposition: each family declared once.
    let mut types: Vec<&str> = m.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let n = types.len();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), n, "a family declared twice");
    // Deleted: its series go.
    ok(url, &["topics", "delete", topic, "-f"]);
    let m = integration_tests::http_body(&metrics_url).await;
    assert!(!m.contains(&t), "{m}");
}

/// Termination (issue 11 item 4, issue 12 item 12): `topics terminate` answers the last
/// message id; producers are refused from then on (also after a SIGKILL and restart);
/// a consumer gets every message, then REACHED_END_OF_TOPIC (the Rust crate ends its stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8q_terminated_topic_takes_nothing_and_consumers_reach_its_end() {
    let dir = KeptDir::new("t8q-");
    let mut sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.clone();
    let topic = "persistent://public/default/finite";
    ok(&url, &["topics", "create", topic]);
    let client = support::client(&sa.service_url).await;
    let mut consumer = support::consumer(&client, topic, "s", pulsar::SubType::Exclusive).await;
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "5"]),
        "produce",
    );
    let last = json(&url, &["topics", "last-message-id", topic]);
    let out = ok(&url, &["topics", "terminate", topic]);
    assert_eq!(
        out.trim(),
        format!("Topic successfully terminated at {}:4", last["ledgerId"])
    );
    assert_eq!(
        ok(&url, &["topics", "terminate", topic]),
        out,
        "terminating twice"
    );
    let mut got = Vec::new();
    // Every message, then the end of the stream (REACHED_END_OF_TOPIC). No acks: the
    // broker tells the end once everything is dispatched (as Pulsar), and the Rust crate
    // stops its consumer then, so an ack sent after that may find it closed.
    while let Some(msg) = support::next_within(&mut consumer, 20).await {
        got.push(String::from_utf8(msg.payload.data.clone()).unwrap());
    }
    assert_eq!(got, ["k-0", "k-1", "k-2", "k-3", "k-4"]);
    let refused = check(
        run_scenario(&sa.service_url, "try_client", &[topic, "producer"]),
        "try",
    );
    assert!(
        refused.contains("refused Pulsar error: TopicTerminated"),
        "{refused}"
    );
    let internal = json(&url, &["topics", "stats-internal", topic]);
    assert_eq!(internal["state"], "Terminated", "{internal}");
    // Still terminated after a crash: no ledger is opened for it.
    drop(consumer);
    sa.kill9();
    sa.restart().unwrap();
    let url = sa.http_url.clone();
    let refused = check(
        run_scenario(&sa.service_url, "try_client", &[topic, "producer"]),
        "try",
    );
    assert!(
        refused.contains("refused Pulsar error: TopicTerminated"),
        "{refused}"
    );
    let internal = json(&url, &["topics", "stats-internal", topic]);
    assert_eq!(internal["state"], "Terminated", "{internal}");
    assert_eq!(
        internal["ledgers"].as_array().map(Vec::len),
        Some(1),
        "{internal}"
    );
    // An empty topic terminates at -1:-1.
    let empty = "persistent://public/default/empty-finite";
    ok(&url, &["topics", "create", empty]);
    assert_eq!(
        ok(&url, &["topics", "terminate", empty]).trim(),
        "Topic successfully terminated at -1:-1"
    );
}

/// Max unacknowledged messages per consumer, set on the topic (over its namespace's): a
/// consumer holding that many unacknowledged gets nothing more until it acknowledges; the
/// limit is read back as the Rust crate's admin API reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8r_max_unacked_messages_per_consumer() {
    use futures_util::TryStreamExt;
    let dir = KeptDir::new("t8r-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    let topic = "persistent://public/default/limited-unacked";
    assert!(
        fails(
            url,
            &["topics", "get-max-unacked-messages-per-consumer", topic]
        )
        .ends_with("(HTTP 404)"),
        "a topic that does not exist"
    );
    ok(url, &["topics", "create", topic]);
    assert_eq!(
        ok(
            url,
            &["topics", "get-max-unacked-messages-per-consumer", topic]
        )
        .trim(),
        "null"
    );
    ok(
        url,
        &[
            "topics",
            "set-max-unacked-messages-per-consumer",
            topic,
            "-m",
            "3",
        ],
    );
    assert_eq!(
        ok(
            url,
            &["topics", "get-max-unacked-messages-per-consumer", topic]
        )
        .trim(),
        "3"
    );
    let client = support::client(&sa.service_url).await;
    let mut consumer = support::consumer(&client, topic, "s", pulsar::SubType::Shared).await;
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "10"]),
        "produce",
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(support::next_within(&mut consumer, 20).await.unwrap());
    }
    // The limit holds: nothing more while three are unacknowledged.
    let more = tokio::time::timeout(Duration::from_secs(2), consumer.try_next()).await;
    assert!(more.is_err(), "a fourth message arrived past the limit");
    let stats = json(url, &["topics", "stats", topic]);
    assert_eq!(stats["subscriptions"]["s"]["unackedMessages"], 3, "{stats}");
    // Acknowledging one lets one more through.
    consumer.ack(&held.remove(0)).await.unwrap();
    let next = support::next_within(&mut consumer, 20).await.unwrap();
    assert_eq!(next.payload.data, b"k-3");
    // Removed: the rest flow.
    ok(
        url,
        &["topics", "remove-max-unacked-messages-per-consumer", topic],
    );
    consumer.ack(&next).await.unwrap();
    let mut rest = 0;
    while rest < 6 {
        let msg = support::next_within(&mut consumer, 20).await.unwrap();
        consumer.ack(&msg).await.unwrap();
        rest += 1;
    }
}

/// Each namespace keeps the bundle count it was created with, and its topics' ownership
/// follows it: the bundle `topics bundle-range` names is the one whose unload moves the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8p_per_namespace_bundle_counts() {
    let dir = KeptDir::new("t8p-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    ok(url, &["namespaces", "create", "public/many", "-b", "16"]);
    let p = json(url, &["namespaces", "policies", "public/many"]);
    assert_eq!(p["bundles"]["numBundles"], 16, "{p}");
    let boundaries: Vec<String> =
        serde_json::from_value(p["bundles"]["boundaries"].clone()).unwrap();
    assert_eq!(boundaries.len(), 17);
    let bundles: Vec<String> = boundaries
        .windows(2)
        .map(|w| format!("{}_{}", w[0], w[1]))
        .collect();
    assert!(fails(url, &["namespaces", "create", "public/none", "-b", "0"]).contains("(HTTP 412)"));
    assert!(
        fails(
            url,
            &["namespaces", "create", "public/too-many", "-b", "5000"]
        )
        .contains("(HTTP 412)")
    );
    let topic = "persistent://public/many/spread";
    let bundle = ok(url, &["topics", "bundle-range", topic])
        .trim()
        .to_owned();
    assert!(
        bundles.contains(&bundle),
        "{bundle} is not one of {bundles:?}"
    );
    check(
        run_scenario(&sa.service_url, "produce_fixed", &[topic, "3"]),
        "produce",
    );
    let ledgers = |url: &str| {
        json(url, &["topics", "stats-internal", topic])["ledgers"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(ledgers(url), 1);
    // Another bundle of the namespace: the topic stays loaded.
    let other = bundles.iter().find(|b| **b != bundle).unwrap();
    ok(url, &["namespaces", "unload", "public/many", "-b", other]);
    assert_eq!(
        ledgers(url),
        1,
        "unloading another bundle left the topic alone"
    );
    // Its bundle: the topic is closed, and loaded again (a new ledger) on the next call.
    ok(url, &["namespaces", "unload", "public/many", "-b", &bundle]);
    assert_eq!(ledgers(url), 2, "the topic was unloaded with its bundle");
    // public/default keeps the broker's count (4).
    let d = json(url, &["namespaces", "policies", "public/default"]);
    assert_eq!(d["bundles"]["numBundles"], 4);
}

/// The JSON line a `compaction_read` scenario printed.
fn compaction_read(service_url: &str, topic: &str) -> serde_json::Value {
    let out = check(
        run_scenario(service_url, "compaction_read", &[topic]),
        "read",
    );
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    serde_json::from_str(line).unwrap()
}

/// Issue 12, item 10: compaction (`topics compact`, `compaction-status -w`): read-compacted
/// consumers and readers get each key's latest value (tombstones remove a key; keyless
/// messages stay), with plain and batched producers; other subscriptions get everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8o_compaction_keeps_each_keys_latest_value() {
    let dir = KeptDir::new("t8o-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = sa.http_url.as_str();
    for (topic, mode) in [
        ("persistent://public/default/compact-plain", "plain"),
        ("persistent://public/default/compact-batched", "batched"),
    ] {
        assert!(
            ok(url, &["topics", "create", topic]).is_empty()
                && json(url, &["topics", "stats", topic]).is_object()
        );
        let status = ok(url, &["topics", "compaction-status", topic]);
        assert!(
            status.starts_with("Compaction has not been run"),
            "{status}"
        );
        check(
            run_scenario(&sa.service_url, "compaction_produce", &[topic, mode]),
            "produce",
        );
        ok(url, &["topics", "compact", topic]);
        assert_eq!(
            ok(url, &["topics", "compaction-status", topic, "-w"]).trim(),
            "Compaction was a success"
        );
        let got = compaction_read(&sa.service_url, topic);
        let latest = serde_json::json!([["k1", "v2"], ["k2", "a"], [null, "free"]]);
        assert_eq!(got["compacted"], latest, "{mode}: {got}");
        assert_eq!(got["reader"], latest, "{mode}: {got}");
        assert_eq!(
            got["all"].as_array().map(Vec::len),
            Some(6),
            "{mode}: {got}"
        );
    }
}

/// Two brokers: calls about a topic asked of the broker that does not own it are redirected
/// (307) to the owner and answered there — subscriptions, peek, skip, stats, terminate — and
/// metrics show the topic only on its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8c_topic_calls_reach_the_owner_in_a_two_broker_cluster() {
    use integration_tests::TestCluster;
    use integration_tests::standalone::BrokerProcess;
    let cluster = TestCluster::start_with(2, &[]).await.unwrap();
    let start = |i: usize| {
        BrokerProcess::start(
            &cluster.meta_url(),
            (2, 2, 2),
            &cluster.dir().join(format!("broker-{i}.log")),
        )
        .unwrap()
    };
    let (a, b) = (start(0), start(1));
    let topic = "persistent://public/default/owned";
    // Created through A: A owns its bundle (it takes it on the first load).
    ok(&a.http_url, &["topics", "create", topic]);
    ok(
        &a.http_url,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "s",
            "-m",
            "earliest",
        ],
    );
    check(
        run_scenario(&a.service_url, "produce_fixed", &[topic, "4"]),
        "produce",
    );
    let owner = ok(&b.http_url, &["topics", "lookup", topic]);
    let (owner, other) = if owner.contains(&a.service_url) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // Asked of the other broker: followed to the owner.
    assert_eq!(
        ok(&other.http_url, &["topics", "subscriptions", topic]),
        "s\n"
    );
    let peeked = ok(
        &other.http_url,
        &["topics", "peek-messages", topic, "-s", "s", "-n", "2"],
    );
    assert_eq!(shown(&peeked), ["k-0", "k-1"]);
    ok(
        &other.http_url,
        &["topics", "skip", topic, "-s", "s", "-n", "3"],
    );
    assert_eq!(backlog(&other.http_url, topic, "s"), 1);
    assert_eq!(backlog(&owner.http_url, topic, "s"), 1);
    let last = json(&other.http_url, &["topics", "last-message-id", topic]);
    assert_eq!(last["entryId"], 3, "{last}");
    assert!(
        ok(&other.http_url, &["topics", "terminate", topic])
            .starts_with("Topic successfully terminated at")
    );
    // The topic's series are on its owner only.
    let series = |m: String| m.contains(&format!("topic=\"{topic}\""));
    let owner_metrics = integration_tests::http_body(&format!("{}/metrics", owner.http_url)).await;
    let other_metrics = integration_tests::http_body(&format!("{}/metrics", other.http_url)).await;
    assert!(series(owner_metrics));
    assert!(!series(other_metrics));
}
