//! SEND: verify the payload's checksum, append it to the topic's managed ledger as is, and
//! reply SEND_RECEIPT with `ledger:entry` once it is durable at Qa — in send order per
//! producer (a receipt task per producer awaits appends in order).

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use common::{EntryId, LedgerId, Position};
use tokio::sync::mpsc;

use crate::connection::Connection;
use crate::error::{BrokerError, Result};
use crate::managed_ledger::DurableHook;
use crate::protocol::cmd;
use crate::protocol::frame::{encode, inspect_payload};
use crate::protocol::pb::CommandSend;
use crate::topic::dedup::Verdict;

/// The smallest broker-wide publish buffer: room for the largest frame a client may send,
/// so a single SEND can always take its share.
pub const MIN_PUBLISH_BUFFER: usize = 16 << 20;

/// What a producer's receipt task answers, in order.
pub enum PendingReceipt {
    /// A send waiting for durability: (sequence id, highest sequence id, append result).
    Send(
        u64,
        u64,
        Pin<Box<dyn Future<Output = Result<Position>> + Send>>,
    ),
    /// CLOSE_PRODUCER: answered (with its request id) after every earlier receipt.
    Close(u64),
}

/// Queues an answer known at once behind the producer's earlier receipts (so it keeps its
/// place among them).
async fn answer_now(
    receipts: &mpsc::Sender<PendingReceipt>,
    sequence_id: u64,
    highest: u64,
    answer: Result<Position>,
) -> Result<()> {
    let ready: Pin<Box<dyn Future<Output = Result<Position>> + Send>> =
        Box::pin(std::future::ready(answer));
    receipts
        .send(PendingReceipt::Send(sequence_id, highest, ready))
        .await
        .map_err(|_| BrokerError::Protocol("producer closed".into()))
}

/// Forgets a send de-duplication counted as pushed that will not be stored.
fn undo_dedup(topic: &crate::topic::Topic, producer: &str) {
    if let Some(d) = topic
        .dedup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        d.failed(producer);
    }
}

/// Handles SEND.
pub async fn handle(conn: &mut Connection, c: CommandSend, payload: Option<Bytes>) -> Result<()> {
    let Some(p) = conn.producers.get(&c.producer_id) else {
        // Pulsar closes the connection on a send for an unknown producer.
        return Err(BrokerError::Protocol(format!(
            "send for unknown producer {}",
            c.producer_id
        )));
    };
    let payload = payload.ok_or_else(|| BrokerError::Protocol("SEND without a payload".into()))?;
    let highest = c.highest_sequence_id.unwrap_or(0).max(c.sequence_id);
    if p.fenced.load(std::sync::atomic::Ordering::SeqCst) {
        let fenced = BrokerError::ProducerFenced(
            "producer fenced by an ExclusiveWithFencing producer".into(),
        );
        return answer_now(&p.receipts, c.sequence_id, highest, Err(fenced)).await;
    }
    let metadata_producer = match inspect_payload(&payload) {
        Ok(info) => info.metadata.producer_name,
        Err(e) => {
            tracing::warn!(producer = p.name, error = %e, "rejecting a corrupt message");
            let rejected = Err(BrokerError::Checksum);
            return answer_now(&p.receipts, c.sequence_id, highest, rejected).await;
        }
    };
    let messages = u64::from(c.num_messages.unwrap_or(1).max(1) as u32);
    let bytes = payload.len() as u64;
    // Backpressure (Pulsar's maxPendingPublishRequestsPerConnection and
    // maxMessagePublishBufferSizeInMB): waiting here stops this connection's reader, so a
    // producer faster than storage is paused at its socket, never buffered without bound.
    // The permits go back once the entry is durable (or failed).
    let permits = {
        let conn_permit = match conn.pending_publish.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("pulsar_broker_publish_throttled_total", "limit" => "connection")
                    .increment(1);
                conn.pending_publish
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| BrokerError::ShuttingDown)?
            }
        };
        let share = payload.len().min(MIN_PUBLISH_BUFFER) as u32;
        let buffer = &conn.service.publish_buffer;
        let bytes_permit = match buffer.clone().try_acquire_many_owned(share) {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("pulsar_broker_publish_throttled_total", "limit" => "buffer")
                    .increment(1);
                buffer
                    .clone()
                    .acquire_many_owned(share)
                    .await
                    .map_err(|_| BrokerError::ShuttingDown)?
            }
        };
        (conn_permit, bytes_permit)
    };
    let Some(p) = conn.producers.get(&c.producer_id) else {
        return Err(BrokerError::Protocol("producer closed".into()));
    };
    let started = std::time::Instant::now();
    let topic = p.topic.clone();
    // De-duplication: judged by the producer's name and the send's sequence ids.
    let mut hook: Option<DurableHook> = None;
    let verdict = topic
        .dedup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .map(|d| d.check(&p.name, c.sequence_id, highest));
    match verdict {
        Some(Verdict::Duplicate) => {
            metrics::counter!("pulsar_broker_deduplicated_messages_total").increment(messages);
            let stored = Ok(Position::new(LedgerId(u64::MAX), EntryId(u64::MAX)));
            return answer_now(&p.receipts, c.sequence_id, highest, stored).await;
        }
        Some(Verdict::InFlight) => {
            let retry = Err(BrokerError::DuplicateInFlight(
                "a duplicate of a message still being persisted; send it again".into(),
            ));
            return answer_now(&p.receipts, c.sequence_id, highest, retry).await;
        }
        Some(Verdict::New) if metadata_producer != p.name => {
            // De-duplication state is rebuilt from the stored entries' metadata: an entry
            // naming another producer would make that producer's later sends look like
            // duplicates after a reload, and be dropped.
            undo_dedup(&topic, &p.name);
            let refused = Err(BrokerError::NotAllowed(format!(
                "the message metadata names producer {:?}, not this producer ({:?})",
                metadata_producer, p.name
            )));
            return answer_now(&p.receipts, c.sequence_id, highest, refused).await;
        }
        Some(Verdict::New) => {
            let (state, name) = (topic.dedup.clone(), p.name.clone());
            let (store, key) = (topic.ml.store().clone(), topic.dedup_key());
            hook = Some(Box::new(move |outcome| {
                let snapshot = {
                    let mut g = state.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(d) = g.as_mut() else { return };
                    match outcome {
                        Ok(at) => {
                            d.persisted(&name, highest, at);
                            d.take_snapshot(false)
                        }
                        Err(()) => {
                            d.failed(&name);
                            None
                        }
                    }
                };
                if let Some(s) = snapshot {
                    tokio::spawn(async move {
                        if let Err(e) = crate::topic::write_dedup_snapshot(&store, &key, s).await {
                            tracing::warn!(key, error = %e, "de-duplication snapshot not written");
                        }
                    });
                }
            }));
        }
        None => {}
    }
    let fut: Pin<Box<dyn Future<Output = Result<Position>> + Send>> =
        // Stored with the broker's time of receipt in front (broker entry metadata): TTL,
        // time-based quotas and seek-by-time go by it, not by the producer's clock. The copy
        // also frees the connection's read buffer, which a cached slice would pin.
        match p
            .topic
            .ml
            .append_with(
                crate::protocol::frame::stamp_entry(&payload, crate::managed_ledger::now_ms()),
                hook,
            )
            .await
        {
            Ok(f) => Box::pin(async move {
                use std::sync::atomic::Ordering::Relaxed;
                let r = f.await;
                drop(permits);
                let latency = started.elapsed().as_secs_f64();
                metrics::histogram!("pulsar_storage_write_latency_seconds").record(latency);
                if r.is_ok() {
                    use crate::topic_metrics::{LATENCY_BOUNDS_MS, SIZE_BOUNDS};
                    topic
                        .write_latency_ms
                        .record(latency * 1000.0, &LATENCY_BOUNDS_MS);
                    topic.entry_size.record(bytes as f64, &SIZE_BOUNDS);
                    metrics::counter!("pulsar_broker_in_messages_total").increment(messages);
                    metrics::counter!("pulsar_broker_in_bytes_total").increment(bytes);
                    crate::stats::IN_MESSAGES.fetch_add(messages, Relaxed);
                    crate::stats::IN_BYTES.fetch_add(bytes, Relaxed);
                    topic.msg_in.fetch_add(messages, Relaxed);
                    topic.bytes_in.fetch_add(bytes, Relaxed);
                }
                r
            }),
            Err(e) => {
                // The hook was dropped unheard: undo the push.
                undo_dedup(&topic, &p.name);
                Box::pin(async move { Err(e) })
            }
        };
    p.receipts
        .send(PendingReceipt::Send(c.sequence_id, highest, fut))
        .await
        .map_err(|_| BrokerError::Protocol("producer closed".into()))
}

/// Sends receipts (or errors) for one producer, in order. A send that failed because its
/// topic was closed under it (unload, handover, lost ownership) gets no error, as in Pulsar:
/// the producer was told to reconnect (CLOSE_PRODUCER) and sends every message without a
/// receipt again to the topic's next owner — an error would make the client give them up.
pub async fn receipts(
    producer_id: u64,
    topic: std::sync::Arc<crate::topic::Topic>,
    mut rx: mpsc::Receiver<PendingReceipt>,
    out: crate::outbound::Outbound,
) {
    while let Some(item) = rx.recv().await {
        let (command, last) = match item {
            PendingReceipt::Send(seq, highest, fut) => match fut.await {
                Ok(pos) => (cmd::send_receipt(producer_id, seq, highest, pos), false),
                Err(BrokerError::ShuttingDown | BrokerError::NotOwner(_)) if topic.is_closed() => {
                    tracing::debug!(
                        producer_id,
                        seq,
                        "send on a closed topic: the client resends it"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(producer_id, seq, error = %e, "send failed");
                    let err = cmd::send_error(producer_id, seq, e.server_error(), e.to_string());
                    (err, false)
                }
            },
            PendingReceipt::Close(request_id) => (cmd::success(request_id), true),
        };
        let mut buf = BytesMut::new();
        encode(&command, &mut buf);
        if out.send(buf.freeze()).await.is_err() || last {
            return;
        }
    }
}
