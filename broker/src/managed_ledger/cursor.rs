//! A durable cursor: what a subscription has acknowledged. The mark-delete position (every
//! entry up to it is acknowledged) plus the individually acknowledged entries after it,
//! persisted at `managed-ledgers/<topic>/cursors/<sub>` by CAS.
//!
//! etcd takes a few thousand writes a second, so acks are not persisted one by one: the
//! subscription flushes a dirty cursor at most once per `flush_interval`, and always when its
//! last consumer leaves and at shutdown. After a crash, acknowledgements newer than the last
//! flush are redelivered (at most `flush_interval` worth) — never lost the other way round.
//!
//! Acknowledgements after the mark-delete are runs of consecutive entries ([`AckSet`]): memory
//! and the stored record grow with the number of gaps, not of messages. The stored record
//! keeps at most [`MAX_PERSISTED_RUNS`] runs, those nearest the mark-delete (Pulsar's
//! `managedLedgerMaxUnackedRangesToPersist`): beyond that, acknowledgements of messages far
//! ahead of the oldest unacknowledged one are forgotten at a restart and those messages are
//! delivered again — at least once, never lost.

use std::sync::Arc;

use common::{EntryId, LedgerId, Position};
use meta::records::{decode, encode};
use meta::{MetaError, MetadataStore, PutCondition, Version};
use proto::meta::{AckedRange, CursorInfo, PositionInfo};

use crate::error::{BrokerError, Result};
use crate::managed_ledger::ManagedLedger;
use crate::managed_ledger::ack_set::AckSet;

/// Runs of acknowledged entries a stored cursor keeps at most (see the module docs).
pub const MAX_PERSISTED_RUNS: usize = 10_000;

/// Most words of a batch-index ack set accepted (65,536 messages in one batch): a longer one
/// is not from a real batch, and would grow the cursor by 8 bytes a word.
pub const MAX_ACK_SET_WORDS: usize = 1024;

/// Bytes of partly acknowledged batches a stored cursor keeps at most, so the record stays
/// well inside etcd's 1.5 MiB request limit (a flush that never fits loses every ack after it).
pub const MAX_PERSISTED_PARTIAL_BYTES: usize = 512 * 1024;

/// In-memory cursor state plus its persisted version.
#[derive(Debug)]
pub struct Cursor {
    key: String,
    /// Everything up to here is acknowledged (`None`: nothing yet).
    pub mark_delete: Option<Position>,
    /// Acknowledged entries after `mark_delete`.
    pub acked: AckSet,
    /// Entries with only some batched messages acknowledged: the bits of those still
    /// unacknowledged (Pulsar's `ack_set`; bit i of word i/64 is batch index i).
    pub partial: std::collections::BTreeMap<Position, Vec<i64>>,
    /// Mark-delete as of the last successful flush.
    pub persisted_mark_delete: Option<Position>,
    version: Option<Version>,
    /// Mutations so far, and how many the persisted copy includes.
    changes: u64,
    flushed: u64,
}

/// What a flush writes: taken under the subscription's lock, written outside it.
#[derive(Debug)]
pub struct Snapshot {
    key: String,
    info: CursorInfo,
    condition: PutCondition,
    changes: u64,
    mark_delete: Option<Position>,
}

fn to_info(p: Position) -> PositionInfo {
    PositionInfo {
        ledger_id: p.ledger.0,
        entry_id: p.entry.0,
    }
}

/// The runs to store: the first [`MAX_PERSISTED_RUNS`].
fn ranges(acked: &AckSet) -> Vec<AckedRange> {
    if acked.run_count() > MAX_PERSISTED_RUNS {
        metrics::counter!("pulsar_cursor_runs_not_persisted_total")
            .increment((acked.run_count() - MAX_PERSISTED_RUNS) as u64);
    }
    acked
        .runs()
        .take(MAX_PERSISTED_RUNS)
        .map(|(l, f, e)| AckedRange {
            ledger_id: l.0,
            first_entry: f.0,
            last_entry: e.0,
        })
        .collect()
}

fn from_info(p: &PositionInfo) -> Position {
    Position::new(LedgerId(p.ledger_id), EntryId(p.entry_id))
}

impl Cursor {
    /// Loads a cursor, or creates it at `initial` (the position before the first entry to
    /// deliver) when it does not exist.
    pub async fn load_or_create(
        store: &Arc<dyn MetadataStore>,
        key: String,
        initial: Option<Position>,
    ) -> Result<Self> {
        match store.get(&key).await? {
            Some(kv) => {
                let info: CursorInfo = decode(&key, &kv.value)?;
                let mark = info.mark_delete.as_ref().map(from_info);
                let mut acked = AckSet::default();
                for p in &info.individually_acked {
                    acked.insert(from_info(p));
                }
                for r in &info.acked_ranges {
                    if r.last_entry < r.first_entry {
                        return Err(BrokerError::Meta(meta::MetaError::Corrupt {
                            location: key.clone(),
                            reason: format!(
                                "bad acked range {}:{}..{}",
                                r.ledger_id, r.first_entry, r.last_entry
                            ),
                        }));
                    }
                    // A run, not its entries: loading costs the same for any length.
                    acked.insert_run(r.ledger_id, r.first_entry, r.last_entry);
                }
                let partial = info
                    .partial_batches
                    .iter()
                    .map(|b| {
                        (
                            Position::new(LedgerId(b.ledger_id), EntryId(b.entry_id)),
                            b.unacked.clone(),
                        )
                    })
                    .collect();
                Ok(Cursor {
                    persisted_mark_delete: mark,
                    mark_delete: mark,
                    acked,
                    partial,
                    key,
                    version: Some(kv.version),
                    changes: 0,
                    flushed: 0,
                })
            }
            None => {
                let mut c = Cursor {
                    key,
                    persisted_mark_delete: None,
                    mark_delete: initial,
                    acked: AckSet::default(),
                    partial: Default::default(),
                    version: None,
                    changes: 1,
                    flushed: 0,
                };
                if let Some(snap) = c.snapshot() {
                    let v = Self::write(store, &snap).await?;
                    c.flushed(v, &snap);
                }
                Ok(c)
            }
        }
    }

    /// A cursor that lives only in memory (a reader's non-durable subscription): never
    /// persisted, gone when its consumer leaves.
    pub fn in_memory(initial: Option<Position>) -> Self {
        Cursor {
            key: String::new(),
            mark_delete: initial,
            acked: AckSet::default(),
            partial: Default::default(),
            persisted_mark_delete: initial,
            version: None,
            changes: 0,
            flushed: 0,
        }
    }

    /// Whether the cursor is persisted.
    pub fn is_durable(&self) -> bool {
        !self.key.is_empty()
    }

    /// Whether `p` is acknowledged.
    pub fn is_acked(&self, p: Position) -> bool {
        self.mark_delete.is_some_and(|m| p <= m) || self.acked.contains(p)
    }

    /// Acknowledges one entry; advances mark-delete over the contiguous prefix. A position
    /// that is not an entry of the topic is ignored (it would otherwise stay in the set for
    /// good, and count against the backlog).
    pub fn ack(&mut self, p: Position, ml: &ManagedLedger) {
        if self.is_acked(p) || !ml.contains(p) {
            return;
        }
        self.acked.insert(p);
        self.partial.remove(&p);
        self.advance(ml);
        self.changes += 1;
    }

    /// A batch-index ack: of entry `p`, the messages whose bits are set in `unacked` are
    /// still unacknowledged. Combined with earlier ones (a message acknowledged stays so);
    /// once none is left the entry is acknowledged.
    pub fn ack_partial(&mut self, p: Position, unacked: &[i64], ml: &ManagedLedger) {
        if self.is_acked(p) || unacked.len() > MAX_ACK_SET_WORDS || !ml.contains(p) {
            return;
        }
        let left: Vec<i64> = match self.partial.get(&p) {
            Some(old) => old.iter().zip(unacked).map(|(a, b)| a & b).collect(),
            None => unacked.to_vec(),
        };
        if left.iter().all(|w| *w == 0) {
            self.ack(p, ml);
        } else {
            self.partial.insert(p, left);
            self.changes += 1;
        }
    }

    /// The still unacknowledged messages of a partly acknowledged entry.
    pub fn unacked_of(&self, p: Position) -> Option<&Vec<i64>> {
        self.partial.get(&p)
    }

    /// Acknowledges everything up to and including `p`. Nothing past the last durable entry
    /// (Pulsar's "Invalid mark deleted position"): the subscription would skip every message
    /// published later, and the topic's ledgers would be trimmed under it. The `-1:-1`
    /// "earliest" id reads as the largest position, so it is refused by the same rule.
    pub fn ack_cumulative(&mut self, p: Position, ml: &ManagedLedger) {
        if self.mark_delete.is_some_and(|m| p <= m) {
            return;
        }
        if ml.last_position().is_none_or(|last| p > last) {
            metrics::counter!("pulsar_broker_invalid_acks_total").increment(1);
            return;
        }
        self.mark_delete = Some(p);
        // Everything at or before `p` goes (no `entry + 1`: `p` may be the last entry id).
        self.acked.remove_through(p);
        self.partial = self.partial.split_off(&Position::new(
            p.ledger,
            EntryId(p.entry.0.saturating_add(1)),
        ));
        if p.entry.0 == u64::MAX {
            self.partial.retain(|q, _| *q > p);
        }
        self.advance(ml);
        self.changes += 1;
    }

    /// Moves the cursor to `mark` (backwards or forwards: SEEK, reset-cursor): everything up to
    /// it counts as acknowledged, nothing after it.
    pub fn reset(&mut self, mark: Option<Position>) {
        self.mark_delete = mark;
        self.acked = AckSet::default();
        self.partial.clear();
        self.changes += 1;
    }

    fn advance(&mut self, ml: &ManagedLedger) {
        while let Some(next) = ml.next_position(self.mark_delete) {
            if !self.acked.take_first_of_run(next) {
                break;
            }
            self.mark_delete = Some(next);
        }
    }

    /// The state to persist, if it changed since the last flush.
    pub fn snapshot(&self) -> Option<Snapshot> {
        if self.changes == self.flushed || !self.is_durable() {
            return None;
        }
        Some(Snapshot {
            key: self.key.clone(),
            info: CursorInfo {
                mark_delete: self.mark_delete.map(to_info),
                acked_ranges: ranges(&self.acked),
                partial_batches: self
                    .partial
                    .iter()
                    .take(MAX_PERSISTED_RUNS)
                    .scan(0usize, |bytes, e| {
                        *bytes += 24 + 8 * e.1.len();
                        (*bytes <= MAX_PERSISTED_PARTIAL_BYTES).then_some(e)
                    })
                    .map(|(p, bits)| proto::meta::PartialBatch {
                        ledger_id: p.ledger.0,
                        entry_id: p.entry.0,
                        unacked: bits.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
            condition: self
                .version
                .map_or(PutCondition::Absent, PutCondition::Version),
            changes: self.changes,
            mark_delete: self.mark_delete,
        })
    }

    /// Writes a snapshot. A CAS conflict means another broker took the topic; an ambiguous
    /// failure is settled by reading back (`meta::cas`).
    pub async fn write(store: &Arc<dyn MetadataStore>, snap: &Snapshot) -> Result<Version> {
        let mut info = snap.info.clone();
        match meta::cas::put_checked(store.as_ref(), &snap.key, encode(&mut info), snap.condition)
            .await
        {
            Ok(v) => Ok(v),
            Err(MetaError::BadVersion { .. } | MetaError::AlreadyExists { .. }) => {
                Err(BrokerError::NotOwner(snap.key.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records that `snap` was written at `version`.
    pub fn flushed(&mut self, version: Version, snap: &Snapshot) {
        self.version = Some(version);
        self.flushed = self.flushed.max(snap.changes);
        self.persisted_mark_delete = snap.mark_delete;
    }

    /// The cursor's metadata key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Deletes a persisted cursor (unsubscribe).
    pub async fn delete_key(store: &Arc<dyn MetadataStore>, key: &str) -> Result<()> {
        match store.delete(key, None).await {
            Ok(()) | Err(MetaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_positions_are_stored_as_runs() {
        let p = |l, e| Position::new(LedgerId(l), EntryId(e));
        let mut set = AckSet::default();
        for q in [p(1, 3), p(1, 4), p(1, 5), p(1, 9), p(2, 0), p(2, 1)] {
            set.insert(q);
        }
        let r = ranges(&set);
        let flat: Vec<(u64, u64, u64)> = r
            .iter()
            .map(|r| (r.ledger_id, r.first_entry, r.last_entry))
            .collect();
        assert_eq!(flat, vec![(1, 3, 5), (1, 9, 9), (2, 0, 1)]);
        // Past the limit, the runs nearest the mark-delete are kept.
        let mut many = AckSet::default();
        for e in 0..(MAX_PERSISTED_RUNS as u64 + 50) {
            many.insert(p(7, e * 2));
        }
        let r = ranges(&many);
        assert_eq!(r.len(), MAX_PERSISTED_RUNS);
        assert_eq!(r[0].first_entry, 0);
    }
}
