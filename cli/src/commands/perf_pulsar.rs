//! `magnetar perf produce`: a lean Pulsar-protocol producer (and optional consumer) for
//! measuring a broker — the official clients top out below what the broker does
//! (`../shared/reference/performance.md`). One TCP connection per topic; SENDs pipelined up
//! to `--in-flight`; optionally paced to `--rate` (latency is then measured from each
//! message's scheduled time, as the W2 workload asks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use broker::protocol::frame::{self, build_payload};
use broker::protocol::pb::base_command::Type;
use broker::protocol::pb::command_subscribe::{InitialPosition, SubType};
use broker::protocol::pb::{self, BaseCommand};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;

/// Flags of `magnetar perf produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Broker, `pulsar://HOST:PORT`.
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
    /// Total publish rate in msg/s (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Length of the run.
    #[arg(long, default_value = "20s", value_parser = super::perf::humantime_duration)]
    duration: Duration,
    /// Also consume every topic (a subscription from the earliest message) and report it.
    #[arg(long)]
    consume: bool,
}

fn base(t: Type) -> BaseCommand {
    BaseCommand {
        r#type: t as i32,
        ..Default::default()
    }
}

async fn write(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    c: &BaseCommand,
    payload: Option<&[u8]>,
) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    match payload {
        Some(p) => frame::encode_with_payload(c, p, &mut out),
        None => frame::encode(c, &mut out),
    }
    w.write_all(&out).await?;
    Ok(())
}

async fn read(r: &mut OwnedReadHalf, buf: &mut BytesMut) -> anyhow::Result<frame::Frame> {
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

async fn connect(
    url: &str,
) -> anyhow::Result<(OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf, BytesMut)> {
    let addr = url
        .strip_prefix("pulsar://")
        .context("service URL must be pulsar://HOST:PORT")?;
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let (mut r, mut w) = s.into_split();
    let connect = BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "magnetar-perf".into(),
            protocol_version: Some(19),
            ..Default::default()
        }),
        ..base(Type::Connect)
    };
    write(&mut w, &connect, None).await?;
    let mut buf = BytesMut::new();
    let f = read(&mut r, &mut buf).await?;
    f.command.connected.context("no CONNECTED")?;
    Ok((r, w, buf))
}

struct Totals {
    sent: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
    consumed: AtomicU64,
}

async fn produce(a: Arc<ProduceArgs>, topic: String, totals: Arc<Totals>) -> anyhow::Result<()> {
    let (mut r, mut w, mut buf) = connect(&a.service_url).await?;
    let create = BaseCommand {
        producer: Some(pb::CommandProducer {
            topic: topic.clone(),
            producer_id: 1,
            request_id: 1,
            ..Default::default()
        }),
        ..base(Type::Producer)
    };
    write(&mut w, &create, None).await?;
    let f = read(&mut r, &mut buf).await?;
    let name = f
        .command
        .producer_success
        .context("producer refused")?
        .producer_name;
    let window = Arc::new(Semaphore::new(a.in_flight.max(1)));
    let scheduled: Arc<std::sync::Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let body = vec![0x61u8; a.size];
    let end = Instant::now() + a.duration;
    let per_topic_rate = a.rate as f64 / a.topics as f64;
    let sender = {
        let (window, scheduled) = (window.clone(), scheduled.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut seq = 0u64;
            while Instant::now() < end {
                let due = if per_topic_rate > 0.0 {
                    let due = start + Duration::from_secs_f64(seq as f64 / per_topic_rate);
                    tokio::time::sleep_until(due.into()).await;
                    due
                } else {
                    Instant::now()
                };
                let Ok(p) = window.acquire().await else { break };
                p.forget();
                let meta = pb::MessageMetadata {
                    producer_name: name.clone(),
                    sequence_id: seq,
                    publish_time: 0,
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
                scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(due);
                if write(&mut w, &send, Some(&build_payload(&meta, &body)))
                    .await
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
            seq
        })
    };
    let mut done = 0u64;
    let mut lat = Vec::new();
    loop {
        let f = tokio::select! {
            f = read(&mut r, &mut buf) => f?,
            () = tokio::time::sleep_until((end + Duration::from_secs(30)).into()) => break,
        };
        if let Some(e) = f.command.send_error {
            bail!("send failed: {e:?}");
        }
        if f.command.send_receipt.is_some() {
            let due = scheduled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            if let Some(d) = due {
                lat.push(d.elapsed());
            }
            window.add_permits(1);
            done += 1;
            if sender.is_finished()
                && scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
            {
                break;
            }
        }
    }
    totals.sent.fetch_add(done, Ordering::Relaxed);
    totals
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(lat);
    Ok(())
}

async fn consume(
    url: String,
    topic: String,
    totals: Arc<Totals>,
    until: Instant,
) -> anyhow::Result<()> {
    let (mut r, mut w, mut buf) = connect(&url).await?;
    let sub = BaseCommand {
        subscribe: Some(pb::CommandSubscribe {
            topic,
            subscription: format!("perf-{}", rand::random::<u32>()),
            sub_type: SubType::Exclusive as i32,
            consumer_id: 1,
            request_id: 1,
            initial_position: Some(InitialPosition::Earliest as i32),
            ..Default::default()
        }),
        ..base(Type::Subscribe)
    };
    write(&mut w, &sub, None).await?;
    read(&mut r, &mut buf)
        .await?
        .command
        .success
        .context("subscribe refused")?;
    let flow = |n| BaseCommand {
        flow: Some(pb::CommandFlow {
            consumer_id: 1,
            message_permits: n,
        }),
        ..base(Type::Flow)
    };
    write(&mut w, &flow(1000), None).await?;
    let mut since_flow = 0;
    let mut acks = Vec::new();
    loop {
        let f = tokio::select! {
            f = read(&mut r, &mut buf) => f?,
            () = tokio::time::sleep_until(until.into()) => return Ok(()),
        };
        if let Some(m) = f.command.message {
            totals.consumed.fetch_add(1, Ordering::Relaxed);
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
                write(&mut w, &ack, None).await?;
                write(&mut w, &flow(since_flow), None).await?;
                since_flow = 0;
            }
        }
    }
}

/// Runs `magnetar perf produce`.
pub async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let a = Arc::new(a);
    let totals = Arc::new(Totals {
        sent: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Vec::new()),
        consumed: AtomicU64::new(0),
    });
    let run_id = rand::random::<u32>();
    let topics: Vec<String> = (0..a.topics)
        .map(|i| format!("persistent://public/default/perf-{run_id}-{i}"))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in &topics {
        tasks.push(tokio::spawn(produce(a.clone(), t.clone(), totals.clone())));
        if a.consume {
            let until = started + a.duration + Duration::from_secs(2);
            tasks.push(tokio::spawn(consume(
                a.service_url.clone(),
                t.clone(),
                totals.clone(),
                until,
            )));
        }
    }
    for t in tasks {
        t.await??;
    }
    let secs = a.duration.as_secs_f64();
    let mut lat = std::mem::take(&mut *totals.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    let q = |q: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let sent = totals.sent.load(Ordering::Relaxed);
    println!(
        "produce  topics {}  in-flight {}  {} B  {:.0} msg/s  {:.1} MB/s  publish latency p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        a.topics,
        a.in_flight,
        a.size,
        sent as f64 / secs,
        sent as f64 * a.size as f64 / 1e6 / secs,
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    if a.consume {
        let consumed = totals.consumed.load(Ordering::Relaxed);
        println!(
            "consume  {:.0} msg/s  ({consumed} of {sent} published messages received)",
            consumed as f64 / secs
        );
    }
    Ok(())
}
