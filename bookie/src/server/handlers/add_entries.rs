//! `AddEntries`: a bidirectional stream of add batches. One task per stream keeps every add
//! of the stream in flight at once (up to a bound) and sends responses back in batches as
//! adds become durable — a journal group commit completes many adds at once, so their
//! responses share one message. When the bound is reached the stream is not read further,
//! and HTTP/2 flow control pushes back on the writer.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use proto::bookie::{AddBatch, AddBatchResponse, AddRequest, AddResponse, StatusCode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::engine::{AddItem, Engine};
use crate::entry::Entry;

/// Adds in flight per stream before the stream stops being read.
const MAX_IN_FLIGHT: usize = 8192;

/// Starts serving one add stream.
pub fn handle(
    engine: Arc<Engine>,
    mut requests: Streaming<AddBatch>,
) -> ReceiverStream<Result<AddBatchResponse, Status>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let metrics = AddMetrics::new();
        let mut in_flight = FuturesUnordered::new();
        let mut pending = 0usize;
        let mut reading = true;
        loop {
            tokio::select! {
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut responses: Vec<AddResponse> = first;
                    while let Some(Some(more)) = in_flight.next().now_or_never() {
                        responses.extend(more);
                    }
                    pending -= responses.len();
                    if tx.send(Ok(AddBatchResponse { responses })).await.is_err() {
                        return;
                    }
                }
                msg = requests.message(), if reading && pending < MAX_IN_FLIGHT => {
                    match msg {
                        Ok(Some(batch)) if !batch.requests.is_empty() => {
                            pending += batch.requests.len();
                            let (engine, metrics) = (engine.clone(), metrics.clone());
                            in_flight.push(async move { add_batch(&engine, batch.requests, &metrics).await });
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => reading = false,
                        Err(status) => {
                            tracing::debug!(%status, "add stream ended with an error");
                            reading = false;
                        }
                    }
                }
                else => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Metric handles resolved once per stream, not per add.
#[derive(Clone)]
struct AddMetrics {
    ok: metrics::Histogram,
    failed: metrics::Histogram,
    /// BookKeeper's names (milliseconds, exported as summaries with `quantile` labels), which
    /// the Pulsar / BookKeeper dashboards read.
    bk_ok: metrics::Histogram,
    bk_failed: metrics::Histogram,
    bytes: metrics::Counter,
    in_flight: metrics::Gauge,
}

impl AddMetrics {
    fn new() -> Self {
        AddMetrics {
            ok: metrics::histogram!("bookie_add_seconds", "status" => "OK"),
            failed: metrics::histogram!("bookie_add_seconds", "status" => "FAILED"),
            bk_ok: metrics::histogram!("bookkeeper_server_ADD_ENTRY_REQUEST", "success" => "true"),
            bk_failed: metrics::histogram!("bookkeeper_server_ADD_ENTRY_REQUEST", "success" => "false"),
            bytes: metrics::counter!("bookie_add_bytes_total"),
            in_flight: metrics::gauge!("bookie_add_in_flight"),
        }
    }
}

async fn add_batch(engine: &Engine, requests: Vec<AddRequest>, m: &AddMetrics) -> Vec<AddResponse> {
    let received = Instant::now();
    let n = requests.len();
    m.in_flight.increment(n as f64);
    let mut responses = Vec::with_capacity(n);
    let mut items = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    for req in requests {
        let mut resp = AddResponse {
            request_id: req.request_id,
            ..Default::default()
        };
        match req.entry {
            None => {
                resp.status = StatusCode::BadRequest as i32;
                resp.message = "add without an entry".into();
            }
            Some(e) => {
                resp.ledger_id = e.ledger_id;
                resp.entry_id = e.entry_id;
                slots.push(responses.len());
                items.push(AddItem {
                    entry: Entry::from_proto(e),
                    master_key: req.master_key,
                    recovery: req.recovery,
                });
            }
        }
        responses.push(resp);
    }
    let sizes: Vec<usize> = items.iter().map(|i| i.entry.payload.len()).collect();
    let results = engine.add_batch(items).await;
    let (mut ok, mut ok_bytes) = (0, 0);
    for ((slot, result), size) in slots.into_iter().zip(results).zip(sizes) {
        let resp = &mut responses[slot];
        match result {
            Ok(()) => {
                resp.status = StatusCode::Ok as i32;
                ok += 1;
                ok_bytes += size;
            }
            Err(e) => {
                resp.status = e.status() as i32;
                resp.message = e.to_string();
            }
        }
    }
    let elapsed = received.elapsed().as_secs_f64();
    m.ok.record_many(elapsed, ok);
    m.failed.record_many(elapsed, n - ok);
    m.bk_ok.record_many(elapsed * 1000.0, ok);
    m.bk_failed.record_many(elapsed * 1000.0, n - ok);
    m.bytes.increment(ok_bytes as u64);
    m.in_flight.decrement(n as f64);
    responses
}
