//! `ReadLac`: the bookie's LAC, long-polling when `timeout_ms` is set.

use std::time::Duration;

use common::LedgerId;
use proto::bookie::{ReadLacRequest, ReadLacResponse, StatusCode};

use crate::engine::Engine;

/// Serves one LAC read.
pub async fn handle(engine: &Engine, req: ReadLacRequest) -> ReadLacResponse {
    let timeout = Duration::from_millis(u64::from(req.timeout_ms));
    match engine
        .read_lac(LedgerId(req.ledger_id), req.previous_lac, timeout)
        .await
    {
        Ok(lac) => ReadLacResponse {
            status: StatusCode::Ok as i32,
            lac,
            message: String::new(),
        },
        Err(e) => ReadLacResponse {
            status: e.status() as i32,
            lac: -1,
            message: e.to_string(),
        },
    }
}
