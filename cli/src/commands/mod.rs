//! One module per subcommand, plus the shutdown-signal helper they share.

pub mod admin;
mod admin_messages;
mod admin_permissions;
pub mod bookie;
mod client_auth;
pub mod ledgers;
pub mod perf;
pub mod perf_pulsar;
mod perf_report;
mod perf_security;
pub mod probe;
pub mod standalone;
pub mod tokens;

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        t.cancel();
    });
    Ok(token)
}
