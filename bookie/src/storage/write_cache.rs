//! The write cache: entries accepted by the journal but not yet in ledger files, sorted by
//! (ledger, entry) so a checkpoint writes each ledger's entries in order with one write.
//! Two generations, as in BookKeeper's DbLedgerStorage: the active one takes adds while the
//! other is being flushed; memory is bounded by the sum.

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{EntryId, LedgerId};

use crate::entry::Entry;

/// Entries keyed by (ledger, entry).
pub type CacheMap = BTreeMap<(u64, u64), Entry>;

/// One generation.
#[derive(Debug, Default)]
pub struct Generation {
    /// The entries.
    pub entries: CacheMap,
    /// Their footprint.
    pub bytes: usize,
}

/// Active and flushing generations.
#[derive(Debug, Default)]
pub struct WriteCache {
    /// Taking adds.
    pub active: Generation,
    /// Being written to ledger files by a checkpoint, if one is running.
    pub flushing: Option<Arc<CacheMap>>,
    /// Footprint of `flushing`.
    pub flushing_bytes: usize,
}

impl WriteCache {
    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, e: Entry) {
        self.active.bytes += e.footprint();
        if let Some(old) = self.active.entries.insert((e.ledger.0, e.entry.0), e) {
            self.active.bytes -= old.footprint();
        }
    }

    /// Looks an entry up in both generations, newest first.
    pub fn get(&self, ledger: LedgerId, entry: EntryId) -> Option<Entry> {
        let key = (ledger.0, entry.0);
        self.active
            .entries
            .get(&key)
            .or_else(|| self.flushing.as_ref().and_then(|f| f.get(&key)))
            .cloned()
    }

    /// Highest cached entry of a ledger.
    pub fn last_entry(&self, ledger: LedgerId) -> Option<u64> {
        let last = |m: &CacheMap| {
            m.range((ledger.0, 0)..=(ledger.0, u64::MAX))
                .next_back()
                .map(|((_, e), _)| *e)
        };
        let a = last(&self.active.entries);
        let f = self.flushing.as_deref().and_then(last);
        a.max(f)
    }

    /// Drops a ledger's entries from the active generation (the flushing one is immutable;
    /// the checkpoint skips deleted ledgers).
    pub fn remove_ledger(&mut self, ledger: LedgerId) {
        let keys: Vec<_> = self
            .active
            .entries
            .range((ledger.0, 0)..=(ledger.0, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(e) = self.active.entries.remove(&k) {
                self.active.bytes -= e.footprint();
            }
        }
    }

    /// Total footprint.
    pub fn bytes(&self) -> usize {
        self.active.bytes + self.flushing_bytes
    }
}
