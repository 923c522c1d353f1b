//! Benchmarks behind `magnetar perf journal` and `magnetar perf bookie` (the shapes of
//! BookKeeper's `bkperf journal append` and `benchmark bookie`): a fixed number of adds kept
//! outstanding for a fixed time, reporting throughput and latency percentiles.
//! Programs, not tests: nothing here asserts a number.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{EntryId, LedgerId};
use proto::bookie::bookie_client::BookieClient;
use proto::bookie::{AddBatch, AddRequest, StatusCode};
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::entry::Entry;
use crate::error::{BookieError, Result};
use crate::journal::{JournalRecord, JournalWriter, WriterConfig};

/// One benchmark run's figures.
#[derive(Debug, Clone)]
pub struct PerfResult {
    /// Adds completed.
    pub ops: u64,
    /// Payload bytes completed.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Sorted add latencies.
    latencies: Vec<Duration>,
}

impl PerfResult {
    /// Adds per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Payload MB/s (10^6 bytes).
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q` (0..=1).
    pub fn latency(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    fn from_samples(samples: Vec<Vec<Duration>>, bytes_per_op: usize, elapsed: Duration) -> Self {
        let mut latencies: Vec<Duration> = samples.into_iter().flatten().collect();
        latencies.sort_unstable();
        PerfResult {
            ops: latencies.len() as u64,
            bytes: (latencies.len() * bytes_per_op) as u64,
            elapsed,
            latencies,
        }
    }
}

/// Journal settings for benchmarks: BookKeeper's defaults, files in `dir`.
pub fn journal_config(dir: &Path) -> WriterConfig {
    WriterConfig {
        dir: dir.to_owned(),
        max_group_wait: Duration::from_millis(2),
        max_group_bytes: 512 << 10,
        max_group_entries: 10_000,
        flush_when_queue_empty: true,
        max_file_bytes: 256 << 20,
        preallocate_bytes: 16 << 20,
        queue_capacity: 65_536,
        recycle_files: 4,
    }
}

/// Appends `entry_size`-byte entries to a journal (`config.dir`) from `outstanding` concurrent
/// writers for `duration`.
pub async fn journal(
    config: WriterConfig,
    entry_size: usize,
    outstanding: usize,
    duration: Duration,
) -> Result<PerfResult> {
    let dir = config.dir.clone();
    let dir = dir.as_path();
    std::fs::create_dir_all(dir).map_err(BookieError::io(dir))?;
    let first = crate::journal::file::list_files(&common::fs::RealFs, dir)?
        .last()
        .map_or(1, |s| s + 1);
    let keep = config.recycle_files;
    warm_up_recycled_files(dir, keep, config.max_file_bytes)?;
    let (journal, _thread) = JournalWriter::start(config, first, common::fs::real())?;
    // What the bookie's checkpoint does: retire files it has passed, for reuse.
    let retire = {
        let (journal, dir) = (journal.clone(), dir.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let file = journal.durable_position().file;
                let dir = dir.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    crate::journal::recycle::retire_before(&common::fs::RealFs, &dir, file, keep)
                })
                .await;
            }
        })
    };
    let payload = Bytes::from(vec![0xa5u8; entry_size]);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..outstanding {
        let (journal, payload) = (journal.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut id = 0u64;
            while Instant::now() < deadline {
                let e = Entry::new(LedgerId(w as u64), EntryId(id), -1, 0, payload.clone());
                let t = Instant::now();
                journal.append(JournalRecord::Add(e)).await?;
                lat.push(t.elapsed());
                id += 1;
            }
            Ok::<_, BookieError>(lat)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.push(t.await.map_err(|e| BookieError::Config(e.to_string()))??);
    }
    let elapsed = start.elapsed();
    retire.abort();
    drop(journal);
    let _ = std::fs::remove_dir_all(dir);
    Ok(PerfResult::from_samples(samples, entry_size, elapsed))
}

/// Leaves `n` full-size retired journal files in `dir`, as a bookie that has run for a while
/// has, so the benchmark measures the steady state (writes overwrite recycled files) rather
/// than a fresh disk.
fn warm_up_recycled_files(dir: &Path, n: usize, size: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..n {
        let path = dir.join(format!("{:016x}.free", u64::MAX - i as u64));
        let f = std::fs::File::create(&path).map_err(BookieError::io(&path))?;
        let mut at = 0;
        while at < size {
            let n = ((size - at) as usize).min(zeros.len());
            f.write_all_at(&zeros[..n], at)
                .map_err(BookieError::io(&path))?;
            at += n as u64;
        }
        f.sync_all().map_err(BookieError::io(&path))?;
    }
    Ok(())
}

/// Sends `entry_size`-byte adds to the bookie at `addr` over one stream, keeping
/// `outstanding` in flight, for `duration`. Adds that are ready together go in one batch
/// message, as a ledger client pipelining to a bookie would send them.
pub async fn bookie(
    addr: SocketAddr,
    ledger: u64,
    entry_size: usize,
    outstanding: usize,
    duration: Duration,
) -> Result<PerfResult> {
    let err = |e: String| BookieError::Config(format!("bookie at {addr}: {e}"));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| err(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut client = BookieClient::new(channel)
        .max_encoding_message_size(256 << 20)
        .max_decoding_message_size(256 << 20);
    let (tx, rx) = mpsc::channel::<AddBatch>(64);
    let mut responses = client
        .add_entries(ReceiverStream::new(rx))
        .await
        .map_err(|e| err(e.to_string()))?
        .into_inner();
    let payload = Bytes::from(vec![0x5au8; entry_size]);
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let outstanding = outstanding.max(1);
    let window = Arc::new(tokio::sync::Semaphore::new(outstanding));
    let start = Instant::now();
    let deadline = start + duration;
    let sender = {
        let (sent_at, window) = (sent_at.clone(), window.clone());
        tokio::spawn(async move {
            let mut id = 0u64;
            while Instant::now() < deadline {
                let Ok(p) = window.acquire().await else { break };
                p.forget();
                let mut n = 1;
                while let Ok(p) = window.try_acquire() {
                    p.forget();
                    n += 1;
                }
                let now = Instant::now();
                let mut requests = Vec::with_capacity(n);
                for _ in 0..n {
                    let e = Entry::new(
                        LedgerId(ledger),
                        EntryId(id),
                        id as i64 - 1,
                        0,
                        payload.clone(),
                    );
                    requests.push(AddRequest {
                        request_id: id,
                        entry: Some(e.to_proto()),
                        master_key: Bytes::from_static(b"perf"),
                        recovery: false,
                    });
                    id += 1;
                }
                sent_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(std::iter::repeat_n(now, n));
                if tx.send(AddBatch { requests }).await.is_err() {
                    break;
                }
            }
            id
        })
    };
    let mut lat = Vec::new();
    let mut failures = 0u64;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), responses.message()).await;
        let Ok(Ok(Some(batch))) = msg else { break };
        window.add_permits(batch.responses.len());
        let now = Instant::now();
        let sent = sent_at.lock().unwrap_or_else(|p| p.into_inner());
        for r in &batch.responses {
            if r.status() == StatusCode::Ok {
                lat.push(now - sent[r.request_id as usize]);
            } else {
                failures += 1;
            }
        }
        let done = lat.len() as u64 + failures;
        if sender.is_finished() && done >= sent.len() as u64 {
            break;
        }
    }
    let elapsed = start.elapsed();
    if failures > 0 {
        tracing::warn!(failures, "some adds failed during the benchmark");
    }
    Ok(PerfResult::from_samples(vec![lat], entry_size, elapsed))
}

/// Writes `entry_size`-byte entries to a new ledger with quorums (E, Qw, Qa) through the
/// ledger client, keeping `outstanding` adds in flight, for `duration` (BookKeeper's
/// `benchmark writes` shape). Latency is from append to confirmation.
pub async fn ledger(
    client: &crate::client::LedgerClient,
    quorums: (usize, usize, usize),
    entry_size: usize,
    outstanding: usize,
    duration: Duration,
) -> std::result::Result<PerfResult, crate::client::ClientError> {
    let (ensemble, write_quorum, ack_quorum) = quorums;
    let writer = client
        .create(crate::client::CreateOptions {
            ensemble,
            write_quorum,
            ack_quorum,
            password: Bytes::new(),
            custom: Default::default(),
        })
        .await?;
    let payload = Bytes::from(vec![0x42u8; entry_size]);
    let start = Instant::now();
    let deadline = start + duration;
    let mut in_flight = std::collections::VecDeque::with_capacity(outstanding);
    let mut lat = Vec::new();
    loop {
        while in_flight.len() < outstanding.max(1) && Instant::now() < deadline {
            in_flight.push_back((Instant::now(), writer.append(payload.clone()).await?));
        }
        let Some((t, p)) = in_flight.pop_front() else {
            break;
        };
        p.await?;
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    let id = writer.id();
    writer.close().await?;
    client.delete(id).await?;
    Ok(PerfResult::from_samples(vec![lat], entry_size, elapsed))
}
