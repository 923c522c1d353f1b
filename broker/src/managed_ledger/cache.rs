//! A bounded cache of recently written entries, so tailing consumers are served from memory.

use std::collections::BTreeMap;

use bytes::Bytes;
use common::Position;

/// Entries by position, evicting the oldest past the byte budget.
#[derive(Debug)]
pub struct EntryCache {
    entries: BTreeMap<Position, Bytes>,
    bytes: usize,
    max_bytes: usize,
}

impl EntryCache {
    /// An empty cache of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        EntryCache {
            entries: BTreeMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds an entry, evicting the oldest ones if over budget.
    pub fn insert(&mut self, p: Position, payload: Bytes) {
        self.bytes += payload.len();
        if let Some(old) = self.entries.insert(p, payload) {
            self.bytes -= old.len();
        }
        while self.bytes > self.max_bytes {
            let Some((_, old)) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= old.len();
        }
    }

    /// A cached entry.
    pub fn get(&self, p: Position) -> Option<Bytes> {
        self.entries.get(&p).cloned()
    }
}

#[cfg(test)]
mod tests {
    use common::{EntryId, LedgerId};

    use super::*;

    #[test]
    fn evicts_oldest_past_budget() {
        let mut c = EntryCache::new(10);
        let p = |e| Position::new(LedgerId(1), EntryId(e));
        c.insert(p(0), Bytes::from_static(b"12345"));
        c.insert(p(1), Bytes::from_static(b"12345"));
        c.insert(p(2), Bytes::from_static(b"12345"));
        assert!(c.get(p(0)).is_none());
        assert!(c.get(p(2)).is_some());
    }
}
