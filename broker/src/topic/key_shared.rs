//! Key_Shared: which consumer owns a sticky-key hash (0..65536, [`crate::sticky_key`]).
//!
//! Two modes, as in Pulsar, chosen by the subscription's first consumer:
//! - **AUTO_SPLIT**: consistent hashing. Each consumer puts [`POINTS`] points on a ring (the
//!   Murmur3 hash of its name followed by the point's number, as Pulsar's
//!   ConsistentHashingStickyKeyConsumerSelector); a hash belongs to the consumer of the first
//!   point at or after it (wrapping). A consumer joining or leaving moves only the hashes next
//!   to its points, not every key.
//! - **STICKY**: each consumer names the hash ranges it owns (inclusive); ranges of two
//!   consumers must not overlap ([`Selector::add`] refuses with the reason, which the broker
//!   sends as `ConsumerAssignError`); a hash no range covers is not delivered until a consumer
//!   owning it subscribes.
//!
//! This module is pure (no I/O, no locks): the subscription's dispatcher asks it.

use crate::protocol::pb::KeySharedMeta;
use crate::protocol::pb::key_shared_meta::KeySharedMode;
use crate::sticky_key::{RANGE, murmur3_32};

/// Points per consumer on the AUTO_SPLIT ring (Pulsar's
/// subscriptionKeySharedConsistentHashingReplicaPoints).
pub const POINTS: u32 = 100;

/// A consumer's identity in a subscription: (connection id, consumer id).
pub type ConsumerKey = (u64, u64);

/// Why a consumer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its mode or ordering differs from the subscription's (Pulsar: ConsumerBusy).
    Busy(String),
    /// Its sticky ranges are invalid or taken (Pulsar: ConsumerAssignError).
    Assign(String),
}

impl Refusal {
    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Busy(r) | Refusal::Assign(r) => r,
        }
    }
}

/// Hash-to-consumer assignment of one Key_Shared subscription.
#[derive(Debug, Clone)]
pub struct Selector {
    mode: KeySharedMode,
    allow_out_of_order: bool,
    /// AUTO_SPLIT: (point, consumer name, consumer), sorted.
    ring: Vec<(u32, std::sync::Arc<str>, ConsumerKey)>,
    /// STICKY: (start, end inclusive, consumer), sorted by start, never overlapping.
    ranges: Vec<(u32, u32, ConsumerKey)>,
}

impl Selector {
    /// The selector of a subscription whose first consumer sent `meta` (none: AUTO_SPLIT,
    /// in order).
    pub fn new(meta: Option<&KeySharedMeta>) -> Self {
        Selector {
            mode: meta.map_or(KeySharedMode::AutoSplit, |m| m.key_shared_mode()),
            allow_out_of_order: meta.and_then(|m| m.allow_out_of_order_delivery) == Some(true),
            ring: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// The mode (set by the first consumer).
    pub fn mode(&self) -> KeySharedMode {
        self.mode
    }

    /// Whether keys may be delivered out of order when consumers change
    /// (`allowOutOfOrderDelivery`, set by the first consumer).
    pub fn allow_out_of_order(&self) -> bool {
        self.allow_out_of_order
    }

    /// Adds a consumer; refuses one whose mode or ordering differs from the subscription's
    /// or whose sticky ranges are empty, inverted, out of 0..65535 or overlap another's.
    pub fn add(
        &mut self,
        key: ConsumerKey,
        name: &str,
        meta: Option<&KeySharedMeta>,
    ) -> Result<(), Refusal> {
        let mode = meta.map_or(KeySharedMode::AutoSplit, |m| m.key_shared_mode());
        if mode != self.mode {
            return Err(Refusal::Busy(format!(
                "the subscription's key shared mode is {:?}, not {:?}",
                self.mode, mode
            )));
        }
        let ooo = meta.and_then(|m| m.allow_out_of_order_delivery) == Some(true);
        if ooo != self.allow_out_of_order {
            return Err(Refusal::Busy(format!(
                "the subscription's allowOutOfOrderDelivery is {}, not {ooo}",
                self.allow_out_of_order
            )));
        }
        match mode {
            KeySharedMode::AutoSplit => {
                // The name is kept once for all its points.
                let shared: std::sync::Arc<str> = name.into();
                for i in 0..POINTS {
                    let point = murmur3_32(format!("{name}{i}").as_bytes()) % RANGE;
                    self.ring.push((point, shared.clone(), key));
                }
                self.ring.sort();
            }
            KeySharedMode::Sticky => {
                let asked = meta.map(|m| m.hash_ranges.as_slice()).unwrap_or_default();
                if asked.is_empty() {
                    return Err(Refusal::Assign(
                        "Ranges for KeyShared policy must not be empty.".into(),
                    ));
                }
                if asked.len() > RANGE as usize {
                    // More ranges than hashes: some overlap; refused before any work.
                    return Err(Refusal::Assign(format!(
                        "{} hash ranges: more than the {RANGE} hashes they divide",
                        asked.len()
                    )));
                }
                let mut mine: Vec<(u32, u32)> = Vec::with_capacity(asked.len());
                for r in asked {
                    if r.start > r.end {
                        return Err(Refusal::Assign(format!(
                            "Fixed hash range start > end: [{}, {}]",
                            r.start, r.end
                        )));
                    }
                    if r.start < 0 || r.end >= RANGE as i32 {
                        return Err(Refusal::Assign(format!(
                            "hash range [{}, {}] is outside 0..{}",
                            r.start,
                            r.end,
                            RANGE - 1
                        )));
                    }
                    let (s, e) = (r.start as u32, r.end as u32);
                    // The held ranges are sorted and disjoint: only the last one starting
                    // at or before `e` can overlap [s, e] (a binary search, not a scan).
                    let i = self.ranges.partition_point(|(os, _, _)| *os <= e);
                    if let Some((_, oe, other)) = i.checked_sub(1).map(|i| &self.ranges[i])
                        && *oe >= s
                    {
                        return Err(Refusal::Assign(format!(
                            "Range conflict with consumer {other:?}: [{s}, {e}] overlaps its ranges"
                        )));
                    }
                    mine.push((s, e));
                }
                mine.sort_unstable();
                if let Some(w) = mine.windows(2).find(|w| w[1].0 <= w[0].1) {
                    return Err(Refusal::Assign(format!(
                        "the consumer's own ranges overlap at [{}, {}]",
                        w[1].0, w[1].1
                    )));
                }
                self.ranges
                    .extend(mine.into_iter().map(|(s, e)| (s, e, key)));
                self.ranges.sort();
            }
        }
        Ok(())
    }

    /// Removes a consumer.
    pub fn remove(&mut self, key: ConsumerKey) {
        self.ring.retain(|(_, _, k)| *k != key);
        self.ranges.retain(|(_, _, k)| *k != key);
    }

    /// The consumer owning `hash`, if any.
    pub fn select(&self, hash: u32) -> Option<ConsumerKey> {
        match self.mode {
            KeySharedMode::AutoSplit => {
                let i = self.ring.partition_point(|(p, _, _)| *p < hash);
                let i = if i == self.ring.len() { 0 } else { i };
                let point = self.ring.get(i)?.0;
                // Consumers of the same name share their points: the hash picks one of them.
                let run = self.ring[i..]
                    .iter()
                    .take_while(|(p, _, _)| *p == point)
                    .count();
                Some(self.ring[i + hash as usize % run].2)
            }
            KeySharedMode::Sticky => {
                let i = self.ranges.partition_point(|(s, _, _)| *s <= hash);
                let (_, end, k) = self.ranges.get(i.checked_sub(1)?)?;
                (hash <= *end).then_some(*k)
            }
        }
    }

    /// The hash ranges a consumer owns, inclusive, merged (for stats).
    pub fn ranges_of(&self, key: ConsumerKey) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        match self.mode {
            KeySharedMode::Sticky => {
                out.extend(
                    self.ranges
                        .iter()
                        .filter(|r| r.2 == key)
                        .map(|r| (r.0, r.1)),
                );
            }
            KeySharedMode::AutoSplit => {
                // The ring's arcs: (previous point, point] belongs to the point's consumer.
                let mut prev: Option<u32> = None;
                for (p, _, k) in &self.ring {
                    if *k == key {
                        let start = prev.map_or(0, |x| x + 1);
                        if start <= *p {
                            out.push((start, *p));
                        }
                    }
                    prev = Some(*p);
                }
                if let (Some(last), Some(first)) = (self.ring.last(), self.ring.first())
                    && first.2 == key
                    && last.0 < RANGE - 1
                {
                    out.push((last.0 + 1, RANGE - 1));
                }
                out.sort();
                let mut merged: Vec<(u32, u32)> = Vec::new();
                for (s, e) in out {
                    match merged.last_mut() {
                        Some(m) if s <= m.1 + 1 => m.1 = m.1.max(e),
                        _ => merged.push((s, e)),
                    }
                }
                return merged;
            }
        }
        out
    }
}

/// Adds consumer `key` (named `name`, asking for `meta`) to subscription `subscription`'s
/// assignment, which its first consumer (`first`) sets up; a refusal becomes the error the
/// broker answers (`ConsumerBusy` or `ConsumerAssignError`). Persistent and non-persistent
/// subscriptions both join through here.
pub fn join(
    selector: &mut Option<Selector>,
    first: bool,
    subscription: &str,
    key: ConsumerKey,
    name: &str,
    meta: Option<&KeySharedMeta>,
) -> crate::error::Result<()> {
    if first {
        *selector = None; // a subscription that was idle takes its next consumer's mode
    }
    let s = selector.get_or_insert_with(|| Selector::new(meta));
    s.add(key, name, meta).map_err(|refusal| {
        let why = format!("subscription {subscription}: {}", refusal.reason());
        match refusal {
            Refusal::Busy(_) => crate::error::BrokerError::ConsumerBusy(why),
            Refusal::Assign(_) => crate::error::BrokerError::ConsumerAssign(why),
        }
    })
}

/// The `keySharedMeta` of a STICKY consumer owning `ranges` (inclusive).
pub fn sticky_meta(ranges: &[(i32, i32)], out_of_order: Option<bool>) -> KeySharedMeta {
    KeySharedMeta {
        key_shared_mode: KeySharedMode::Sticky as i32,
        hash_ranges: ranges
            .iter()
            .map(|&(start, end)| crate::protocol::pb::IntRange { start, end })
            .collect(),
        allow_out_of_order_delivery: out_of_order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky(ranges: &[(i32, i32)]) -> KeySharedMeta {
        sticky_meta(ranges, None)
    }

    #[test]
    fn auto_split_covers_every_hash_and_moves_little_on_join() {
        let mut s = Selector::new(None);
        assert_eq!(s.select(5), None, "no consumer");
        s.add((1, 1), "a", None).unwrap();
        s.add((1, 2), "b", None).unwrap();
        let before: Vec<_> = (0..RANGE)
            .step_by(7)
            .map(|h| s.select(h).unwrap())
            .collect();
        let share_a = before.iter().filter(|k| **k == (1, 1)).count() as f64 / before.len() as f64;
        assert!((0.25..0.75).contains(&share_a), "roughly even: {share_a}");
        s.add((1, 3), "c", None).unwrap();
        let after: Vec<_> = (0..RANGE)
            .step_by(7)
            .map(|h| s.select(h).unwrap())
            .collect();
        // Only hashes taken by the newcomer changed owner.
        for (b, a) in before.iter().zip(&after) {
            assert!(b == a || *a == (1, 3));
        }
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(moved < after.len() / 2, "moved {moved} of {}", after.len());
        s.remove((1, 3));
        let back: Vec<_> = (0..RANGE)
            .step_by(7)
            .map(|h| s.select(h).unwrap())
            .collect();
        assert_eq!(back, before, "leaving restores the ring");
        // ranges_of partitions the space between the consumers.
        let total: u32 = [(1, 1), (1, 2)]
            .iter()
            .flat_map(|k| s.ranges_of(*k))
            .map(|(a, b)| b - a + 1)
            .sum();
        assert_eq!(total, RANGE);
    }

    #[test]
    fn consumers_of_the_same_name_share_the_keys() {
        let mut s = Selector::new(None);
        s.add((1, 1), "same", None).unwrap();
        s.add((2, 1), "same", None).unwrap();
        let owners: std::collections::HashSet<_> =
            (0..RANGE).step_by(11).filter_map(|h| s.select(h)).collect();
        assert_eq!(owners.len(), 2, "both get keys");
    }

    #[test]
    fn sticky_ranges_are_validated_and_applied() {
        let m = sticky(&[(0, 99), (200, 299)]);
        let mut s = Selector::new(Some(&m));
        s.add((1, 1), "a", Some(&m)).unwrap();
        assert_eq!(s.select(0), Some((1, 1)));
        assert_eq!(s.select(99), Some((1, 1)));
        assert_eq!(s.select(100), None, "not covered");
        assert_eq!(s.select(250), Some((1, 1)));
        // overlapping another consumer's range, inverted, empty, out of bounds, other mode
        let e = s.add((1, 2), "b", Some(&sticky(&[(50, 120)]))).unwrap_err();
        assert!(
            matches!(&e, Refusal::Assign(r) if r.contains("Range conflict")),
            "{e:?}"
        );
        assert!(
            s.add((1, 2), "b", Some(&sticky(&[(300, 200)])))
                .unwrap_err()
                .reason()
                .contains("start > end")
        );
        assert!(
            s.add((1, 2), "b", Some(&sticky(&[])))
                .unwrap_err()
                .reason()
                .contains("must not be empty")
        );
        assert!(
            s.add((1, 2), "b", Some(&sticky(&[(65_000, 65_536)])))
                .is_err()
        );
        assert!(matches!(s.add((1, 2), "b", None), Err(Refusal::Busy(r)) if r.contains("mode")));
        assert!(
            s.add((1, 2), "b", Some(&sticky(&[(100, 110), (105, 120)])))
                .is_err()
        );
        // a refused consumer left nothing behind
        assert_eq!(s.select(105), None);
        s.add((1, 2), "b", Some(&sticky(&[(100, 199)]))).unwrap();
        assert_eq!(s.select(150), Some((1, 2)));
        assert_eq!(s.ranges_of((1, 1)), [(0, 99), (200, 299)]);
        s.remove((1, 1));
        assert_eq!(s.select(0), None);
    }

    #[test]
    fn ordering_flag_must_agree() {
        let ooo = KeySharedMeta {
            key_shared_mode: KeySharedMode::AutoSplit as i32,
            hash_ranges: vec![],
            allow_out_of_order_delivery: Some(true),
        };
        let mut s = Selector::new(Some(&ooo));
        assert!(s.allow_out_of_order());
        s.add((1, 1), "a", Some(&ooo)).unwrap();
        assert!(
            s.add((1, 2), "b", None)
                .unwrap_err()
                .reason()
                .contains("allowOutOfOrderDelivery")
        );
    }

    /// Review finding 11: range checks are O(n log n). 65,536 one-hash ranges for one
    /// consumer, then another asking for the same 65,536, then one asking for more ranges than
    /// there are hashes: each answered at once.
    #[test]
    fn many_sticky_ranges_are_checked_without_quadratic_work() {
        let all: Vec<(i32, i32)> = (0..RANGE as i32).map(|h| (h, h)).collect();
        let m = sticky(&all);
        let mut s = Selector::new(Some(&m));
        s.add((1, 1), "a", Some(&m)).unwrap();
        assert_eq!(s.select(RANGE - 1), Some((1, 1)));
        let e = s.add((1, 2), "b", Some(&m)).unwrap_err();
        assert!(
            matches!(&e, Refusal::Assign(r) if r.contains("Range conflict")),
            "{e:?}"
        );
        let mut too_many = all.clone();
        too_many.push((0, 0));
        let e = s.add((1, 3), "c", Some(&sticky(&too_many))).unwrap_err();
        assert!(
            matches!(&e, Refusal::Assign(r) if r.contains("more than")),
            "{e:?}"
        );
        let mut fresh = Selector::new(Some(&m));
        let e = fresh
            .add((1, 4), "d", Some(&sticky(&[(10, 20), (0, 5), (15, 30)])))
            .unwrap_err();
        assert!(
            matches!(&e, Refusal::Assign(r) if r.contains("own ranges overlap")),
            "{e:?}"
        );
    }
}
