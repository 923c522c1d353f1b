//! Ledger recovery: what a new owner does to an OPEN ledger before trusting its end.
//!
//! 1. CAS the metadata OPEN → IN_RECOVERY (a concurrent recoverer may already have; both go on).
//! 2. Fence the last segment's bookies until the answers cover every write quorum
//!    (Qw − Qa + 1 answers each): from then on the old writer cannot get any entry to Qa.
//! 3. From max(LAC, first entry of the segment − 1), read forward with **fencing** reads
//!    (BookKeeper issue 2614: a bookie that missed the fence must be fenced by the read, or
//!    the old writer can still complete an entry recovery declared absent). An entry is
//!    absent only when Qw − Qa + 1 bookies of its write set say so.
//! 4. Re-add every entry found to its whole write set with the recovery flag.
//! 5. CAS the metadata CLOSED at the last entry found. Concurrent recoverers converge: the
//!    loser of the final CAS finds the ledger CLOSED and takes that result.

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
use super::distribution::{EntryVerdict, absent_threshold, covered, entry_verdict, write_set};
use super::error::{ClientError, Result};
use super::reader::{ReplicaRead, read_from, replicas};
use crate::entry::Entry;

/// Inputs of one recovery.
pub(super) struct Recovery<'a> {
    pub id: LedgerId,
    pub ledgers: &'a LedgerStore,
    pub bookies: &'a Arc<Bookies>,
    pub master_key: Bytes,
    pub timeout: Duration,
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
        let mut last = start;
        loop {
            let next = (last + 1) as u64;
            match self.read_one(&meta, next).await? {
                Some(e) => {
                    self.re_add(&meta, &e).await?;
                    length = e.length;
                    last = next as i64;
                }
                None => break,
            }
        }
        tracing::info!(ledger = %self.id, lac, last_entry = last, "ledger recovered");
        self.close(meta, version, last, length).await
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
        let reps = replicas(meta, entry);
        let need_absent = absent_threshold(meta.write_quorum as usize, meta.ack_quorum as usize);
        let mut tries: FuturesUnordered<_> = reps
            .iter()
            .map(|b| {
                read_from(
                    self.bookies,
                    b,
                    self.id,
                    entry,
                    Some(&self.master_key),
                    self.timeout,
                )
            })
            .collect();
        let (qw, qa) = (meta.write_quorum as usize, meta.ack_quorum as usize);
        let (mut absent, mut failed) = (0, 0);
        while let Some(r) = tries.next().await {
            match r {
                ReplicaRead::Found(e, _) => return Ok(Some(e)),
                ReplicaRead::Absent => absent += 1,
                ReplicaRead::Failed(m) => {
                    failed += 1;
                    tracing::warn!(ledger = %self.id, entry, error = m, "recovery read failed on a bookie");
                }
            }
            match entry_verdict(0, absent, failed, qw, qa) {
                EntryVerdict::Absent => return Ok(None),
                EntryVerdict::Unknown => break,
                EntryVerdict::Found | EntryVerdict::Undecided => {}
            }
        }
        Err(ClientError::Timeout(format!(
            "recovery could not decide entry {}:{entry}: {absent} of {need_absent} needed bookies answered",
            self.id
        )))
    }

    /// Writes a recovered entry to its whole write set with the recovery flag; needs Qa acks.
    async fn re_add(&self, meta: &LedgerMetadata, e: &Entry) -> Result<()> {
        let seg = meta
            .segments
            .iter()
            .rev()
            .find(|s| s.first_entry_id <= e.entry.0)
            .ok_or(ClientError::NoSuchLedger(self.id))?;
        let ws = write_set(
            e.entry.0,
            meta.ensemble_size as usize,
            meta.write_quorum as usize,
        );
        let mut tries: FuturesUnordered<_> = ws
            .into_iter()
            .map(|i| {
                let (bookies, key, timeout) =
                    (self.bookies.clone(), self.master_key.clone(), self.timeout);
                let b = seg.bookies[i].clone();
                let entry = e.clone();
                async move {
                    let mut c = bookies.client(&b).await?;
                    let (tx, rx) = mpsc::channel(1);
                    let req = AddRequest {
                        request_id: 0,
                        entry: Some(entry.to_proto()),
                        master_key: key,
                        recovery: true,
                    };
                    let _ = tx
                        .send(AddBatch {
                            requests: vec![req],
                        })
                        .await;
                    drop(tx);
                    let call = async {
                        let mut s = c.add_entries(ReceiverStream::new(rx)).await?.into_inner();
                        s.message().await
                    };
                    match tokio::time::timeout(timeout, call).await {
                        Ok(Ok(Some(batch)))
                            if batch
                                .responses
                                .first()
                                .is_some_and(|r| r.status() == StatusCode::Ok) =>
                        {
                            Ok(())
                        }
                        other => Err(ClientError::Bookie {
                            bookie: b,
                            status: StatusCode::Io,
                            message: format!("{other:?}"),
                        }),
                    }
                }
            })
            .collect();
        let mut acks = 0;
        while let Some(r) = tries.next().await {
            match r {
                Ok(()) => {
                    acks += 1;
                    if acks >= meta.ack_quorum as usize {
                        return Ok(());
                    }
                }
                Err(err) => {
                    tracing::warn!(ledger = %self.id, entry = %e.entry, error = %err, "recovery add failed on a bookie")
                }
            }
        }
        Err(ClientError::NotEnoughBookies {
            needed: meta.ack_quorum as usize,
            available: acks,
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
