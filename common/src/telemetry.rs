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
///
/// Histograms named `…_seconds`, `…_bytes` and `…_entries` are real Prometheus histograms
/// (`_bucket{le=…}`: they aggregate across nodes); the others — BookKeeper's names such as
/// `bookkeeper_server_ADD_ENTRY_REQUEST`, in milliseconds — are summaries with `quantile`
/// labels, as BookKeeper exports them and its dashboards read them.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    const SECONDS: &[f64] = &[
        0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    ];
    const BYTES: &[f64] = &[
        128.0,
        512.0,
        1024.0,
        4096.0,
        16384.0,
        65536.0,
        262_144.0,
        1_048_576.0,
        4_194_304.0,
    ];
    const ENTRIES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), ENTRIES))
        .ok()?
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
        metrics::histogram!("common_test_wait_seconds").record(0.003);
        metrics::histogram!("common_test_ADD_ENTRY").record(3.0);
        let text = handle.render();
        assert!(text.contains("common_test_events_total 3"), "{text}");
        // A real histogram for `_seconds`, a summary for the rest.
        assert!(
            text.contains("common_test_wait_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("common_test_ADD_ENTRY{quantile=\"0.99\"}"),
            "{text}"
        );
    }
}
