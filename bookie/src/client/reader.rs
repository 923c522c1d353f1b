//! Reading entries: from the entry's write set, first replica first, with a speculative read
//! to the next replica when the first is slow. Every entry's checksum is verified; a corrupt
//! replica is skipped (and logged), never returned.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::LedgerId;
use futures_util::stream::{FuturesUnordered, StreamExt};
use proto::bookie::{ReadLacRequest, ReadRequest, StatusCode};
use proto::meta::{LedgerMetadata, LedgerState};

use super::bookies::Bookies;
use super::distribution::write_set;
use super::error::{ClientError, Result};
use crate::entry::Entry;

/// What one bookie said about one entry.
#[derive(Debug)]
pub enum ReplicaRead {
    /// It has the entry (checksum verified), and its LAC.
    Found(Entry, i64),
    /// It does not have it (NO_ENTRY or NO_LEDGER): a valid "absent" answer.
    Absent,
    /// It failed, timed out, or returned a corrupt copy.
    Failed(String),
}

/// Reads `entry` of `ledger` from bookie `bookie`, optionally fencing first.
pub async fn read_from(
    bookies: &Bookies,
    bookie: &str,
    ledger: LedgerId,
    entry: u64,
    fence: Option<&Bytes>,
    timeout: Duration,
) -> ReplicaRead {
    let mut client = match bookies.client(bookie).await {
        Ok(c) => c,
        Err(e) => return ReplicaRead::Failed(e.to_string()),
    };
    let req = ReadRequest {
        ledger_id: ledger.0,
        entry_id: entry,
        fence: fence.is_some(),
        master_key: fence.cloned().unwrap_or_default(),
    };
    let resp = match tokio::time::timeout(timeout, client.read_entry(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            bookies.forget(bookie);
            return ReplicaRead::Failed(s.to_string());
        }
        Err(_) => return ReplicaRead::Failed("timed out".into()),
    };
    match resp.status() {
        StatusCode::Ok => match resp.entry.map(Entry::from_proto) {
            Some(e) if e.verify() && e.ledger == ledger && e.entry.0 == entry => {
                ReplicaRead::Found(e, resp.lac)
            }
            _ => {
                tracing::error!(%ledger, entry, bookie, "bookie returned a corrupt copy of an entry");
                metrics::counter!("ledger_corrupt_reads_total").increment(1);
                ReplicaRead::Failed("corrupt copy".into())
            }
        },
        StatusCode::NoEntry | StatusCode::NoLedger => ReplicaRead::Absent,
        other => ReplicaRead::Failed(format!("{other:?}: {}", resp.message)),
    }
}

/// Read access to one ledger.
#[derive(Debug, Clone)]
pub struct LedgerReader {
    id: LedgerId,
    meta: LedgerMetadata,
    bookies: Arc<Bookies>,
    timeout: Duration,
    speculative: Duration,
}

/// The bookie ids of the write set of `entry` under `meta`.
pub fn replicas(meta: &LedgerMetadata, entry: u64) -> Vec<String> {
    let Some(seg) = meta
        .segments
        .iter()
        .rev()
        .find(|s| s.first_entry_id <= entry)
    else {
        return Vec::new();
    };
    write_set(
        entry,
        meta.ensemble_size as usize,
        meta.write_quorum as usize,
    )
    .into_iter()
    .filter_map(|i| seg.bookies.get(i).cloned())
    .collect()
}

impl LedgerReader {
    pub(super) fn new(
        id: LedgerId,
        meta: LedgerMetadata,
        bookies: Arc<Bookies>,
        timeout: Duration,
        speculative: Duration,
    ) -> Self {
        LedgerReader {
            id,
            meta,
            bookies,
            timeout,
            speculative,
        }
    }

    /// The metadata the reader was opened with.
    pub fn metadata(&self) -> &LedgerMetadata {
        &self.meta
    }

    /// Last confirmed entry: the last entry if the ledger is closed, else the highest LAC any
    /// bookie of the last segment reports (-1: none).
    pub async fn last_confirmed(&self) -> Result<i64> {
        if self.meta.state == LedgerState::Closed as i32 {
            return Ok(self.meta.last_entry_id);
        }
        let seg = self
            .meta
            .segments
            .last()
            .ok_or(ClientError::NoSuchLedger(self.id))?;
        let mut lac = (seg.first_entry_id as i64) - 1;
        for b in &seg.bookies {
            let Ok(mut c) = self.bookies.client(b).await else {
                continue;
            };
            let req = ReadLacRequest {
                ledger_id: self.id.0,
                previous_lac: -1,
                timeout_ms: 0,
            };
            if let Ok(Ok(r)) = tokio::time::timeout(self.timeout, c.read_lac(req)).await {
                let r = r.into_inner();
                if r.status() == StatusCode::Ok {
                    lac = lac.max(r.lac);
                }
            }
        }
        Ok(lac)
    }

    /// Reads one entry from its write set: the first replica, then (after the speculative
    /// delay, or at once on failure) the next, until one returns a valid copy.
    pub async fn read(&self, entry: u64) -> Result<Entry> {
        self.read_avoiding(entry, None).await
    }

    /// Like [`LedgerReader::read`], never asking bookie `avoid` (one being decommissioned).
    pub async fn read_avoiding(&self, entry: u64, avoid: Option<&str>) -> Result<Entry> {
        let mut replicas = replicas(&self.meta, entry);
        replicas.retain(|b| Some(b.as_str()) != avoid);
        if replicas.is_empty() {
            return Err(ClientError::NoSuchEntry {
                ledger: self.id,
                entry,
            });
        }
        let attempt = |b: String| {
            let bookies = self.bookies.clone();
            let (id, timeout) = (self.id, self.timeout);
            async move {
                let r = read_from(&bookies, &b, id, entry, None, timeout).await;
                (b, r)
            }
        };
        let mut tries = FuturesUnordered::new();
        let mut next = 0;
        let (mut absent, mut corrupt, mut errors) = (0, 0, Vec::new());
        loop {
            if next < replicas.len() && (tries.is_empty() || next == 0) {
                tries.push(attempt(replicas[next].clone()));
                next += 1;
            }
            let outcome = tokio::select! {
                r = tries.next() => r,
                () = tokio::time::sleep(self.speculative), if next < replicas.len() => {
                    tries.push(attempt(replicas[next].clone()));
                    next += 1;
                    continue;
                }
            };
            match outcome {
                Some((_, ReplicaRead::Found(e, _))) => return Ok(e),
                Some((_, ReplicaRead::Absent)) => absent += 1,
                Some((b, ReplicaRead::Failed(m))) => {
                    if m == "corrupt copy" {
                        corrupt += 1;
                    }
                    errors.push(format!("{b}: {m}"));
                }
                None => {
                    return Err(if absent == replicas.len() {
                        ClientError::NoSuchEntry {
                            ledger: self.id,
                            entry,
                        }
                    } else if corrupt > 0 && corrupt + absent == replicas.len() {
                        ClientError::Corrupt {
                            ledger: self.id,
                            entry,
                        }
                    } else {
                        ClientError::Timeout(format!(
                            "no replica of {}:{entry} answered: {}",
                            self.id,
                            errors.join("; ")
                        ))
                    });
                }
            }
        }
    }
}
