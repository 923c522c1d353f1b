//! `magnetar standalone` and `magnetar broker`: the broker, alone against etcd and bookies,
//! or with an embedded metadata store and one bookie in the same process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bookie::client::{ClientConfig, LedgerClient};
use broker::BrokerService;
use broker::managed_ledger::ManagedLedgerConfig;
use meta::{EmbeddedOptions, EmbeddedStore, KeyLayout, MetadataStore};

/// Flags of `magnetar standalone`.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// Where metadata, journal and ledgers live.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Pulsar protocol listen address.
    #[arg(long, default_value = "127.0.0.1:6650")]
    bind: String,
    /// HTTP listen address (/metrics, /status).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_bind: String,
    /// Host clients are told to connect to; default: the host of --bind.
    #[arg(long)]
    advertised_address: Option<String>,
    /// Roll a topic's ledger over after this many entries.
    #[arg(
        long,
        env = "MAGNETAR_MANAGED_LEDGER__MAX_ENTRIES_PER_LEDGER",
        default_value_t = 50_000
    )]
    max_entries_per_ledger: u64,
}

/// Flags of `magnetar broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Metadata store, `etcd://HOST:PORT[,HOST:PORT]`.
    #[arg(long, env = "MAGNETAR_META_URL")]
    meta_url: String,
    /// Pulsar protocol listen address; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:6650")]
    bind: String,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_bind: String,
    /// Host clients are told to connect to; default: the host of --bind.
    #[arg(long)]
    advertised_address: Option<String>,
    /// Ensemble size of new ledgers.
    #[arg(long, env = "MAGNETAR_MANAGED_LEDGER__ENSEMBLE", default_value_t = 2)]
    ensemble: usize,
    /// Write quorum of new ledgers.
    #[arg(
        long,
        env = "MAGNETAR_MANAGED_LEDGER__WRITE_QUORUM",
        default_value_t = 2
    )]
    write_quorum: usize,
    /// Ack quorum of new ledgers.
    #[arg(long, env = "MAGNETAR_MANAGED_LEDGER__ACK_QUORUM", default_value_t = 2)]
    ack_quorum: usize,
    /// Roll a topic's ledger over after this many entries.
    #[arg(
        long,
        env = "MAGNETAR_MANAGED_LEDGER__MAX_ENTRIES_PER_LEDGER",
        default_value_t = 50_000
    )]
    max_entries_per_ledger: u64,
}

fn advertised(bind: &std::net::SocketAddr, flag: &Option<String>) -> anyhow::Result<String> {
    match flag {
        Some(h) => Ok(h.clone()),
        None if bind.ip().is_unspecified() => {
            anyhow::bail!("`advertised_address`: required when --bind is a wildcard address")
        }
        None => Ok(bind.ip().to_string()),
    }
}

async fn serve_broker(
    store: Arc<dyn MetadataStore>,
    ml: ManagedLedgerConfig,
    bind: &str,
    http_bind: &str,
    advertised_flag: &Option<String>,
    metrics: Option<common::telemetry::PrometheusHandle>,
    role: &str,
) -> anyhow::Result<broker::server::RunningBroker> {
    let pulsar = broker::server::bind(bind, "bind").await?;
    let http = broker::server::bind(http_bind, "http_bind").await?;
    let addr = pulsar.local_addr()?;
    let host = advertised(&addr, advertised_flag)?;
    let service_url = format!("pulsar://{host}:{}", addr.port());
    let keys = KeyLayout::for_cluster(meta::keys::DEFAULT_CLUSTER);
    let client = LedgerClient::new(store.clone(), keys.clone(), ClientConfig::default());
    let service = Arc::new(BrokerService::new(
        store,
        keys,
        client,
        ml,
        service_url.clone(),
    ));
    let running = broker::server::start(service, pulsar, http, metrics)?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "magnetar {role} ready: service={service_url} http=http://{host}:{}",
        running.http_addr.port()
    )?;
    out.flush()?;
    Ok(running)
}

/// Runs `magnetar standalone` until SIGTERM/SIGINT.
pub fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let metrics = common::telemetry::install_prometheus();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = super::shutdown_on_signals()?;
        let store: Arc<dyn MetadataStore> = Arc::new(
            EmbeddedStore::open(args.data_dir.join("metadata"), EmbeddedOptions::default())
                .await
                .with_context(|| {
                    format!("opening the metadata store in {}", args.data_dir.display())
                })?,
        );
        let mut bk = bookie::BookieConfig {
            bookie_id: "standalone-bookie".into(),
            bind: "127.0.0.1:0".into(),
            http_bind: "127.0.0.1:0".into(),
            ..Default::default()
        };
        bk.journal.dir = args.data_dir.join("bookie/journal");
        bk.ledger_storage.dir = args.data_dir.join("bookie/ledgers");
        let bookie =
            bookie::server::start_with_store(bk, Some(store.clone()), metrics.clone()).await?;
        let ml = ManagedLedgerConfig {
            ensemble: 1,
            write_quorum: 1,
            ack_quorum: 1,
            max_entries_per_ledger: args.max_entries_per_ledger.max(1),
            ..ManagedLedgerConfig::default()
        };
        let broker = serve_broker(
            store,
            ml,
            &args.bind,
            &args.http_bind,
            &args.advertised_address,
            metrics,
            "standalone",
        )
        .await?;
        let bookie_stop = tokio_util::sync::CancellationToken::new();
        let stopping = bookie_stop.clone();
        let bookie_task = tokio::spawn(bookie.run_until(stopping));
        broker.run_until(shutdown).await;
        bookie_stop.cancel();
        bookie_task.await??;
        Ok(())
    })
}

/// Runs `magnetar broker` until SIGTERM/SIGINT.
pub fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let metrics = common::telemetry::install_prometheus();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = super::shutdown_on_signals()?;
        let meta::MetaUrl::Etcd(endpoints) = args.meta_url.parse::<meta::MetaUrl>()?;
        let store: Arc<dyn MetadataStore> =
            Arc::new(meta::EtcdStore::connect(meta::EtcdOptions::new(endpoints)).await?);
        let ml = ManagedLedgerConfig {
            ensemble: args.ensemble,
            write_quorum: args.write_quorum,
            ack_quorum: args.ack_quorum,
            max_entries_per_ledger: args.max_entries_per_ledger.max(1),
            ..ManagedLedgerConfig::default()
        };
        bookie::client::distribution::check_quorums(ml.ensemble, ml.write_quorum, ml.ack_quorum)
            .map_err(|e| anyhow::anyhow!("`managed_ledger`: {e}"))?;
        let broker = serve_broker(
            store,
            ml,
            &args.bind,
            &args.http_bind,
            &args.advertised_address,
            metrics,
            "broker",
        )
        .await?;
        broker.run_until(shutdown).await;
        Ok(())
    })
}
