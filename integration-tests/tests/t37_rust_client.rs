//! t37: the Rust `pulsar` crate (protocol v12, no feature flags) against `magnetar
//! standalone`: produce, consume with acks, every message once and in order.

mod support;

use futures_util::TryStreamExt;
use integration_tests::process::KeptDir;
use integration_tests::standalone::StandaloneProcess;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t37_rust_client_produces_and_consumes() {
    let dir = KeptDir::new("t37-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let pulsar: Pulsar<_> = Pulsar::builder(sa.service_url.clone(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let topic = "persistent://public/default/rust-client";
    let mut consumer: Consumer<Vec<u8>, _> = pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription("rust-sub")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    let mut producer = pulsar.producer().with_topic(topic).build().await.unwrap();
    const N: usize = 2000;
    // Pipelined, within the client's own limit on outstanding sends.
    let mut receipts = std::collections::VecDeque::new();
    for i in 0..N {
        if receipts.len() >= 64 {
            let r: pulsar::producer::SendFuture = receipts.pop_front().unwrap();
            assert!(r.await.unwrap().message_id.is_some());
        }
        receipts.push_back(
            producer
                .send_non_blocking(format!("rust-{i}").into_bytes())
                .await
                .unwrap(),
        );
    }
    for r in receipts {
        assert!(r.await.unwrap().message_id.is_some());
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
    let expected: Vec<String> = (0..N).map(|i| format!("rust-{i}")).collect();
    assert_eq!(got, expected);
}

/// Issue 12, item 9: consumer priority levels on a Shared subscription — while the
/// level-0 consumer has permits it gets every message; the level-1 one gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t37b_shared_priority_levels() {
    use futures_util::TryStreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
    let dir = integration_tests::process::KeptDir::new("t37b-");
    let sa = integration_tests::standalone::StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/prioritised";
    let client: Pulsar<_> = Pulsar::builder(sa.service_url.clone(), TokioExecutor)
        .build()
        .await
        .unwrap();
    let consumer = |level: i32| {
        let client = client.clone();
        async move {
            let c: Consumer<Vec<u8>, _> = client
                .consumer()
                .with_topic(topic)
                .with_subscription("s")
                .with_consumer_name(format!("c{level}"))
                .with_subscription_type(SubType::Shared)
                .with_options(
                    ConsumerOptions::default()
                        .with_priority_level(level)
                        .with_initial_position(InitialPosition::Earliest),
                )
                .build()
                .await
                .unwrap();
            c
        }
    };
    let mut c0 = consumer(0).await;
    let mut c1 = consumer(1).await;
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    for i in 0..50 {
        producer
            .send_non_blocking(format!("m-{i}").into_bytes())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < 50 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(20), c0.try_next())
            .await
            .expect("the level-0 consumer gets every message")
            .unwrap()
            .unwrap();
        c0.ack(&m).await.unwrap();
        got += 1;
    }
    let other = tokio::time::timeout(std::time::Duration::from_secs(2), c1.try_next()).await;
    assert!(other.is_err(), "the level-1 consumer got a message");
}

/// Issue 12, item 9, with the Rust crate: a Key_Shared subscription of two consumers — each
/// key goes to one consumer, in order, every message arrives, and both get keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t37c_key_shared_with_the_rust_crate() {
    use std::collections::HashMap;
    use std::time::Duration;

    use pulsar::producer::Message;

    let dir = integration_tests::process::KeptDir::new("t37c-");
    let sa = integration_tests::standalone::StandaloneProcess::start(&dir.path()).unwrap();
    let topic = "persistent://public/default/rust-key-shared";
    let client = support::client(&sa.service_url).await;
    let mut consumers = [
        support::consumer(&client, topic, "ks", SubType::KeyShared).await,
        support::consumer(&client, topic, "ks", SubType::KeyShared).await,
    ];
    let mut producer = client.producer().with_topic(topic).build().await.unwrap();
    // 32 keys: the chance that one consumer owns them all is 2^-31
    let (total, keys) = (320, 32);
    for i in 0..total {
        let m = Message {
            payload: i.to_string().into_bytes(),
            partition_key: Some(format!("key-{}", i % keys)),
            ..Default::default()
        };
        producer.send_non_blocking(m).await.unwrap().await.unwrap();
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received < total && tokio::time::Instant::now() < deadline {
        for (idx, c) in consumers.iter_mut().enumerate() {
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), c.try_next())
                .await
                .map(|r| r.expect("the consumer failed"))
            {
                let key = m.key().expect("a partition key");
                let seq: i64 = String::from_utf8(m.payload.data.clone())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(
                    *owner.entry(key.clone()).or_insert(idx),
                    idx,
                    "{key} went to two consumers"
                );
                assert!(seq > *last.get(&key).unwrap_or(&-1), "{key} out of order");
                last.insert(key, seq);
                c.ack(&m).await.unwrap();
                received += 1;
            }
        }
    }
    assert_eq!(received, total, "every message arrives once");
    let mut owners: Vec<usize> = owner.values().copied().collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 2, "both consumers got keys: {owner:?}");
}
