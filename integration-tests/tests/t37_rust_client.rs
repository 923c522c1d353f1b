//! t37: the Rust `pulsar` crate (protocol v12, no feature flags) against `magnetar
//! standalone`: produce, consume with acks, every message once and in order.

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
