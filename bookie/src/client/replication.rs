//! Re-replication: copying every fragment that had a copy on one bookie to other bookies,
//! then pointing the ledger metadata at the new copies — the safe way to retire a bookie
//! (`magnetar ledgers decommission`).
//!
//! A fragment is a segment's entries whose write set includes the retired position. For each
//! one: choose a writable bookie not in that segment, read each entry from its other
//! replicas (checksums verified), write it to the new bookie with the recovery flag, then CAS
//! the segment's bookie list. The last segment of an OPEN ledger is still being written; it
//! is left for its writer's ensemble change (or `recover`) and reported as pending.

use bytes::Bytes;
use common::LedgerId;
use meta::MetaError;
use proto::bookie::{AddBatch, AddRequest, StatusCode};
use proto::meta::LedgerState;
use rand::seq::IndexedRandom;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::distribution::write_set;
use super::error::{ClientError, Result};
use super::{LedgerClient, LedgerReader, master_key};

/// What a re-replication pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplicationReport {
    /// Ledgers whose metadata no longer names the bookie.
    pub moved: Vec<LedgerId>,
    /// Entries copied.
    pub entries_copied: u64,
    /// OPEN ledgers still writing to the bookie in their last segment.
    pub pending: Vec<LedgerId>,
}

impl LedgerClient {
    /// Moves every fragment stored on `bookie` to other bookies (ledgers with `password`).
    pub async fn replicate_off(&self, bookie: &str, password: &[u8]) -> Result<ReplicationReport> {
        let mut report = ReplicationReport::default();
        let mut after = None;
        loop {
            let (ids, more) = self.ledgers().list(after, 500).await?;
            after = ids.last().copied();
            for id in ids {
                self.replicate_ledger(id, bookie, password, &mut report)
                    .await?;
            }
            if !more || after.is_none() {
                return Ok(report);
            }
        }
    }

    async fn replicate_ledger(
        &self,
        id: LedgerId,
        bookie: &str,
        password: &[u8],
        report: &mut ReplicationReport,
    ) -> Result<()> {
        let key = master_key(password);
        loop {
            let (mut meta, version) = match self.ledgers().get(id).await {
                Ok(x) => x,
                Err(MetaError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let open = meta.state != LedgerState::Closed as i32;
            let n = meta.segments.len();
            let mut copied_any = false;
            let mut pending = false;
            for k in 0..n {
                let Some(pos) = meta.segments[k].bookies.iter().position(|b| b == bookie) else {
                    continue;
                };
                if open && k + 1 == n {
                    pending = true;
                    continue;
                }
                let first = meta.segments[k].first_entry_id;
                let end = match meta.segments.get(k + 1) {
                    Some(next) => next.first_entry_id as i64 - 1,
                    None => meta.last_entry_id,
                };
                let writable = self.bookies.writable().await?;
                let candidates: Vec<&String> = writable
                    .iter()
                    .filter(|b| !meta.segments[k].bookies.contains(b))
                    .collect();
                let replacement = (*candidates.choose(&mut rand::rng()).ok_or(
                    ClientError::NotEnoughBookies {
                        needed: meta.ensemble_size as usize + 1,
                        available: writable.len(),
                    },
                )?)
                .clone();
                let reader = LedgerReader::new(
                    id,
                    meta.clone(),
                    self.bookies.clone(),
                    self.config.read_timeout,
                    self.config.speculative_read_delay,
                );
                let entries: Vec<u64> = (first as i64..=end)
                    .map(|e| e as u64)
                    .filter(|e| {
                        write_set(*e, meta.ensemble_size as usize, meta.write_quorum as usize)
                            .contains(&pos)
                    })
                    .collect();
                report.entries_copied += self
                    .copy_entries(&reader, &entries, bookie, &replacement, key.clone())
                    .await?;
                meta.segments[k].bookies[pos] = replacement;
                copied_any = true;
            }
            if !copied_any {
                if pending {
                    report.pending.push(id);
                }
                return Ok(());
            }
            match self.ledgers().update(id, meta, version).await {
                Ok(_) => {
                    tracing::info!(ledger = %id, bookie, "fragments re-replicated");
                    if pending {
                        report.pending.push(id);
                    } else {
                        report.moved.push(id);
                    }
                    return Ok(());
                }
                // Changed meanwhile (a writer's ensemble change, a close): copy again.
                Err(MetaError::BadVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn copy_entries(
        &self,
        reader: &LedgerReader,
        entries: &[u64],
        from: &str,
        to: &str,
        key: Bytes,
    ) -> Result<u64> {
        let mut client = self.bookies.client(to).await?;
        let (tx, rx) = mpsc::channel::<AddBatch>(4);
        let mut responses = client
            .add_entries(ReceiverStream::new(rx))
            .await
            .map_err(|s| ClientError::Bookie {
                bookie: to.to_owned(),
                status: StatusCode::Io,
                message: s.to_string(),
            })?
            .into_inner();
        let copier = {
            let reader = reader.clone();
            let entries = entries.to_vec();
            let from = from.to_owned();
            tokio::spawn(async move {
                for chunk in entries.chunks(64) {
                    let mut requests = Vec::with_capacity(chunk.len());
                    for &e in chunk {
                        let entry = reader.read_avoiding(e, Some(&from)).await?;
                        requests.push(AddRequest {
                            request_id: e,
                            entry: Some(entry.to_proto()),
                            master_key: key.clone(),
                            recovery: true,
                        });
                    }
                    if tx.send(AddBatch { requests }).await.is_err() {
                        break;
                    }
                }
                Ok::<_, ClientError>(())
            })
        };
        let mut copied = 0u64;
        while copied < entries.len() as u64 {
            let batch = match responses.message().await {
                Ok(Some(b)) => b,
                other => {
                    copier.abort();
                    return Err(ClientError::Bookie {
                        bookie: to.to_owned(),
                        status: StatusCode::Io,
                        message: format!("add stream ended: {other:?}"),
                    });
                }
            };
            for r in batch.responses {
                if r.status() != StatusCode::Ok {
                    copier.abort();
                    return Err(ClientError::Bookie {
                        bookie: to.to_owned(),
                        status: r.status(),
                        message: r.message,
                    });
                }
                copied += 1;
            }
        }
        copier
            .await
            .map_err(|e| ClientError::Invalid(e.to_string()))??;
        Ok(copied)
    }

    /// Retires a bookie: re-replicates its fragments, then deletes its cookie so its id can be
    /// reused with fresh disks. An open ledger's last fragment cannot be copied while its
    /// writer may still add to it: with `wait = Some(grace)` the call waits for the writer to
    /// move off (an ensemble change on its next add), and a ledger still open on the bookie
    /// after `grace` is recovered — fenced and closed at its true end, as BookKeeper's
    /// replication worker does after `openLedgerRereplicationGracePeriod` — so that an idle
    /// writer cannot hold the decommission forever (its next add fails as fenced, and a
    /// managed ledger rolls over to a new ledger). `None`: one pass, open ledgers reported.
    pub async fn decommission(
        &self,
        bookie: &str,
        password: &[u8],
        wait: Option<std::time::Duration>,
    ) -> Result<ReplicationReport> {
        let mut total = ReplicationReport::default();
        let mut first_seen: std::collections::HashMap<LedgerId, tokio::time::Instant> =
            Default::default();
        loop {
            let r = self.replicate_off(bookie, password).await?;
            total.moved.extend(r.moved);
            total.entries_copied += r.entries_copied;
            let Some(grace) = wait.filter(|_| !r.pending.is_empty()) else {
                total.pending = r.pending;
                break;
            };
            let now = tokio::time::Instant::now();
            first_seen.retain(|id, _| r.pending.contains(id));
            for id in &r.pending {
                let since = *first_seen.entry(*id).or_insert(now);
                if now.duration_since(since) >= grace {
                    tracing::info!(bookie, ledger = %id, "open ledger still on the bookie after the grace period: recovering it");
                    if let Err(e) = self.recover(*id, password).await {
                        // deleted meanwhile (its topic went): nothing left to move
                        match self.ledgers().get(*id).await {
                            Err(MetaError::NotFound { .. }) => {}
                            _ => return Err(e),
                        }
                    }
                    first_seen.remove(id);
                }
            }
            tracing::info!(
                bookie,
                pending = r.pending.len(),
                "waiting for open ledgers to leave the bookie"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        if total.pending.is_empty() {
            let id =
                common::BookieId::new(bookie).map_err(|e| ClientError::Invalid(e.to_string()))?;
            match self.registry().delete_cookie(&id, None).await {
                Ok(()) | Err(MetaError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(total)
    }
}
