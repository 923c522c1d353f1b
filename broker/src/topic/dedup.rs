//! Producer de-duplication (Pulsar's MessageDeduplication), as a state machine without I/O:
//! per producer name, the highest sequence id accepted for storing (`pushed`) and the highest
//! one durable (`persisted`). A send whose first sequence id is at or below `pushed` is a
//! duplicate: answered with the `-1:-1` receipt when it is also at or below `persisted`, or
//! refused as "still in flight" (the client sends it again, and by then it is persisted). A
//! failed append rolls `pushed` back to `persisted`, so the client's resend is stored.
//!
//! The state survives restarts and failover through snapshots (`managed-ledgers/<topic>/dedup`:
//! the map as of a position) plus a replay of the entries after that position (their
//! metadata carries producer name and sequence ids), done when the topic loads.

use std::collections::HashMap;

use common::Position;

/// How a send is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it.
    New,
    /// Stored already: answer `-1:-1`.
    Duplicate,
    /// A duplicate of a send not yet durable: refuse it for now.
    InFlight,
}

/// Entries between snapshots (bounds the replay at load).
pub const SNAPSHOT_EVERY: u64 = 1000;

/// The de-duplication state of one topic.
#[derive(Debug, Default, Clone)]
pub struct Dedup {
    pushed: HashMap<String, u64>,
    persisted: HashMap<String, u64>,
    /// The last entry whose outcome was applied (entry order).
    applied: Option<Position>,
    since_snapshot: u64,
}

impl Dedup {
    /// State rebuilt from a snapshot (the map as of `position`).
    pub fn from_snapshot(position: Option<Position>, persisted: HashMap<String, u64>) -> Self {
        Dedup {
            pushed: persisted.clone(),
            persisted,
            applied: position,
            since_snapshot: 0,
        }
    }

    /// Judges a send of sequence ids `first..=highest` by `producer`; a new one is pushed.
    pub fn check(&mut self, producer: &str, first: u64, highest: u64) -> Verdict {
        if let Some(&pushed) = self.pushed.get(producer)
            && first <= pushed
        {
            return if self.persisted.get(producer).is_some_and(|p| first <= *p) {
                Verdict::Duplicate
            } else {
                Verdict::InFlight
            };
        }
        self.pushed.insert(producer.to_owned(), highest.max(first));
        Verdict::New
    }

    /// An entry of `producer` up to sequence id `highest` is durable at `at` (entry order).
    pub fn persisted(&mut self, producer: &str, highest: u64, at: Position) {
        let p = self.persisted.entry(producer.to_owned()).or_insert(highest);
        *p = (*p).max(highest);
        let pushed = self.pushed.entry(producer.to_owned()).or_insert(highest);
        *pushed = (*pushed).max(highest);
        self.applied = Some(self.applied.map_or(at, |a| a.max(at)));
        self.since_snapshot += 1;
    }

    /// An append of `producer` failed: what was pushed but not persisted may be sent again.
    pub fn failed(&mut self, producer: &str) {
        match self.persisted.get(producer) {
            Some(p) => {
                self.pushed.insert(producer.to_owned(), *p);
            }
            None => {
                self.pushed.remove(producer);
            }
        }
    }

    /// The highest durable sequence id of `producer`, or -1 (PRODUCER_SUCCESS's
    /// `last_sequence_id`).
    pub fn last_sequence_id(&self, producer: &str) -> i64 {
        self.persisted.get(producer).map_or(-1, |s| *s as i64)
    }

    /// A snapshot to write if enough entries passed since the last one (`force`: any change).
    pub fn take_snapshot(
        &mut self,
        force: bool,
    ) -> Option<(Option<Position>, HashMap<String, u64>)> {
        if self.since_snapshot == 0 || (!force && self.since_snapshot < SNAPSHOT_EVERY) {
            return None;
        }
        self.since_snapshot = 0;
        Some((self.applied, self.persisted.clone()))
    }

    /// A snapshot of the state now, whatever changed: the first one of a topic is written at
    /// once, so that a later load replays from its position instead of starting at the end
    /// (which would forget every sequence id stored in between).
    pub fn snapshot_now(&mut self) -> (Option<Position>, HashMap<String, u64>) {
        self.since_snapshot = 0;
        (self.applied, self.persisted.clone())
    }

    /// Replays a stored entry (at load): it was durable, so both marks move.
    pub fn replay(&mut self, producer: &str, highest: u64, at: Position) {
        self.persisted(producer, highest, at);
    }

    /// The position the state reflects every entry up to.
    pub fn applied(&self) -> Option<Position> {
        self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{EntryId, LedgerId};

    fn at(e: u64) -> Position {
        Position::new(LedgerId(1), EntryId(e))
    }

    #[test]
    fn duplicates_in_flight_and_failures() {
        let mut d = Dedup::default();
        assert_eq!(d.last_sequence_id("p"), -1);
        assert_eq!(d.check("p", 0, 0), Verdict::New);
        assert_eq!(d.check("p", 0, 0), Verdict::InFlight, "not durable yet");
        d.persisted("p", 0, at(0));
        assert_eq!(d.check("p", 0, 0), Verdict::Duplicate);
        assert_eq!(d.check("p", 1, 4), Verdict::New, "a batch of 1..=4");
        assert_eq!(d.check("p", 3, 3), Verdict::InFlight);
        d.failed("p");
        assert_eq!(d.check("p", 1, 4), Verdict::New, "resent after the failure");
        d.persisted("p", 4, at(1));
        assert_eq!(d.check("p", 2, 2), Verdict::Duplicate);
        assert_eq!(d.last_sequence_id("p"), 4);
        assert_eq!(
            d.check("q", 0, 0),
            Verdict::New,
            "producers are independent"
        );
    }

    #[test]
    fn snapshots_every_so_many_entries_and_restore() {
        let mut d = Dedup::default();
        for i in 0..SNAPSHOT_EVERY - 1 {
            d.check("p", i, i);
            d.persisted("p", i, at(i));
        }
        assert!(d.take_snapshot(false).is_none());
        d.persisted("p", SNAPSHOT_EVERY - 1, at(SNAPSHOT_EVERY - 1));
        let (pos, map) = d.take_snapshot(false).expect("a snapshot");
        assert_eq!(pos, Some(at(SNAPSHOT_EVERY - 1)));
        let mut r = Dedup::from_snapshot(pos, map);
        assert_eq!(r.check("p", 5, 5), Verdict::Duplicate);
        r.replay("p", SNAPSHOT_EVERY, at(SNAPSHOT_EVERY));
        assert_eq!(r.last_sequence_id("p"), SNAPSHOT_EVERY as i64);
        assert!(r.take_snapshot(true).is_some());
        assert!(r.take_snapshot(true).is_none(), "nothing new");
    }
}
