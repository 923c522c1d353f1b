//! `magnetar`: the one binary. Subcommands only parse flags, load configuration, install
//! telemetry and call into the libraries (`meta`, `bookie`, and later `broker`).

mod commands;
mod memory;

use clap::{Parser, Subcommand};

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
        metadata.",
    arg_required_else_help = true
)]
struct Cli {
    /// Log filter in RUST_LOG syntax.
    #[arg(long, global = true, env = "MAGNETAR_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run broker, bookie and an embedded metadata store in one process (data under ./data).
    Standalone(commands::standalone::StandaloneArgs),
    /// Run a broker against etcd and bookies.
    Broker(commands::standalone::BrokerArgs),
    /// Run a bookie: the storage node that journals and stores ledger entries.
    Bookie(commands::bookie::Args),
    /// Broker admin (Pulsar's pulsar-admin): brokers, clusters, tenants, namespaces, topics.
    Admin(commands::admin::Args),
    /// Ledger admin: list bookies and ledgers, read, recover, delete, simpletest.
    Ledgers(commands::ledgers::Args),
    /// Benchmarks: journal and bookie throughput and latency percentiles.
    #[command(subcommand)]
    Perf(commands::perf::Perf),
    /// Health probe for containers: GET a URL, exit 0 on a 2xx answer.
    Probe(commands::probe::Args),
    /// Secret keys and tokens for token authentication (Pulsar's `bin/pulsar tokens`).
    #[command(subcommand)]
    Tokens(commands::tokens::Tokens),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(commands::tokens::rewrite_args(std::env::args().collect()));
    common::telemetry::init_tracing(&cli.log, common::telemetry::LogFormat::Text);
    if matches!(
        cli.command,
        Command::Bookie(_) | Command::Standalone(_) | Command::Broker(_)
    ) {
        memory::start_trimming();
    }
    let result = match cli.command {
        Command::Bookie(args) => commands::bookie::run(args),
        Command::Standalone(args) => commands::standalone::standalone(args),
        Command::Broker(args) => commands::standalone::broker(args),
        Command::Perf(perf) => commands::perf::run(perf),
        Command::Ledgers(args) => commands::ledgers::run(args),
        Command::Admin(args) => commands::admin::run(args),
        Command::Probe(args) => commands::probe::run(args),
        Command::Tokens(cmd) => commands::tokens::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magnetar: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
