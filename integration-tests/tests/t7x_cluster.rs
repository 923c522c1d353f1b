//! t7x: several `magnetar broker` processes sharing one etcd and one set of bookies: lookups
//! redirect to a topic's owner, and a dead owner's topics move to a live broker without
//! losing an acknowledged message.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use integration_tests::TestCluster;
use integration_tests::standalone::{BrokerProcess, check, consumed, python, run_scenario, script};
use meta::records::decode;
use proto::meta::OwnershipInfo;

/// The service URL of the broker owning `topic`'s bundle.
async fn owner_of(cluster: &TestCluster, topic: &str) -> Option<String> {
    let store = cluster.store().await;
    let prefix = format!("{}ownership/", cluster.keys().root());
    let (kvs, _) = meta::range_all(store.as_ref(), &prefix, 100).await.ok()?;
    let bundle = broker::ownership::bundles::bundle_of(topic, 4);
    kvs.into_iter()
        .find(|kv| kv.key.ends_with(&bundle))
        .and_then(|kv| decode::<OwnershipInfo>(&kv.key, &kv.value).ok())
        .map(|o| o.service_url)
}

/// etcd, two bookies and two brokers (lease `ttl`), with `topic` subscribed (`s`, from the
/// earliest message) through the first broker, which assigns its bundle. Returns the cluster,
/// the brokers, and which of them owns the topic and which does not.
async fn owned_topic(ttl: &str, topic: &str) -> (TestCluster, Vec<BrokerProcess>, usize, usize) {
    let cluster = TestCluster::start(2).await.unwrap();
    let brokers: Vec<BrokerProcess> = (0..2)
        .map(|i| {
            BrokerProcess::start_with(
                &cluster.meta_url(),
                (2, 2, 2),
                &cluster.dir().join(format!("broker-{i}.log")),
                &[("MAGNETAR_OWNERSHIP__LEASE_TTL", ttl)],
            )
            .unwrap()
        })
        .collect();
    check(
        run_scenario(&brokers[0].service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    let owner = owner_of(&cluster, topic)
        .await
        .expect("the topic has an owner");
    let owner = brokers.iter().position(|b| b.service_url == owner).unwrap();
    (cluster, brokers, owner, 1 - owner)
}

/// Runs `produce_fixed` with `args` through `url`, calling `on_ack` with the count after each
/// acknowledgement; returns the acknowledged ids once the producer has finished (it must
/// succeed).
async fn produce_watching(
    url: &str,
    args: &[&str],
    mut on_ack: impl AsyncFnMut(usize),
) -> Vec<i64> {
    let mut producer = Command::new(python())
        .arg(script("compat.py"))
        .args([url, "produce_fixed"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("acked ") {
            acked.push(n.parse::<i64>().unwrap());
            on_ack(acked.len()).await;
        }
    }
    assert!(producer.wait().unwrap().success(), "the producer gave up");
    acked
}

/// Consumes the rest of subscription `s` through `url` and checks every id in `acked` is there.
fn assert_none_lost(url: &str, topic: &str, acked: &[i64]) {
    let got: BTreeSet<i64> = consumed(&check(
        run_scenario(url, "consume_fixed", &[topic, "s"]),
        "consume",
    ))
    .into_iter()
    .collect();
    let lost: Vec<_> = acked.iter().filter(|a| !got.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
}

/// A client given the URL of a broker that does not own the topic follows the redirect, and
/// produces and consumes there; the HTTP lookup names the owner too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_lookups_redirect_to_the_owner() {
    let topic = "persistent://public/default/redirected";
    let (cluster, b, owner, other) = owned_topic("10s", topic).await;
    let (owner, other) = (&b[owner], &b[other]);
    check(
        run_scenario(&other.service_url, "produce_fixed", &[topic, "200"]),
        "produce through the other broker",
    );
    let got = consumed(&check(
        run_scenario(&other.service_url, "consume_fixed", &[topic, "s"]),
        "consume through the other broker",
    ));
    assert_eq!(got.len(), 200);
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(owner.service_url.as_str())
    );
    let body = integration_tests::http_body(&format!(
        "{}/lookup/v2/topic/persistent/public/default/redirected",
        other.http_url
    ))
    .await;
    assert!(
        body.contains(&format!("\"brokerUrl\":\"{}\"", owner.service_url)),
        "{body}"
    );
}

/// The owner is SIGKILLed while a producer runs through the other broker: after the dead
/// owner's lease expires, the live broker takes the topic (fencing the old ledger); the
/// producer carries on, and every acknowledged message is there. A consumer that acknowledged
/// 100 messages on the old owner (its cursor flushed, at most a second later) gets none of
/// them again from the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_a_killed_owner_s_topics_move_without_losing_acked_messages() {
    let topic = "persistent://public/default/failover";
    let (cluster, mut b, dead, live) = owned_topic("2s", topic).await;
    let live_url = b[live].service_url.clone();
    check(
        run_scenario(&live_url, "produce_fixed", &[topic, "100", "100000"]),
        "produce the first 100",
    );
    let first = consumed(&check(
        run_scenario(&live_url, "consume_fixed", &[topic, "s", "100"]),
        "consume and acknowledge them",
    ));
    assert_eq!(first.len(), 100);
    // The cursor flush (at most once a second) reaches the store before the kill.
    let store = cluster.store().await;
    let key = cluster.keys().cursor(topic, "s");
    integration_tests::wait_for(
        "the cursor to be persisted past the first 100",
        std::time::Duration::from_secs(10),
        || {
            let (store, key) = (store.clone(), key.clone());
            async move {
                let kv = store.get(&key).await.ok()??;
                let c: proto::meta::CursorInfo = decode(&key, &kv.value).ok()?;
                c.mark_delete.is_some().then_some(())
            }
        },
    )
    .await;
    let mut killed_at = None;
    let acked = produce_watching(&live_url, &[topic, "3000"], async |n| {
        if n == 500 {
            b[dead].kill9();
            killed_at = Some(std::time::Instant::now());
        }
    })
    .await;
    eprintln!(
        "{} acknowledged; owner killed after 500, the rest took {:?}",
        acked.len(),
        killed_at.map(|t| t.elapsed())
    );
    assert_eq!(acked.len(), 3000);
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(live_url.as_str())
    );
    let rest: BTreeSet<i64> = consumed(&check(
        run_scenario(&live_url, "consume_fixed", &[topic, "s"]),
        "consume the rest",
    ))
    .into_iter()
    .collect();
    let again: Vec<_> = first.iter().filter(|i| rest.contains(i)).collect();
    assert!(
        again.is_empty(),
        "acknowledged, then delivered again: {again:?}"
    );
    let lost: Vec<_> = acked.iter().filter(|a| !rest.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
}

/// The owner is paused (SIGSTOP) past its lease while a producer runs through the other
/// broker: the live broker takes the topic; when the old owner runs again it finds its lease
/// gone and drops the topic, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t73_a_paused_owner_loses_its_topics_and_nothing_acked_is_lost() {
    let topic = "persistent://public/default/paused-owner";
    let (cluster, b, paused, live) = owned_topic("2s", topic).await;
    let live_url = b[live].service_url.clone();
    // The client notices a frozen broker only by its own keepalive (30 s, then as much
    // again): give its sends longer than that.
    let acked = produce_watching(&live_url, &[topic, "2000", "0", "180000"], async |n| {
        if n == 300 {
            b[paused].signal("STOP");
        }
        if n == 1500 {
            // Long past its lease: the live broker has the topic by now.
            assert_eq!(
                owner_of(&cluster, topic).await.as_deref(),
                Some(live_url.as_str())
            );
            b[paused].signal("CONT");
        }
    })
    .await;
    assert_eq!(acked.len(), 2000);
    let log = cluster.dir().join(format!("broker-{paused}.log"));
    integration_tests::wait_for(
        "the resumed broker to notice its lost lease",
        std::time::Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { text.contains("broker lease lost").then_some(()) }
        },
    )
    .await;
    assert_none_lost(&live_url, topic, &acked);
}

/// Scale in: the owner gets SIGTERM while a producer runs through the other broker. It tells
/// its clients to reconnect, persists cursors, closes the ledger and gives up its lease; the
/// other broker takes the topic. The producer sees only reconnects, and a consumer that had
/// acknowledged part of the backlog on the old owner resumes after it on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t74_sigterm_hands_the_topics_over() {
    let topic = "persistent://public/default/handover";
    let (cluster, b, leaving, staying) = owned_topic("10s", topic).await;
    let url = b[staying].service_url.clone();
    // 300 messages, 100 of them consumed and acknowledged on the old owner.
    check(
        run_scenario(&url, "produce_fixed", &[topic, "300"]),
        "produce",
    );
    let first = consumed(&check(
        run_scenario(&url, "consume_fixed", &[topic, "s", "100"]),
        "consume 100",
    ));
    assert_eq!(first.len(), 100);
    let started = std::time::Instant::now();
    let acked = produce_watching(&url, &[topic, "1500", "1000"], async |n| {
        if n == 300 {
            b[leaving].signal("TERM");
        }
    })
    .await;
    eprintln!(
        "1500 acknowledged across the handover in {:?}",
        started.elapsed()
    );
    assert_eq!(acked.len(), 1500);
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(url.as_str())
    );
    // Everything not acknowledged before — 100..300 and 1000..2500 — and none of the first
    // 100 again. (A send whose receipt the handover cut may be stored twice: no
    // de-duplication yet.)
    let rest: BTreeSet<i64> = consumed(&check(
        run_scenario(&url, "consume_fixed", &[topic, "s"]),
        "consume the rest",
    ))
    .into_iter()
    .collect();
    let want: BTreeSet<i64> = (100..300).chain(1000..2500).collect();
    assert_eq!(rest, want, "messages after the handover");
}

/// The Rust `pulsar` crate, given the URL of the broker that does not own the topic, follows
/// the redirect and produces and consumes every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t75_rust_client_follows_redirects() {
    use futures_util::TryStreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
    let topic = "persistent://public/default/rust-redirected";
    let (cluster, b, owner, other) = owned_topic("10s", topic).await;
    let (owner, other) = (b[owner].service_url.clone(), &b[other]);
    let client: Pulsar<_> = Pulsar::builder(other.service_url.clone(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(topic)
        .with_subscription("rust-sub")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    const N: usize = 300;
    for i in 0..N {
        producer
            .send_non_blocking(format!("r-{i}").into_bytes())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), consumer.try_next())
            .await
            .expect("consumer stalled")
            .unwrap()
            .expect("stream ended");
        consumer.ack(&msg).await.unwrap();
        got.push(String::from_utf8(msg.payload.data.clone()).unwrap());
    }
    assert_eq!(got, (0..N).map(|i| format!("r-{i}")).collect::<Vec<_>>());
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(owner.as_str())
    );
}

/// The registrations in the store: (service URL, topics in its last load report).
async fn registered(cluster: &TestCluster) -> Vec<(String, u64)> {
    let store = cluster.store().await;
    let prefix = format!("{}brokers/", cluster.keys().root());
    let (kvs, _) = meta::range_all(store.as_ref(), &prefix, 100)
        .await
        .unwrap_or_default();
    kvs.iter()
        .filter_map(|kv| decode::<proto::meta::BrokerInfo>(&kv.key, &kv.value).ok())
        .map(|b| (b.service_url, b.load.map_or(0, |l| l.topics)))
        .collect()
}

/// Scale out: a broker added while a producer runs takes a bundle once the bundle is
/// unloaded (the admin call, asked of the new broker, is redirected to the owner). The
/// producer sees only a reconnect, nothing acknowledged is lost, and the owner's other
/// bundles stay where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t76_scale_out_a_new_broker_takes_an_unloaded_bundle() {
    use broker::ownership::bundles::bundle_of;
    use std::time::Duration;
    let topic = "persistent://public/default/scale-out";
    let bundle = bundle_of(topic, 4);
    let cluster = TestCluster::start(2).await.unwrap();
    let start = |i: usize| {
        BrokerProcess::start_with(
            &cluster.meta_url(),
            (2, 2, 2),
            &cluster.dir().join(format!("broker-{i}.log")),
            &[],
        )
        .unwrap()
    };
    let a = start(0);
    check(
        run_scenario(&a.service_url, "consume_fixed", &[topic, "s", "0"]),
        "subscribe",
    );
    // Three more topics on the first broker, in other bundles: it stays the more loaded one.
    let others: Vec<String> = (0..)
        .map(|i| format!("persistent://public/default/scale-out-other-{i}"))
        .filter(|t| bundle_of(t, 4) != bundle)
        .take(3)
        .collect();
    for t in &others {
        check(
            run_scenario(&a.service_url, "consume_fixed", &[t.as_str(), "s", "0"]),
            "load another topic",
        );
    }
    integration_tests::wait_for(
        "the first broker to report its four topics",
        Duration::from_secs(30),
        || async {
            registered(&cluster)
                .await
                .iter()
                .any(|(url, topics)| *url == a.service_url && *topics >= 4)
                .then_some(())
        },
    )
    .await;
    let mut added = None;
    let acked = produce_watching(&a.service_url, &[topic, "2000"], async |n| {
        if n != 300 {
            return;
        }
        let b = start(1);
        integration_tests::wait_for(
            "the new broker to register",
            Duration::from_secs(30),
            || async {
                registered(&cluster)
                    .await
                    .iter()
                    .any(|(url, _)| *url == b.service_url)
                    .then_some(())
            },
        )
        .await;
        let path = format!("/admin/v2/namespaces/public/default/{bundle}/unload");
        let answer = integration_tests::http_put(&format!("{}{path}", b.http_url)).await;
        assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("location: {}{path}", a.http_url)),
            "{answer}"
        );
        let answer = integration_tests::http_put(&format!("{}{path}", a.http_url)).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        added = Some(b);
    })
    .await;
    assert_eq!(acked.len(), 2000);
    let b = added.expect("the broker was added");
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(b.service_url.as_str())
    );
    for t in &others {
        assert_eq!(
            owner_of(&cluster, t).await.as_deref(),
            Some(a.service_url.as_str()),
            "{t} moved"
        );
    }
    assert_none_lost(&b.service_url, topic, &acked);
}

/// The Rust `pulsar` crate through a failover: its producer, connected through the broker
/// that does not own the topic, keeps sending while the owner is SIGKILLed; a send that
/// fails is retried by the application, as a user would. Every acknowledged message is
/// there afterwards, read through the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t77_rust_client_survives_a_killed_owner() {
    use pulsar::{Pulsar, TokioExecutor};
    use std::time::{Duration, Instant};
    let topic = "persistent://public/default/rust-failover";
    let (cluster, mut b, dead, live) = owned_topic("2s", topic).await;
    let live_url = b[live].service_url.clone();
    // The crate's defaults retry a refused connection to the dead owner (which lookups name
    // until its lease expires) with back-off up to 30 s; a user who wants fast failover caps
    // it, as here.
    let client: Pulsar<_> = Pulsar::builder(live_url.clone(), TokioExecutor)
        .with_connection_retry_options(pulsar::ConnectionRetryOptions {
            max_backoff: Duration::from_millis(500),
            ..Default::default()
        })
        .with_operation_retry_options(pulsar::OperationRetryOptions {
            retry_delay: Duration::from_millis(500),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    const N: i64 = 1000;
    let mut acked = Vec::new();
    let mut failed_sends = 0;
    let mut killed_at = None;
    for i in 0..N {
        if i == 200 {
            b[dead].kill9();
            killed_at = Some(Instant::now());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let t0 = Instant::now();
        loop {
            let sent = match producer
                .send_non_blocking(format!("k-{i}").into_bytes())
                .await
            {
                Ok(receipt) => receipt.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => break,
                Err(e) => {
                    failed_sends += 1;
                    eprintln!(
                        "send {i} failed {:?} after the kill: {e}",
                        killed_at.map(|t: Instant| t.elapsed())
                    );
                    assert!(
                        Instant::now() < deadline,
                        "message {i} never acknowledged: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(1) {
            eprintln!("send {i} took {:?}", t0.elapsed());
        }
        acked.push(i);
    }
    eprintln!(
        "{N} acknowledged; {failed_sends} sends retried by the application; the owner was killed {:?} before the last",
        killed_at.map(|t| t.elapsed())
    );
    assert_eq!(
        owner_of(&cluster, topic).await.as_deref(),
        Some(live_url.as_str())
    );
    assert_none_lost(&live_url, topic, &acked);
}
