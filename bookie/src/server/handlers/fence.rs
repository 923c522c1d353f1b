//! `Fence`: durable before the reply.

use common::LedgerId;
use proto::bookie::{FenceRequest, FenceResponse, StatusCode};

use crate::engine::Engine;

/// Serves one fence.
pub async fn handle(engine: &Engine, req: FenceRequest) -> FenceResponse {
    match engine.fence(LedgerId(req.ledger_id), req.master_key).await {
        Ok(lac) => FenceResponse {
            status: StatusCode::Ok as i32,
            lac,
            message: String::new(),
        },
        Err(e) => FenceResponse {
            status: e.status() as i32,
            lac: -1,
            message: e.to_string(),
        },
    }
}
