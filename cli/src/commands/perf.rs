//! `magnetar perf`: benchmarks as programs. `journal` measures the journal alone (group
//! commit + fdatasync); `bookie` measures adds through the gRPC service, against a running
//! bookie (`--bookie ADDR`) or one started in-process on a temporary directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bookie::perf::PerfResult;

/// `magnetar perf` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Perf {
    /// Journal append throughput and latency (group commit, fdatasync).
    Journal(Matrix),
    /// Bookie add throughput and latency over gRPC.
    Bookie {
        /// A running bookie's gRPC address; default: start one in-process under --dir.
        #[arg(long)]
        bookie: Option<SocketAddr>,
        #[command(flatten)]
        matrix: Matrix,
    },
    /// Ledger add throughput and latency through the ledger client, per E/Qw/Qa.
    Ledger(LedgerArgs),
    /// Publish (and optionally consume) through a broker with a lean Pulsar-protocol client.
    Produce(super::perf_pulsar::ProduceArgs),
    /// Consume existing topics through a broker: received rate and end-to-end latency.
    Consume(super::perf_pulsar::ConsumeArgs),
    /// Ledger recovery time: a tail of entries the bookies hold but whose LAC never advanced
    /// (a writer that died), on 3 in-process bookies, recovered by a new client.
    Recovery(RecoveryArgs),
}

/// `magnetar perf recovery` flags.
#[derive(Debug, clap::Args)]
pub struct RecoveryArgs {
    /// Directory for the in-process bookies.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Entries in the unconfirmed tail.
    #[arg(long, default_value_t = 10_000)]
    entries: u64,
    /// Bytes per entry.
    #[arg(long, default_value_t = 1024)]
    entry_size: usize,
    /// Quorum, as E/Qw/Qa (E at most 3).
    #[arg(long, default_value = "3/2/2")]
    quorum: String,
}

/// `magnetar perf ledger` flags.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// A cluster to write to, `etcd://HOST:PORT`; default: 3 bookies in-process under --dir
    /// with an embedded metadata store.
    #[arg(long)]
    meta_url: Option<String>,
    /// Directory for the in-process bookies.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Quorums to measure, as E/Qw/Qa.
    #[arg(long, value_delimiter = ',', default_values_t = ["1/1/1".to_owned(), "3/3/2".to_owned(), "3/2/2".to_owned()])]
    quorums: Vec<String>,
    /// Bytes per entry.
    #[arg(long, default_value_t = 1024)]
    entry_size: usize,
    /// Adds in flight.
    #[arg(long, default_value_t = 256)]
    outstanding: usize,
    /// Length of each run.
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    duration: Duration,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
}

/// The run matrix shared by the benchmarks.
#[derive(Debug, clap::Args)]
pub struct Matrix {
    /// Directory on the disk to measure (a temporary subdirectory is used and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Entry sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 65536])]
    sizes: Vec<usize>,
    /// Outstanding adds.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    outstanding: Vec<usize>,
    /// Length of each run.
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    duration: Duration,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
    /// Journal: bytes zero-filled ahead of the write position (0: plain appends).
    #[arg(long, default_value = "16MiB")]
    preallocate: common::config::ByteSize,
}

pub(super) fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<humantime::Duration>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}

fn print(kind: &str, size: usize, outstanding: usize, r: &PerfResult, json: bool) {
    let kind = kind.replace(' ', "-");
    let kind = kind.as_str();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if json {
        println!(
            "{{\"bench\":\"{kind}\",\"entry_size\":{size},\"outstanding\":{outstanding},\"adds_per_sec\":{:.1},\"mb_per_sec\":{:.2},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
            r.ops_per_sec(),
            r.mb_per_sec(),
            ms(r.latency(0.5)),
            ms(r.latency(0.99)),
            ms(r.latency(0.999)),
            ms(r.latency(1.0))
        );
    } else {
        println!(
            "{kind:<8} {size:>6} B  outstanding {outstanding:>3}  {:>9.0} adds/s  {:>8.1} MB/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms",
            r.ops_per_sec(),
            r.mb_per_sec(),
            ms(r.latency(0.5)),
            ms(r.latency(0.99)),
            ms(r.latency(0.999)),
            ms(r.latency(1.0))
        );
    }
}

/// Runs a benchmark.
pub fn run(perf: Perf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        match perf {
            Perf::Journal(m) => {
                let tmp = tempfile::Builder::new()
                    .prefix("magnetar-perf-")
                    .tempdir_in(&m.dir)?;
                for &size in &m.sizes {
                    for &out in &m.outstanding {
                        let mut config = bookie::perf::journal_config(tmp.path());
                        config.preallocate_bytes = m.preallocate.0;
                        let r = bookie::perf::journal(config, size, out, m.duration).await?;
                        print("journal", size, out, &r, m.json);
                    }
                }
                Ok(())
            }
            Perf::Ledger(a) => perf_ledger(a).await,
            Perf::Recovery(a) => perf_recovery(a).await,
            Perf::Produce(a) => super::perf_pulsar::run(a).await,
            Perf::Consume(a) => super::perf_pulsar::run_consume(a).await,
            Perf::Bookie {
                bookie: addr,
                matrix: m,
            } => {
                let tmp = tempfile::Builder::new()
                    .prefix("magnetar-perf-")
                    .tempdir_in(&m.dir)?;
                let (addr, server) = match addr {
                    Some(a) => (a, None),
                    None => {
                        let (a, s) = in_process_bookie(tmp.path()).await?;
                        (a, Some(s))
                    }
                };
                let mut ledger = 1;
                for &size in &m.sizes {
                    for &out in &m.outstanding {
                        let r = bookie::perf::bookie(addr, ledger, size, out, m.duration).await?;
                        print("bookie", size, out, &r, m.json);
                        ledger += 1;
                    }
                }
                if let Some((engine, stop)) = server {
                    stop.cancel();
                    engine.shutdown().await?;
                }
                Ok(())
            }
        }
    })
}

type InProcess = (Arc<bookie::Engine>, tokio_util::sync::CancellationToken);

/// The cluster a ledger benchmark runs on: `meta_url`'s, or 3 bookies in-process (registered
/// as `perf-bookie-N` in an embedded store under `dir`) with the lease that keeps them listed.
async fn bench_cluster(
    meta_url: Option<&str>,
    dir: &std::path::Path,
) -> anyhow::Result<(
    Arc<dyn meta::MetadataStore>,
    Vec<InProcess>,
    Option<meta::Lease>,
)> {
    let keys = meta::KeyLayout::for_cluster(meta::keys::DEFAULT_CLUSTER);
    let mut servers = Vec::new();
    let mut lease_guard = None;
    let store: Arc<dyn meta::MetadataStore> = match meta_url {
        Some(url) => {
            let meta::MetaUrl::Etcd(endpoints) = url.parse::<meta::MetaUrl>()?;
            Arc::new(meta::EtcdStore::connect(meta::EtcdOptions::new(endpoints)).await?)
        }
        None => {
            let store: Arc<dyn meta::MetadataStore> = Arc::new(
                meta::EmbeddedStore::open(dir.join("meta"), meta::EmbeddedOptions::default())
                    .await?,
            );
            let registry = meta::BookieRegistry::new(store.clone(), keys.clone());
            let lease = meta::Lease::grant(store.clone(), Duration::from_secs(30)).await?;
            for i in 0..3 {
                let (addr, server) = in_process_bookie(&dir.join(format!("bookie-{i}"))).await?;
                let info = proto::meta::BookieServiceInfo {
                    bookie_id: format!("perf-bookie-{i}"),
                    grpc_address: addr.to_string(),
                    ..Default::default()
                };
                registry
                    .register(&info, meta::BookieState::Available, lease.id())
                    .await?;
                servers.push(server);
            }
            lease_guard = Some(lease);
            store
        }
    };
    Ok((store, servers, lease_guard))
}

fn parse_quorum(q: &str) -> anyhow::Result<(usize, usize, usize)> {
    let parts: Vec<usize> = q
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad quorum {q:?}: write E/Qw/Qa, e.g. 3/2/2"))?;
    let [e, w, ack] = parts[..] else {
        anyhow::bail!("bad quorum {q:?}: write E/Qw/Qa, e.g. 3/2/2");
    };
    Ok((e, w, ack))
}

async fn stop_servers(servers: Vec<InProcess>) -> anyhow::Result<()> {
    for (engine, stop) in servers {
        stop.cancel();
        engine.shutdown().await?;
    }
    Ok(())
}

async fn perf_ledger(a: LedgerArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("magnetar-perf-")
        .tempdir_in(&a.dir)?;
    let (store, servers, lease_guard) = bench_cluster(a.meta_url.as_deref(), tmp.path()).await?;
    let keys = meta::KeyLayout::for_cluster(meta::keys::DEFAULT_CLUSTER);
    let client =
        bookie::client::LedgerClient::new(store, keys, bookie::client::ClientConfig::default());
    for q in &a.quorums {
        let (e, w, ack) = parse_quorum(q)?;
        let r = bookie::perf::ledger(
            &client,
            (e, w, ack),
            a.entry_size,
            a.outstanding,
            a.duration,
        )
        .await?;
        print(
            &format!("ledger {e}/{w}/{ack}"),
            a.entry_size,
            a.outstanding,
            &r,
            a.json,
        );
    }
    stop_servers(servers).await?;
    drop(lease_guard);
    Ok(())
}

async fn perf_recovery(a: RecoveryArgs) -> anyhow::Result<()> {
    let (e, w, ack) = parse_quorum(&a.quorum)?;
    anyhow::ensure!(
        e <= 3,
        "perf recovery runs 3 in-process bookies: E must be at most 3"
    );
    let tmp = tempfile::Builder::new()
        .prefix("magnetar-perf-")
        .tempdir_in(&a.dir)?;
    let (store, servers, lease_guard) = bench_cluster(None, tmp.path()).await?;
    let keys = meta::KeyLayout::for_cluster(meta::keys::DEFAULT_CLUSTER);
    let client =
        bookie::client::LedgerClient::new(store, keys, bookie::client::ClientConfig::default());
    let writer = client
        .create(bookie::client::CreateOptions {
            ensemble: e,
            write_quorum: w,
            ack_quorum: ack,
            password: bytes::Bytes::new(),
            custom: Default::default(),
        })
        .await?;
    let id = writer.id();
    drop(writer);
    let (meta, _) = client.ledgers().get(id).await?;
    let key = bookie::client::master_key(b"");
    let body = bytes::Bytes::from(vec![b'r'; a.entry_size]);
    // Straight into the bookies' engines, LAC -1 throughout: a writer that died unconfirmed.
    for (index, b) in meta.segments[0].bookies.iter().enumerate() {
        let n: usize = b.trim_start_matches("perf-bookie-").parse()?;
        let engine = &servers[n].0;
        let mut adds = Vec::new();
        for i in 0..a.entries {
            if bookie::client::distribution::write_set(i, e, w).contains(&index) {
                let entry = bookie::Entry::new(
                    id,
                    common::EntryId(i),
                    -1,
                    (i + 1) * a.entry_size as u64,
                    body.clone(),
                );
                adds.push(bookie::engine::AddItem {
                    entry,
                    master_key: key.clone(),
                    recovery: false,
                });
            }
        }
        for chunk in adds.chunks(1024) {
            for r in engine.add_batch(chunk.to_vec()).await {
                r?;
            }
        }
    }
    let started = std::time::Instant::now();
    let recovered = client.recover(id, b"").await?;
    let elapsed = started.elapsed();
    println!(
        "recovery {e}/{w}/{ack}  tail {} entries of {} B  {:.3} s  ({:.0} entries/s)  closed at entry {}",
        a.entries,
        a.entry_size,
        elapsed.as_secs_f64(),
        a.entries as f64 / elapsed.as_secs_f64(),
        recovered.last_entry_id
    );
    stop_servers(servers).await?;
    drop(lease_guard);
    Ok(())
}

/// A bookie engine and gRPC server in this process (no metadata store needed).
async fn in_process_bookie(
    dir: &std::path::Path,
) -> anyhow::Result<(
    SocketAddr,
    (Arc<bookie::Engine>, tokio_util::sync::CancellationToken),
)> {
    let mut config = bookie::BookieConfig::default();
    config.journal.dir = dir.join("journal");
    config.ledger_storage.dir = dir.join("ledgers");
    let engine_config = config.engine()?;
    let engine =
        Arc::new(tokio::task::spawn_blocking(move || bookie::Engine::open(engine_config)).await??);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let shared = Arc::new(bookie::server::Shared {
        engine: engine.clone(),
        bookie_id: common::BookieId::new(addr.to_string())?,
    });
    tokio::spawn(bookie::server::serve_grpc(shared, listener, stop.clone()));
    tokio::spawn(engine.clone().run_checkpoints(stop.clone()));
    Ok((addr, (engine, stop)))
}
