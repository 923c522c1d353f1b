//! Topic compaction, as Pulsar's two-phase compactor: phase one reads the topic up to a
//! horizon (its last entry when compaction starts) and finds each key's latest message;
//! phase two writes to a new ledger every entry that still matters — keyless messages and
//! each key's latest, unless that is a tombstone (`null_value`) — with batches rewritten
//! without their superseded messages (a compressed batch is kept or dropped whole: the
//! broker carries no codecs). Each compacted entry is stored as its original position
//! (16 bytes) then the payload, so readers get the original message ids. The ledger and
//! horizon are recorded at `managed-ledgers/<topic>/compaction` (format 1, by CAS; the
//! previous compacted ledger is deleted once the new record stands).
//!
//! Consumers and readers that ask for `read_compacted` read the compacted ledger up to the
//! horizon, then the topic after it ([`CompactedView`]); trimming never passes the horizon.

use std::sync::Arc;

use bookie::client::{LedgerClient, LedgerReader};
use bytes::{BufMut, Bytes, BytesMut};
use common::{EntryId, LedgerId, Position};
use meta::records::{decode, encode};
use prost::Message as _;
use proto::meta::{CompactionInfo, PositionInfo};

use super::Topic;
use crate::error::{BrokerError, Result};
use crate::protocol::frame::{build_payload, inspect_entry};
use crate::protocol::pb::{CompressionType, SingleMessageMetadata};

/// What `GET …/compaction` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Status {
    /// Never asked on this broker since the topic loaded.
    #[default]
    NotRun,
    /// Under way.
    Running,
    /// The last run finished.
    Success,
    /// The last run failed, with why.
    Error(String),
}

impl Status {
    /// Pulsar's LongRunningProcessStatus JSON.
    pub fn json(&self) -> serde_json::Value {
        let (status, error) = match self {
            Status::NotRun => ("NOT_RUN", ""),
            Status::Running => ("RUNNING", ""),
            Status::Success => ("SUCCESS", ""),
            Status::Error(e) => ("ERROR", e.as_str()),
        };
        serde_json::json!({ "status": status, "lastError": error })
    }
}

/// The compacted state readers use: the horizon and, in order, the original positions of the
/// compacted ledger's entries.
pub struct CompactedView {
    /// Everything up to here is in the compacted ledger.
    pub horizon: Position,
    ledger: LedgerId,
    positions: Vec<Position>,
    reader: LedgerReader,
}

impl std::fmt::Debug for CompactedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactedView")
            .field("horizon", &self.horizon)
            .field("ledger", &self.ledger)
            .field("entries", &self.positions.len())
            .finish()
    }
}

impl CompactedView {
    /// The first compacted position after `p` (`None`: from the start), if any.
    pub fn next_after(&self, p: Option<Position>) -> Option<Position> {
        let i = match p {
            None => 0,
            Some(p) => self.positions.partition_point(|q| *q <= p),
        };
        self.positions.get(i).copied()
    }

    /// The payload of the compacted entry at original position `p`, if it is one.
    pub async fn read(&self, p: Position) -> Result<Option<Bytes>> {
        let Ok(i) = self.positions.binary_search(&p) else {
            return Ok(None);
        };
        let entry = self.reader.read(i as u64).await?;
        Ok(Some(entry.payload.slice(16..)))
    }
}

fn position_of(entry: &[u8]) -> Option<Position> {
    let l = u64::from_be_bytes(entry.get(..8)?.try_into().ok()?);
    let e = u64::from_be_bytes(entry.get(8..16)?.try_into().ok()?);
    Some(Position::new(LedgerId(l), EntryId(e)))
}

fn info_position(p: &PositionInfo) -> Position {
    Position::new(LedgerId(p.ledger_id), EntryId(p.entry_id))
}

/// Loads the topic's compacted view, if it was compacted.
pub async fn load(topic: &Topic, client: &LedgerClient) -> Result<Option<Arc<CompactedView>>> {
    let key = topic.keys.compaction(&topic.name);
    let Some(kv) = topic.ml.store().get(&key).await? else {
        return Ok(None);
    };
    let info: CompactionInfo = decode(&key, &kv.value)?;
    let Some(horizon) = info.horizon.as_ref().map(info_position) else {
        return Ok(None);
    };
    let ledger = LedgerId(info.ledger_id);
    let reader = client.open_reader(ledger).await?;
    let mut positions = Vec::with_capacity(info.entries as usize);
    for i in 0..info.entries {
        let entry = reader.read(i).await?;
        let p = position_of(&entry.payload).ok_or_else(|| {
            BrokerError::Protocol(format!("compacted ledger {ledger} entry {i} is malformed"))
        })?;
        positions.push(p);
    }
    Ok(Some(Arc::new(CompactedView {
        horizon,
        ledger,
        positions,
        reader,
    })))
}

/// A message's identity for compaction: its key (`None`: keyless, always kept) and whether
/// it is a tombstone.
type Keyed = (Option<String>, bool);

/// The messages of an entry: one for a plain entry, one per message of a batch.
fn messages_of(payload: &[u8]) -> Result<(Vec<Keyed>, Option<Vec<SingleMessageMetadata>>)> {
    let info = inspect_entry(payload)
        .map_err(|e| BrokerError::Protocol(format!("stored entry unreadable: {e}")))?;
    let m = &info.metadata;
    // A compressed batch is one message for compaction: kept or dropped whole by its key.
    let Some(n) = m
        .num_messages_in_batch
        .filter(|_| m.compression() == CompressionType::None)
    else {
        return Ok((vec![(m.partition_key.clone(), m.null_value())], None));
    };
    let singles: Vec<SingleMessageMetadata> = split_batch(&payload[info.body_offset..], n)?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let keys = singles
        .iter()
        .map(|s| (s.partition_key.clone(), s.null_value()))
        .collect();
    Ok((keys, Some(singles)))
}

/// The messages of an uncompressed batch body: each one's metadata and payload. The count
/// and sizes come from the producer and are not trusted: no more messages than the body can
/// hold (4 bytes of size each at least), and a size that runs past the body ends the batch
/// there (what a client would read of it).
fn split_batch(mut body: &[u8], declared: i32) -> Result<Vec<(SingleMessageMetadata, &[u8])>> {
    let n = usize::try_from(declared).unwrap_or(0);
    let mut out = Vec::with_capacity(n.min(body.len() / 4));
    for _ in 0..n {
        let Some((size, rest)) = body.split_first_chunk::<4>() else {
            break;
        };
        let size = u32::from_be_bytes(*size) as usize;
        let Some(meta) = rest.get(..size) else { break };
        let s = SingleMessageMetadata::decode(meta)
            .map_err(|e| BrokerError::Protocol(format!("batch message unreadable: {e}")))?;
        let len = usize::try_from(s.payload_size).unwrap_or(0);
        let Some(data) = rest[size..].get(..len) else {
            break;
        };
        body = &rest[size + len..];
        out.push((s, data));
    }
    Ok(out)
}

/// Fuzz entry (`fuzz_targets`): parses `payload` as compaction does, and rewrites it.
#[cfg(test)]
pub(crate) fn fuzz_batch(payload: &[u8]) {
    if let Ok((keys, _)) = messages_of(payload) {
        let keep: Vec<bool> = (0..keys.len()).map(|i| i % 2 == 0).collect();
        let _ = rewrite_batch(payload, &keep);
    }
}

/// A batch entry with the messages not in `keep` marked `compacted_out`.
fn rewrite_batch(payload: &[u8], keep: &[bool]) -> Result<Bytes> {
    let info = inspect_entry(payload)
        .map_err(|e| BrokerError::Protocol(format!("stored entry unreadable: {e}")))?;
    let declared = info.metadata.num_messages_in_batch.unwrap_or(1);
    let messages = split_batch(&payload[info.body_offset..], declared)?;
    let mut out = BytesMut::new();
    for ((s, data), kept) in messages.iter().zip(keep) {
        // A superseded message is left out (Pulsar's compactor leaves an empty slot marked
        // `compacted_out`, which the C++ client delivers as an empty message). The kept
        // ones' batch indexes are their indexes in this batch, for compacted readers only.
        if !kept {
            continue;
        }
        let meta = s.encode_to_vec();
        out.put_u32(meta.len() as u32);
        out.put_slice(&meta);
        out.put_slice(data);
    }
    let mut metadata = info.metadata;
    metadata.uncompressed_size = Some(out.len() as u32);
    metadata.num_messages_in_batch =
        Some(messages.iter().zip(keep).filter(|(_, k)| **k).count() as i32);
    Ok(build_payload(&metadata, &out))
}

/// Compacts `topic` up to its current last entry.
pub async fn compact(
    topic: &Topic,
    client: &LedgerClient,
    quorums: (usize, usize, usize),
) -> Result<()> {
    let ml = &topic.ml;
    let Some(horizon) = ml.last_position() else {
        return Ok(()); // nothing to compact
    };
    // Phase one: each key's latest message (position, index in its batch, tombstone).
    let mut latest: std::collections::HashMap<String, (Position, usize, bool)> = Default::default();
    let mut p = ml.first_position();
    while let Some(pos) = p.filter(|p| *p <= horizon) {
        let payload = ml.read(pos).await?;
        let (keys, _) = messages_of(&payload)?;
        for (i, (key, null)) in keys.into_iter().enumerate() {
            if let Some(k) = key {
                latest.insert(k, (pos, i, null));
            }
        }
        p = ml.next_position(Some(pos));
    }
    // Phase two: what still matters, into a new ledger.
    let writer = client
        .create(crate::managed_ledger::topic_ledger_options(
            quorums,
            "compacted-ledger",
            &topic.name,
        ))
        .await?;
    let ledger = writer.id();
    let mut written = 0u64;
    let mut p = ml.first_position();
    while let Some(pos) = p.filter(|p| *p <= horizon) {
        let payload = ml.read(pos).await?;
        let (keys, batch) = messages_of(&payload)?;
        let keep: Vec<bool> = keys
            .iter()
            .enumerate()
            .map(|(i, (key, _))| match key {
                None => true,
                Some(k) => {
                    matches!(latest.get(k), Some((lp, li, null)) if *lp == pos && *li == i && !null)
                }
            })
            .collect();
        let stored = if keep.iter().all(|k| !k) {
            None
        } else if keep.iter().all(|k| *k) || batch.is_none() {
            Some(payload)
        } else {
            Some(rewrite_batch(&payload, &keep)?)
        };
        if let Some(data) = stored {
            let mut entry = BytesMut::with_capacity(16 + data.len());
            entry.put_u64(pos.ledger.0);
            entry.put_u64(pos.entry.0);
            entry.put_slice(&data);
            writer.add(entry.freeze()).await?;
            written += 1;
        }
        p = ml.next_position(Some(pos));
    }
    writer.close().await?;
    // Record it; the previous compacted ledger goes.
    let key = topic.keys.compaction(&topic.name);
    let store = ml.store();
    let (previous, cond) = match store.get(&key).await? {
        Some(kv) => (
            Some(decode::<CompactionInfo>(&key, &kv.value)?.ledger_id),
            meta::PutCondition::Version(kv.version),
        ),
        None => (None, meta::PutCondition::Absent),
    };
    let mut info = CompactionInfo {
        ledger_id: ledger.0,
        horizon: Some(PositionInfo {
            ledger_id: horizon.ledger.0,
            entry_id: horizon.entry.0,
        }),
        entries: written,
        ..Default::default()
    };
    if let Err(e) = meta::cas::put_checked(store.as_ref(), &key, encode(&mut info), cond).await {
        // Another compaction recorded meanwhile (or the answer was lost): this ledger is
        // not referred to; the record stands as the store has it.
        let _ = client.delete(ledger).await;
        return Err(e.into());
    }
    if let Some(old) = previous.filter(|old| *old != ledger.0)
        && let Err(e) = client.delete(LedgerId(old)).await
    {
        tracing::warn!(topic = topic.name, ledger = old, error = %e, "cannot delete the previous compacted ledger");
    }
    tracing::info!(topic = topic.name, %horizon, kept = written, keys = latest.len(), "topic compacted");
    Ok(())
}

/// Deletes a topic's compaction record and ledger (with the topic).
pub async fn delete(topic: &Topic, client: &LedgerClient) -> Result<()> {
    let key = topic.keys.compaction(&topic.name);
    let store = topic.ml.store();
    if let Some(kv) = store.get(&key).await? {
        let info: CompactionInfo = decode(&key, &kv.value)?;
        match client.delete(LedgerId(info.ledger_id)).await {
            Ok(()) | Err(bookie::client::ClientError::NoSuchLedger(_)) => {}
            Err(e) => return Err(e.into()),
        }
        store.delete(&key, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::pb::MessageMetadata;

    fn batch(keys: &[&str]) -> Bytes {
        let mut body = BytesMut::new();
        for k in keys {
            let s = SingleMessageMetadata {
                partition_key: Some((*k).to_owned()),
                payload_size: 1,
                ..Default::default()
            };
            let m = s.encode_to_vec();
            body.put_u32(m.len() as u32);
            body.put_slice(&m);
            body.put_slice(b"v");
        }
        build_payload(
            &MessageMetadata {
                producer_name: "p".into(),
                num_messages_in_batch: Some(keys.len() as i32),
                ..Default::default()
            },
            &body,
        )
    }

    #[test]
    fn batches_lose_their_superseded_messages() {
        let b = batch(&["a", "b", "c"]);
        let names = |keys: Vec<Keyed>| {
            keys.into_iter()
                .map(|(k, _)| k.unwrap())
                .collect::<Vec<_>>()
        };
        let (keys, singles) = messages_of(&b).unwrap();
        assert_eq!(names(keys), ["a", "b", "c"]);
        assert!(singles.is_some());
        let rewritten = rewrite_batch(&b, &[true, false, true]).unwrap();
        let (keys, singles) = messages_of(&rewritten).unwrap();
        assert_eq!(names(keys), ["a", "c"]);
        assert_eq!(singles.unwrap().len(), 2);
        assert_eq!(
            position_of(&[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 3]),
            Some(Position::new(LedgerId(7), EntryId(3)))
        );
    }

    /// Review finding 9: a producer's batch count and sizes are not trusted. A count of
    /// i32::MAX used to reserve ~250 GB (an abort); sizes past the body used to panic.
    #[test]
    fn lying_batch_counts_and_sizes_are_survived() {
        let lie = |n: i32, body: &[u8]| {
            build_payload(
                &MessageMetadata {
                    producer_name: "p".into(),
                    num_messages_in_batch: Some(n),
                    ..Default::default()
                },
                body,
            )
        };
        let (keys, _) = messages_of(&lie(i32::MAX, b"short")).unwrap();
        assert!(keys.is_empty());
        let (keys, _) = messages_of(&lie(-5, b"")).unwrap();
        assert!(keys.is_empty());
        // A size past the end: the batch ends there, and rewriting it does not panic.
        let mut body = BytesMut::new();
        body.put_u32(1_000_000);
        body.put_slice(b"xx");
        let p = lie(3, &body);
        assert!(messages_of(&p).unwrap().0.is_empty());
        assert!(rewrite_batch(&p, &[true, true, true]).is_ok());
    }

    proptest::proptest! {
        /// Any body, any declared count: parsing and rewriting return, never panic, and
        /// agree on the number of messages.
        #[test]
        fn batch_parsing_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), n in proptest::prelude::any::<i32>()) {
            let p = build_payload(
                &MessageMetadata { producer_name: "p".into(), num_messages_in_batch: Some(n), ..Default::default() },
                &body,
            );
            if let Ok((keys, _)) = messages_of(&p) {
                let keep = vec![true; keys.len()];
                let rewritten = rewrite_batch(&p, &keep).unwrap();
                let (again, _) = messages_of(&rewritten).unwrap();
                proptest::prop_assert_eq!(again.len(), keys.len());
            }
        }
    }
}
