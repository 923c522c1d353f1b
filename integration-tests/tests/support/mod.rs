//! Helpers shared by test files that drive the Rust `pulsar` crate (a dev-dependency, so
//! they live beside the tests rather than in the harness library).

#![allow(dead_code)] // each test file uses some of them

use std::time::Duration;

use futures_util::TryStreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

/// A client of `service_url`.
pub async fn client(service_url: &str) -> Pulsar<TokioExecutor> {
    Pulsar::builder(service_url.to_owned(), TokioExecutor)
        .build()
        .await
        .expect("the Rust client connects")
}

/// A consumer of `subscription` on `topic`, from the earliest message.
pub async fn consumer(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    subscription: &str,
    sub_type: SubType,
) -> Consumer<Vec<u8>, TokioExecutor> {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(sub_type)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("the Rust client subscribes")
}

/// The consumer's next message within `secs`; `None` when its stream ended (the topic was
/// terminated and read to its end). Panics when nothing comes in time.
pub async fn next_within(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
    secs: u64,
) -> Option<Message<Vec<u8>>> {
    tokio::time::timeout(Duration::from_secs(secs), consumer.try_next())
        .await
        .expect("nothing arrived in time")
        .expect("the consumer failed")
}
