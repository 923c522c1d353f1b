//! `AddEntries`: a bidirectional stream. Each request runs as its own task, so many adds are
//! in flight per stream and responses go back as each becomes durable (out of order; the
//! client matches request ids). A per-stream semaphore bounds in-flight adds; when it is
//! exhausted the stream stops being read, and HTTP/2 flow control pushes back on the client.

use std::sync::Arc;
use std::time::Instant;

use proto::bookie::{AddRequest, AddResponse, StatusCode};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::engine::Engine;
use crate::entry::Entry;

/// Adds in flight per stream.
const MAX_IN_FLIGHT: usize = 4096;

/// Starts serving one add stream.
pub fn handle(
    engine: Arc<Engine>,
    mut requests: Streaming<AddRequest>,
) -> ReceiverStream<Result<AddResponse, Status>> {
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            let req = match requests.message().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "add stream ended with an error");
                    break;
                }
            };
            let received = Instant::now();
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (engine, tx) = (engine.clone(), tx.clone());
            tokio::spawn(async move {
                let resp = add_one(&engine, req, received).await;
                drop(permit);
                let _ = tx.send(Ok(resp)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn add_one(engine: &Engine, req: AddRequest, received: Instant) -> AddResponse {
    metrics::gauge!("bookie_add_in_flight").increment(1.0);
    let mut resp = AddResponse {
        request_id: req.request_id,
        ..Default::default()
    };
    let result = match req.entry {
        None => Err(crate::BookieError::BadRequest(
            "add without an entry".into(),
        )),
        Some(e) => {
            resp.ledger_id = e.ledger_id;
            resp.entry_id = e.entry_id;
            let bytes = e.payload.len();
            let r = engine
                .add(Entry::from_proto(e), req.master_key, req.recovery)
                .await;
            if r.is_ok() {
                metrics::counter!("bookie_add_bytes_total").increment(bytes as u64);
            }
            r
        }
    };
    let status = match result {
        Ok(()) => StatusCode::Ok,
        Err(e) => {
            resp.message = e.to_string();
            e.status()
        }
    };
    resp.status = status as i32;
    metrics::gauge!("bookie_add_in_flight").decrement(1.0);
    metrics::histogram!("bookie_add_seconds", "status" => status.as_str_name())
        .record(received.elapsed().as_secs_f64());
    resp
}
