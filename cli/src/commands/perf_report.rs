//! What `magnetar perf produce|consume` print, in `pulsar-perf`'s shape: every
//! `--stats-interval` a line `Throughput produced: … msg/s --- … Mbit/s --- Latency: mean: …
//! ms - med: … - 95pct: … - 99pct: … - 99.9pct: … - 99.99pct: … - Max: …`, and at the end the
//! aggregated lines (or, with `--json`, one JSON object). Latencies go into HdrHistograms
//! (microseconds, 3 significant digits: fixed memory whatever the run's length).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Microseconds from 1 µs to an hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counts and latencies of one direction (produced or received).
pub struct Stats {
    messages: AtomicU64,
    bytes: AtomicU64,
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            interval: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        }
    }
}

impl Stats {
    /// One message of `bytes`, with its latency when known.
    pub fn record(&self, bytes: u64, latency: Option<Duration>) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(l) = latency {
            let us = (l.as_micros() as u64).clamp(1, 3_600_000_000);
            for h in [&self.interval, &self.total] {
                let _ = h.lock().unwrap_or_else(|p| p.into_inner()).record(us);
            }
        }
    }

    /// Messages so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// The latencies of the whole run.
    pub fn total(&self) -> Histogram<u64> {
        self.total.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take_interval(&self) -> Histogram<u64> {
        let mut h = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        let taken = h.clone();
        h.reset();
        taken
    }
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// `Latency: mean: … ms - med: … - 95pct: … - 99pct: … - 99.9pct: … - 99.99pct: … - Max: …`.
pub fn latency_text(h: &Histogram<u64>) -> String {
    let q = |q: f64| ms(h.value_at_quantile(q) as f64);
    format!(
        "Latency: mean: {:.3} ms - med: {:.3} - 95pct: {:.3} - 99pct: {:.3} - 99.9pct: {:.3} - 99.99pct: {:.3} - Max: {:.3}",
        ms(h.mean()),
        q(0.5),
        q(0.95),
        q(0.99),
        q(0.999),
        q(0.9999),
        ms(h.max() as f64)
    )
}

/// The same figures as JSON (milliseconds).
pub fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let q = |q: f64| ms(h.value_at_quantile(q) as f64);
    serde_json::json!({
        "count": h.len(),
        "mean": ms(h.mean()),
        "p50": q(0.5),
        "p95": q(0.95),
        "p99": q(0.99),
        "p999": q(0.999),
        "p9999": q(0.9999),
        "max": ms(h.max() as f64),
    })
}

/// Prints a `Throughput {verb}: …` line every `every` until `until` (to stderr when stdout
/// is kept for JSON).
pub async fn report_every(
    verb: &'static str,
    stats: std::sync::Arc<Stats>,
    every: Duration,
    until: Instant,
    to_stderr: bool,
) {
    if every.is_zero() {
        return;
    }
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        let next = last.0 + every;
        if next > until {
            return;
        }
        tokio::time::sleep_until(next.into()).await;
        let (messages, bytes) = (stats.messages(), stats.bytes.load(Ordering::Relaxed));
        let secs = last.0.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "Throughput {verb}: {:.1} msg/s --- {:.3} Mbit/s --- {}",
            (messages - last.1) as f64 / secs,
            (bytes - last.2) as f64 * 8.0 / 1e6 / secs,
            latency_text(&stats.take_interval())
        );
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        last = (Instant::now(), messages, bytes);
    }
}

/// The aggregated lines at the end of a run of `secs` seconds.
pub fn aggregated(verb: &str, stats: &Stats, secs: f64) -> String {
    let messages = stats.messages();
    let bytes = stats.bytes.load(Ordering::Relaxed);
    format!(
        "Aggregated throughput stats --- {messages} records {verb} --- {:.1} msg/s --- {:.3} Mbit/s\nAggregated latency stats --- {}",
        messages as f64 / secs,
        bytes as f64 * 8.0 / 1e6 / secs,
        latency_text(&stats.total())
    )
}

/// The run as JSON: messages, rates and latencies.
pub fn json(stats: &Stats, secs: f64) -> serde_json::Value {
    let messages = stats.messages();
    let bytes = stats.bytes.load(Ordering::Relaxed);
    serde_json::json!({
        "messages": messages,
        "bytes": bytes,
        "msg_per_sec": messages as f64 / secs,
        "mbit_per_sec": bytes as f64 * 8.0 / 1e6 / secs,
        "latency_ms": latency_json(&stats.total()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_in_pulsar_perfs_shape() {
        let s = Stats::default();
        for ms in 1..=100u64 {
            s.record(1024, Some(Duration::from_millis(ms)));
        }
        s.record(1024, None);
        assert_eq!(s.messages(), 101);
        let text = latency_text(&s.total());
        assert!(text.starts_with("Latency: mean: 50.5"), "{text}");
        assert!(text.contains(" - med: 50."), "{text}");
        assert!(text.contains(" - 99pct: 99."), "{text}");
        assert!(
            text.ends_with(" - Max: 100.031") || text.contains(" - Max: 100."),
            "{text}"
        );
        let agg = aggregated("sent", &s, 10.0);
        assert!(
            agg.starts_with("Aggregated throughput stats --- 101 records sent --- 10.1 msg/s"),
            "{agg}"
        );
        assert_eq!(json(&s, 10.0)["latency_ms"]["count"], 100);
    }
}
