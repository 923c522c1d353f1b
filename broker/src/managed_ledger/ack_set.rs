//! `AckSet`: acknowledged positions after a cursor's mark-delete, kept as runs of consecutive
//! entries per ledger — memory grows with the number of gaps, not of acknowledged messages,
//! and a stored cursor loads run by run, never entry by entry.

use std::collections::BTreeMap;

use common::{EntryId, LedgerId, Position};

/// A set of positions as disjoint, non-adjacent runs: (ledger, first entry) → last entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckSet {
    runs: BTreeMap<(u64, u64), u64>,
}

impl AckSet {
    /// Whether `p` is in the set.
    pub fn contains(&self, p: Position) -> bool {
        self.runs
            .range(..=(p.ledger.0, p.entry.0))
            .next_back()
            .is_some_and(|((l, _), last)| *l == p.ledger.0 && p.entry.0 <= *last)
    }

    /// Adds the run `first..=last` of `ledger`, merging with touching runs.
    pub fn insert_run(&mut self, ledger: u64, first: u64, last: u64) {
        let (mut first, mut last) = (first.min(last), first.max(last));
        // A run that starts at or before `first` and reaches it (or touches it) absorbs it.
        if let Some((&(l, f), &e)) = self.runs.range(..=(ledger, first)).next_back()
            && l == ledger
            && e.saturating_add(1) >= first
        {
            self.runs.remove(&(l, f));
            first = f;
            last = last.max(e);
        }
        // Runs that start inside (or right after) the new one are absorbed.
        let absorbed: Vec<(u64, u64)> = self
            .runs
            .range((ledger, first)..=(ledger, last.saturating_add(1)))
            .map(|(k, _)| *k)
            .collect();
        for k in absorbed {
            if let Some(e) = self.runs.remove(&k) {
                last = last.max(e);
            }
        }
        self.runs.insert((ledger, first), last);
    }

    /// Adds one position.
    pub fn insert(&mut self, p: Position) {
        self.insert_run(p.ledger.0, p.entry.0, p.entry.0);
    }

    /// Removes `p` if it is the first position of a run; returns whether it was.
    pub fn take_first_of_run(&mut self, p: Position) -> bool {
        match self.runs.remove(&(p.ledger.0, p.entry.0)) {
            Some(last) => {
                if last > p.entry.0 {
                    self.runs.insert((p.ledger.0, p.entry.0 + 1), last);
                }
                true
            }
            None => false,
        }
    }

    /// Removes every position at or before `p`.
    pub fn remove_through(&mut self, p: Position) {
        let mut keep = self
            .runs
            .split_off(&(p.ledger.0, p.entry.0.saturating_add(1)));
        if p.entry.0 == u64::MAX {
            keep = keep.split_off(&(p.ledger.0.saturating_add(1), 0));
        }
        // A run starting at or before `p` may reach past it.
        if let Some((&(l, _), &last)) = self.runs.iter().next_back()
            && l == p.ledger.0
            && last > p.entry.0
        {
            keep.insert((l, p.entry.0 + 1), last);
        }
        self.runs = keep;
    }

    /// The runs, in order: (ledger, first entry, last entry).
    pub fn runs(&self) -> impl Iterator<Item = (LedgerId, EntryId, EntryId)> + '_ {
        self.runs
            .iter()
            .map(|((l, f), e)| (LedgerId(*l), EntryId(*f), EntryId(*e)))
    }

    /// How many runs (the size of the persisted cursor grows with this).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The `n`-th position (1-based) after `after` that is not in the set, among the entries
    /// of `ledgers` ((ledger, entries), in order): what peek, skip and examine count, as
    /// Pulsar's cursor does with individually deleted entries excluded. Works run by run, so
    /// a skip over millions of entries costs one step per ledger and per acknowledged run.
    pub fn nth_absent(
        &self,
        ledgers: &[(LedgerId, u64)],
        after: Option<Position>,
        mut n: u64,
    ) -> Option<Position> {
        if n == 0 {
            return None;
        }
        for &(ledger, entries) in ledgers {
            let mut cur = match after {
                Some(a) if ledger < a.ledger => continue,
                Some(a) if ledger == a.ledger => a.entry.0.saturating_add(1),
                _ => 0,
            };
            let runs = self
                .runs
                .range((ledger.0, 0)..=(ledger.0, u64::MAX))
                .map(|((_, f), e)| (*f, *e));
            for (first, last) in runs.chain(std::iter::once((entries, u64::MAX))) {
                if last < cur {
                    continue;
                }
                let gap = first.min(entries).saturating_sub(cur);
                if n <= gap {
                    return Some(Position::new(ledger, EntryId(cur + n - 1)));
                }
                n -= gap;
                cur = cur.max(last.saturating_add(1));
                if cur >= entries {
                    break;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn p(l: u64, e: u64) -> Position {
        Position::new(LedgerId(l), EntryId(e))
    }

    #[test]
    fn runs_merge_and_split() {
        let mut s = AckSet::default();
        for e in [3, 5, 4, 9, 1] {
            s.insert(p(1, e));
        }
        s.insert(p(2, 0));
        let runs: Vec<_> = s.runs().map(|(l, f, e)| (l.0, f.0, e.0)).collect();
        assert_eq!(runs, vec![(1, 1, 1), (1, 3, 5), (1, 9, 9), (2, 0, 0)]);
        assert!(s.take_first_of_run(p(1, 3)));
        assert!(!s.take_first_of_run(p(1, 5)));
        assert!(s.contains(p(1, 5)) && !s.contains(p(1, 3)));
        s.remove_through(p(1, 4));
        let runs: Vec<_> = s.runs().map(|(l, f, e)| (l.0, f.0, e.0)).collect();
        assert_eq!(runs, vec![(1, 5, 5), (1, 9, 9), (2, 0, 0)]);
        s.remove_through(p(1, u64::MAX));
        assert_eq!(s.run_count(), 1);
        // A run of a hundred million entries is one run.
        s.insert_run(3, 0, 99_999_999);
        assert_eq!(s.run_count(), 2);
        assert!(s.contains(p(3, 50_000_000)));
    }

    proptest! {
        /// `nth_absent` counts the positions a walk entry by entry would count.
        #[test]
        fn nth_absent_matches_a_walk(
            acked in proptest::collection::vec((0u64..3, 0u64..12), 0..30),
            sizes in proptest::collection::vec(0u64..12, 3),
            after in proptest::option::of((0u64..3, 0u64..12)),
            n in 0u64..40,
        ) {
            let mut s = AckSet::default();
            for (l, e) in &acked { s.insert(p(*l, *e)); }
            let ledgers: Vec<(LedgerId, u64)> =
                sizes.iter().enumerate().map(|(l, n)| (LedgerId(l as u64), *n)).collect();
            let after = after.map(|(l, e)| p(l, e));
            let walk = ledgers
                .iter()
                .flat_map(|(l, size)| (0..*size).map(move |e| p(l.0, e)))
                .filter(|x| after.is_none_or(|a| *x > a) && !s.contains(*x))
                .nth((n as usize).wrapping_sub(1));
            let expected = if n == 0 { None } else { walk };
            prop_assert_eq!(s.nth_absent(&ledgers, after, n), expected);
        }

        /// Behaves as a set of positions, whatever the order of operations.
        #[test]
        fn matches_a_plain_set(ops in proptest::collection::vec((0u8..3, 0u64..3, 0u64..40), 1..200)) {
            let mut s = AckSet::default();
            let mut model = BTreeSet::new();
            for (op, l, e) in ops {
                match op {
                    0 => { s.insert(p(l, e)); model.insert(p(l, e)); }
                    1 => { s.remove_through(p(l, e)); model.retain(|x| *x > p(l, e)); }
                    _ => {
                        let first = model.contains(&p(l, e)) && (e == 0 || !model.contains(&p(l, e - 1)));
                        prop_assert_eq!(s.take_first_of_run(p(l, e)), first);
                        if first { model.remove(&p(l, e)); }
                    }
                }
                for l in 0..3 { for e in 0..42 {
                    prop_assert_eq!(s.contains(p(l, e)), model.contains(&p(l, e)));
                }}
            }
        }
    }
}
