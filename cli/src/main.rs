//! `magnetar`: the one binary. Subcommands only parse flags, load configuration, install
//! telemetry and call into the libraries (`meta`, and later `bookie` and `broker`).

use clap::Parser;

/// Magnetar: a Pulsar-compatible messaging system in Rust — stateless brokers, bookies that
/// store replicated ledgers, etcd for metadata.
#[derive(Debug, Parser)]
#[command(
    name = "magnetar",
    version,
    about,
    long_about = "Magnetar: a Pulsar-compatible messaging system in Rust.\n\n\
        Stateless brokers speak the Pulsar binary protocol to unmodified Pulsar clients and \
        write each topic as a chain of ledgers, striped across bookies; etcd holds all \
        metadata.\n\n\
        Server subcommands (standalone, broker, bookie) and tools (ledgers, admin, perf) \
        are added as they are built; see the README.",
    arg_required_else_help = true
)]
struct Cli {
    /// Log filter in RUST_LOG syntax (overrides RUST_LOG).
    #[arg(long, global = true, env = "MAGNETAR_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    common::telemetry::init_tracing(&cli.log, common::telemetry::LogFormat::Text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
