//! t90: hostile input (issue 20). Each test reproduces a finding of the input review
//! (`hostile-input-review.md`) against a real standalone process, with clients that misbehave
//! on purpose, and shows the broker refuses the input and keeps serving everyone else.

use std::time::Duration;

use broker::protocol::pb::command_subscribe::SubType;
use integration_tests::http_json;
use integration_tests::process::KeptDir;
use integration_tests::raw::{RawConn, ack, flow, subscribe};
use integration_tests::standalone::StandaloneProcess;

fn addr(sa: &StandaloneProcess) -> String {
    sa.service_url.strip_prefix("pulsar://").unwrap().to_owned()
}

/// Finding 1: an Avro schema of 15,000 records chained by name overflowed a worker's stack
/// and aborted the whole standalone process. It is refused with an error, and the process
/// serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90a_a_deeply_chained_avro_schema_is_refused_and_the_broker_lives() {
    let dir = KeptDir::new("t90a-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let url = format!("{}/admin/v2/schemas/public/default/x/schema", sa.http_url);
    let post = |schema: serde_json::Value| {
        let body =
            serde_json::json!({"type": "AVRO", "schema": schema.to_string(), "properties": {}});
        let url = url.clone();
        async move { http_json("POST", &url, body.to_string().as_bytes()).await }
    };
    let first = post(
        serde_json::json!({"type": "record", "name": "W", "fields": [{"name": "f", "type": "W"}]}),
    )
    .await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let chain = |n: usize| {
        let mut chain: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"type": "record", "name": format!("A{i}"), "fields": [{"name": "f", "type": format!("A{}", i + 1)}]}))
            .collect();
        chain.push(serde_json::json!({"type": "record", "name": format!("A{n}"), "fields": [{"name": "f", "type": "int"}]}));
        serde_json::Value::Array(chain)
    };
    // The reported request (about 1 MB): over the schema size cap, refused unparsed.
    let second = post(chain(15_000)).await;
    assert!(second.starts_with("HTTP/1.1 422"), "{second}");
    // A chain under the cap but far past the depth limit: refused by the check's budget.
    let second = post(chain(5_000)).await;
    assert!(
        second.starts_with("HTTP/1.1 409"),
        "refused as incompatible: {second}"
    );
    assert!(
        second.contains("deeper than") || second.contains("steps to compare"),
        "{second}"
    );
    // Still alive, and the first version is the only one.
    let versions = integration_tests::http_body(&format!(
        "{}/admin/v2/schemas/public/default/x/schemas",
        sa.http_url
    ))
    .await;
    let v: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(v["getSchemaResponses"].as_array().unwrap().len(), 1, "{v}");
    // A schema over the size cap is refused before it is parsed.
    let huge = serde_json::json!({"type": "record", "name": "H", "doc": "x".repeat(600 * 1024), "fields": []});
    let third = post(huge).await;
    assert!(third.starts_with("HTTP/1.1 422"), "{third}");
    // A schema for a namespace that does not exist writes nothing.
    let ghost = http_json(
        "POST",
        &format!("{}/admin/v2/schemas/nobody/nothing/x/schema", sa.http_url),
        br#"{"type": "STRING", "schema": "", "properties": {}}"#,
    )
    .await;
    assert!(ghost.starts_with("HTTP/1.1 404"), "{ghost}");
}

/// Findings 2 and 3: a cumulative ACK past the end (the `-1:-1` sentinel reads as the largest
/// position) used to be persisted, so the subscription skipped every later message, even
/// after a restart; ack sets for positions not delivered were stored as sent. They are
/// ignored, and what is published next is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90b_acks_past_the_end_or_for_undelivered_entries_are_ignored() {
    let dir = KeptDir::new("t90b-");
    let mut sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/acks";
    let mut p = RawConn::connect(&addr(&sa)).await;
    let first = p.produce(topic, 1, 3, b"before").await;
    let mut c = RawConn::connect(&addr(&sa)).await;
    c.send(&subscribe(topic, "s", 1, 1, SubType::Exclusive))
        .await;
    assert!(c.next().await.unwrap().success.is_some());
    // Forged acks: the sentinel, far past the end, and a batch ack set of 50,000 words for
    // entries never delivered (none is delivered yet: no FLOW).
    c.send(&ack(1, &[(u64::MAX, u64::MAX, vec![])], true)).await;
    let (l, e) = *first.last().unwrap();
    c.send(&ack(1, &[(l, e + 1_000, vec![])], true)).await;
    c.send(&ack(1, &[(l + 5, 0, vec![])], false)).await;
    c.send(&ack(
        1,
        &[(l, 0, vec![1; 50_000]), (l, 1, vec![1; 8])],
        false,
    ))
    .await;
    // Published after the forged acks, and delivered; again after a kill and a restart
    // (the forged marks were never stored).
    let mut p2 = RawConn::connect(&addr(&sa)).await;
    p2.produce(topic, 2, 2, b"after").await;
    drop((p, p2));
    c.send(&flow(1, 100)).await;
    assert_eq!(&receive(&mut c, 5).await[..3], &first[..]);
    drop(c);
    sa.kill9();
    sa.restart().unwrap();
    let mut c = RawConn::connect(&addr(&sa)).await;
    c.send(&subscribe(topic, "s", 1, 1, SubType::Exclusive))
        .await;
    assert!(c.next().await.unwrap().success.is_some());
    c.send(&flow(1, 100)).await;
    assert_eq!(&receive(&mut c, 5).await[..3], &first[..]);
}

/// The ids of the next `n` messages consumer 1 of `c` receives (none carries an ack set).
async fn receive(c: &mut RawConn, n: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let f = c.next_frame().await.expect("every message delivered");
        if let Some(m) = f.command.message {
            assert!(m.ack_set.is_empty(), "no forged ack set reaches the client");
            got.push((m.message_id.ledger_id, m.message_id.entry_id));
        }
    }
    got
}

/// Finding 6: a consumer that sends FLOW with a million permits and never reads its socket
/// stalled its whole Shared subscription. The other consumer keeps receiving, and once the
/// stuck connection is closed (its socket took no bytes for two keepalive periods) every
/// message reaches the consumer that reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90c_a_consumer_that_stops_reading_does_not_stall_the_others() {
    let dir = KeptDir::new("t90c-");
    let sa = StandaloneProcess::start_with(&dir.path(), &[("MAGNETAR_KEEPALIVE_INTERVAL", "1s")])
        .unwrap();
    let topic = "persistent://public/default/stuck";
    let mut stuck = RawConn::connect(&addr(&sa)).await;
    stuck
        .send(&subscribe(topic, "shared", 1, 1, SubType::Shared))
        .await;
    assert!(stuck.next().await.unwrap().success.is_some());
    stuck.send(&flow(1, 1_000_000)).await;
    let mut good = RawConn::connect(&addr(&sa)).await;
    good.send(&subscribe(topic, "shared", 1, 1, SubType::Shared))
        .await;
    assert!(good.next().await.unwrap().success.is_some());
    good.send(&flow(1, 1_000)).await;
    // 3,000 messages of 16 KiB (47 MiB): far more than the stuck client's socket buffers and
    // its share of the broker's queue hold.
    let n = 3_000u64;
    let body = vec![7u8; 16 << 10];
    let producer_addr = addr(&sa);
    let produced = tokio::spawn(async move {
        let mut p = RawConn::connect(&producer_addr).await;
        p.produce(topic, 1, n, &body).await
    });
    // The stuck client keeps writing (it is not silent, so only the stalled socket ends it).
    let keep_talking = tokio::spawn(async move {
        for _ in 0..600 {
            stuck
                .send(&integration_tests::raw::base(
                    broker::protocol::pb::base_command::Type::Ping,
                ))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stuck
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut received = 0u64;
    while (seen.len() as u64) < n {
        let Some(f) = good.next_frame().await else {
            panic!(
                "the reading consumer stalled after {} of {n} messages",
                seen.len()
            );
        };
        if let Some(m) = f.command.message {
            received += 1;
            seen.insert((m.message_id.ledger_id, m.message_id.entry_id));
            good.send(&ack(
                1,
                &[(m.message_id.ledger_id, m.message_id.entry_id, vec![])],
                false,
            ))
            .await;
            if received.is_multiple_of(500) {
                good.send(&flow(1, 500)).await;
            }
        }
    }
    assert_eq!(produced.await.unwrap().len() as u64, n);
    keep_talking.abort();
}

/// Finding 7 and the name limits: loads that fail (a namespace that does not exist) are
/// refused each time with TopicNotFound; names past the limits are refused with an error; the
/// connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90d_junk_names_are_refused_and_leave_nothing_behind() {
    let dir = KeptDir::new("t90d-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let mut c = RawConn::connect(&addr(&sa)).await;
    // A producer on a namespace that does not exist, 200 times with different names.
    for i in 0..200u64 {
        c.send(&integration_tests::raw::producer(
            &format!("persistent://ghost-{i}/ns/t"),
            i,
            i,
        ))
        .await;
        let e = c.next().await.unwrap().error.expect("refused");
        assert_eq!(
            e.error,
            broker::protocol::pb::ServerError::TopicNotFound as i32
        );
    }
    // A tenant name over 255 bytes is not a valid topic name.
    c.send(&integration_tests::raw::producer(
        &format!("persistent://{}/ns/t", "a".repeat(300)),
        500,
        500,
    ))
    .await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(
        e.error,
        broker::protocol::pb::ServerError::InvalidTopicName as i32
    );
    // A subscription name of 5 MiB.
    c.send(&subscribe(
        "persistent://public/default/names",
        &"s".repeat(5 << 20),
        1,
        600,
        SubType::Shared,
    ))
    .await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(
        e.error,
        broker::protocol::pb::ServerError::NotAllowedError as i32
    );
    // Still serving on the same connection.
    let ids = c
        .produce("persistent://public/default/names", 700, 1, b"ok")
        .await;
    assert_eq!(ids.len(), 1);
}

/// Limits 13 (Pulsar's brokerMaxConnectionsPerIp and a CONNECT deadline): past the limit a
/// connection is closed as it is accepted, and a slot comes back when a client leaves; a
/// client that never sends CONNECT is closed after one keepalive period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90e_connection_limits_and_the_connect_deadline() {
    use tokio::io::AsyncReadExt;
    let dir = KeptDir::new("t90e-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_MAX_CONNECTIONS_PER_IP", "4"),
            ("MAGNETAR_KEEPALIVE_INTERVAL", "2s"),
        ],
    )
    .unwrap();
    let a = addr(&sa);
    // A client that never sends CONNECT, then three that do: four connections, the limit.
    let mut silent = tokio::net::TcpStream::connect(&a).await.unwrap();
    let held = vec![
        RawConn::connect(&a).await,
        RawConn::connect(&a).await,
        RawConn::connect(&a).await,
    ];
    // The fifth is closed as it is accepted: its CONNECT gets no answer. So the silent one
    // holds a slot.
    let fifth = tokio::net::TcpStream::connect(&a).await.unwrap();
    let refused = integration_tests::raw::RawConn::from_stream(fifth)
        .try_connect()
        .await;
    assert!(refused.is_none(), "the fifth connection was served");
    let mut byte = [0u8; 1];
    // The silent one is closed by the CONNECT deadline, never having been answered.
    let r = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut byte))
        .await
        .expect("closed by the CONNECT deadline");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    drop(held);
    // Slots come back as clients leave: a new client is served again.
    integration_tests::wait_for("a slot to come back", Duration::from_secs(20), || {
        let a = a.clone();
        async move {
            let s = tokio::net::TcpStream::connect(&a).await.ok()?;
            let mut c = integration_tests::raw::RawConn::from_stream(s);
            c.try_connect().await
        }
    })
    .await;
}

/// Pulsar's maxPendingPublishRequestsPerConnection and maxSubscriptionsPerTopic: a producer
/// that pipelines far more sends than the limit is paused at its socket (every send still
/// gets its receipt, in order); a subscription past the topic's limit is refused with
/// NotAllowedError while the existing ones keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90f_publish_backpressure_and_subscription_limit() {
    let dir = KeptDir::new("t90f-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_MAX_PENDING_PUBLISH_REQUESTS_PER_CONNECTION", "8"),
            ("MAGNETAR_MAX_SUBSCRIPTIONS_PER_TOPIC", "2"),
        ],
    )
    .unwrap();
    let topic = "persistent://public/default/limits";
    let mut p = RawConn::connect(&addr(&sa)).await;
    let ids = p.produce(topic, 1, 2_000, &[5u8; 1024]).await;
    assert_eq!(ids.len(), 2_000);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "receipts in send order"
    );
    let mut c = RawConn::connect(&addr(&sa)).await;
    for (i, sub) in ["a", "b"].iter().enumerate() {
        c.send(&subscribe(topic, sub, i as u64, i as u64, SubType::Shared))
            .await;
        assert!(c.next().await.unwrap().success.is_some());
    }
    c.send(&subscribe(topic, "c", 9, 9, SubType::Shared)).await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(
        e.error,
        broker::protocol::pb::ServerError::NotAllowedError as i32
    );
    // An existing subscription takes another consumer.
    c.send(&subscribe(topic, "a", 10, 10, SubType::Shared))
        .await;
    assert!(c.next().await.unwrap().success.is_some());
}

/// Findings 14, 15 and 21: a non-persistent consumer id used again (on another topic) is
/// detached first, so a closed connection releases its socket (file descriptors come back);
/// topic list watchers per connection are capped; a namespace's default partition count is
/// bounded like a partitioned topic's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90g_reused_ids_watcher_cap_and_default_partitions() {
    use broker::protocol::pb::{self, BaseCommand, base_command::Type};
    let dir = KeptDir::new("t90g-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let pid = sa.pid().unwrap();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let before = fds();
    for i in 0..100u64 {
        let mut c = RawConn::connect(&addr(&sa)).await;
        for (n, t) in ["a", "b"].iter().enumerate() {
            c.send(&subscribe(
                &format!("non-persistent://public/default/reuse-{t}"),
                "s",
                1,
                i * 10 + n as u64,
                SubType::Exclusive,
            ))
            .await;
            assert!(c.next().await.unwrap().success.is_some());
        }
    }
    integration_tests::wait_for(
        "the broker's sockets to be released",
        Duration::from_secs(20),
        || {
            let n = fds();
            async move { (n <= before + 10).then_some(()) }
        },
    )
    .await;
    // Watchers: 100 per connection, the next refused, the connection kept.
    let mut c = RawConn::connect(&addr(&sa)).await;
    let watch = |id: u64| BaseCommand {
        watch_topic_list: Some(pb::CommandWatchTopicList {
            request_id: id,
            watcher_id: id,
            namespace: "public/default".into(),
            topics_pattern: "persistent://public/default/.*".into(),
            topics_hash: None,
        }),
        ..integration_tests::raw::base(Type::WatchTopicList)
    };
    for id in 0..100 {
        c.send(&watch(id)).await;
        assert!(c.next().await.unwrap().watch_topic_list_success.is_some());
    }
    c.send(&watch(100)).await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(e.error, pb::ServerError::NotAllowedError as i32);
    assert_eq!(
        c.produce("persistent://public/default/w", 1, 1, b"x")
            .await
            .len(),
        1
    );
    // defaultNumPartitions past the partition limit.
    let r = http_json(
        "POST",
        &format!("{}/admin/v2/namespaces/public/default/autoTopicCreation", sa.http_url),
        br#"{"allowAutoTopicCreation":true,"topicType":"partitioned","defaultNumPartitions":4000000000}"#,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 412"), "{r}");
}

/// Finding 12: the producer's `publish_time` (here 1 ms after 1970) does not decide what
/// expires: the broker stamps each entry with its own time. A consumer that asks for broker
/// entry metadata gets it in front of the message; others get the client's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90h_expiry_goes_by_the_broker_time_not_the_producers() {
    use broker::protocol::pb::{self, BaseCommand, base_command::Type};
    let dir = KeptDir::new("t90h-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/stamped";
    let mut c = RawConn::connect(&addr(&sa)).await;
    c.send(&subscribe(topic, "s", 1, 1, SubType::Exclusive))
        .await;
    assert!(c.next().await.unwrap().success.is_some());
    let mut p = RawConn::connect(&addr(&sa)).await;
    let ids = p.produce(topic, 1, 3, b"from 1970").await;
    // Everything older than a minute expires: nothing, by the broker's clock.
    let r = http_json(
        "POST",
        &format!(
            "{}/admin/v2/persistent/public/default/stamped/subscription/s/expireMessages/60",
            sa.http_url
        ),
        b"",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    c.send(&flow(1, 10)).await;
    assert_eq!(receive(&mut c, 3).await, ids);
    // A consumer that supports broker entry metadata.
    let s = tokio::net::TcpStream::connect(addr(&sa)).await.unwrap();
    let mut b = RawConn::from_stream(s);
    b.send(&BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(19),
            feature_flags: Some(pb::FeatureFlags {
                supports_broker_entry_metadata: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..integration_tests::raw::base(Type::Connect)
    })
    .await;
    assert!(b.next().await.unwrap().connected.is_some());
    b.send(&subscribe(topic, "b", 1, 1, SubType::Exclusive))
        .await;
    assert!(b.next().await.unwrap().success.is_some());
    b.send(&flow(1, 10)).await;
    let f = loop {
        let f = b.next_frame().await.expect("a message");
        if f.command.message.is_some() {
            break f;
        }
    };
    let payload = f.payload.expect("a payload");
    let info = broker::protocol::frame::inspect_entry(&payload).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stamped = info.broker_timestamp.expect("the broker's time");
    assert!(
        now.abs_diff(stamped) < 600_000,
        "stamped {stamped}, now {now}"
    );
    assert_eq!(
        info.metadata.publish_time, 1,
        "the producer's time is kept as sent"
    );
}

/// Pulsar's maxTopicsPerNamespace and inactive-topic deletion: a namespace takes no topic past
/// its limit (NotAllowedError), and a topic left with no producer and no subscription is
/// deleted after the inactive age, which makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90i_topics_per_namespace_and_inactive_topic_deletion() {
    let dir = KeptDir::new("t90i-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_MAX_TOPICS_PER_NAMESPACE", "3"),
            ("MAGNETAR_DELETE_INACTIVE_TOPICS", "true"),
            ("MAGNETAR_INACTIVE_TOPIC_MAX_AGE", "1s"),
            ("MAGNETAR_INACTIVE_TOPIC_CHECK_INTERVAL", "200ms"),
        ],
    )
    .unwrap();
    let mut c = RawConn::connect(&addr(&sa)).await;
    for i in 0..3u64 {
        c.produce(&format!("persistent://public/default/n{i}"), i, 1, b"x")
            .await;
    }
    c.send(&integration_tests::raw::producer(
        "persistent://public/default/n3",
        3,
        3,
    ))
    .await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(
        e.error,
        broker::protocol::pb::ServerError::NotAllowedError as i32
    );
    // n0's producer leaves: n0 is deleted once inactive, and n3 fits.
    c.send(&broker::protocol::pb::BaseCommand {
        close_producer: Some(broker::protocol::pb::CommandCloseProducer {
            producer_id: 0,
            request_id: 50,
            ..Default::default()
        }),
        ..integration_tests::raw::base(broker::protocol::pb::base_command::Type::CloseProducer)
    })
    .await;
    assert!(c.next().await.unwrap().success.is_some());
    let list = format!("{}/admin/v2/persistent/public/default", sa.http_url);
    integration_tests::wait_for("n0 to be deleted", Duration::from_secs(30), || {
        let list = list.clone();
        async move {
            let topics = integration_tests::http_body(&list).await;
            (!topics.contains("/n0\"") && topics.contains("/n1\"")).then_some(())
        }
    })
    .await;
    let ids = c
        .produce("persistent://public/default/n3", 4, 1, b"x")
        .await;
    assert_eq!(ids.len(), 1);
}
