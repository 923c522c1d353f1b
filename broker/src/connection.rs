//! One client TCP connection: frames in, frames out, and the producers and consumers it
//! created. A writer task owns the socket's write half and drains a bounded queue; the reader
//! decodes frames and hands each to its command's handler (`protocol/commands/`). A malformed
//! frame or a protocol violation closes the connection with a log line, never a panic.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::error::{BrokerError, Result};
use crate::protocol::commands;
use crate::protocol::frame::{self, FRAME_PADDING, Frame, FrameError};
use crate::protocol::pb::BaseCommand;
use crate::protocol::pb::base_command::Type;
use crate::service::BrokerService;
use crate::topic::Topic;
use crate::topic::subscription::Subscription;

/// Outbound frames queued per connection before the dispatcher waits.
const OUTBOUND_QUEUE: usize = 1024;

/// A producer created on this connection.
pub struct ProducerState {
    /// Its topic.
    pub topic: Arc<Topic>,
    /// Its name.
    pub name: String,
    /// Receipts, in send order.
    pub receipts: mpsc::Sender<commands::send::PendingReceipt>,
    /// Set when an ExclusiveWithFencing producer took the topic: sends are refused.
    pub fenced: Arc<std::sync::atomic::AtomicBool>,
    /// The version of its schema (none for a producer without one).
    pub schema_version: Option<bytes::Bytes>,
}

/// A consumer created on this connection.
pub struct ConsumerState {
    /// Its topic.
    pub topic: Arc<Topic>,
    /// Its subscription.
    pub subscription: Arc<Subscription>,
}

/// A consumer of a non-persistent topic.
pub struct NpConsumer {
    /// Its topic.
    pub topic: Arc<crate::nonpersistent::NpTopic>,
    /// Its subscription.
    pub subscription: Arc<crate::nonpersistent::NpSubscription>,
    /// It, as its subscription holds it.
    pub handle: Arc<crate::topic::subscription::ConsumerHandle>,
}

/// Per-connection state, owned by the reader task.
pub struct Connection {
    /// Unique id (consumer keys are (connection, consumer id)).
    pub id: u64,
    /// The broker.
    pub service: Arc<BrokerService>,
    /// Outbound frames.
    pub out: crate::outbound::Outbound,
    /// Negotiated protocol version (0 until CONNECT).
    pub protocol_version: i32,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// Producers by id.
    pub producers: HashMap<u64, ProducerState>,
    /// Consumers by id.
    pub consumers: HashMap<u64, ConsumerState>,
    /// Producers of non-persistent topics by id.
    pub np_producers: HashMap<u64, Arc<crate::nonpersistent::NpTopic>>,
    /// Consumers of non-persistent topics by id.
    pub np_consumers: HashMap<u64, NpConsumer>,
    /// Topic list watchers (WATCH_TOPIC_LIST) by id.
    pub topic_watchers: HashMap<u64, commands::topic_watch::TopicWatcher>,
    /// The role the client authenticated as (`None`: authentication is off).
    pub role: Option<String>,
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The client's certificate (DER), verified in the TLS handshake; none on the plain port
    /// or when the client presented none.
    pub peer_cert: Option<Arc<[u8]>>,
    /// The method the client authenticated with (for refresh).
    pub auth_method: String,
    /// When its credentials expire (seconds since the epoch; none: never).
    pub auth_expires: Option<f64>,
    /// The client answers AUTH_CHALLENGE (CONNECT's `supports_auth_refresh`).
    pub supports_auth_refresh: bool,
    /// A challenge was sent and not answered yet.
    pub auth_challenge_pending: bool,
    /// The client reads broker entry metadata in front of messages (its CONNECT's
    /// `supports_broker_entry_metadata`); other clients get messages without it.
    pub broker_entry_metadata: bool,
    /// Publishes of this connection not durable yet (`max_pending_publish_requests_per_connection`).
    pub pending_publish: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    /// Queues a command.
    pub async fn send(&self, command: BaseCommand) -> Result<()> {
        let mut buf = BytesMut::new();
        frame::encode(&command, &mut buf);
        self.out
            .send(buf.freeze())
            .await
            .map_err(|_| BrokerError::Protocol("connection closed".into()))
    }

    async fn handle(&mut self, f: Frame) -> Result<()> {
        let Ok(t) = Type::try_from(f.command.r#type) else {
            // A command this broker does not know (a newer client's): its request, if it
            // carries one, times out on the client; the connection stays up.
            tracing::info!(
                conn = self.id,
                command = f.command.r#type,
                "ignoring an unknown command"
            );
            metrics::counter!("pulsar_unknown_commands_total").increment(1);
            return Ok(());
        };
        if self.protocol_version == 0 && t != Type::Connect {
            return Err(BrokerError::Protocol(format!("{t:?} before CONNECT")));
        }
        let c = f.command;
        if let Some(denial) = crate::auth::binary::check(self, t, &c).await {
            return self.send(denial).await;
        }
        let missing = || BrokerError::Protocol(format!("{t:?} without its body"));
        // Non-persistent topics, producers and consumers are served apart.
        {
            use crate::nonpersistent::is_non_persistent;
            use commands::non_persistent as np;
            let np_consumer = |id: u64| self.np_consumers.contains_key(&id);
            match t {
                Type::Producer
                    if c.producer
                        .as_ref()
                        .is_some_and(|p| is_non_persistent(&p.topic)) =>
                {
                    return np::producer(self, c.producer.ok_or_else(missing)?).await;
                }
                Type::Subscribe
                    if c.subscribe
                        .as_ref()
                        .is_some_and(|s| is_non_persistent(&s.topic)) =>
                {
                    return np::subscribe(self, c.subscribe.ok_or_else(missing)?).await;
                }
                Type::Send
                    if c.send
                        .as_ref()
                        .is_some_and(|s| self.np_producers.contains_key(&s.producer_id)) =>
                {
                    return np::send(self, c.send.ok_or_else(missing)?, f.payload).await;
                }
                Type::CloseProducer
                    if c.close_producer
                        .as_ref()
                        .is_some_and(|p| self.np_producers.contains_key(&p.producer_id)) =>
                {
                    let p = c.close_producer.ok_or_else(missing)?;
                    return np::close_producer(self, p.producer_id, p.request_id).await;
                }
                Type::Flow if c.flow.as_ref().is_some_and(|f| np_consumer(f.consumer_id)) => {
                    let f = c.flow.ok_or_else(missing)?;
                    np::flow(self, f.consumer_id, f.message_permits);
                    return Ok(());
                }
                Type::Ack if c.ack.as_ref().is_some_and(|a| np_consumer(a.consumer_id)) => {
                    // Nothing is kept, so nothing to acknowledge.
                    let a = c.ack.ok_or_else(missing)?;
                    return commands::ack::respond(self, &a, None).await;
                }
                Type::RedeliverUnacknowledgedMessages
                    if c.redeliver_unacknowledged_messages
                        .as_ref()
                        .is_some_and(|r| np_consumer(r.consumer_id)) =>
                {
                    return Ok(());
                }
                Type::CloseConsumer
                    if c.close_consumer
                        .as_ref()
                        .is_some_and(|x| np_consumer(x.consumer_id)) =>
                {
                    let x = c.close_consumer.ok_or_else(missing)?;
                    return np::close_consumer(self, x.consumer_id, x.request_id).await;
                }
                Type::Unsubscribe
                    if c.unsubscribe
                        .as_ref()
                        .is_some_and(|x| np_consumer(x.consumer_id)) =>
                {
                    let x = c.unsubscribe.ok_or_else(missing)?;
                    return np::close_consumer(self, x.consumer_id, x.request_id).await;
                }
                _ => {}
            }
        }
        match t {
            Type::Connect => commands::connect::handle(self, c.connect.ok_or_else(missing)?).await,
            Type::AuthResponse => {
                commands::connect::auth_response(self, c.auth_response.ok_or_else(missing)?).await
            }
            Type::Ping => commands::ping::handle(self).await,
            Type::Pong => Ok(()),
            Type::PartitionedMetadata => {
                commands::lookup::partitioned_metadata(
                    self,
                    c.partition_metadata.ok_or_else(missing)?,
                )
                .await
            }
            Type::Lookup => {
                commands::lookup::lookup(self, c.lookup_topic.ok_or_else(missing)?).await
            }
            Type::Producer => {
                commands::producer::handle(self, c.producer.ok_or_else(missing)?).await
            }
            Type::Send => {
                commands::send::handle(self, c.send.ok_or_else(missing)?, f.payload).await
            }
            Type::CloseProducer => {
                commands::close_producer::handle(self, c.close_producer.ok_or_else(missing)?).await
            }
            Type::Subscribe => {
                commands::subscribe::handle(self, c.subscribe.ok_or_else(missing)?).await
            }
            Type::Flow => commands::flow::handle(self, c.flow.ok_or_else(missing)?).await,
            Type::Ack => commands::ack::handle(self, c.ack.ok_or_else(missing)?).await,
            Type::RedeliverUnacknowledgedMessages => {
                commands::redeliver::handle(
                    self,
                    c.redeliver_unacknowledged_messages.ok_or_else(missing)?,
                )
                .await
            }
            Type::Unsubscribe => {
                commands::unsubscribe::handle(self, c.unsubscribe.ok_or_else(missing)?).await
            }
            Type::CloseConsumer => {
                commands::close_consumer::handle(self, c.close_consumer.ok_or_else(missing)?).await
            }
            Type::GetLastMessageId => {
                commands::get_last_message_id::handle(
                    self,
                    c.get_last_message_id.ok_or_else(missing)?,
                )
                .await
            }
            Type::GetTopicsOfNamespace => {
                commands::get_topics::handle(self, c.get_topics_of_namespace.ok_or_else(missing)?)
                    .await
            }
            Type::ConsumerStats => {
                commands::consumer_stats::handle(self, c.consumer_stats.ok_or_else(missing)?).await
            }
            Type::Seek => commands::seek::handle(self, c.seek.ok_or_else(missing)?).await,
            Type::GetSchema => {
                commands::schema::get_schema(self, c.get_schema.ok_or_else(missing)?).await
            }
            Type::GetOrCreateSchema => {
                let r = c.get_or_create_schema.ok_or_else(missing)?;
                commands::schema::get_or_create_schema(self, r).await
            }
            Type::WatchTopicList => {
                let r = c.watch_topic_list.ok_or_else(missing)?;
                commands::topic_watch::watch(self, r).await
            }
            Type::WatchTopicListClose => {
                let r = c.watch_topic_list_close.ok_or_else(missing)?;
                commands::topic_watch::close(self, r).await
            }
            Type::NewTxn => {
                let r = c.new_txn.ok_or_else(missing)?;
                commands::unsupported::new_txn(self, r.request_id).await
            }
            Type::AddPartitionToTxn
            | Type::AddSubscriptionToTxn
            | Type::EndTxn
            | Type::EndTxnOnPartition
            | Type::EndTxnOnSubscription => {
                let r = match t {
                    Type::AddPartitionToTxn => c.add_partition_to_txn,
                    Type::AddSubscriptionToTxn => c.add_subscription_to_txn,
                    Type::EndTxn => c.end_txn,
                    Type::EndTxnOnPartition => c.end_txn_on_partition,
                    _ => c.end_txn_on_subscription,
                };
                commands::unsupported::txn_operation(self, t, r.ok_or_else(missing)?).await
            }
            Type::TcClientConnectRequest => {
                let r = c.tc_client_connect_request.ok_or_else(missing)?;
                commands::unsupported::tc_client_connect(self, r.request_id).await
            }
            other => {
                // Responses and broker-to-client commands: nothing to answer.
                tracing::debug!(conn = self.id, command = ?other, "ignoring a command a client does not send");
                Ok(())
            }
        }
    }

    /// Detaches everything this connection created.
    async fn cleanup(&mut self) {
        let watchers: Vec<u64> = self.topic_watchers.keys().copied().collect();
        for id in watchers {
            commands::topic_watch::forget(self, id);
        }
        for (id, c) in self.consumers.drain() {
            if c.subscription.remove_consumer((self.id, id)) {
                if let Err(e) = c.subscription.flush().await {
                    tracing::warn!(error = %e, "cursor flush on disconnect failed");
                }
                c.topic.release(&c.subscription.name).await;
            }
        }
        for (id, p) in self.producers.drain() {
            p.topic.remove_producer((self.id, id));
        }
        let np_consumers: Vec<u64> = self.np_consumers.keys().copied().collect();
        for id in np_consumers {
            commands::non_persistent::detach(self, id);
        }
        for (id, topic) in self.np_producers.drain() {
            topic.remove_producer((self.id, id));
            self.service.non_persistent.release_if_idle(&topic);
        }
    }
}

/// Serves one plain client connection until it closes.
pub async fn serve(stream: TcpStream, service: Arc<BrokerService>, id: u64) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (rd, wr) = stream.into_split();
    serve_halves(rd, wr, peer, None, service, id).await;
}

/// Serves one client connection over TLS (the handshake done) until it closes.
pub async fn serve_tls(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    service: Arc<BrokerService>,
    id: u64,
) {
    let (tcp, session) = stream.get_ref();
    let peer = tcp.peer_addr().ok();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::<[u8]>::from(c.as_ref()));
    let (rd, wr) = tokio::io::split(stream);
    serve_halves(rd, wr, peer, cert, service, id).await;
}

async fn serve_halves<R, W>(
    mut rd: R,
    mut wr: W,
    peer: Option<std::net::SocketAddr>,
    peer_cert: Option<Arc<[u8]>>,
    service: Arc<BrokerService>,
    id: u64,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut rx) = crate::outbound::channel(OUTBOUND_QUEUE);
    // A socket that takes no bytes for this long belongs to a client that stopped reading:
    // the connection is closed (its consumers' messages go to others), as nothing else would
    // ever end it.
    let stall = service.keepalive * 2;
    let service_pending_limit = service.max_pending_publish_per_connection.max(1);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut buf = BytesMut::from(&first[..]);
            while let Some(more) = rx.try_recv() {
                buf.extend_from_slice(&more);
                if buf.len() > 1 << 20 {
                    break;
                }
            }
            // Flushed too: TLS holds records back until asked (plain TCP: a no-op).
            let write = async {
                wr.write_all(&buf).await?;
                wr.flush().await
            };
            match tokio::time::timeout(stall, write).await {
                Ok(Ok(())) => rx.written(buf.len()),
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(
                        conn = id,
                        ?peer,
                        "client stopped reading; closing connection"
                    );
                    metrics::counter!("pulsar_connections_write_stalled_total").increment(1);
                    return;
                }
            }
        }
    });
    let mut conn = Connection {
        id,
        service,
        out,
        protocol_version: 0,
        max_message_size: frame::DEFAULT_MAX_MESSAGE_SIZE,
        producers: HashMap::new(),
        consumers: HashMap::new(),
        np_producers: HashMap::new(),
        np_consumers: HashMap::new(),
        topic_watchers: HashMap::new(),
        role: None,
        peer,
        peer_cert,
        auth_method: String::new(),
        auth_expires: None,
        supports_auth_refresh: false,
        auth_challenge_pending: false,
        broker_entry_metadata: false,
        pending_publish: Arc::new(tokio::sync::Semaphore::new(service_pending_limit)),
    };
    let mut buf = BytesMut::with_capacity(64 << 10);
    // Keepalive (Pulsar's): a quiet connection gets a PING; one still quiet a period later is
    // closed, which releases its producers and consumers.
    let period = conn.service.keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // A connection busy with a long run of buffered commands reaches the tick late: missed
    // ticks must not fire in a burst (the second would close a client that is talking).
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = true;
    // Credential refresh (PIP-55): expired credentials are challenged at the next check.
    let refresh_every = conn.service.auth_refresh_check;
    let mut refresh = tokio::time::interval(if refresh_every.is_zero() {
        std::time::Duration::from_secs(3600)
    } else {
        refresh_every
    });
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'read: loop {
        loop {
            match frame::decode(&mut buf, conn.max_message_size + FRAME_PADDING) {
                Ok(f) => {
                    // Every command is a sign of life, read now or earlier.
                    heard = true;
                    // A panic in a handler (a bug) ends this connection only, and still
                    // detaches its producers, consumers and watchers below: left attached,
                    // they would hold Exclusive slots and permits aimed at a dead queue.
                    let command = f.command.r#type;
                    let handled = std::panic::AssertUnwindSafe(conn.handle(f))
                        .catch_unwind()
                        .await;
                    match handled {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(conn = id, ?peer, error = %e, "closing connection");
                            break 'read;
                        }
                        Err(_) => {
                            let command = Type::try_from(command).map_or_else(
                                |_| command.to_string(),
                                |t| t.as_str_name().to_owned(),
                            );
                            tracing::error!(
                                conn = id,
                                ?peer,
                                command,
                                "command handler panicked; closing connection"
                            );
                            metrics::counter!("magnetar_connection_handler_panics_total")
                                .increment(1);
                            break 'read;
                        }
                    }
                }
                Err(FrameError::Incomplete) => break,
                Err(e) => {
                    tracing::warn!(conn = id, ?peer, error = %e, "bad frame; closing connection");
                    break 'read;
                }
            }
        }
        tokio::select! {
            // `read_buf` is cancel-safe: a tick never loses bytes.
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => heard = true,
            },
            _ = keepalive.tick() => {
                // CONNECT deadline: a client that has not completed CONNECT within one
                // keepalive period (a port scanner, a byte a minute) is closed.
                if conn.protocol_version == 0 {
                    tracing::warn!(conn = id, ?peer, "no CONNECT within the keepalive period; closing connection");
                    metrics::counter!("pulsar_connections_connect_timeout_total").increment(1);
                    break;
                }
                if !heard {
                    tracing::warn!(conn = id, ?peer, "no answer to keepalive; closing connection");
                    metrics::counter!("pulsar_connections_keepalive_closed_total").increment(1);
                    break;
                }
                heard = false;
                // Never wait on a full queue here: the writer's stall limit ends such a
                // connection.
                let mut ping = BytesMut::new();
                frame::encode(&crate::protocol::cmd::ping(), &mut ping);
                let _ = conn.out.try_send(ping.freeze());
            }
            _ = refresh.tick(), if !refresh_every.is_zero() && conn.auth_expires.is_some() => {
                if let Err(e) = commands::connect::check_expiry(&mut conn).await {
                    tracing::warn!(conn = id, ?peer, error = %e, "closing connection");
                    break;
                }
            }
            () = conn.out.closed() => break,
        }
    }
    conn.cleanup().await;
    drop(conn);
    let _ = writer.await;
    tracing::debug!(conn = id, ?peer, "connection closed");
}
