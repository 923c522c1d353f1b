//! Topic and subscription metrics under Pulsar's names and labels
//! (`../shared/reference/ecosystem.md` §4), which the Pulsar dashboards read: rendered from
//! the loaded topics at each scrape, so a topic's series go when it is unloaded or deleted.
//!
//! Per topic (`cluster`, `namespace`, `topic`): `pulsar_rate_in/out`,
//! `pulsar_throughput_in/out`, `pulsar_in_messages_total`, `pulsar_in_bytes_total`,
//! `pulsar_storage_size`, `pulsar_msg_backlog`, `pulsar_producers_count`,
//! `pulsar_consumers_count`, `pulsar_subscriptions_count`, and Pulsar's bucket-style
//! histograms `pulsar_storage_write_latency_le_*` (ms) and `pulsar_entry_size_le_*` (bytes)
//! with `_count` / `_sum`. Per subscription (`subscription` too): `pulsar_subscription_back_log`,
//! `pulsar_subscription_unacked_messages`, `pulsar_subscription_consumers_count`,
//! `pulsar_subscription_msg_expired_total`. Per broker (`cluster`): `pulsar_topics_count`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::service::BrokerService;

/// Upper bounds of Pulsar's storage write latency buckets, ms (`le_0_5` … `le_1000`, then
/// `overflow`).
pub const LATENCY_BOUNDS_MS: [(f64, &str); 9] = [
    (0.5, "0_5"),
    (1.0, "1"),
    (5.0, "5"),
    (10.0, "10"),
    (20.0, "20"),
    (50.0, "50"),
    (100.0, "100"),
    (200.0, "200"),
    (1000.0, "1000"),
];

/// Upper bounds of Pulsar's entry size buckets, bytes.
pub const SIZE_BOUNDS: [(f64, &str); 8] = [
    (128.0, "128"),
    (512.0, "512"),
    (1024.0, "1_kb"),
    (2048.0, "2_kb"),
    (4096.0, "4_kb"),
    (16384.0, "16_kb"),
    (102_400.0, "100_kb"),
    (1_048_576.0, "1_mb"),
];

/// A Pulsar-style histogram: one counter per bucket (not cumulative, as Pulsar exports
/// them), plus overflow, count and sum.
#[derive(Debug, Default)]
pub struct Buckets {
    counts: [AtomicU64; 10],
    count: AtomicU64,
    /// Sum of the values, in thousandths (values are ms or bytes).
    sum_milli: AtomicU64,
}

impl Buckets {
    /// Counts `v` in its bucket of `bounds`.
    pub fn record(&self, v: f64, bounds: &[(f64, &str)]) {
        let i = bounds
            .iter()
            .position(|(b, _)| v <= *b)
            .unwrap_or(bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_milli.fetch_add((v * 1000.0) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[(f64, &str)]) {
        for (i, (_, suffix)) in bounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_le_{suffix}{{{labels}}} {}",
                self.counts[i].load(Relaxed)
            );
        }
        let overflow = self.counts[bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_le_overflow{{{labels}}} {overflow}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count.load(Relaxed));
        let sum = self.sum_milli.load(Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One gauge family, written sample by sample.
struct Family {
    name: &'static str,
    kind: &'static str,
    samples: String,
}

impl Family {
    fn new(name: &'static str, kind: &'static str) -> Self {
        Family {
            name,
            kind,
            samples: String::new(),
        }
    }

    fn add(&mut self, labels: &str, v: f64) {
        let _ = writeln!(self.samples, "{}{{{labels}}} {v}", self.name);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        out.push_str(&self.samples);
    }
}

/// The exposition text of every loaded topic's metrics.
pub async fn render(service: &BrokerService) -> String {
    let cluster = escape(&service.cluster);
    let mut topic_fams: Vec<Family> = [
        ("pulsar_rate_in", "gauge"),
        ("pulsar_rate_out", "gauge"),
        ("pulsar_throughput_in", "gauge"),
        ("pulsar_throughput_out", "gauge"),
        ("pulsar_in_messages_total", "counter"),
        ("pulsar_in_bytes_total", "counter"),
        ("pulsar_storage_size", "gauge"),
        ("pulsar_msg_backlog", "gauge"),
        ("pulsar_producers_count", "gauge"),
        ("pulsar_consumers_count", "gauge"),
        ("pulsar_subscriptions_count", "gauge"),
    ]
    .into_iter()
    .map(|(n, k)| Family::new(n, k))
    .collect();
    let mut sub_fams: Vec<Family> = [
        ("pulsar_subscription_back_log", "gauge"),
        ("pulsar_subscription_unacked_messages", "gauge"),
        ("pulsar_subscription_consumers_count", "gauge"),
        ("pulsar_subscription_msg_expired_total", "counter"),
    ]
    .into_iter()
    .map(|(n, k)| Family::new(n, k))
    .collect();
    let mut histograms = String::new();
    let topics = service.loaded_topics();
    for t in &topics {
        let ns = crate::ownership::bundles::namespace_of(&t.name);
        let labels = format!(
            "cluster=\"{cluster}\",namespace=\"{}\",topic=\"{}\"",
            escape(ns),
            escape(&t.name)
        );
        let rates = t.rates.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let subs = t.subscriptions().await;
        let storage = t.ml.stats().await.map(|s| s.size()).unwrap_or(0);
        let mut backlog_total = 0u64;
        let mut consumers = 0usize;
        for s in &subs {
            let view = s.view();
            let backlog = s.backlog();
            backlog_total += backlog;
            consumers += view.consumers.len();
            let sl = format!("{labels},subscription=\"{}\"", escape(&s.name));
            sub_fams[0].add(&sl, backlog as f64);
            sub_fams[1].add(&sl, view.unacked as f64);
            sub_fams[2].add(&sl, view.consumers.len() as f64);
            sub_fams[3].add(&sl, s.expired.load(Relaxed) as f64);
        }
        let values = [
            rates.per_sec[0],
            rates.per_sec[2],
            rates.per_sec[1],
            rates.per_sec[3],
            t.msg_in.load(Relaxed) as f64,
            t.bytes_in.load(Relaxed) as f64,
            storage as f64,
            backlog_total as f64,
            t.producers().len() as f64,
            consumers as f64,
            subs.len() as f64,
        ];
        for (fam, v) in topic_fams.iter_mut().zip(values) {
            fam.add(&labels, v);
        }
        t.write_latency_ms.render(
            &mut histograms,
            "pulsar_storage_write_latency",
            &labels,
            &LATENCY_BOUNDS_MS,
        );
        t.entry_size
            .render(&mut histograms, "pulsar_entry_size", &labels, &SIZE_BOUNDS);
    }
    let mut out = String::new();
    for f in topic_fams.iter().chain(&sub_fams) {
        f.render(&mut out);
    }
    out.push_str(&histograms);
    let _ = writeln!(out, "# TYPE pulsar_topics_count gauge");
    let _ = writeln!(
        out,
        "pulsar_topics_count{{cluster=\"{cluster}\"}} {}",
        topics.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_value_once_in_pulsars_layout() {
        let b = Buckets::default();
        for v in [0.2, 0.5, 3.0, 2000.0] {
            b.record(v, &LATENCY_BOUNDS_MS);
        }
        let mut out = String::new();
        b.render(
            &mut out,
            "pulsar_storage_write_latency",
            "topic=\"t\"",
            &LATENCY_BOUNDS_MS,
        );
        assert!(
            out.contains("pulsar_storage_write_latency_le_0_5{topic=\"t\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("pulsar_storage_write_latency_le_5{topic=\"t\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("pulsar_storage_write_latency_le_overflow{topic=\"t\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("pulsar_storage_write_latency_count{topic=\"t\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("pulsar_storage_write_latency_sum{topic=\"t\"} 2003.7\n"),
            "{out}"
        );
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
