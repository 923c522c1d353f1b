//! A raw Pulsar-protocol client for tests that misbehave on purpose: frames built by hand,
//! sent whole or not at all, sockets never read. Deadlines, never fixed sleeps.

use std::time::Duration;

use broker::protocol::frame::{self, build_payload, encode, encode_with_payload};
use broker::protocol::pb::base_command::Type;
use broker::protocol::pb::{self, BaseCommand};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream to a broker: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection and its read buffer.
pub struct RawConn {
    /// The socket (or TLS session).
    pub s: Box<dyn Io>,
    buf: BytesMut,
}

/// A command of type `t` with nothing set.
pub fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

impl RawConn {
    /// Connects (protocol 19) and waits for CONNECTED.
    pub async fn connect(addr: &str) -> RawConn {
        let s = TcpStream::connect(addr).await.expect("connect");
        let mut c = RawConn::from_stream(s);
        c.try_connect().await.expect("CONNECTED");
        c
    }

    /// Over a socket that is connected but has not sent CONNECT.
    pub fn from_stream(s: TcpStream) -> RawConn {
        RawConn::from_io(s)
    }

    /// Over any connected stream (a TLS session) that has not sent CONNECT.
    pub fn from_io(s: impl Io + 'static) -> RawConn {
        RawConn {
            s: Box::new(s),
            buf: BytesMut::new(),
        }
    }

    /// Sends CONNECT; `Some` once CONNECTED came back, `None` if the broker closed instead.
    pub async fn try_connect(&mut self) -> Option<()> {
        let connect = BaseCommand {
            connect: Some(pb::CommandConnect {
                client_version: "raw-test".into(),
                protocol_version: Some(19),
                ..Default::default()
            }),
            ..base(Type::Connect)
        };
        let mut out = BytesMut::new();
        encode(&connect, &mut out);
        self.s.write_all(&out).await.ok()?;
        self.s.flush().await.ok()?;
        self.next().await?.connected.map(|_| ())
    }

    /// Sends a command.
    pub async fn send(&mut self, c: &BaseCommand) {
        let mut out = BytesMut::new();
        encode(c, &mut out);
        self.s.write_all(&out).await.expect("write");
        self.s.flush().await.expect("flush");
    }

    /// Sends a command with a payload section.
    pub async fn send_with(&mut self, c: &BaseCommand, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_with_payload(c, payload, &mut out);
        self.s.write_all(&out).await.expect("write");
        self.s.flush().await.expect("flush");
    }

    /// The next frame's command (`None`: closed, or nothing for 10 s). PINGs are answered.
    pub async fn next(&mut self) -> Option<BaseCommand> {
        Some(self.next_frame().await?.command)
    }

    /// The next frame (`None`: closed, or nothing for 10 s). PINGs are answered.
    pub async fn next_frame(&mut self) -> Option<frame::Frame> {
        loop {
            match frame::decode(&mut self.buf, 1 << 24) {
                Ok(f) if f.command.r#type == Type::Ping as i32 => {
                    self.send(&base(Type::Pong)).await;
                    continue;
                }
                Ok(f) => return Some(f),
                Err(frame::FrameError::Incomplete) => {}
                Err(e) => panic!("bad frame from broker: {e}"),
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }
}

/// SUBSCRIBE to `sub` from the earliest message.
pub fn subscribe(
    topic: &str,
    sub: &str,
    consumer_id: u64,
    request_id: u64,
    t: pb::command_subscribe::SubType,
) -> BaseCommand {
    BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic: topic.into(),
            subscription: sub.into(),
            sub_type: t as i32,
            consumer_id,
            request_id,
            initial_position: Some(pb::command_subscribe::InitialPosition::Earliest as i32),
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    }
}

/// PRODUCER.
pub fn producer(topic: &str, producer_id: u64, request_id: u64) -> BaseCommand {
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

/// FLOW: `permits` more messages for a consumer.
pub fn flow(consumer_id: u64, permits: u32) -> BaseCommand {
    BaseCommand {
        flow: Some(pb::CommandFlow {
            consumer_id,
            message_permits: permits,
        }),
        ..base(Type::Flow)
    }
}

/// ACK of message ids (`cumulative` or individual), each (ledger, entry, ack_set).
pub fn ack(consumer_id: u64, ids: &[(u64, u64, Vec<i64>)], cumulative: bool) -> BaseCommand {
    use pb::command_ack::AckType;
    BaseCommand {
        ack: Some(pb::CommandAck {
            consumer_id,
            ack_type: if cumulative {
                AckType::Cumulative
            } else {
                AckType::Individual
            } as i32,
            message_id: ids
                .iter()
                .map(|(l, e, set)| pb::MessageIdData {
                    ledger_id: *l,
                    entry_id: *e,
                    ack_set: set.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..base(Type::Ack)
    }
}

/// A SEND of one message `seq` with `body`, as (command, payload section).
pub fn message(producer_id: u64, seq: u64, body: &[u8]) -> (BaseCommand, bytes::Bytes) {
    let meta = pb::MessageMetadata {
        producer_name: "raw".into(),
        sequence_id: seq,
        publish_time: 1,
        ..Default::default()
    };
    (
        BaseCommand {
            send: Some(pb::CommandSend {
                producer_id,
                sequence_id: seq,
                ..Default::default()
            }),
            ..base(Type::Send)
        },
        build_payload(&meta, body),
    )
}

impl RawConn {
    /// Creates producer `id` on `topic` and sends `n` messages of `body`, then waits for
    /// every receipt; their message ids in order.
    pub async fn produce(&mut self, topic: &str, id: u64, n: u64, body: &[u8]) -> Vec<(u64, u64)> {
        self.send(&producer(topic, id, 1_000 + id)).await;
        let ok = self.next().await.expect("PRODUCER answered");
        assert!(ok.producer_success.is_some(), "producer refused: {ok:?}");
        let mut ids = Vec::new();
        for seq in 0..n {
            let (c, p) = message(id, seq, body);
            self.send_with(&c, &p).await;
        }
        while (ids.len() as u64) < n {
            let c = self.next().await.expect("a receipt");
            let Some(r) = c.send_receipt.clone() else {
                panic!("not a receipt: {c:?}");
            };
            let m = r.message_id.expect("receipt id");
            ids.push((m.ledger_id, m.entry_id));
        }
        ids
    }
}

/// Sends CONNECT with `method` and `data` over `io`: the connection and the broker's answer
/// (CONNECTED, or an ERROR; `None` if it closed first).
pub async fn connect_as(
    io: impl Io + 'static,
    method: &str,
    data: &[u8],
) -> (RawConn, Option<BaseCommand>) {
    let mut c = RawConn::from_io(io);
    c.send(&BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(19),
            auth_method_name: Some(method.into()),
            auth_data: Some(data.to_vec().into()),
            ..Default::default()
        }),
        ..base(Type::Connect)
    })
    .await;
    let answer = c.next().await;
    (c, answer)
}
