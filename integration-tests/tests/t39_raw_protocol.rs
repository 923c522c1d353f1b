//! t39: the broker's wire behaviour, byte by byte: CONNECT negotiation, a SEND with a bad
//! checksum rejected with ChecksumError in sequence, a good one receipted, and a malformed
//! frame closing only that connection.

use std::time::Duration;

use broker::protocol::frame::{self, build_payload, encode, encode_with_payload};
use broker::protocol::pb::base_command::Type;
use broker::protocol::pb::{self, BaseCommand, ServerError};
use bytes::BytesMut;
use integration_tests::process::KeptDir;
use integration_tests::standalone::StandaloneProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Option<frame::Frame> {
    loop {
        match frame::decode(buf, 1 << 24) {
            Ok(f) => return Some(f),
            Err(frame::FrameError::Incomplete) => {}
            Err(e) => panic!("bad frame from broker: {e}"),
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_buf(buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
    }
}

async fn send(s: &mut TcpStream, c: &BaseCommand, payload: Option<&[u8]>) {
    let mut out = BytesMut::new();
    match payload {
        Some(p) => encode_with_payload(c, p, &mut out),
        None => encode(c, &mut out),
    }
    s.write_all(&out).await.unwrap();
}

fn ping_cmd() -> BaseCommand {
    BaseCommand {
        ping: Some(pb::CommandPing {}),
        ..base(Type::Ping)
    }
}

fn close_producer_cmd(producer_id: u64, request_id: u64) -> BaseCommand {
    BaseCommand {
        close_producer: Some(pb::CommandCloseProducer {
            producer_id,
            request_id,
            ..Default::default()
        }),
        ..base(Type::CloseProducer)
    }
}

fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39_wire_behaviour() {
    let dir = KeptDir::new("t39-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut buf = BytesMut::new();

    let connect = BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(21),
            ..Default::default()
        }),
        ..base(Type::Connect)
    };
    send(&mut s, &connect, None).await;
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    let connected = f.command.connected.expect("CONNECTED");
    assert_eq!(
        connected.protocol_version,
        Some(19),
        "min(client 21, broker 19)"
    );
    assert_eq!(connected.max_message_size, Some(5 << 20));

    let producer = BaseCommand {
        producer: Some(pb::CommandProducer {
            topic: "raw".into(),
            producer_id: 7,
            request_id: 1,
            ..Default::default()
        }),
        ..base(Type::Producer)
    };
    send(&mut s, &producer, None).await;
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    assert!(
        f.command
            .producer_success
            .unwrap()
            .producer_name
            .starts_with("magnetar-")
    );

    let meta = |seq| pb::MessageMetadata {
        producer_name: "raw".into(),
        sequence_id: seq,
        publish_time: 1,
        ..Default::default()
    };
    let send_cmd = |seq| BaseCommand {
        send: Some(pb::CommandSend {
            producer_id: 7,
            sequence_id: seq,
            ..Default::default()
        }),
        ..base(Type::Send)
    };
    let mut bad = BytesMut::from(&build_payload(&meta(0), b"corrupted")[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    send(&mut s, &send_cmd(0), Some(&bad)).await;
    send(
        &mut s,
        &send_cmd(1),
        Some(&build_payload(&meta(1), b"fine")),
    )
    .await;
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    let err = f.command.send_error.expect("SEND_ERROR first, in sequence");
    assert_eq!(
        (err.sequence_id, err.error),
        (0, ServerError::ChecksumError as i32)
    );
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    let receipt = f.command.send_receipt.expect("SEND_RECEIPT");
    assert_eq!(receipt.sequence_id, 1);
    assert!(receipt.message_id.is_some());

    // PING is answered.
    send(&mut s, &ping_cmd(), None).await;
    assert!(
        read_frame(&mut s, &mut buf)
            .await
            .unwrap()
            .command
            .pong
            .is_some()
    );

    // Garbage: a frame claiming 2 GiB closes this connection…
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0]).await.unwrap();
    assert!(
        read_frame(&mut s, &mut buf).await.is_none(),
        "connection left open"
    );
    // …and only this one.
    let mut s2 = TcpStream::connect(&addr).await.unwrap();
    let mut buf2 = BytesMut::new();
    send(&mut s2, &connect, None).await;
    assert!(
        read_frame(&mut s2, &mut buf2)
            .await
            .unwrap()
            .command
            .connected
            .is_some()
    );
}

async fn connect(addr: &str) -> (TcpStream, BytesMut) {
    let (s, buf, _) = connect_with_flags(addr).await;
    (s, buf)
}

/// Connects as a protocol-19 client; also the broker's CONNECTED.
async fn connect_with_flags(addr: &str) -> (TcpStream, BytesMut, pb::CommandConnected) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let connect = BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(19),
            ..Default::default()
        }),
        ..base(Type::Connect)
    };
    send(&mut s, &connect, None).await;
    let connected = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .connected
        .expect("CONNECTED");
    (s, buf, connected)
}

fn subscribe(
    topic: &str,
    consumer_id: u64,
    request_id: u64,
    t: pb::command_subscribe::SubType,
) -> BaseCommand {
    BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic: topic.into(),
            subscription: "sub".into(),
            sub_type: t as i32,
            consumer_id,
            request_id,
            initial_position: Some(pb::command_subscribe::InitialPosition::Earliest as i32),
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    }
}

/// Issue 10, item 4: CLOSE_PRODUCER is answered after the receipts of every earlier send; a
/// refused UNSUBSCRIBE leaves its consumer attached and receiving; a subscription whose
/// consumers all left takes the type of the next one (Exclusive, then Shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39b_close_producer_order_refused_unsubscribe_and_type_change() {
    use pb::command_subscribe::SubType;
    let dir = KeptDir::new("t39b-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let topic = "persistent://public/default/raw-order";
    let (mut s, mut buf) = connect(&addr).await;

    // 1. Twenty sends, then CLOSE_PRODUCER at once: its SUCCESS comes after all receipts.
    let producer = BaseCommand {
        producer: Some(pb::CommandProducer {
            topic: topic.into(),
            producer_id: 1,
            request_id: 1,
            ..Default::default()
        }),
        ..base(Type::Producer)
    };
    send(&mut s, &producer, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .producer_success
        .expect("PRODUCER_SUCCESS");
    for seq in 0..20u64 {
        let meta = pb::MessageMetadata {
            producer_name: "p".into(),
            sequence_id: seq,
            publish_time: 1,
            ..Default::default()
        };
        let payload = build_payload(&meta, format!("m{seq}").as_bytes());
        let c = BaseCommand {
            send: Some(pb::CommandSend {
                producer_id: 1,
                sequence_id: seq,
                ..Default::default()
            }),
            ..base(Type::Send)
        };
        send(&mut s, &c, Some(&payload)).await;
    }
    let close = close_producer_cmd(1, 2);
    send(&mut s, &close, None).await;
    let mut receipts = 0;
    loop {
        let f = read_frame(&mut s, &mut buf).await.expect("connection open");
        if f.command.send_receipt.is_some() {
            receipts += 1;
        } else if let Some(ok) = f.command.success {
            assert_eq!(ok.request_id, 2);
            break;
        }
    }
    assert_eq!(receipts, 20, "CLOSE_PRODUCER answered before every receipt");

    // 2. Exclusive first; once its consumer closes, the subscription takes Shared.
    send(&mut s, &subscribe(topic, 10, 3, SubType::Exclusive), None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .expect("subscribed");
    let close_consumer = BaseCommand {
        close_consumer: Some(pb::CommandCloseConsumer {
            consumer_id: 10,
            request_id: 4,
            ..Default::default()
        }),
        ..base(Type::CloseConsumer)
    };
    send(&mut s, &close_consumer, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .expect("closed");
    for (id, req) in [(11, 5), (12, 6)] {
        send(&mut s, &subscribe(topic, id, req, SubType::Shared), None).await;
        let f = read_frame(&mut s, &mut buf).await.unwrap();
        assert!(
            f.command.success.is_some(),
            "Shared consumer {id} refused: {:?}",
            f.command.error
        );
    }

    // 3. Consumer 11 asks to unsubscribe while 12 is attached: refused, and 11 still receives.
    let unsubscribe = BaseCommand {
        unsubscribe: Some(pb::CommandUnsubscribe {
            consumer_id: 11,
            request_id: 7,
            ..Default::default()
        }),
        ..base(Type::Unsubscribe)
    };
    send(&mut s, &unsubscribe, None).await;
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    let err = f.command.error.expect("UNSUBSCRIBE refused");
    assert_eq!(err.error, ServerError::ConsumerBusy as i32);
    let flow = BaseCommand {
        flow: Some(pb::CommandFlow {
            consumer_id: 11,
            message_permits: 5,
        }),
        ..base(Type::Flow)
    };
    send(&mut s, &flow, None).await;
    let f = read_frame(&mut s, &mut buf).await.expect("a message");
    let m = f
        .command
        .message
        .expect("MESSAGE for the consumer that stayed");
    assert_eq!(m.consumer_id, 11);
}

/// Issue 10, item 9: a client that stops answering (half-open: it never reads, never answers
/// PING) is disconnected after the keepalive, and its Exclusive subscription freed for another
/// consumer; a client that answers PINGs stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39c_a_silent_client_is_disconnected_and_its_exclusive_slot_freed() {
    use pb::command_subscribe::SubType;
    let dir = KeptDir::new("t39c-");
    let sa =
        StandaloneProcess::start_with(&dir.path(), &[("MAGNETAR_KEEPALIVE_INTERVAL", "300ms")])
            .unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let topic = "persistent://public/default/keepalive";
    // The silent client: subscribes, then never reads or writes again.
    let (mut silent, mut sbuf) = connect(&addr).await;
    send(
        &mut silent,
        &subscribe(topic, 1, 1, SubType::Exclusive),
        None,
    )
    .await;
    read_frame(&mut silent, &mut sbuf)
        .await
        .unwrap()
        .command
        .success
        .expect("subscribed");
    // A live client answers every PING for a while and is never dropped.
    let (mut live, mut lbuf) = connect(&addr).await;
    let mut pings = 0;
    while pings < 4 {
        let f = read_frame(&mut live, &mut lbuf)
            .await
            .expect("the live client stays connected");
        if f.command.ping.is_some() {
            pings += 1;
            send(&mut live, &base(Type::Pong), None).await;
        }
    }
    // By now the silent one is gone: another consumer gets the Exclusive subscription.
    let mut req = 10;
    integration_tests::wait_for(
        "the exclusive slot to be freed",
        Duration::from_secs(20),
        || {
            req += 1;
            let (addr, r) = (addr.clone(), req);
            async move {
                let (mut s, mut buf) = connect(&addr).await;
                send(&mut s, &subscribe(topic, 2, r, SubType::Exclusive), None).await;
                read_frame(&mut s, &mut buf)
                    .await?
                    .command
                    .success
                    .map(|_| ())
            }
        },
    )
    .await;
}

/// Issue 12, item 1: commands the broker does not serve get their own error response and
/// the connection stays up (an unknown command type is ignored); SEEK,
/// GET_TOPICS_OF_NAMESPACE, CONSUMER_STATS and ACK with a request id are answered. After all of it the same
/// connection still produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39d_unsupported_commands_keep_the_connection() {
    let dir = KeptDir::new("t39d-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let (mut s, mut buf) = connect(&addr).await;
    // A consumer, for the consumer-scoped commands.
    let sub = BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic: "persistent://public/default/raw-d".into(),
            subscription: "s".into(),
            sub_type: pb::command_subscribe::SubType::Exclusive as i32,
            consumer_id: 1,
            request_id: 1,
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    };
    send(&mut s, &sub, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .unwrap();
    // An unknown command type: ignored.
    let mut unknown = base(Type::Ping);
    unknown.r#type = 99;
    send(&mut s, &unknown, None).await;
    // The transaction operations: each gets its own response with an error and its txn id.
    for (i, t) in [
        Type::AddPartitionToTxn,
        Type::AddSubscriptionToTxn,
        Type::EndTxn,
        Type::EndTxnOnPartition,
        Type::EndTxnOnSubscription,
    ]
    .into_iter()
    .enumerate()
    {
        let op = Some(pb::CommandTxnOperation {
            request_id: 100 + i as u64,
            txnid_least_bits: Some(7),
            txnid_most_bits: Some(1),
        });
        let mut c = base(t);
        match t {
            Type::AddPartitionToTxn => c.add_partition_to_txn = op,
            Type::AddSubscriptionToTxn => c.add_subscription_to_txn = op,
            Type::EndTxn => c.end_txn = op,
            Type::EndTxnOnPartition => c.end_txn_on_partition = op,
            _ => c.end_txn_on_subscription = op,
        }
        send(&mut s, &c, None).await;
        let r = read_frame(&mut s, &mut buf).await.unwrap().command;
        assert_eq!(
            r.r#type,
            t as i32 + 1,
            "{t:?} answered with its response: {r:?}"
        );
        let resp = r
            .add_partition_to_txn_response
            .or(r.add_subscription_to_txn_response)
            .or(r.end_txn_response)
            .or(r.end_txn_on_partition_response)
            .or(r.end_txn_on_subscription_response)
            .unwrap();
        assert_eq!(resp.request_id, 100 + i as u64);
        assert_eq!(
            (resp.txnid_least_bits, resp.txnid_most_bits),
            (Some(7), Some(1))
        );
        assert!(resp.error.is_some() && resp.message.is_some());
    }
    // SEEK (to a publish time): the consumer is told to reconnect, then SUCCESS; the same
    // consumer id subscribes again on the same connection.
    let seek = BaseCommand {
        seek: Some(pb::CommandSeek {
            consumer_id: 1,
            request_id: 2,
            message_publish_time: Some(0),
            ..Default::default()
        }),
        ..base(Type::Seek)
    };
    send(&mut s, &seek, None).await;
    let f = read_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(
        f.command
            .close_consumer
            .expect("CLOSE_CONSUMER")
            .consumer_id,
        1
    );
    let ok = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .expect("SUCCESS");
    assert_eq!(ok.request_id, 2);
    send(&mut s, &sub, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .unwrap();
    // SEEK for a consumer that does not exist: ConsumerNotFound.
    let mut bad = seek.clone();
    bad.seek.as_mut().unwrap().consumer_id = 9;
    send(&mut s, &bad, None).await;
    let e = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .error
        .expect("ERROR");
    assert_eq!(e.error, ServerError::ConsumerNotFound as i32);
    // GET_SCHEMA: "no schema".
    let gs = BaseCommand {
        get_schema: Some(pb::CommandGetSchema {
            request_id: 3,
            topic: "persistent://public/default/raw-d".into(),
            schema_version: None,
        }),
        ..base(Type::GetSchema)
    };
    send(&mut s, &gs, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .get_schema_response
        .unwrap();
    assert_eq!(
        (r.request_id, r.error_code),
        (3, Some(ServerError::TopicNotFound as i32))
    );
    // GET_TOPICS_OF_NAMESPACE: the topic is listed, with a hash; the same hash back → unchanged.
    let gt = |hash: Option<String>| BaseCommand {
        get_topics_of_namespace: Some(pb::CommandGetTopicsOfNamespace {
            request_id: 4,
            namespace: "public/default".into(),
            mode: None,
            topics_pattern: None,
            topics_hash: hash,
        }),
        ..base(Type::GetTopicsOfNamespace)
    };
    send(&mut s, &gt(None), None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .get_topics_of_namespace_response
        .unwrap();
    assert_eq!(r.topics, ["persistent://public/default/raw-d"]);
    send(&mut s, &gt(r.topics_hash.clone()), None).await;
    let r2 = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .get_topics_of_namespace_response
        .unwrap();
    assert_eq!(r2.changed, Some(false));
    assert!(r2.topics.is_empty());
    // CONSUMER_STATS.
    let cs = BaseCommand {
        consumer_stats: Some(pb::CommandConsumerStats {
            request_id: 5,
            consumer_id: 1,
        }),
        ..base(Type::ConsumerStats)
    };
    send(&mut s, &cs, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .consumer_stats_response
        .unwrap();
    assert_eq!(r.request_id, 5);
    assert_eq!(r.r#type.as_deref(), Some("Exclusive"));
    assert_eq!(r.msg_backlog, Some(0));
    // ACK with a request id: ACK_RESPONSE.
    let ack = BaseCommand {
        ack: Some(pb::CommandAck {
            consumer_id: 1,
            ack_type: pb::command_ack::AckType::Individual as i32,
            message_id: vec![],
            request_id: Some(6),
            ..Default::default()
        }),
        ..base(Type::Ack)
    };
    send(&mut s, &ack, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .ack_response
        .unwrap();
    assert_eq!((r.request_id, r.error), (Some(6), None));
    // LOOKUP for a named listener this broker lacks: Failed with ServiceNotReady, as Pulsar.
    let lookup = BaseCommand {
        lookup_topic: Some(pb::CommandLookupTopic {
            topic: "persistent://public/default/raw-d".into(),
            request_id: 7,
            advertised_listener_name: Some("test".into()),
            ..Default::default()
        }),
        ..base(Type::Lookup)
    };
    send(&mut s, &lookup, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .lookup_topic_response
        .unwrap();
    assert_eq!(r.error, Some(ServerError::ServiceNotReady as i32));
    assert_eq!(
        r.message.as_deref(),
        Some("the broker do not have test listener")
    );
    // GET_OR_CREATE_SCHEMA registers version 0, then GET_SCHEMA finds it.
    let schema = pb::Schema {
        name: "raw-d".into(),
        schema_data: b"{\"type\":\"string\"}".to_vec().into(),
        r#type: pb::schema::Type::Avro as i32,
        properties: vec![],
    };
    let goc = BaseCommand {
        get_or_create_schema: Some(pb::CommandGetOrCreateSchema {
            request_id: 8,
            topic: "persistent://public/default/raw-d".into(),
            schema: schema.clone(),
        }),
        ..base(Type::GetOrCreateSchema)
    };
    send(&mut s, &goc, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .get_or_create_schema_response
        .unwrap();
    assert_eq!(r.schema_version.as_deref(), Some(&[0u8; 8][..]), "{r:?}");
    send(&mut s, &gs, None).await;
    let r = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .get_schema_response
        .unwrap();
    assert_eq!(r.schema.map(|s| s.schema_data), Some(schema.schema_data));
    // The connection still works.
    send(&mut s, &base(Type::Ping), None).await;
    assert!(
        read_frame(&mut s, &mut buf)
            .await
            .unwrap()
            .command
            .pong
            .is_some()
    );
}

/// Issue 12, item 5: consumer epochs — MESSAGE carries the consumer's epoch; a
/// redeliver-all with a newer epoch raises it, and the redelivered message carries the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39e_consumer_epoch_on_redelivery() {
    let dir = KeptDir::new("t39e-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let (mut s, mut buf) = connect(&addr).await;
    let topic = "persistent://public/default/raw-epoch";
    let sub = BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic: topic.into(),
            subscription: "s".into(),
            sub_type: pb::command_subscribe::SubType::Exclusive as i32,
            consumer_id: 1,
            request_id: 1,
            consumer_epoch: Some(0),
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    };
    send(&mut s, &sub, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .success
        .unwrap();
    let producer = BaseCommand {
        producer: Some(pb::CommandProducer {
            topic: topic.into(),
            producer_id: 1,
            request_id: 2,
            ..Default::default()
        }),
        ..base(Type::Producer)
    };
    send(&mut s, &producer, None).await;
    read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .producer_success
        .unwrap();
    let flow = BaseCommand {
        flow: Some(pb::CommandFlow {
            consumer_id: 1,
            message_permits: 10,
        }),
        ..base(Type::Flow)
    };
    send(&mut s, &flow, None).await;
    let meta = pb::MessageMetadata {
        producer_name: "raw".into(),
        sequence_id: 0,
        publish_time: 1,
        ..Default::default()
    };
    let send_cmd = BaseCommand {
        send: Some(pb::CommandSend {
            producer_id: 1,
            sequence_id: 0,
            ..Default::default()
        }),
        ..base(Type::Send)
    };
    send(&mut s, &send_cmd, Some(&build_payload(&meta, b"epoch"))).await;
    // The receipt and the message, in either order.
    let mut first = None;
    for _ in 0..2 {
        let f = read_frame(&mut s, &mut buf).await.unwrap();
        if let Some(m) = f.command.message {
            first = Some(m);
        }
    }
    let first = first.expect("MESSAGE");
    assert_eq!(
        (first.consumer_epoch, first.redelivery_count),
        (Some(0), Some(0))
    );
    let redeliver = BaseCommand {
        redeliver_unacknowledged_messages: Some(pb::CommandRedeliverUnacknowledgedMessages {
            consumer_id: 1,
            message_ids: vec![],
            consumer_epoch: Some(1),
        }),
        ..base(Type::RedeliverUnacknowledgedMessages)
    };
    send(&mut s, &redeliver, None).await;
    let again = read_frame(&mut s, &mut buf)
        .await
        .unwrap()
        .command
        .message
        .expect("MESSAGE again");
    assert_eq!(
        (again.consumer_epoch, again.redelivery_count),
        (Some(1), Some(1))
    );
    assert_eq!(again.message_id.entry_id, first.message_id.entry_id);
}

fn watch_cmd(request_id: u64, watcher_id: u64, pattern: &str, hash: Option<String>) -> BaseCommand {
    BaseCommand {
        watch_topic_list: Some(pb::CommandWatchTopicList {
            request_id,
            watcher_id,
            namespace: "public/default".into(),
            topics_pattern: pattern.into(),
            topics_hash: hash,
        }),
        ..base(Type::WatchTopicList)
    }
}

fn producer_cmd(topic: &str, producer_id: u64, request_id: u64) -> BaseCommand {
    BaseCommand {
        producer: Some(pb::CommandProducer {
            topic: topic.into(),
            producer_id,
            request_id,
            ..Default::default()
        }),
        ..base(Type::Producer)
    }
}

/// The next frame that is not a PING (answered) — the broker may PING a quiet test.
async fn next_frame(s: &mut TcpStream, buf: &mut BytesMut) -> BaseCommand {
    loop {
        let f = read_frame(s, buf).await.expect("a frame within 10 s");
        if f.command.r#type == Type::Ping as i32 {
            let pong = BaseCommand {
                pong: Some(pb::CommandPong {}),
                ..base(Type::Pong)
            };
            send(s, &pong, None).await;
            continue;
        }
        return f.command;
    }
}

/// Issue 12, item 7: WATCH_TOPIC_LIST. The broker says it supports topic watchers; a watcher
/// gets the matching topics with Pulsar's hash, then an update for each topic created or
/// deleted that matches — a plain topic, every partition of a new partitioned topic, a
/// deletion — and none for topics that do not match or after it is closed. Bad patterns,
/// long patterns and bad namespaces are refused with errors; GET_TOPICS_OF_NAMESPACE with a
/// pattern filters on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39f_topic_list_watchers() {
    let dir = KeptDir::new("t39f-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let url = sa.http_url.clone();

    // CONNECTED advertises the feature.
    let (mut s, mut buf, connected) = connect_with_flags(&addr).await;
    assert_eq!(
        connected
            .feature_flags
            .and_then(|f| f.supports_topic_watchers),
        Some(true)
    );

    let ns = "persistent://public/default";
    send(&mut s, &producer_cmd(&format!("{ns}/w-a-1"), 1, 1), None).await;
    assert!(
        next_frame(&mut s, &mut buf)
            .await
            .producer_success
            .is_some()
    );

    // The watcher: the matching topic, and the hash of the list.
    let pattern = "persistent://public/default/w-a-.*";
    send(&mut s, &watch_cmd(2, 1, pattern, None), None).await;
    let ok = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_list_success
        .expect("WATCH_TOPIC_LIST_SUCCESS");
    assert_eq!((ok.request_id, ok.watcher_id), (2, 1));
    assert_eq!(ok.topic, [format!("{ns}/w-a-1")]);
    let hash = broker::protocol::commands::get_topics::topics_hash(&ok.topic);
    assert_eq!(ok.topics_hash, hash);

    // A topic that does not match, then one that does: one update, for the second.
    send(&mut s, &producer_cmd(&format!("{ns}/w-b-1"), 2, 3), None).await;
    assert!(
        next_frame(&mut s, &mut buf)
            .await
            .producer_success
            .is_some()
    );
    send(&mut s, &producer_cmd(&format!("{ns}/w-a-2"), 3, 4), None).await;
    let mut update = None;
    while update.is_none() {
        let c = next_frame(&mut s, &mut buf).await;
        update = c.watch_topic_update.clone();
        assert!(update.is_some() || c.producer_success.is_some(), "{c:?}");
    }
    let u = update.unwrap();
    assert_eq!(u.watcher_id, 1);
    assert_eq!(u.new_topics, [format!("{ns}/w-a-2")]);
    assert!(u.deleted_topics.is_empty());
    let both = [format!("{ns}/w-a-1"), format!("{ns}/w-a-2")];
    assert_eq!(
        u.topics_hash,
        broker::protocol::commands::get_topics::topics_hash(&both)
    );

    // Asked again with the current hash: the same watcher, no names.
    send(
        &mut s,
        &watch_cmd(5, 1, pattern, Some(u.topics_hash.clone())),
        None,
    )
    .await;
    let again = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_list_success
        .unwrap();
    assert!(again.topic.is_empty());
    assert_eq!(again.topics_hash, u.topics_hash);

    // A partitioned topic created over REST (by the admin CLI): its three partitions.
    integration_tests::admin::ok(
        &url,
        &[
            "topics",
            "create-partitioned-topic",
            &format!("{ns}/w-a-parts"),
            "-p",
            "3",
        ],
    );
    let u = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_update
        .unwrap();
    let mut parts = u.new_topics.clone();
    parts.sort();
    assert_eq!(
        parts,
        (0..3)
            .map(|i| format!("{ns}/w-a-parts-partition-{i}"))
            .collect::<Vec<_>>()
    );

    // A deletion (the producer closed first).
    let close = close_producer_cmd(3, 6);
    send(&mut s, &close, None).await;
    assert!(next_frame(&mut s, &mut buf).await.success.is_some());
    integration_tests::admin::ok(&url, &["topics", "delete", &format!("{ns}/w-a-2")]);
    let u = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_update
        .unwrap();
    assert!(u.new_topics.is_empty());
    assert_eq!(u.deleted_topics, [format!("{ns}/w-a-2")]);

    // A second watcher on the same pattern; the first one closed. A new topic then reaches
    // the second only.
    send(&mut s, &watch_cmd(7, 2, pattern, None), None).await;
    assert_eq!(
        next_frame(&mut s, &mut buf)
            .await
            .watch_topic_list_success
            .unwrap()
            .topic
            .len(),
        4
    );
    let close_watch = BaseCommand {
        watch_topic_list_close: Some(pb::CommandWatchTopicListClose {
            request_id: 8,
            watcher_id: 1,
        }),
        ..base(Type::WatchTopicListClose)
    };
    send(&mut s, &close_watch, None).await;
    assert_eq!(
        next_frame(&mut s, &mut buf)
            .await
            .success
            .unwrap()
            .request_id,
        8
    );
    send(&mut s, &producer_cmd(&format!("{ns}/w-a-3"), 4, 9), None).await;
    let mut seen = Vec::new();
    loop {
        let c = next_frame(&mut s, &mut buf).await;
        if let Some(u) = c.watch_topic_update {
            seen.push(u.watcher_id);
            if u.watcher_id == 2 {
                assert_eq!(u.new_topics, [format!("{ns}/w-a-3")]);
                break;
            }
        }
    }
    // Round trip: anything the closed watcher sent would have come by now too.
    send(&mut s, &ping_cmd(), None).await;
    loop {
        let c = next_frame(&mut s, &mut buf).await;
        if let Some(u) = c.watch_topic_update {
            seen.push(u.watcher_id);
        }
        if c.pong.is_some() {
            break;
        }
    }
    assert_eq!(seen, [2], "the closed watcher sent nothing");

    // Refusals, each with its error, on a connection that stays up.
    for (request_id, pattern, namespace, error) in [
        (
            10,
            "persistent://public/default/(",
            "public/default",
            ServerError::NotAllowedError,
        ),
        (
            11,
            &*format!("{ns}/{}", "x".repeat(60)),
            "public/default",
            ServerError::NotAllowedError,
        ),
        (
            12,
            "persistent://public/default/.*",
            "not a namespace",
            ServerError::MetadataError,
        ),
    ] {
        let mut c = watch_cmd(request_id, 50 + request_id, pattern, None);
        c.watch_topic_list.as_mut().unwrap().namespace = namespace.into();
        send(&mut s, &c, None).await;
        let e = next_frame(&mut s, &mut buf).await.error.expect("ERROR");
        assert_eq!(
            (e.request_id, e.error),
            (request_id, error as i32),
            "{}",
            e.message
        );
    }

    // GET_TOPICS_OF_NAMESPACE with a pattern: filtered on the broker.
    let gt = BaseCommand {
        get_topics_of_namespace: Some(pb::CommandGetTopicsOfNamespace {
            request_id: 13,
            namespace: "public/default".into(),
            mode: None,
            topics_pattern: Some("persistent://public/default/w-b-.*".into()),
            topics_hash: None,
        }),
        ..base(Type::GetTopicsOfNamespace)
    };
    send(&mut s, &gt, None).await;
    let r = next_frame(&mut s, &mut buf)
        .await
        .get_topics_of_namespace_response
        .unwrap();
    assert_eq!(r.filtered, Some(true));
    assert_eq!(r.topics, [format!("{ns}/w-b-1")]);
}

/// Issue 12, item 7, across brokers: a watcher on one broker hears of a topic created, and
/// then deleted, through another broker of the cluster (the watch is on etcd, not on the
/// broker's own topics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39g_topic_list_watchers_see_other_brokers_topics() {
    use integration_tests::standalone::{BrokerProcess, check, run_scenario};
    let cluster = integration_tests::TestCluster::start(1).await.unwrap();
    let brokers: Vec<BrokerProcess> = (0..2)
        .map(|i| {
            BrokerProcess::start_with(
                &cluster.meta_url(),
                (1, 1, 1),
                &cluster.dir().join(format!("broker-{i}.log")),
                &[],
            )
            .unwrap()
        })
        .collect();
    let addr = brokers[0].service_url.strip_prefix("pulsar://").unwrap();
    let (mut s, mut buf) = connect(addr).await;
    let pattern = "persistent://public/default/cw-.*";
    send(&mut s, &watch_cmd(1, 1, pattern, None), None).await;
    let ok = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_list_success
        .unwrap();
    assert!(ok.topic.is_empty());

    let topic = "persistent://public/default/cw-1";
    check(
        run_scenario(&brokers[1].service_url, "produce_fixed", &[topic, "3"]),
        "produce through the other broker",
    );
    let u = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_update
        .unwrap();
    assert_eq!(u.new_topics, [topic]);

    integration_tests::admin::ok(&brokers[1].http_url, &["topics", "delete", topic]);
    let u = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_update
        .unwrap();
    assert_eq!(u.deleted_topics, [topic]);
    assert_eq!(
        u.topics_hash,
        broker::protocol::commands::get_topics::topics_hash(&[])
    );
}

fn key_shared_subscribe(
    consumer_id: u64,
    request_id: u64,
    ranges: &[(i32, i32)],
    mode: pb::key_shared_meta::KeySharedMode,
) -> BaseCommand {
    let mut c = subscribe(
        "persistent://public/default/ks-ranges",
        consumer_id,
        request_id,
        pb::command_subscribe::SubType::KeyShared,
    );
    let s = c.subscribe.as_mut().unwrap();
    s.consumer_name = Some(format!("c{consumer_id}"));
    let mut meta = broker::topic::key_shared::sticky_meta(ranges, None);
    meta.key_shared_mode = mode as i32;
    s.key_shared_meta = Some(meta);
    c
}

/// Issue 12, item 9: STICKY Key_Shared ranges on the wire: overlapping, inverted and empty
/// ranges are refused with ConsumerAssignError, another mode with ConsumerBusy; `topics
/// stats` shows the mode and each consumer's ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39h_key_shared_sticky_ranges_validated_and_shown() {
    use pb::key_shared_meta::KeySharedMode::{AutoSplit, Sticky};
    let dir = KeptDir::new("t39h-");
    let sa = StandaloneProcess::start(&dir.path()).unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let (mut s, mut buf) = connect(&addr).await;
    send(
        &mut s,
        &key_shared_subscribe(1, 1, &[(0, 999), (5000, 5999)], Sticky),
        None,
    )
    .await;
    assert!(next_frame(&mut s, &mut buf).await.success.is_some());
    send(
        &mut s,
        &key_shared_subscribe(2, 2, &[(1000, 4999)], Sticky),
        None,
    )
    .await;
    assert!(next_frame(&mut s, &mut buf).await.success.is_some());
    for (id, ranges, mode, error) in [
        (
            3,
            vec![(900, 1100)],
            Sticky,
            ServerError::ConsumerAssignError,
        ),
        (
            4,
            vec![(7000, 6000)],
            Sticky,
            ServerError::ConsumerAssignError,
        ),
        (5, vec![], Sticky, ServerError::ConsumerAssignError),
        (
            6,
            vec![(70_000, 70_001)],
            Sticky,
            ServerError::ConsumerAssignError,
        ),
        (7, vec![], AutoSplit, ServerError::ConsumerBusy),
    ] {
        send(&mut s, &key_shared_subscribe(id, id, &ranges, mode), None).await;
        let e = next_frame(&mut s, &mut buf).await.error.expect("ERROR");
        assert_eq!(
            (e.request_id, e.error),
            (id, error as i32),
            "{ranges:?}: {}",
            e.message
        );
    }
    let stats = integration_tests::admin::json(
        &sa.http_url,
        &["topics", "stats", "persistent://public/default/ks-ranges"],
    );
    let sub = &stats["subscriptions"]["sub"];
    assert_eq!(sub["keySharedMode"], "STICKY", "{sub}");
    assert_eq!(sub["allowOutOfOrderDelivery"], false);
    let ranges: std::collections::BTreeMap<String, serde_json::Value> = sub["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["consumerName"].as_str().unwrap().to_owned(),
                c["keyHashRanges"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ranges["c1"],
        serde_json::json!(["[0, 999]", "[5000, 5999]"])
    );
    assert_eq!(ranges["c2"], serde_json::json!(["[1000, 4999]"]));
}

/// Issue 12, item 7, unhappy path: etcd killed (SIGKILL) and restarted under a topic list
/// watcher — the watch carries on, and a topic created afterwards is still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t39i_topic_list_watcher_survives_an_etcd_restart() {
    use integration_tests::standalone::{BrokerProcess, check, run_scenario};
    let mut cluster = integration_tests::TestCluster::start(1).await.unwrap();
    let broker = BrokerProcess::start_with(
        &cluster.meta_url(),
        (1, 1, 1),
        &cluster.dir().join("broker.log"),
        &[],
    )
    .unwrap();
    let addr = broker.service_url.strip_prefix("pulsar://").unwrap();
    let (mut s, mut buf) = connect(addr).await;
    send(
        &mut s,
        &watch_cmd(1, 1, "persistent://public/default/er-.*", None),
        None,
    )
    .await;
    assert!(
        next_frame(&mut s, &mut buf)
            .await
            .watch_topic_list_success
            .is_some()
    );
    cluster.etcd.kill();
    cluster.etcd.restart().await.unwrap();
    let topic = "persistent://public/default/er-1";
    check(
        run_scenario(&broker.service_url, "produce_fixed", &[topic, "2"]),
        "produce after the etcd restart",
    );
    let u = next_frame(&mut s, &mut buf)
        .await
        .watch_topic_update
        .unwrap();
    assert_eq!(u.new_topics, [topic]);
}
