//! `ReadEntry`: one entry (fencing first when asked), with the bookie's LAC.

use std::time::Instant;

use bytes::Bytes;
use common::{EntryId, LedgerId};
use proto::bookie::{ReadRequest, ReadResponse, StatusCode};

use crate::engine::Engine;

/// Serves one read.
pub async fn handle(engine: &Engine, req: ReadRequest) -> ReadResponse {
    let started = Instant::now();
    let fence = req.fence.then(|| Bytes::clone(&req.master_key));
    let resp = match engine
        .read(LedgerId(req.ledger_id), EntryId(req.entry_id), fence)
        .await
    {
        Ok((entry, lac)) => {
            metrics::counter!("bookie_read_bytes_total").increment(entry.payload.len() as u64);
            ReadResponse {
                status: StatusCode::Ok as i32,
                entry: Some(entry.to_proto()),
                lac,
                message: String::new(),
            }
        }
        Err(e) => ReadResponse {
            status: e.status() as i32,
            entry: None,
            lac: -1,
            message: e.to_string(),
        },
    };
    let elapsed = started.elapsed().as_secs_f64();
    metrics::histogram!("bookie_read_seconds").record(elapsed);
    let success = if resp.status == 0 { "true" } else { "false" };
    metrics::histogram!("bookkeeper_server_READ_ENTRY_REQUEST", "success" => success)
        .record(elapsed * 1000.0);
    resp
}
