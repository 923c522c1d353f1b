//! Garbage collection (`gc`): removes the ledgers this bookie holds that the metadata no
//! longer needs here — BookKeeper's GarbageCollectorThread. A broker deletes a consumed
//! ledger's metadata and asks its bookies to delete it; a bookie that was down then, or a copy
//! left behind by re-replication, is cleaned up here.
//!
//! A ledger is removed only when the metadata store proves it: its metadata is absent, or it
//! exists and no segment lists this bookie (and the ledger has been idle here for
//! `gc.min_age`, since re-replication copies entries before it updates the metadata). Any
//! metadata error ends the pass; a store that lists no ledger at all while this bookie holds
//! some is not trusted (a wrong `meta.cluster` would look exactly like that). Removal goes
//! through [`Engine::delete`]: journaled first, so a restart cannot bring the ledger back.

use std::sync::Arc;
use std::time::Duration;

use common::LedgerId;
use meta::{LedgerStore, MetaError};
use proto::meta::LedgerMetadata;
use tokio_util::sync::CancellationToken;

use crate::config::GcSection;
use crate::engine::Engine;
use crate::error::Result;

/// Why a ledger is garbage, or that it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still needed here (or not provably unneeded yet).
    Keep,
    /// Its metadata is gone: the ledger was deleted.
    MetadataGone,
    /// Its metadata no longer lists this bookie in any segment.
    NotListed,
}

/// Decides one ledger: `meta` as read from the store (`None`: absent), `idle` since the last
/// add or fence here. Pure, for tests.
pub fn verdict(
    meta: Option<&LedgerMetadata>,
    bookie: &str,
    idle: Duration,
    min_age: Duration,
) -> Verdict {
    match meta {
        None => Verdict::MetadataGone,
        Some(m)
            if idle >= min_age
                && !m
                    .segments
                    .iter()
                    .any(|s| s.bookies.iter().any(|b| b == bookie)) =>
        {
            Verdict::NotListed
        }
        Some(_) => Verdict::Keep,
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Ledgers removed.
    pub removed: Vec<LedgerId>,
    /// Payload bytes those ledgers held.
    pub bytes: u64,
}

/// The collector of one bookie.
#[derive(Debug)]
pub struct Gc {
    /// Ledger metadata.
    pub ledgers: LedgerStore,
    /// The bookie's storage.
    pub engine: Arc<Engine>,
    /// This bookie's id, as segments list it.
    pub bookie_id: String,
    /// Settings.
    pub config: GcSection,
}

impl Gc {
    /// Registers the collector's metrics, so dashboards show zeros before the first pass.
    pub fn describe_metrics() {
        metrics::describe_counter!(
            "bookie_gc_reclaimed_bytes_total",
            metrics::Unit::Bytes,
            "payload bytes of ledgers removed by garbage collection"
        );
        metrics::describe_counter!(
            "bookie_gc_deleted_ledgers_total",
            "ledgers removed by garbage collection"
        );
        metrics::counter!("bookie_gc_reclaimed_bytes_total").absolute(0);
        metrics::counter!("bookie_gc_deleted_ledgers_total").absolute(0);
    }

    /// Runs a pass every `gc.interval` until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        Self::describe_metrics();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.interval) => {}
            }
            match self.collect().await {
                Ok(r) if !r.removed.is_empty() => {
                    tracing::info!(
                        ledgers = r.removed.len(),
                        bytes = r.bytes,
                        "garbage collected"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection pass ended early"),
            }
        }
    }

    /// One pass over every ledger held here.
    pub async fn collect(&self) -> Result<Report> {
        let mut report = Report::default();
        let held = self.engine.storage().ledger_ids();
        if held.is_empty() {
            return Ok(report);
        }
        let (any, _) = self.ledgers.list(None, 1).await?;
        if any.is_empty() {
            tracing::warn!(
                held = held.len(),
                "the metadata store lists no ledger at all: garbage collection skipped (check `meta.cluster`)"
            );
            return Ok(report);
        }
        let started = self.engine.started();
        for id in held {
            let meta = match self.ledgers.get(id).await {
                Ok((m, _)) => Some(m),
                Err(MetaError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let Some(ledger) = self.engine.storage().ledger(id) else {
                continue;
            };
            let idle = ledger.state().last_write.unwrap_or(started).elapsed();
            let v = verdict(meta.as_ref(), &self.bookie_id, idle, self.config.min_age);
            if v == Verdict::Keep {
                continue;
            }
            let bytes = self.engine.info(id).await.map_or(0, |i| i.bytes);
            self.engine.delete(id).await?;
            tracing::info!(ledger = %id, reason = ?v, bytes, "ledger garbage collected");
            metrics::counter!("bookie_gc_reclaimed_bytes_total").increment(bytes);
            metrics::counter!("bookie_gc_deleted_ledgers_total").increment(1);
            report.removed.push(id);
            report.bytes += bytes;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::meta::Segment;

    fn meta(segments: &[&[&str]]) -> LedgerMetadata {
        LedgerMetadata {
            segments: segments
                .iter()
                .enumerate()
                .map(|(i, b)| Segment {
                    first_entry_id: i as u64 * 100,
                    bookies: b.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            verdict(None, "b1", Duration::ZERO, hour),
            Verdict::MetadataGone
        );
        let listed = meta(&[&["b1", "b2"], &["b3", "b2"]]);
        assert_eq!(
            verdict(Some(&listed), "b1", hour * 2, hour),
            Verdict::Keep,
            "an older segment still lists it"
        );
        let moved = meta(&[&["b3", "b2"]]);
        assert_eq!(
            verdict(Some(&moved), "b1", hour * 2, hour),
            Verdict::NotListed
        );
        assert_eq!(
            verdict(Some(&moved), "b1", Duration::from_secs(5), hour),
            Verdict::Keep,
            "a fresh copy may be re-replication's, before its metadata update"
        );
    }
}
