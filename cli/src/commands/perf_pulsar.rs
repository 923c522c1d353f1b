//! `magnetar perf produce` and `perf consume`: a lean Pulsar-protocol producer and consumer for
//! measuring a broker — the official clients top out below what the broker does
//! (`../shared/reference/performance.md`). One TCP connection per topic; SENDs pipelined up
//! to `--in-flight`; optionally paced to `--rate` (latency is then measured from each
//! message's scheduled time, as the W2 workload asks).
//!
//! Like the Pulsar clients, it looks each topic up (following redirects to the owning
//! broker) and, when a connection breaks or the broker moves the topic, looks it up again,
//! reconnects and resends what was in flight. It reports the reconnects and the longest time
//! a producer with messages in flight waited for a receipt: the unavailability window of a
//! failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use broker::protocol::frame::{self, build_payload};
use broker::protocol::pb::base_command::Type;
use broker::protocol::pb::command_subscribe::{InitialPosition, SubType};
use broker::protocol::pb::{self, BaseCommand};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::perf_report::{self, Stats};

/// Flags of `magnetar perf produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Brokers, `pulsar://HOST:PORT[,HOST:PORT…]` (lookups rotate over them).
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    service_url: String,
    /// Topics, one producer (and connection) each.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Messages in flight per producer.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Give messages partition keys `key-0` … `key-<N-1>` in turn (0: no key), so that
    /// Key_Shared consumers share the topic.
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Total publish rate in msg/s (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Length of the run.
    #[arg(long, default_value = "20s", value_parser = super::perf::humantime_duration)]
    duration: Duration,
    /// Also consume every topic (a subscription from the earliest message) and report it.
    #[arg(long)]
    consume: bool,
    /// Topics to produce to (repeat the flag; default: `--topics` new ones).
    #[arg(long = "topic")]
    topic: Vec<String>,
    /// A `Throughput produced: …` line this often (0s: none).
    #[arg(long, default_value = "10s", value_parser = super::perf::humantime_duration)]
    stats_interval: Duration,
    /// Print the results as one JSON object (the periodic lines go to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    security: super::perf_security::SecurityArgs,
}

/// Flags of `magnetar perf consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Brokers, `pulsar://HOST:PORT[,HOST:PORT…]`.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    service_url: String,
    /// Topics to consume (repeat the flag).
    #[arg(long = "topic", required = true)]
    topic: Vec<String>,
    /// Subscription name.
    #[arg(long, default_value = "perf-sub")]
    subscription: String,
    /// Exclusive, Shared, Failover or Key_Shared.
    #[arg(long, default_value = "Exclusive")]
    subscription_type: String,
    /// Start a new subscription at the earliest message (default: the latest).
    #[arg(long)]
    earliest: bool,
    /// Consumers per topic, each on its own connection (named `perf-<topic index>-<i>`): for
    /// Shared and Key_Shared subscriptions.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Length of the run.
    #[arg(long, default_value = "20s", value_parser = super::perf::humantime_duration)]
    duration: Duration,
    /// A `Throughput received: …` line this often (0s: none).
    #[arg(long, default_value = "10s", value_parser = super::perf::humantime_duration)]
    stats_interval: Duration,
    /// Print the results as one JSON object (the periodic lines go to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    security: super::perf_security::SecurityArgs,
}

fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

/// The read half of a connection: plain TCP or TLS.
type Reader = Box<dyn AsyncRead + Unpin + Send>;
/// The write half.
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

async fn write(w: &mut Writer, c: &BaseCommand, payload: Option<&[u8]>) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    match payload {
        Some(p) => frame::encode_with_payload(c, p, &mut out),
        None => frame::encode(c, &mut out),
    }
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

async fn read(r: &mut Reader, buf: &mut BytesMut) -> anyhow::Result<frame::Frame> {
    loop {
        match frame::decode(buf, 16 << 20) {
            Ok(f) => return Ok(f),
            Err(frame::FrameError::Incomplete) => {}
            Err(e) => bail!("bad frame from broker: {e}"),
        }
        if r.read_buf(buf).await? == 0 {
            bail!("broker closed the connection");
        }
    }
}

/// A connection to a broker: read half, write half, read buffer.
struct Conn {
    r: Reader,
    w: Writer,
    buf: BytesMut,
}

impl Conn {
    /// Reads the next frame, answering the broker's keepalive PINGs on the way.
    async fn next(&mut self) -> anyhow::Result<frame::Frame> {
        loop {
            let f = read(&mut self.r, &mut self.buf).await?;
            if f.command.ping.is_some() {
                let pong = BaseCommand {
                    pong: Some(pb::CommandPong {}),
                    ..base(Type::Pong)
                };
                write(&mut self.w, &pong, None).await?;
                continue;
            }
            return Ok(f);
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Conn> {
    let security = super::perf_security::current();
    let (addr, tls) = match (
        url.strip_prefix("pulsar://"),
        url.strip_prefix("pulsar+ssl://"),
    ) {
        (Some(a), _) => (a, false),
        (_, Some(a)) => (a, true),
        _ => bail!("service URL must be pulsar://HOST:PORT or pulsar+ssl://HOST:PORT"),
    };
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let (mut r, mut w): (Reader, Writer) = if tls {
        let s = security.tls_connect(addr, s).await?;
        let (r, w) = tokio::io::split(s);
        (Box::new(r), Box::new(w))
    } else {
        let (r, w) = s.into_split();
        (Box::new(r), Box::new(w))
    };
    let (method, data) = security.credentials();
    let connect = BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "magnetar-perf".into(),
            protocol_version: Some(19),
            auth_method_name: method,
            auth_data: data.map(Into::into),
            ..Default::default()
        }),
        ..base(Type::Connect)
    };
    write(&mut w, &connect, None).await?;
    let mut buf = BytesMut::new();
    let f = read(&mut r, &mut buf).await?;
    if let Some(e) = f.command.error {
        bail!("the broker refused the connection: {}", e.message);
    }
    f.command.connected.context("no CONNECTED")?;
    Ok(Conn { r, w, buf })
}

/// The brokers of a service URL: `pulsar://h1:p1,h2:p2` (as the Pulsar clients take it)
/// names several; each lookup starts at the next one, so a dead broker is skipped.
fn pick_broker(service_url: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (scheme, rest) = match service_url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("pulsar", service_url),
    };
    let hosts: Vec<&str> = rest.split(',').filter(|h| !h.is_empty()).collect();
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % hosts.len().max(1);
    format!("{scheme}://{}", hosts.get(i).copied().unwrap_or_default())
}

/// Looks `topic` up through `service_url` (following redirects, as the Pulsar clients do) and
/// connects to the broker that serves it.
async fn connect_to_owner(service_url: &str, topic: &str) -> anyhow::Result<Conn> {
    use pb::command_lookup_topic_response::LookupType;
    let mut url = pick_broker(service_url);
    let mut authoritative = false;
    for hop in 0..8u64 {
        let mut c = connect(&url).await?;
        let lookup = BaseCommand {
            lookup_topic: Some(pb::CommandLookupTopic {
                topic: topic.to_owned(),
                request_id: hop + 1,
                authoritative: Some(authoritative),
                ..Default::default()
            }),
            ..base(Type::Lookup)
        };
        write(&mut c.w, &lookup, None).await?;
        let answer = c
            .next()
            .await?
            .command
            .lookup_topic_response
            .context("no LOOKUP_RESPONSE")?;
        // Over TLS, the broker's TLS URL (as the Pulsar clients take it).
        let target = if url.starts_with("pulsar+ssl://") {
            answer.broker_service_url_tls.clone().unwrap_or_default()
        } else {
            answer.broker_service_url.clone().unwrap_or_default()
        };
        match answer.response.and_then(|r| LookupType::try_from(r).ok()) {
            Some(LookupType::Connect) if target.is_empty() || target == url => return Ok(c),
            Some(LookupType::Connect) => return connect(&target).await,
            Some(LookupType::Redirect) => {
                url = target;
                authoritative = answer.authoritative.unwrap_or(false);
            }
            _ => bail!(
                "lookup of {topic} failed: {}",
                answer.message.unwrap_or_default()
            ),
        }
    }
    bail!("lookup of {topic}: too many redirects")
}

struct Totals {
    /// Receipted messages and their publish latency.
    sent: Arc<Stats>,
    /// Received messages and their end-to-end latency (from the publish time).
    received: Arc<Stats>,
    reconnects: AtomicU64,
    /// The longest time, in µs, that any producer waited for a receipt while it had
    /// messages in flight: the unavailability a failover caused.
    longest_gap_us: AtomicU64,
}

/// One producer's run across reconnects: what is in flight survives a broken connection
/// and is sent again to the next one (without de-duplication it may be stored twice).
struct ProducerRun {
    args: Arc<ProduceArgs>,
    topic: String,
    body: Vec<u8>,
    start: Instant,
    end: Instant,
    next_seq: u64,
    /// Sent and not yet acknowledged: (sequence id, when it was due).
    unacked: std::collections::VecDeque<(u64, Instant)>,
    totals: Arc<Totals>,
    /// The last receipt, or when the first message went out.
    last_progress: Instant,
    longest_gap: Duration,
}

impl ProducerRun {
    fn due(&self) -> Instant {
        let rate = self.args.rate as f64 / self.args.topics as f64;
        if rate > 0.0 {
            self.start + Duration::from_secs_f64(self.next_seq as f64 / rate)
        } else {
            Instant::now()
        }
    }

    fn finished(&self) -> bool {
        Instant::now() >= self.end && self.unacked.is_empty()
    }

    fn encode_send(&self, name: &str, seq: u64, out: &mut BytesMut) {
        let meta = pb::MessageMetadata {
            producer_name: name.to_owned(),
            sequence_id: seq,
            publish_time: now_ms(),
            partition_key: (self.args.keys > 0).then(|| format!("key-{}", seq % self.args.keys)),
            ..Default::default()
        };
        let send = BaseCommand {
            send: Some(pb::CommandSend {
                producer_id: 1,
                sequence_id: seq,
                ..Default::default()
            }),
            ..base(Type::Send)
        };
        frame::encode_with_payload(&send, &build_payload(&meta, &self.body), out);
    }

    /// One connection's worth: create the producer, resend what is in flight, then send and
    /// take receipts until the run is over or the connection breaks.
    async fn session(&mut self) -> anyhow::Result<()> {
        let mut c = connect_to_owner(&self.args.service_url, &self.topic).await?;
        let create = BaseCommand {
            producer: Some(pb::CommandProducer {
                topic: self.topic.clone(),
                producer_id: 1,
                request_id: 1,
                ..Default::default()
            }),
            ..base(Type::Producer)
        };
        write(&mut c.w, &create, None).await?;
        let f = c.next().await?;
        let name = match (f.command.producer_success, f.command.error) {
            (Some(ok), _) => ok.producer_name,
            (_, Some(e)) => bail!("producer refused: {}", e.message),
            _ => bail!("producer refused"),
        };
        let mut out = BytesMut::new();
        for (seq, _) in &self.unacked {
            self.encode_send(&name, *seq, &mut out);
        }
        c.w.write_all(&out).await?;
        c.w.flush().await?;
        let in_flight = self.args.in_flight.max(1);
        let give_up = self.end + Duration::from_secs(30);
        loop {
            if self.finished() {
                return Ok(());
            }
            let can_send = Instant::now() < self.end && self.unacked.len() < in_flight;
            let due = self.due();
            tokio::select! {
                    biased;
                    f = c.next() => self.on_frame(f?)?,
                    () = tokio::time::sleep_until(due.into()), if can_send => {
                        // Everything due now, up to the window, in one write.
                        let mut out = BytesMut::new();
                        while self.unacked.len() < in_flight && Instant::now() < self.end {
                            let due = self.due();
                            if due > Instant::now() && !out.is_empty() {
                                break;
                            }
                            if self.unacked.is_empty() {
                                self.last_progress = Instant::now();
                            }
                            self.encode_send(&name, self.next_seq, &mut out);
                            self.unacked.push_back((self.next_seq, due));
                            self.next_seq += 1;
                            if out.len() >= 256 << 10 {
                                break;
                            }
                        }
                        c.w.write_all(&out).await?;
                        c.w.flush().await?;
            c.w.flush().await?;
                    }
                    () = tokio::time::sleep_until(give_up.into()) => bail!("receipts stopped coming"),
                }
        }
    }

    fn on_frame(&mut self, f: frame::Frame) -> anyhow::Result<()> {
        if let Some(r) = f.command.send_receipt {
            // Receipts come in order; one for a message sent twice (before and after a
            // reconnect) may repeat.
            while let Some(&(seq, due)) = self.unacked.front() {
                if seq > r.sequence_id {
                    break;
                }
                self.unacked.pop_front();
                if seq == r.sequence_id {
                    let now = Instant::now();
                    self.longest_gap = self
                        .longest_gap
                        .max(now.saturating_duration_since(self.last_progress));
                    self.last_progress = now;
                    self.totals.sent.record(
                        self.body.len() as u64,
                        Some(now.saturating_duration_since(due)),
                    );
                    break;
                }
            }
            return Ok(());
        }
        if let Some(e) = f.command.send_error {
            bail!("send failed: {:?}: {}", e.error, e.message);
        }
        if f.command.close_producer.is_some() {
            bail!("the broker closed the producer (topic moving)");
        }
        Ok(())
    }
}

async fn produce(a: Arc<ProduceArgs>, topic: String, totals: Arc<Totals>) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut run = ProducerRun {
        body: vec![0x61u8; a.size],
        start: now,
        end: now + a.duration,
        args: a,
        topic,
        next_seq: 0,
        unacked: Default::default(),
        totals: totals.clone(),
        last_progress: now,
        longest_gap: Duration::ZERO,
    };
    let mut backoff = Duration::from_millis(50);
    while !run.finished() {
        match run.session().await {
            Ok(()) => break,
            Err(e) if Instant::now() < run.end + Duration::from_secs(30) => {
                totals.reconnects.fetch_add(1, Ordering::Relaxed);
                eprintln!("perf: {}: {e:#}; reconnecting", run.topic);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
    totals
        .longest_gap_us
        .fetch_max(run.longest_gap.as_micros() as u64, Ordering::Relaxed);
    Ok(())
}

/// One consumer session: subscribe (durable, so a reconnect resumes where the acks left
/// off), then receive, acknowledge and grant permits until `until`.
/// What a consumer subscribes with.
#[derive(Debug, Clone)]
struct Subscription {
    name: String,
    sub_type: SubType,
    initial: InitialPosition,
    /// The consumer's name (none: the broker's default).
    consumer: Option<String>,
}

async fn consume_session(
    url: &str,
    topic: &str,
    sub: &Subscription,
    totals: &Totals,
    until: Instant,
) -> anyhow::Result<()> {
    let mut c = connect_to_owner(url, topic).await?;
    let sub = BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic: topic.to_owned(),
            subscription: sub.name.clone(),
            sub_type: sub.sub_type as i32,
            consumer_id: 1,
            request_id: 1,
            initial_position: Some(sub.initial as i32),
            consumer_name: sub.consumer.clone(),
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    };
    write(&mut c.w, &sub, None).await?;
    let f = c.next().await?;
    if f.command.success.is_none() {
        bail!(
            "subscribe refused: {:?}",
            f.command.error.map(|e| e.message)
        );
    }
    let flow = |n| BaseCommand {
        flow: Some(pb::CommandFlow {
            consumer_id: 1,
            message_permits: n,
        }),
        ..base(Type::Flow)
    };
    write(&mut c.w, &flow(1000), None).await?;
    let mut since_flow = 0;
    let mut acks = Vec::new();
    loop {
        let f = tokio::select! {
            f = c.next() => f?,
            () = tokio::time::sleep_until(until.into()) => return Ok(()),
        };
        if f.command.close_consumer.is_some() {
            bail!("the broker closed the consumer (topic moving)");
        }
        if let Some(m) = f.command.message {
            // End to end: from the producer's publish time to now (0: unknown).
            let (bytes, latency) = match f.payload.as_deref().map(frame::inspect_payload) {
                Some(Ok(info)) => {
                    let published = info.metadata.publish_time;
                    let latency = (published > 0)
                        .then(|| Duration::from_millis(now_ms().saturating_sub(published)));
                    let len = f.payload.as_ref().map_or(0, |p| p.len() - info.body_offset);
                    (len as u64, latency)
                }
                _ => (0, None),
            };
            totals.received.record(bytes, latency);
            acks.push(m.message_id);
            since_flow += 1;
            if since_flow >= 500 {
                let ack = BaseCommand {
                    ack: Some(pb::CommandAck {
                        consumer_id: 1,
                        ack_type: pb::command_ack::AckType::Individual as i32,
                        message_id: std::mem::take(&mut acks),
                        ..Default::default()
                    }),
                    ..base(Type::Ack)
                };
                write(&mut c.w, &ack, None).await?;
                write(&mut c.w, &flow(since_flow), None).await?;
                since_flow = 0;
            }
        }
    }
}

async fn consume(
    url: String,
    topic: String,
    sub: Subscription,
    totals: Arc<Totals>,
    until: Instant,
) -> anyhow::Result<()> {
    while Instant::now() < until {
        match consume_session(&url, &topic, &sub, &totals, until).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                totals.reconnects.fetch_add(1, Ordering::Relaxed);
                eprintln!("perf: consumer of {topic}: {e:#}; reconnecting");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_totals() -> Arc<Totals> {
    Arc::new(Totals {
        sent: Default::default(),
        received: Default::default(),
        reconnects: AtomicU64::new(0),
        longest_gap_us: AtomicU64::new(0),
    })
}

/// Runs `magnetar perf produce`.
pub async fn run(mut a: ProduceArgs) -> anyhow::Result<()> {
    super::perf_security::install(&a.security)?;
    let run_id = rand::random::<u32>();
    let topics: Vec<String> = if a.topic.is_empty() {
        (0..a.topics)
            .map(|i| format!("persistent://public/default/perf-{run_id}-{i}"))
            .collect()
    } else {
        a.topic.clone()
    };
    // `--rate` is spread over the topics.
    a.topics = topics.len();
    let a = Arc::new(a);
    let totals = new_totals();
    let started = Instant::now();
    let end = started + a.duration;
    let sub = Subscription {
        name: format!("perf-{run_id}"),
        sub_type: SubType::Exclusive,
        initial: InitialPosition::Earliest,
        consumer: None,
    };
    let mut tasks = Vec::new();
    for t in &topics {
        tasks.push(tokio::spawn(produce(a.clone(), t.clone(), totals.clone())));
        if a.consume {
            let until = end + Duration::from_secs(2);
            tasks.push(tokio::spawn(consume(
                a.service_url.clone(),
                t.clone(),
                sub.clone(),
                totals.clone(),
                until,
            )));
        }
    }
    let mut reporters = vec![tokio::spawn(perf_report::report_every(
        "produced",
        totals.sent.clone(),
        a.stats_interval,
        end,
        a.json,
    ))];
    if a.consume {
        reporters.push(tokio::spawn(perf_report::report_every(
            "received",
            totals.received.clone(),
            a.stats_interval,
            end,
            a.json,
        )));
    }
    for t in tasks {
        t.await??;
    }
    for r in reporters {
        r.abort();
    }
    let secs = a.duration.as_secs_f64();
    let sent = totals.sent.messages();
    let reconnects = totals.reconnects.load(Ordering::Relaxed);
    let longest_gap = totals.longest_gap_us.load(Ordering::Relaxed) as f64 / 1e6;
    if a.json {
        let mut v = serde_json::json!({
            "topics": topics,
            "in_flight": a.in_flight,
            "size": a.size,
            "produced": perf_report::json(&totals.sent, secs),
            "reconnects": reconnects,
            "longest_receipt_wait_s": longest_gap,
        });
        if a.consume {
            v["received"] = perf_report::json(&totals.received, secs);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", perf_report::aggregated("sent", &totals.sent, secs));
    let lat = totals.sent.total();
    let q = |q: f64| lat.value_at_quantile(q) as f64 / 1e3;
    println!(
        "produce  topics {}  in-flight {}  {} B  {:.0} msg/s  {:.1} MB/s  publish latency p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        topics.len(),
        a.in_flight,
        a.size,
        sent as f64 / secs,
        sent as f64 * a.size as f64 / 1e6 / secs,
        q(0.5),
        q(0.99),
        q(0.999),
        lat.max() as f64 / 1e3
    );
    println!(
        "availability  reconnects {reconnects}  longest wait for a receipt {longest_gap:.3} s"
    );
    if a.consume {
        println!(
            "{}",
            perf_report::aggregated("received", &totals.received, secs)
        );
        let consumed = totals.received.messages();
        println!(
            "consume  {:.0} msg/s  ({consumed} of {sent} published messages received)",
            consumed as f64 / secs
        );
    }
    Ok(())
}

/// Runs `magnetar perf consume`: consumers of existing topics, reporting the received rate
/// and the end-to-end latency (from each message's publish time).
pub async fn run_consume(a: ConsumeArgs) -> anyhow::Result<()> {
    super::perf_security::install(&a.security)?;
    let sub_type = match a
        .subscription_type
        .to_ascii_lowercase()
        .replace('-', "_")
        .as_str()
    {
        "exclusive" => SubType::Exclusive,
        "shared" => SubType::Shared,
        "failover" => SubType::Failover,
        "key_shared" | "keyshared" => SubType::KeyShared,
        other => bail!("subscription type {other:?}: Exclusive, Shared, Failover or Key_Shared"),
    };
    let sub = Subscription {
        name: a.subscription.clone(),
        sub_type,
        initial: if a.earliest {
            InitialPosition::Earliest
        } else {
            InitialPosition::Latest
        },
        consumer: None,
    };
    let totals = new_totals();
    let started = Instant::now();
    let until = started + a.duration;
    let mut tasks = Vec::new();
    for (n, t) in a.topic.iter().enumerate() {
        for i in 0..a.consumers.max(1) {
            let sub = Subscription {
                consumer: Some(format!("perf-{n}-{i}")),
                ..sub.clone()
            };
            tasks.push(tokio::spawn(consume(
                a.service_url.clone(),
                t.clone(),
                sub,
                totals.clone(),
                until,
            )));
        }
    }
    let reporter = tokio::spawn(perf_report::report_every(
        "received",
        totals.received.clone(),
        a.stats_interval,
        until,
        a.json,
    ));
    for t in tasks {
        t.await??;
    }
    reporter.abort();
    let secs = a.duration.as_secs_f64();
    if a.json {
        let v = serde_json::json!({
            "topics": a.topic,
            "subscription": a.subscription,
            "received": perf_report::json(&totals.received, secs),
            "reconnects": totals.reconnects.load(Ordering::Relaxed),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}",
            perf_report::aggregated("received", &totals.received, secs)
        );
    }
    Ok(())
}
