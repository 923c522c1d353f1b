//! `magnetar standalone` and `magnetar broker`: the broker, alone against etcd and bookies,
//! or with an embedded metadata store and one bookie in the same process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bookie::client::{ClientConfig, LedgerClient};
use broker::managed_ledger::ManagedLedgerConfig;
use broker::{BrokerConfig, BrokerService};
use meta::{EmbeddedOptions, EmbeddedStore, KeyLayout, MetadataStore};

/// Flags of `magnetar standalone`.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// Where metadata, journal and ledgers live.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Pulsar protocol listen address [default: 127.0.0.1:6650, or the Pulsar file's].
    #[arg(long)]
    bind: Option<String>,
    /// HTTP listen address (/metrics, /status) [default: 127.0.0.1:8080, or the Pulsar file's].
    #[arg(long)]
    http_bind: Option<String>,
    /// Host clients are told to connect to; default: the host of --bind.
    #[arg(long)]
    advertised_address: Option<String>,
    /// Broker TOML config (see broker/config/broker.toml); quorums are forced to 1/1/1.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pulsar's own standalone.conf / broker.conf (`key=value`): the keys Magnetar supports
    /// apply over --config (docs/operations.md lists them); flags and MAGNETAR_* still win.
    #[arg(long)]
    pulsar_conf: Option<PathBuf>,
    /// Producer de-duplication for namespaces without a policy (deduplication_enabled).
    #[arg(long)]
    deduplication_enabled: bool,
}

/// Flags of `magnetar broker`; each overrides the config key named in its help.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Metadata store, `etcd://HOST:PORT[,HOST:PORT]` (meta.url).
    #[arg(long, env = "MAGNETAR_META_URL")]
    meta_url: Option<String>,
    /// Pulsar protocol listen address; port 0 picks a free one (bind).
    #[arg(long)]
    bind: Option<String>,
    /// HTTP listen address (http_bind).
    #[arg(long)]
    http_bind: Option<String>,
    /// Host clients are told to connect to (advertised_address).
    #[arg(long)]
    advertised_address: Option<String>,
    /// Ensemble size of new ledgers (managed_ledger.ensemble).
    #[arg(long)]
    ensemble: Option<usize>,
    /// Write quorum of new ledgers (managed_ledger.write_quorum).
    #[arg(long)]
    write_quorum: Option<usize>,
    /// Ack quorum of new ledgers (managed_ledger.ack_quorum).
    #[arg(long)]
    ack_quorum: Option<usize>,
    /// TOML config file; see broker/config/broker.toml for every key.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pulsar's own broker.conf (`key=value`): the keys Magnetar supports apply over
    /// --config (docs/operations.md lists them); flags and MAGNETAR_* still win.
    #[arg(long)]
    pulsar_conf: Option<PathBuf>,
    /// Producer de-duplication for namespaces without a policy (deduplication_enabled).
    #[arg(long)]
    deduplication_enabled: bool,
}

fn advertised(bind: &std::net::SocketAddr, flag: &Option<String>) -> anyhow::Result<String> {
    match flag {
        Some(h) => Ok(h.clone()),
        None if bind.ip().is_unspecified() => common::net::default_advertised_host().context(
            "`advertised_address`: required when --bind is a wildcard address and the host name cannot be read",
        ),
        None => Ok(bind.ip().to_string()),
    }
}

async fn serve_broker(
    store: Arc<dyn MetadataStore>,
    config: &BrokerConfig,
    ml: ManagedLedgerConfig,
    metrics: Option<common::telemetry::PrometheusHandle>,
    role: &str,
) -> anyhow::Result<broker::server::RunningBroker> {
    let pulsar = broker::server::bind(&config.bind, "bind").await?;
    let http = broker::server::bind(&config.http_bind, "http_bind").await?;
    let addr = pulsar.local_addr()?;
    let flag = (!config.advertised_address.is_empty()).then(|| config.advertised_address.clone());
    let host = advertised(&addr, &flag)?;
    let service_url = format!("pulsar://{host}:{}", addr.port());
    let keys = KeyLayout::for_cluster(&config.meta.cluster);
    let client_config = ClientConfig {
        tls: config.bookie_tls().map_err(|e| anyhow::anyhow!(e))?,
        ..ClientConfig::default()
    };
    let client = LedgerClient::new(store.clone(), keys.clone(), client_config);
    let http_url = format!("http://{host}:{}", http.local_addr()?.port());
    // TLS listeners (Pulsar's brokerServicePortTls / webServicePortTls), when configured.
    let tls_config = config
        .tls_settings()
        .map(broker::tls::ServerTls::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .map(Arc::new);
    let mut tls = broker::server::TlsListeners::default();
    if !config.tls_bind.is_empty() {
        tls.pulsar = Some(broker::server::bind(&config.tls_bind, "tls_bind").await?);
    }
    if !config.https_bind.is_empty() {
        tls.https = Some(broker::server::bind(&config.https_bind, "https_bind").await?);
    }
    let port = |l: &Option<tokio::net::TcpListener>| -> anyhow::Result<Option<u16>> {
        Ok(l.as_ref()
            .map(|l| l.local_addr())
            .transpose()?
            .map(|a| a.port()))
    };
    let urls = broker::ownership::owner::BrokerUrls {
        service_url: service_url.clone(),
        http_url,
        service_url_tls: port(&tls.pulsar)?
            .map(|p| format!("pulsar+ssl://{host}:{p}"))
            .unwrap_or_default(),
        http_url_tls: port(&tls.https)?
            .map(|p| format!("https://{host}:{p}"))
            .unwrap_or_default(),
    };
    let ownership = broker::ownership::Ownership::new(
        store.clone(),
        keys.clone(),
        format!("{host}:{}", addr.port()),
        urls.clone(),
        config.ownership.bundles,
        config.ownership.lease_ttl,
    );
    let mut service = BrokerService::new(store, keys, client, ml, service_url.clone());
    service.keepalive = config.keepalive_interval;
    service.cluster = config.meta.cluster.clone();
    service.allow_auto_topic_creation = config.allow_auto_topic_creation;
    service.deduplication_enabled = config.deduplication_enabled;
    service.message_ttl = config.message_ttl;
    service.message_expiry_check_interval = config.message_expiry_check_interval;
    service.subscription_pattern_max_length = config.subscription_pattern_max_length;
    service.max_connections = config.max_connections;
    service.max_connections_per_ip = config.max_connections_per_ip;
    service.max_pending_publish_per_connection =
        config.max_pending_publish_requests_per_connection.max(1);
    service.publish_buffer = std::sync::Arc::new(tokio::sync::Semaphore::new(
        (config.max_message_publish_buffer.0 as usize)
            .max(broker::protocol::commands::send::MIN_PUBLISH_BUFFER),
    ));
    service.lookup_permits = std::sync::Arc::new(tokio::sync::Semaphore::new(
        config.max_concurrent_lookup_requests.max(1),
    ));
    service.topic_load_permits = std::sync::Arc::new(tokio::sync::Semaphore::new(
        config.max_concurrent_topic_loads.max(1),
    ));
    service.max_subscriptions_per_topic = config.max_subscriptions_per_topic;
    service.max_topics_per_namespace = config.max_topics_per_namespace;
    service.authenticator = std::sync::Arc::new(
        broker::auth::Authenticator::new(&config.auth_settings())
            .map_err(|e| anyhow::anyhow!("authentication: {e}"))?,
    );
    service.authorizer = Arc::new(config.authorizer());
    service.auth_refresh_check = config.authentication_refresh_check_interval;
    service.service_url_tls = urls.service_url_tls.clone();
    service.tls = tls_config;
    service.delete_inactive_topics = config.delete_inactive_topics.then_some((
        config.inactive_topic_check_interval,
        config.inactive_topic_max_age,
    ));
    // One process with its own bookie: there is no other broker to give bundles to.
    if role != "standalone" {
        service.storage_timeout = config.ownership.storage_timeout;
    }
    // `public/default` exists from the first start, as in Pulsar.
    service
        .namespaces
        .ensure_defaults(&config.meta.cluster, config.ownership.bundles)
        .await
        .context("creating the public/default namespace")?;
    service.ownership = Some(ownership);
    let service = Arc::new(service);
    let running = broker::server::start(service, pulsar, http, tls, metrics)?;
    let mut out = std::io::stdout();
    let mut secure = String::new();
    for (key, url) in [
        ("tls", &urls.service_url_tls),
        ("https", &urls.http_url_tls),
    ] {
        if !url.is_empty() {
            secure.push_str(&format!(" {key}={url}"));
        }
    }
    writeln!(
        out,
        "magnetar {role} ready: service={service_url} http=http://{host}:{}{secure}",
        running.http_addr.port(),
    )?;
    out.flush()?;
    Ok(running)
}

fn load_config(
    file: Option<&std::path::Path>,
    pulsar: &[(String, String)],
    overrides: &[(&str, String)],
) -> anyhow::Result<BrokerConfig> {
    let config: BrokerConfig =
        common::config::load_layers(file, pulsar, std::env::vars(), overrides)?;
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(config)
}

/// The settings of a Pulsar configuration file (none without one); the keys it ignores are
/// named in one warning.
fn pulsar_settings(path: Option<&std::path::Path>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let conf = broker::pulsar_conf::read(path)?;
    if !conf.ignored.is_empty() {
        tracing::warn!(
            file = %path.display(),
            keys = conf.ignored.join(","),
            "ignoring Pulsar settings Magnetar does not use"
        );
    }
    Ok(conf.settings)
}

/// Runs `magnetar standalone` until SIGTERM/SIGINT.
pub fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let pulsar = pulsar_settings(args.pulsar_conf.as_deref())?;
    let from_pulsar = |key: &str| pulsar.iter().any(|(k, _)| k == key);
    let mut overrides = Vec::new();
    for (key, flag, default) in [
        ("bind", &args.bind, "127.0.0.1:6650"),
        ("http_bind", &args.http_bind, "127.0.0.1:8080"),
    ] {
        match flag {
            Some(v) => overrides.push((key, v.clone())),
            None if !from_pulsar(key) => overrides.push((key, default.to_owned())),
            None => {}
        }
    }
    if let Some(a) = &args.advertised_address {
        overrides.push(("advertised_address", a.clone()));
    }
    if args.deduplication_enabled {
        overrides.push(("deduplication_enabled", "true".into()));
    }
    let config = load_config(args.config.as_deref(), &pulsar, &overrides)?;
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
        // One bookie: every ledger lives on it.
        let ml = ManagedLedgerConfig {
            ensemble: 1,
            write_quorum: 1,
            ack_quorum: 1,
            ..config.managed_ledger()
        };
        let broker = serve_broker(store, &config, ml, metrics, "standalone").await?;
        let bookie_stop = tokio_util::sync::CancellationToken::new();
        let bookie_task = tokio::spawn(bookie.run_until(bookie_stop.clone()));
        broker.run_until(shutdown).await;
        bookie_stop.cancel();
        bookie_task.await??;
        Ok(())
    })
}

/// Runs `magnetar broker` until SIGTERM/SIGINT.
pub fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let mut overrides: Vec<(&str, String)> = Vec::new();
    for (key, v) in [
        ("meta.url", &args.meta_url),
        ("bind", &args.bind),
        ("http_bind", &args.http_bind),
        ("advertised_address", &args.advertised_address),
    ] {
        if let Some(v) = v {
            overrides.push((key, v.clone()));
        }
    }
    if args.deduplication_enabled {
        overrides.push(("deduplication_enabled", "true".into()));
    }
    for (key, v) in [
        ("managed_ledger.ensemble", args.ensemble),
        ("managed_ledger.write_quorum", args.write_quorum),
        ("managed_ledger.ack_quorum", args.ack_quorum),
    ] {
        if let Some(v) = v {
            overrides.push((key, v.to_string()));
        }
    }
    let pulsar = pulsar_settings(args.pulsar_conf.as_deref())?;
    let config = load_config(args.config.as_deref(), &pulsar, &overrides)?;
    if config.meta.url.is_empty() {
        anyhow::bail!("`meta.url`: required (--meta-url etcd://HOST:PORT)");
    }
    let metrics = common::telemetry::install_prometheus();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = super::shutdown_on_signals()?;
        let meta::MetaUrl::Etcd(endpoints) = config.meta.url.parse::<meta::MetaUrl>()?;
        let mut opts = meta::EtcdOptions::new(endpoints);
        opts.connect_timeout = config.meta.connect_timeout;
        let store: Arc<dyn MetadataStore> = Arc::new(meta::EtcdStore::connect(opts).await?);
        let broker =
            serve_broker(store, &config, config.managed_ledger(), metrics, "broker").await?;
        broker.run_until(shutdown).await;
        Ok(())
    })
}
