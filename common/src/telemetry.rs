//! Logging and metrics set-up for the `magnetar` binary and test harnesses.
//!
//! Libraries only emit `tracing` events and `metrics` calls; a process installs the
//! subscriber and recorder once, here, and serves [`PrometheusHandle::render`] on `/metrics`.

pub use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber writing to stderr (stdout is reserved for the
/// `ready:` line and command output). `filter` uses `RUST_LOG` syntax, e.g. `info,meta=debug`.
/// Calling it twice is harmless: the second call does nothing.
pub fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Installs the global Prometheus recorder and returns the handle that renders the text
/// exposition for `/metrics`. Returns `None` if a recorder was installed already (tests that
/// start several servers in one process), in which case metrics go to the first one.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_renders_a_counter() {
        let Some(handle) = super::install_prometheus() else {
            return;
        };
        metrics::counter!("common_test_events_total").increment(3);
        let text = handle.render();
        assert!(text.contains("common_test_events_total 3"), "{text}");
    }
}
