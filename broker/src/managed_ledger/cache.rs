//! Caches of recently written entries, so tailing consumers are served from memory — one
//! per topic, all drawing on one broker-wide budget ([`CacheBudget`], Pulsar's
//! `managedLedgerCacheSizeMB`), so memory stays bounded however many topics are loaded.
//!
//! An insert that would take the broker over budget first evicts that topic's oldest entries;
//! if still over, the entry is not cached (readers get it from the bookies). Entries also go
//! when every active subscription has read past them, and when older than the eviction age
//! (`evict`, run periodically): an idle topic's cache drains to nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Position;

/// The broker-wide budget every topic's cache draws on.
#[derive(Debug)]
pub struct CacheBudget {
    used: AtomicUsize,
    max: usize,
    /// Entries older than this are evicted by [`EntryCache::evict`].
    pub max_age: Duration,
}

impl CacheBudget {
    /// A budget of `max` bytes; entries live at most `max_age`.
    pub fn new(max: usize, max_age: Duration) -> Arc<Self> {
        Arc::new(CacheBudget {
            used: AtomicUsize::new(0),
            max,
            max_age,
        })
    }

    /// Bytes cached across all topics.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// The budget.
    pub fn max(&self) -> usize {
        self.max
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u + n <= self.max).then_some(u + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
}

/// One topic's entries by position.
#[derive(Debug)]
pub struct EntryCache {
    entries: BTreeMap<Position, (Bytes, Instant)>,
    bytes: usize,
    budget: Arc<CacheBudget>,
}

impl EntryCache {
    /// An empty cache drawing on `budget`.
    pub fn new(budget: Arc<CacheBudget>) -> Self {
        EntryCache {
            entries: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_first() {
            Some((_, (b, _))) => {
                self.bytes -= b.len();
                self.budget.give_back(b.len());
                true
            }
            None => false,
        }
    }

    /// Caches an entry if the budget allows, evicting this topic's oldest entries first.
    pub fn insert(&mut self, p: Position, payload: Bytes) {
        let n = payload.len();
        if n > self.budget.max {
            return;
        }
        while !self.budget.try_take(n) {
            if !self.pop_oldest() {
                metrics::counter!("pulsar_ml_cache_inserts_skipped_total").increment(1);
                return;
            }
        }
        self.bytes += n;
        if let Some((old, _)) = self.entries.insert(p, (payload, Instant::now())) {
            self.bytes -= old.len();
            self.budget.give_back(old.len());
        }
    }

    /// A cached entry.
    pub fn get(&self, p: Position) -> Option<Bytes> {
        self.entries.get(&p).map(|(b, _)| b.clone())
    }

    /// Evicts entries at or before `passed` (every active reader has read them; `None`:
    /// some active reader has read nothing yet) and entries older than the budget's age.
    pub fn evict(&mut self, passed: Option<Position>, now: Instant) {
        while let Some((&p, (_, at))) = self.entries.first_key_value() {
            let passed = passed.is_some_and(|r| p <= r);
            if !passed && now.duration_since(*at) < self.budget.max_age {
                break;
            }
            self.pop_oldest();
        }
        // Entries are inserted in position order, so one past the age bound at the front
        // means the rest are younger; anything older behind a young one goes next round.
    }

    /// Bytes this topic caches.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for EntryCache {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use common::{EntryId, LedgerId};

    use super::*;

    fn p(e: u64) -> Position {
        Position::new(LedgerId(1), EntryId(e))
    }

    #[test]
    fn the_budget_is_shared_by_every_topic() {
        let budget = CacheBudget::new(10, Duration::from_secs(60));
        let mut a = EntryCache::new(budget.clone());
        let mut b = EntryCache::new(budget.clone());
        a.insert(p(0), Bytes::from_static(b"12345"));
        a.insert(p(1), Bytes::from_static(b"12345"));
        // b cannot take a's memory: it has nothing of its own to evict, so it skips caching.
        b.insert(p(0), Bytes::from_static(b"12345"));
        assert!(b.get(p(0)).is_none());
        assert_eq!(budget.used(), 10);
        // a evicts its own oldest to make room.
        a.insert(p(2), Bytes::from_static(b"12345"));
        assert!(a.get(p(0)).is_none() && a.get(p(2)).is_some());
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 0);
        b.insert(p(0), Bytes::from_static(b"12345"));
        assert!(b.get(p(0)).is_some());
    }

    #[test]
    fn entries_go_once_read_or_old() {
        let budget = CacheBudget::new(1000, Duration::from_secs(1));
        let mut c = EntryCache::new(budget.clone());
        for e in 0..5 {
            c.insert(p(e), Bytes::from_static(b"x"));
        }
        let now = Instant::now();
        c.evict(Some(p(2)), now);
        assert!(c.get(p(2)).is_none() && c.get(p(3)).is_some());
        c.evict(Some(p(2)), now + Duration::from_secs(2));
        assert_eq!(c.bytes(), 0);
        c.insert(p(9), Bytes::from_static(b"x"));
        c.evict(None, Instant::now());
        assert_eq!(c.bytes(), 1, "a reader that has read nothing yet keeps it");
        c.evict(Some(Position::MAX), Instant::now());
        assert_eq!(
            (c.bytes(), budget.used()),
            (0, 0),
            "no active reader: nothing kept"
        );
    }
}
