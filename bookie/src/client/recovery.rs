//! Ledger recovery: what a new owner does to an OPEN ledger before trusting its end.
//!
//! 1. CAS the metadata OPEN → IN_RECOVERY (a concurrent recoverer may already have; both go on).
//! 2. Fence the last segment's bookies until the answers cover every write quorum
//!    (Qw − Qa + 1 answers each): from then on the old writer cannot get any entry to Qa.
//! 3. From max(LAC, first entry of the segment − 1), read forward with **fencing** reads
//!    (BookKeeper issue 2614: a bookie that missed the fence must be fenced by the read, or
//!    the old writer can still complete an entry recovery declared absent). An entry is
//!    absent only when Qw − Qa + 1 bookies of its write set say so. Reads are pipelined
//!    ([`READ_AHEAD`] in flight; a bookie fences durably once, later fencing reads are free).
//! 4. Re-add every entry found to its **whole** write set with the recovery flag, one stream
//!    per bookie. A bookie that fails is replaced as in an ensemble change (a new segment from
//!    the first re-added entry, CAS), and the re-adds go again; with no spare bookie, entries
//!    that reached Qa are kept and the ledger is left under-replicated (logged and counted).
//! 5. CAS the metadata CLOSED at the last entry found. Concurrent recoverers converge: the
//!    loser of the final CAS finds the ledger CLOSED and takes that result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::LedgerId;
use futures_util::stream::{FuturesUnordered, StreamExt};
use meta::{LedgerStore, MetaError, Version};
use proto::bookie::{AddBatch, AddRequest, FenceRequest, StatusCode};
use proto::meta::{LedgerMetadata, LedgerState};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::bookies::Bookies;
use super::distribution::{
    EntryVerdict, absent_threshold, covered, entry_verdict, replace_in_segments,
};
use super::error::{ClientError, Result};
use super::reader::{ReplicaRead, read_from, replicas};
use crate::entry::Entry;

/// Recovery reads in flight at once.
const READ_AHEAD: usize = 64;

/// Inputs of one recovery.
pub(super) struct Recovery<'a> {
    pub id: LedgerId,
    pub ledgers: &'a LedgerStore,
    pub bookies: &'a Arc<Bookies>,
    pub master_key: Bytes,
    pub timeout: Duration,
    /// Other replicas are read too when the first has not answered by then.
    pub speculative: Duration,
}

impl Recovery<'_> {
    /// Runs recovery; returns the CLOSED metadata.
    pub async fn run(&self) -> Result<LedgerMetadata> {
        let (mut meta, mut version) = self.ledgers.get(self.id).await.map_err(|e| match e {
            MetaError::NotFound { .. } => ClientError::NoSuchLedger(self.id),
            e => e.into(),
        })?;
        if meta.state == LedgerState::Closed as i32 {
            return Ok(meta);
        }
        if meta.state == LedgerState::Open as i32 {
            let mut next = meta.clone();
            next.state = LedgerState::InRecovery as i32;
            match self.ledgers.update(self.id, next.clone(), version).await {
                Ok(v) => (meta, version) = (next, v),
                Err(MetaError::BadVersion { .. }) => return Box::pin(self.run()).await,
                Err(e) => return Err(e.into()),
            }
        }
        let lac = self.fence(&meta).await?;
        let first = meta.segments.last().map_or(0, |s| s.first_entry_id as i64);
        let start = lac.max(first - 1);
        let mut length = if start >= 0 {
            self.read_one(&meta, start as u64)
                .await?
                .map_or(0, |e| e.length)
        } else {
            0
        };
        let found = self.read_tail(&meta, (start + 1) as u64).await?;
        let last = start + found.len() as i64;
        if let Some(e) = found.last() {
            length = e.length;
            match self.re_add_all(meta, version, &found).await? {
                Some((m, v)) => (meta, version) = (m, v),
                // Another recoverer closed it meanwhile: its result stands.
                None => return Ok(self.ledgers.get(self.id).await?.0),
            }
        }
        tracing::info!(ledger = %self.id, lac, last_entry = last, recovered = found.len(), "ledger recovered");
        self.close(meta, version, last, length).await
    }

    /// Reads forward from `from` until the first absent entry, [`READ_AHEAD`] reads in flight.
    async fn read_tail(&self, meta: &LedgerMetadata, from: u64) -> Result<Vec<Entry>> {
        let mut reads = futures_util::stream::iter(from..)
            .map(|e| self.read_one(meta, e))
            .buffered(READ_AHEAD);
        let mut found = Vec::new();
        while let Some(r) = reads.next().await {
            match r? {
                Some(e) => found.push(e),
                None => break,
            }
        }
        Ok(found)
    }

    /// Fences every bookie of the last segment; returns the highest LAC among the answers once
    /// they cover every write quorum.
    async fn fence(&self, meta: &LedgerMetadata) -> Result<i64> {
        let seg = meta
            .segments
            .last()
            .ok_or(ClientError::NoSuchLedger(self.id))?;
        let mut tries: FuturesUnordered<_> =
            seg.bookies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let (bookies, key, id, timeout) = (
                        self.bookies.clone(),
                        self.master_key.clone(),
                        self.id,
                        self.timeout,
                    );
                    let b = b.clone();
                    async move {
                        let res = async {
                            let req = FenceRequest {
                                ledger_id: id.0,
                                master_key: key,
                            };
                            let r =
                                bookies
                                    .call(&b, timeout, "fence", |mut c| async move {
                                        c.fence(req).await
                                    })
                                    .await?;
                            match r.status() {
                                StatusCode::Ok => Ok(r.lac),
                                StatusCode::Unauthorized => Err(ClientError::Unauthorized(id)),
                                s => Err(ClientError::Bookie {
                                    bookie: b.clone(),
                                    status: s,
                                    message: r.message,
                                }),
                            }
                        }
                        .await;
                        (i, res)
                    }
                })
                .collect();
        let mut answered = vec![false; seg.bookies.len()];
        let mut lac = -1;
        while let Some((i, res)) = tries.next().await {
            match res {
                Ok(l) => {
                    answered[i] = true;
                    lac = lac.max(l);
                    if covered(
                        &answered,
                        meta.write_quorum as usize,
                        meta.ack_quorum as usize,
                    ) {
                        return Ok(lac);
                    }
                }
                Err(ClientError::Unauthorized(id)) => return Err(ClientError::Unauthorized(id)),
                Err(e) => tracing::warn!(ledger = %self.id, error = %e, "fence failed on a bookie"),
            }
        }
        Err(ClientError::NotEnoughBookies {
            needed: meta.ensemble_size as usize,
            available: answered.iter().filter(|a| **a).count(),
        })
    }

    /// Reads `entry` with fencing reads from its whole write set: `Some` if any bookie has it,
    /// `None` once enough bookies say it is absent, an error if neither can be decided.
    async fn read_one(&self, meta: &LedgerMetadata, entry: u64) -> Result<Option<Entry>> {
        let mut reps = replicas(meta, entry);
        let need_absent = absent_threshold(meta.write_quorum as usize, meta.ack_quorum as usize);
        let (qw, qa) = (meta.write_quorum as usize, meta.ack_quorum as usize);
        let (mut absent, mut failed) = (0, 0);
        let mut tally = |r: ReplicaRead| -> Option<Result<Option<Entry>>> {
            match r {
                ReplicaRead::Found(e, _) => return Some(Ok(Some(e))),
                ReplicaRead::Absent => absent += 1,
                ReplicaRead::Failed(m) => {
                    failed += 1;
                    tracing::warn!(ledger = %self.id, entry, error = m, "recovery read failed on a bookie");
                }
            }
            match entry_verdict(0, absent, failed, qw, qa) {
                EntryVerdict::Absent => Some(Ok(None)),
                EntryVerdict::Unknown => Some(Err(ClientError::Timeout(format!(
                    "recovery could not decide entry {}:{entry}: {absent} of {need_absent} needed bookies answered",
                    self.id
                )))),
                EntryVerdict::Found | EntryVerdict::Undecided => None,
            }
        };
        // One replica first (rotating, to spread the load): one copy decides an entry that
        // exists, which is every entry of the tail but the last. The others are asked when it
        // lacks the entry or fails — absence needs Qw − Qa + 1 fenced answers — or when it has
        // not answered within the speculative delay (a slow or paused bookie).
        if reps.is_empty() {
            return Ok(None);
        }
        let first = reps.remove(entry as usize % reps.len());
        let read = |b: String| async move {
            read_from(
                self.bookies,
                &b,
                self.id,
                entry,
                Some(&self.master_key),
                self.timeout,
            )
            .await
        };
        let mut tries = FuturesUnordered::new();
        tries.push(read(first));
        let mut rest = reps;
        let speculate = tokio::time::sleep(self.speculative);
        tokio::pin!(speculate);
        loop {
            tokio::select! {
                r = tries.next() => {
                    let Some(r) = r else { break };
                    if let Some(verdict) = tally(r) {
                        return verdict;
                    }
                    tries.extend(rest.drain(..).map(read));
                }
                () = &mut speculate, if !rest.is_empty() => {
                    tries.extend(rest.drain(..).map(read));
                }
            }
        }
        Err(ClientError::Timeout(format!(
            "recovery could not decide entry {}:{entry}: {absent} of {need_absent} needed bookies answered",
            self.id
        )))
    }

    /// Re-adds `entries` (consecutive, all in the last segment) to their whole write sets,
    /// replacing bookies that fail. Returns the metadata it ends with, or `None` if the
    /// ledger was closed by someone else meanwhile.
    async fn re_add_all(
        &self,
        mut meta: LedgerMetadata,
        mut version: Version,
        entries: &[Entry],
    ) -> Result<Option<(LedgerMetadata, Version)>> {
        let first = entries[0].entry.0;
        let rounds = meta.ensemble_size as usize + 3;
        for round in 0..rounds {
            // Which entries each bookie must hold under the current metadata.
            let mut per_bookie: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, e) in entries.iter().enumerate() {
                for b in replicas(&meta, e.entry.0) {
                    per_bookie.entry(b).or_default().push(i);
                }
            }
            let mut sends: FuturesUnordered<_> = per_bookie
                .into_iter()
                .map(|(b, idx)| async move {
                    let ok = self.add_to(&b, entries, &idx).await;
                    (b, idx, ok)
                })
                .collect();
            let mut acks = vec![0usize; entries.len()];
            let mut failed = Vec::new();
            while let Some((b, idx, ok)) = sends.next().await {
                match ok {
                    Ok(()) => idx.iter().for_each(|&i| acks[i] += 1),
                    Err(e) => {
                        tracing::warn!(ledger = %self.id, bookie = b, error = %e, "recovery re-add failed on a bookie");
                        failed.push(b);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(Some((meta, version)));
            }
            // Replace every failed bookie by a writable one outside the ensemble.
            let ensemble = meta
                .segments
                .last()
                .map(|s| s.bookies.clone())
                .unwrap_or_default();
            let mut spare: Vec<String> = self
                .bookies
                .writable()
                .await?
                .into_iter()
                .filter(|b| !ensemble.contains(b))
                .collect();
            let mut next = meta.clone();
            let mut replaced = 0;
            for b in &failed {
                let (Some(index), Some(replacement)) =
                    (ensemble.iter().position(|x| x == b), spare.pop())
                else {
                    continue;
                };
                next.segments = replace_in_segments(&next.segments, first, index, &replacement);
                tracing::info!(ledger = %self.id, failed = b, replacement, first_entry = first, "ensemble changed during recovery");
                replaced += 1;
            }
            if replaced < failed.len() {
                let qa = meta.ack_quorum as usize;
                if replaced == 0 && acks.iter().all(|a| *a >= qa) {
                    // No spare bookie: keep what reached the ack quorum. The missing copies
                    // show in `magnetar ledgers under-replicated` and are repaired from there.
                    tracing::warn!(ledger = %self.id, bookies = ?failed, "no spare bookie: recovered entries are under-replicated");
                    metrics::counter!("ledger_recovered_under_replicated_total").increment(1);
                    return Ok(Some((meta, version)));
                }
                if replaced == 0 {
                    // No spare, and not even Qa copies: the failure may be passing (a busy
                    // bookie, a dropped stream). Send again to the same bookies, a few times.
                    if round + 1 < rounds {
                        tracing::warn!(ledger = %self.id, bookies = ?failed, round, "recovery re-adds failed with no spare bookie; trying again");
                        tokio::time::sleep(Duration::from_millis(200) * (round as u32 + 1)).await;
                        continue;
                    }
                    return Err(ClientError::NotEnoughBookies {
                        needed: meta.write_quorum as usize,
                        available: ensemble.len() - failed.len(),
                    });
                }
            }
            match self.ledgers.update(self.id, next.clone(), version).await {
                Ok(v) => {
                    metrics::counter!("ledger_ensemble_changes_total").increment(1);
                    (meta, version) = (next, v);
                }
                Err(MetaError::BadVersion { .. }) => {
                    let (m, v) = self.ledgers.get(self.id).await?;
                    if m.state == LedgerState::Closed as i32 {
                        return Ok(None);
                    }
                    (meta, version) = (m, v);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::NotEnoughBookies {
            needed: meta.write_quorum as usize,
            available: 0,
        })
    }

    /// Sends `entries[idx]` to bookie `b` on one add stream with the recovery flag; `Ok` once
    /// every one of them is acknowledged.
    async fn add_to(&self, b: &str, entries: &[Entry], idx: &[usize]) -> Result<()> {
        let mut c = self.bookies.client(b).await?;
        let (tx, rx) = mpsc::channel(16);
        let requests: Vec<AddRequest> = idx
            .iter()
            .map(|&i| AddRequest {
                request_id: i as u64,
                entry: Some(entries[i].to_proto()),
                master_key: self.master_key.clone(),
                recovery: true,
            })
            .collect();
        let feed = async move {
            for chunk in requests.chunks(256) {
                let batch = AddBatch {
                    requests: chunk.to_vec(),
                };
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        };
        let collect = async {
            let mut s = c.add_entries(ReceiverStream::new(rx)).await?.into_inner();
            let mut acked = 0usize;
            while let Some(batch) = s.message().await? {
                for r in batch.responses {
                    if r.status() != StatusCode::Ok {
                        return Ok(Err(format!("{:?}: {}", r.status(), r.message)));
                    }
                    acked += 1;
                }
                if acked == idx.len() {
                    return Ok(Ok(()));
                }
            }
            Ok::<_, tonic::Status>(Err(format!(
                "stream ended after {acked} of {} acks",
                idx.len()
            )))
        };
        // Bounded: the call timeout, plus time for the volume.
        let limit = self.timeout + Duration::from_millis(idx.len() as u64 / 10);
        let res = tokio::time::timeout(limit, async { tokio::join!(feed, collect).1 }).await;
        let message = match res {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(m))) => m,
            Ok(Err(status)) => {
                self.bookies.forget(b);
                status.to_string()
            }
            Err(_) => {
                self.bookies.forget(b);
                "timed out".into()
            }
        };
        Err(ClientError::Bookie {
            bookie: b.to_owned(),
            status: StatusCode::Io,
            message,
        })
    }

    async fn close(
        &self,
        mut meta: LedgerMetadata,
        mut version: Version,
        last: i64,
        length: u64,
    ) -> Result<LedgerMetadata> {
        loop {
            let mut next = meta.clone();
            next.state = LedgerState::Closed as i32;
            next.last_entry_id = last;
            next.length = length;
            match self.ledgers.update(self.id, next.clone(), version).await {
                Ok(_) => return Ok(next),
                Err(MetaError::BadVersion { .. }) => {
                    let (m, v) = self.ledgers.get(self.id).await?;
                    if m.state == LedgerState::Closed as i32 {
                        // Another recoverer finished first; its result stands.
                        return Ok(m);
                    }
                    (meta, version) = (m, v);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
