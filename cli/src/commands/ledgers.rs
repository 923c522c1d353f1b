//! `magnetar ledgers`: the storage-layer admin tool (the shape of `bookkeeper shell`).
//! Errors are one line and a non-zero exit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bookie::client::{ClientConfig, CreateOptions, LedgerClient};
use bytes::Bytes;
use common::LedgerId;
use meta::{BookieState, EtcdOptions, EtcdStore, KeyLayout, MetaUrl, MetadataStore};
use proto::meta::{LedgerMetadata, LedgerState};

/// Global flags of `magnetar ledgers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata store, `etcd://HOST:PORT[,HOST:PORT]`.
    #[arg(long, env = "MAGNETAR_META_URL")]
    meta_url: String,
    /// Cluster name (keys under /magnetar/<cluster>/).
    #[arg(long, default_value = meta::keys::DEFAULT_CLUSTER)]
    cluster: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// List registered bookies (writable by default).
    ListBookies {
        /// Read-only bookies only.
        #[arg(long, conflicts_with = "all")]
        readonly: bool,
        /// Writable and read-only.
        #[arg(long)]
        all: bool,
    },
    /// List ledgers.
    List {
        /// Only ledgers with a segment on this bookie.
        #[arg(long)]
        bookie: Option<String>,
        /// Print each ledger's metadata too.
        #[arg(long)]
        with_metadata: bool,
    },
    /// Show a ledger's metadata.
    Metadata {
        /// Ledger id.
        id: u64,
    },
    /// Read entries.
    Read {
        /// Ledger id.
        id: u64,
        /// First entry.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last entry (default: the last confirmed one).
        #[arg(long)]
        to: Option<u64>,
        /// Print entry bodies (lossy UTF-8).
        #[arg(long)]
        body: bool,
        /// Recover (fence and close) the ledger first.
        #[arg(long)]
        recover: bool,
        /// Read from this bookie only (to inspect one replica).
        #[arg(long)]
        bookie: Option<String>,
    },
    /// Delete a ledger (metadata, then data on its bookies).
    Delete {
        /// Ledger id.
        id: u64,
        /// Required: deletion cannot be undone.
        #[arg(long)]
        force: bool,
    },
    /// Write entries to a new ledger, read them back and verify.
    Simpletest {
        /// Ensemble size.
        #[arg(short = 'e', long, default_value_t = 3)]
        ensemble: usize,
        /// Write quorum.
        #[arg(short = 'w', long, default_value_t = 2)]
        write_quorum: usize,
        /// Ack quorum.
        #[arg(short = 'a', long, default_value_t = 2)]
        ack_quorum: usize,
        /// Entries to write.
        #[arg(short = 'n', long, default_value_t = 1000)]
        entries: usize,
        /// Bytes per entry.
        #[arg(long, default_value_t = 1024)]
        entry_size: usize,
    },
    /// Create a ledger and append to it, printing `acked N` for each confirmed entry (for
    /// scripts and fault tests); closes the ledger at the end.
    Write {
        /// Ensemble size.
        #[arg(short = 'e', long, default_value_t = 3)]
        ensemble: usize,
        /// Write quorum.
        #[arg(short = 'w', long, default_value_t = 2)]
        write_quorum: usize,
        /// Ack quorum.
        #[arg(short = 'a', long, default_value_t = 2)]
        ack_quorum: usize,
        /// Entries to write.
        #[arg(short = 'n', long, default_value_t = 1000)]
        entries: u64,
        /// Bytes per entry.
        #[arg(long, default_value_t = 100)]
        entry_size: usize,
        /// Adds in flight.
        #[arg(long, default_value_t = 64)]
        outstanding: usize,
    },
    /// Recover a ledger: fence its bookies and close it at its last entry.
    Recover {
        /// Ledger id.
        id: u64,
    },
    /// Ledgers with a segment on a bookie that is not registered.
    UnderReplicated,
    /// Retire a bookie: copy every fragment it holds to other bookies, update the ledger
    /// metadata, then delete its cookie.
    Decommission {
        /// The bookie id.
        bookie: String,
        /// Wait for open ledgers still writing to it to move off (their writer's ensemble
        /// change, or a recovery).
        #[arg(long)]
        wait: bool,
        /// With --wait: an open ledger still on the bookie after this long is recovered
        /// (fenced and closed; BookKeeper's openLedgerRereplicationGracePeriod).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        open_ledger_grace: std::time::Duration,
    },
}

fn state_name(s: i32) -> &'static str {
    match LedgerState::try_from(s) {
        Ok(LedgerState::Open) => "OPEN",
        Ok(LedgerState::InRecovery) => "IN_RECOVERY",
        Ok(LedgerState::Closed) => "CLOSED",
        _ => "UNKNOWN",
    }
}

fn metadata_json(id: u64, m: &LedgerMetadata) -> serde_json::Value {
    serde_json::json!({
        "ledger_id": id,
        "state": state_name(m.state),
        "ensemble_size": m.ensemble_size,
        "write_quorum": m.write_quorum,
        "ack_quorum": m.ack_quorum,
        "last_entry_id": m.last_entry_id,
        "length": m.length,
        "segments": m.segments.iter().map(|s| serde_json::json!({"first_entry_id": s.first_entry_id, "bookies": s.bookies})).collect::<Vec<_>>(),
        "custom_metadata": m.custom_metadata.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn metadata_text(id: u64, m: &LedgerMetadata) -> String {
    let mut out = format!(
        "ledger {id}\nstate: {}\nensemble: {}  write quorum: {}  ack quorum: {}\n",
        state_name(m.state),
        m.ensemble_size,
        m.write_quorum,
        m.ack_quorum
    );
    if m.state == LedgerState::Closed as i32 {
        out += &format!("last entry: {}  length: {}\n", m.last_entry_id, m.length);
    }
    out += "segments:\n";
    for s in &m.segments {
        out += &format!(
            "  from entry {}: {}\n",
            s.first_entry_id,
            s.bookies.join(", ")
        );
    }
    let mut custom: Vec<_> = m.custom_metadata.iter().collect();
    custom.sort();
    for (k, v) in custom {
        out += &format!("custom: {k}={}\n", String::from_utf8_lossy(v));
    }
    out
}

async fn connect(args: &Args) -> anyhow::Result<(Arc<dyn MetadataStore>, LedgerClient)> {
    let MetaUrl::Etcd(endpoints) = args.meta_url.parse::<MetaUrl>()?;
    let mut opts = EtcdOptions::new(endpoints);
    opts.connect_timeout = std::time::Duration::from_secs(5);
    opts.request_timeout = std::time::Duration::from_secs(5);
    let store: Arc<dyn MetadataStore> = Arc::new(EtcdStore::connect(opts).await?);
    let client = LedgerClient::new(
        store.clone(),
        KeyLayout::for_cluster(&args.cluster),
        ClientConfig::default(),
    );
    Ok((store, client))
}

/// Runs `magnetar ledgers`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn all_ledgers(client: &LedgerClient) -> anyhow::Result<Vec<LedgerId>> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = client.ledgers().list(after, 500).await?;
        after = page.last().copied();
        ids.extend(page);
        if !more || after.is_none() {
            return Ok(ids);
        }
    }
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let json = args.output == Output::Json;
    let (_store, client) = connect(&args).await?;
    match args.command {
        Cmd::ListBookies { readonly, all } => {
            let mut rows = Vec::new();
            if !readonly {
                for b in client.registry().list(BookieState::Available).await? {
                    rows.push((b, "writable"));
                }
            }
            if readonly || all {
                for b in client.registry().list(BookieState::ReadOnly).await? {
                    rows.push((b, "read-only"));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(b, s)| serde_json::json!({"bookie_id": b.bookie_id, "address": b.grpc_address, "http": b.http_address, "state": s, "disk_free_bytes": b.disk_free_bytes, "disk_total_bytes": b.disk_total_bytes}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (b, s) in rows {
                    println!("{}\t{}\t{s}", b.bookie_id, b.grpc_address);
                }
            }
        }
        Cmd::List {
            bookie,
            with_metadata,
        } => {
            let mut out = Vec::new();
            for id in all_ledgers(&client).await? {
                let Ok((m, _)) = client.ledgers().get(id).await else {
                    continue;
                };
                if let Some(b) = &bookie
                    && !m.segments.iter().any(|s| s.bookies.contains(b))
                {
                    continue;
                }
                out.push((id, m));
            }
            if json {
                let v: Vec<_> = out
                    .iter()
                    .map(|(id, m)| {
                        if with_metadata {
                            metadata_json(id.0, m)
                        } else {
                            serde_json::json!(id.0)
                        }
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (id, m) in out {
                    if with_metadata {
                        print!("{}", metadata_text(id.0, &m));
                    } else {
                        println!("{id}");
                    }
                }
            }
        }
        Cmd::Metadata { id } => {
            let (m, _) = client
                .ledgers()
                .get(LedgerId(id))
                .await
                .map_err(|e| anyhow::anyhow!("ledger {id}: {e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&metadata_json(id, &m))?);
            } else {
                print!("{}", metadata_text(id, &m));
            }
        }
        Cmd::Read {
            id,
            from,
            to,
            body,
            recover,
            bookie,
        } => {
            if recover {
                client.recover(LedgerId(id), b"").await?;
            }
            let reader = client.open_reader(LedgerId(id)).await?;
            let last = reader.last_confirmed().await?;
            let to = to.map_or(last, |t| t as i64).min(last);
            let mut rows = Vec::new();
            for e in (from as i64..=to).map(|e| e as u64) {
                match &bookie {
                    None => rows.push(reader.read(e).await?),
                    // Entries outside that bookie's write sets are skipped.
                    Some(b) => rows.extend(client.read_from_bookie(b, LedgerId(id), e).await?),
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"entry_id": r.entry.0, "size": r.payload.len(), "lac": r.lac, "length": r.length, "body": body.then(|| String::from_utf8_lossy(&r.payload).into_owned())}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in rows {
                    if body {
                        println!(
                            "entry {}: {} bytes: {}",
                            r.entry,
                            r.payload.len(),
                            String::from_utf8_lossy(&r.payload)
                        );
                    } else {
                        println!("entry {}: {} bytes", r.entry, r.payload.len());
                    }
                }
            }
        }
        Cmd::Delete { id, force } => {
            if !force {
                bail!("deleting ledger {id} cannot be undone; pass --force");
            }
            client.delete(LedgerId(id)).await?;
            println!("ledger {id} deleted");
        }
        Cmd::Simpletest {
            ensemble,
            write_quorum,
            ack_quorum,
            entries,
            entry_size,
        } => {
            simpletest(
                &client,
                ensemble,
                write_quorum,
                ack_quorum,
                entries,
                entry_size,
                json,
            )
            .await?;
        }
        Cmd::Write {
            ensemble,
            write_quorum,
            ack_quorum,
            entries,
            entry_size,
            outstanding,
        } => {
            let writer = client
                .create(CreateOptions {
                    ensemble,
                    write_quorum,
                    ack_quorum,
                    password: Bytes::new(),
                    custom: Default::default(),
                })
                .await?;
            println!("ledger {}", writer.id());
            let mut in_flight = std::collections::VecDeque::new();
            let mut next = 0;
            loop {
                while next < entries && in_flight.len() < outstanding.max(1) {
                    let mut p = format!("entry {next} ").into_bytes();
                    p.resize(entry_size.max(p.len()), b'x');
                    in_flight.push_back(writer.append(Bytes::from(p)).await?);
                    next += 1;
                }
                let Some(p) = in_flight.pop_front() else {
                    break;
                };
                let e = p.await?;
                println!("acked {e}");
            }
            let m = writer.close().await?;
            println!("closed at {}", m.last_entry_id);
        }
        Cmd::Recover { id } => {
            let m = client.recover(LedgerId(id), b"").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&metadata_json(id, &m))?);
            } else {
                println!(
                    "ledger {id} recovered: state {} last entry {} length {}",
                    state_name(m.state),
                    m.last_entry_id,
                    m.length
                );
            }
        }
        Cmd::Decommission {
            bookie,
            wait,
            open_ledger_grace,
        } => {
            let r = client
                .decommission(&bookie, b"", wait.then_some(open_ledger_grace))
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"bookie": bookie, "ledgers_moved": r.moved.iter().map(|l| l.0).collect::<Vec<_>>(), "entries_copied": r.entries_copied, "pending": r.pending.iter().map(|l| l.0).collect::<Vec<_>>()})
                );
            } else {
                println!(
                    "bookie {bookie}: {} ledgers moved, {} entries copied",
                    r.moved.len(),
                    r.entries_copied
                );
                if !r.pending.is_empty() {
                    let ids: Vec<String> = r.pending.iter().map(ToString::to_string).collect();
                    bail!(
                        "open ledgers still write to {bookie}: {}; rerun with --wait, or recover them",
                        ids.join(", ")
                    );
                }
            }
        }
        Cmd::UnderReplicated => {
            let mut live: BTreeSet<String> = BTreeSet::new();
            for state in [BookieState::Available, BookieState::ReadOnly] {
                live.extend(
                    client
                        .registry()
                        .list(state)
                        .await?
                        .into_iter()
                        .map(|b| b.bookie_id),
                );
            }
            let mut rows = Vec::new();
            for id in all_ledgers(&client).await? {
                let Ok((m, _)) = client.ledgers().get(id).await else {
                    continue;
                };
                let missing: BTreeSet<String> = m
                    .segments
                    .iter()
                    .flat_map(|s| s.bookies.iter())
                    .filter(|b| !live.contains(*b))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    rows.push((id, missing));
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, m)| serde_json::json!({"ledger_id": id.0, "missing_bookies": m}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (id, missing) in rows {
                    println!(
                        "{id}\tmissing: {}",
                        missing.into_iter().collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn simpletest(
    client: &LedgerClient,
    ensemble: usize,
    write_quorum: usize,
    ack_quorum: usize,
    entries: usize,
    entry_size: usize,
    json: bool,
) -> anyhow::Result<()> {
    let writer = client
        .create(CreateOptions {
            ensemble,
            write_quorum,
            ack_quorum,
            password: Bytes::new(),
            custom: [(
                "application".to_owned(),
                Bytes::from_static(b"magnetar-simpletest"),
            )]
            .into(),
        })
        .await?;
    let id = writer.id();
    let payload = |i: usize| -> Bytes {
        let mut p = format!("simpletest entry {i} ").into_bytes();
        p.resize(entry_size.max(p.len()), b'x');
        Bytes::from(p)
    };
    // One add at a time, as BookKeeper's simpletest: the latency is an add's round trip.
    let mut latencies = Vec::with_capacity(entries);
    for i in 0..entries {
        let started = Instant::now();
        let e = writer.add(payload(i)).await?;
        latencies.push(started.elapsed());
        if e.0 != i as u64 {
            bail!("entry {i} was confirmed as {e}");
        }
    }
    let meta = writer.close().await?;
    let reader = client.open_reader(id).await?;
    for i in 0..entries {
        let e = reader.read(i as u64).await?;
        if e.payload != payload(i) {
            bail!("entry {i} of ledger {id} reads back different from what was written");
        }
    }
    latencies.sort();
    let q = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"ledger_id": id.0, "entries": entries, "last_entry_id": meta.last_entry_id, "add_p50_ms": q(0.5), "add_p99_ms": q(0.99)})
        );
    } else {
        println!(
            "{entries} entries written to ledger {id} (lastEntryId {})",
            meta.last_entry_id
        );
        println!("add latency p50 {:.3} ms, p99 {:.3} ms", q(0.5), q(0.99));
    }
    Ok(())
}
