//! `magnetar bookie`: flags and config → `bookie::server::start` → ready line → run until
//! SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use bookie::BookieConfig;

/// Flags of `magnetar bookie`; each overrides the config key named in its help.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metadata store, `etcd://HOST:PORT[,HOST:PORT]` (meta.url).
    #[arg(long, env = "MAGNETAR_META_URL")]
    meta_url: Option<String>,
    /// Journal directory (journal.dir).
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// Ledger directory (ledger_storage.dir).
    #[arg(long)]
    ledger_dir: Option<PathBuf>,
    /// gRPC listen address; port 0 picks a free one (bind).
    #[arg(long)]
    bind: Option<String>,
    /// HTTP listen address for /metrics and state (http_bind).
    #[arg(long)]
    http_bind: Option<String>,
    /// Host advertised to clients (advertised_address).
    #[arg(long)]
    advertised_address: Option<String>,
    /// Bookie id; default: the advertised service address (bookie_id).
    #[arg(long)]
    bookie_id: Option<String>,
    /// TOML config file; see bookie/config/bookie.toml for every key.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs a bookie until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut overrides: Vec<(&str, String)> = Vec::new();
    let path = |p: &PathBuf| p.display().to_string();
    if let Some(v) = &args.meta_url {
        overrides.push(("meta.url", v.clone()));
    }
    if let Some(v) = &args.journal_dir {
        overrides.push(("journal.dir", path(v)));
    }
    if let Some(v) = &args.ledger_dir {
        overrides.push(("ledger_storage.dir", path(v)));
    }
    for (key, v) in [
        ("bind", &args.bind),
        ("http_bind", &args.http_bind),
        ("advertised_address", &args.advertised_address),
        ("bookie_id", &args.bookie_id),
    ] {
        if let Some(v) = v {
            overrides.push((key, v.clone()));
        }
    }
    let config: BookieConfig =
        common::config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    config.validate()?;
    let metrics = common::telemetry::install_prometheus();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = super::shutdown_on_signals()?;
        let running = tokio::select! {
            r = bookie::server::start(config, metrics) => r?,
            () = shutdown.cancelled() => anyhow::bail!("interrupted during start-up"),
        };
        let mut out = std::io::stdout();
        writeln!(
            out,
            "magnetar bookie ready: service={} http={} id={}",
            running.service_addr, running.http_addr, running.bookie_id
        )?;
        out.flush()?;
        running.run_until(shutdown).await?;
        Ok(())
    })
}
