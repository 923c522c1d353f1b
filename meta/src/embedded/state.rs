//! The embedded store's in-memory state and its pure transition rules: validation of
//! compares, application of ops at a revision, lease bookkeeping and watch history.
//! No I/O here; `mod.rs` decides when a change is durable enough to apply.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{MetaError, Result};
use crate::store::{
    Compare, EventKind, Expect, KeyValue, LeaseId, RangePage, Revision, TxnOp, Version, WatchEvent,
};

/// A stored key.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub value: Bytes,
    pub mod_revision: u64,
    pub create_revision: u64,
    pub lease: Option<LeaseId>,
}

/// A live lease.
#[derive(Debug)]
pub(super) struct LeaseState {
    pub ttl: Duration,
    pub deadline: Instant,
    pub keys: BTreeSet<String>,
}

/// Everything the store knows, guarded by one mutex held only briefly.
#[derive(Debug)]
pub(super) struct State {
    pub kvs: BTreeMap<String, Entry>,
    pub revision: u64,
    pub leases: HashMap<i64, LeaseState>,
    /// Recent events in revision order, for watches that start in the past.
    history: VecDeque<WatchEvent>,
    /// History up to and including this revision is gone.
    pub compacted: u64,
    history_limit: usize,
}

impl State {
    pub fn new(history_limit: usize) -> Self {
        State {
            kvs: BTreeMap::new(),
            revision: 0,
            leases: HashMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            history_limit: history_limit.max(1),
        }
    }

    pub fn kv(&self, key: &str) -> Option<KeyValue> {
        self.kvs.get(key).map(|e| to_kv(key, e))
    }

    /// Fails with the error for the first compare that does not hold.
    pub fn check(&self, compares: &[Compare]) -> Result<()> {
        for c in compares {
            let current = self.kvs.get(&c.key).map(|e| e.mod_revision);
            match (c.expect, current) {
                (Expect::Absent, None) => {}
                (Expect::Absent, Some(_)) => {
                    return Err(MetaError::AlreadyExists { key: c.key.clone() });
                }
                (Expect::Version(v), Some(cur)) if cur == v.0 => {}
                (Expect::Version(v), _) => {
                    return Err(MetaError::BadVersion {
                        key: c.key.clone(),
                        expected: v.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Fails with `LeaseExpired` if an op binds a key to a lease that is gone.
    pub fn check_leases(&self, ops: &[TxnOp], now: Instant) -> Result<()> {
        for op in ops {
            if let TxnOp::Put {
                lease: Some(lease), ..
            } = op
            {
                match self.leases.get(&lease.0) {
                    Some(l) if l.deadline > now => {}
                    _ => return Err(MetaError::LeaseExpired { lease: *lease }),
                }
            }
        }
        Ok(())
    }

    /// Applies `ops` at `revision` (the next one) and records their watch events.
    pub fn apply(&mut self, revision: u64, ops: &[TxnOp]) {
        debug_assert!(revision > self.revision);
        self.revision = revision;
        for op in ops {
            let event = match op {
                TxnOp::Put { key, value, lease } => {
                    let create_revision = self.kvs.get(key).map_or(revision, |e| e.create_revision);
                    let entry = Entry {
                        value: value.clone(),
                        mod_revision: revision,
                        create_revision,
                        lease: *lease,
                    };
                    if let Some(old) = self.kvs.insert(key.clone(), entry.clone()) {
                        self.unbind(key, old.lease);
                    }
                    if let Some(l) = lease.and_then(|l| self.leases.get_mut(&l.0)) {
                        l.keys.insert(key.clone());
                    }
                    WatchEvent {
                        kind: EventKind::Put,
                        kv: to_kv(key, &entry),
                    }
                }
                TxnOp::Delete { key } => {
                    let Some(old) = self.kvs.remove(key) else {
                        continue;
                    };
                    self.unbind(key, old.lease);
                    WatchEvent {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: key.clone(),
                            value: Bytes::new(),
                            version: Version(revision),
                            create_revision: Revision(old.create_revision),
                            lease: None,
                        },
                    }
                }
            };
            self.history.push_back(event);
        }
        self.trim_history();
    }

    /// Applies a replayed mutation from the log. Lease-bound keys do not survive a restart
    /// (their owner died with the process), so a lease-bound put removes the key.
    pub fn replay(&mut self, revision: u64, ops: &[TxnOp]) -> Result<()> {
        if revision <= self.revision {
            return Err(MetaError::Corrupt {
                location: "embedded metadata log".into(),
                reason: format!(
                    "revision {revision} follows {} (revisions must increase)",
                    self.revision
                ),
            });
        }
        self.revision = revision;
        for op in ops {
            match op {
                TxnOp::Put {
                    lease: Some(_),
                    key,
                    ..
                }
                | TxnOp::Delete { key } => {
                    self.kvs.remove(key);
                }
                TxnOp::Put {
                    key,
                    value,
                    lease: None,
                } => {
                    let create_revision = self.kvs.get(key).map_or(revision, |e| e.create_revision);
                    self.kvs.insert(
                        key.clone(),
                        Entry {
                            value: value.clone(),
                            mod_revision: revision,
                            create_revision,
                            lease: None,
                        },
                    );
                }
            }
        }
        self.compacted = self.revision;
        Ok(())
    }

    /// Replaces the whole key space with a snapshot's.
    pub fn restore(&mut self, revision: u64, kvs: BTreeMap<String, Entry>) {
        self.kvs = kvs;
        self.revision = revision;
        self.compacted = revision;
    }

    fn unbind(&mut self, key: &str, lease: Option<LeaseId>) {
        if let Some(l) = lease.and_then(|l| self.leases.get_mut(&l.0)) {
            l.keys.remove(key);
        }
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            let rev = self.history[0].kv.version.0;
            while self.history.front().is_some_and(|e| e.kv.version.0 == rev) {
                self.history.pop_front();
            }
            self.compacted = self.compacted.max(rev);
        }
    }

    /// Drops watch history up to `revision`.
    pub fn compact(&mut self, revision: u64) -> Result<()> {
        if revision > self.revision {
            return Err(MetaError::Invalid(format!(
                "cannot compact to revision {revision}: the store is at {}",
                self.revision
            )));
        }
        while self
            .history
            .front()
            .is_some_and(|e| e.kv.version.0 <= revision)
        {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
        Ok(())
    }

    /// Events under `prefix` from revision `from` on, and the revision to ask from next time.
    pub fn events_since(&self, from: u64, prefix: &str) -> Result<(Vec<WatchEvent>, u64)> {
        if from <= self.compacted {
            return Err(MetaError::Compacted {
                requested: Revision(from),
                compacted: Revision(self.compacted),
            });
        }
        let start = self.history.partition_point(|e| e.kv.version.0 < from);
        let events = self
            .history
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok((events, self.revision + 1))
    }

    pub fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> RangePage {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut kvs: Vec<KeyValue> = self
            .kvs
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit + 1)
            .map(|(k, e)| to_kv(k, e))
            .collect();
        let more = kvs.len() > limit;
        kvs.truncate(limit);
        RangePage {
            kvs,
            more,
            revision: Revision(self.revision),
        }
    }

    /// Leases whose deadline has passed.
    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        self.leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

fn to_kv(key: &str, e: &Entry) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: e.value.clone(),
        version: Version(e.mod_revision),
        create_revision: Revision(e.create_revision),
        lease: e.lease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, v: &'static str) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: Bytes::from_static(v.as_bytes()),
            lease: None,
        }
    }

    #[test]
    fn history_trims_whole_revisions() {
        let mut st = State::new(3);
        st.apply(1, &[put("a", "1"), put("b", "1")]);
        st.apply(2, &[put("a", "2"), put("b", "2")]);
        assert_eq!(st.compacted, 1);
        assert!(matches!(
            st.events_since(1, ""),
            Err(MetaError::Compacted { .. })
        ));
        let (events, next) = st.events_since(2, "").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(next, 3);
    }

    #[test]
    fn compares() {
        let mut st = State::new(10);
        st.apply(1, &[put("a", "1")]);
        let absent = |k: &str| Compare {
            key: k.into(),
            expect: Expect::Absent,
        };
        assert!(st.check(&[absent("b")]).is_ok());
        assert!(matches!(
            st.check(&[absent("a")]),
            Err(MetaError::AlreadyExists { .. })
        ));
        let at = |k: &str, v| Compare {
            key: k.into(),
            expect: Expect::Version(Version(v)),
        };
        assert!(st.check(&[at("a", 1)]).is_ok());
        assert!(matches!(
            st.check(&[at("a", 2)]),
            Err(MetaError::BadVersion { .. })
        ));
        assert!(matches!(
            st.check(&[at("b", 1)]),
            Err(MetaError::BadVersion { .. })
        ));
    }

    #[test]
    fn replay_drops_lease_bound_keys() {
        let mut st = State::new(10);
        st.replay(1, &[put("a", "1"), put("b", "1")]).unwrap();
        st.replay(
            2,
            &[TxnOp::Put {
                key: "b".into(),
                value: Bytes::new(),
                lease: Some(LeaseId(7)),
            }],
        )
        .unwrap();
        assert!(st.kv("a").is_some());
        assert!(st.kv("b").is_none());
        assert!(st.replay(2, &[]).is_err(), "revisions must increase");
    }
}
