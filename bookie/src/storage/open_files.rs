//! Which ledger data files stay open: least recently used first out, within a budget of open
//! files (file descriptors) and of index entries held in memory. Pure bookkeeping; the
//! storage closes the victims it names (skipping any that is busy or not yet fsynced).

use std::collections::HashMap;

use common::LedgerId;

/// The budget and what is open.
#[derive(Debug)]
pub struct OpenFiles {
    max_files: usize,
    max_entries: usize,
    tick: u64,
    /// ledger → (last use, index entries)
    open: HashMap<LedgerId, (u64, usize)>,
    entries: usize,
}

impl OpenFiles {
    /// At most `max_files` open files and `max_entries` index entries (the file in use is
    /// never closed, even if it alone exceeds the entry budget).
    pub fn new(max_files: usize, max_entries: usize) -> Self {
        OpenFiles {
            max_files: max_files.max(1),
            max_entries,
            tick: 0,
            open: HashMap::new(),
            entries: 0,
        }
    }

    /// Records a use of `id`'s file, now holding `entries` index entries; returns the files to
    /// close, least recently used first.
    pub fn touch(&mut self, id: LedgerId, entries: usize) -> Vec<LedgerId> {
        self.tick += 1;
        if let Some((_, old)) = self.open.insert(id, (self.tick, entries)) {
            self.entries -= old;
        }
        self.entries += entries;
        if self.open.len() <= self.max_files && self.entries <= self.max_entries {
            return Vec::new();
        }
        let mut others: Vec<(u64, LedgerId)> = self
            .open
            .iter()
            .filter(|(l, _)| **l != id)
            .map(|(l, (t, _))| (*t, *l))
            .collect();
        others.sort_unstable();
        let mut victims = Vec::new();
        for (_, l) in others {
            if self.open.len() <= self.max_files && self.entries <= self.max_entries {
                break;
            }
            self.forget(l);
            victims.push(l);
        }
        victims
    }

    /// `id`'s file was closed (or its ledger deleted).
    pub fn forget(&mut self, id: LedgerId) {
        if let Some((_, n)) = self.open.remove(&id) {
            self.entries -= n;
        }
    }

    /// Files counted as open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no file is counted as open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Index entries counted.
    pub fn entries(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_files_go_first() {
        let mut o = OpenFiles::new(2, 1000);
        assert!(o.touch(LedgerId(1), 10).is_empty());
        assert!(o.touch(LedgerId(2), 10).is_empty());
        assert!(o.touch(LedgerId(1), 10).is_empty()); // 2 is now the oldest
        assert_eq!(o.touch(LedgerId(3), 10), vec![LedgerId(2)]);
        assert_eq!(o.len(), 2);
        o.forget(LedgerId(1));
        assert_eq!((o.len(), o.entries()), (1, 10));
    }

    #[test]
    fn the_entry_budget_closes_files_too_but_never_the_one_in_use() {
        let mut o = OpenFiles::new(100, 50);
        o.touch(LedgerId(1), 30);
        assert_eq!(o.touch(LedgerId(2), 30), vec![LedgerId(1)]);
        assert!(
            o.touch(LedgerId(2), 500).is_empty(),
            "alone over budget, still kept"
        );
        assert_eq!(o.entries(), 500);
        assert_eq!(o.touch(LedgerId(3), 1), vec![LedgerId(2)]);
    }
}
