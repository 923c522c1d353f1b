//! `DeleteLedger`: journaled, then the ledger's files are unlinked. Idempotent.

use common::LedgerId;
use proto::bookie::{DeleteLedgerRequest, DeleteLedgerResponse, StatusCode};

use crate::engine::Engine;

/// Serves one delete.
pub async fn handle(engine: &Engine, req: DeleteLedgerRequest) -> DeleteLedgerResponse {
    match engine.delete(LedgerId(req.ledger_id)).await {
        Ok(()) => DeleteLedgerResponse {
            status: StatusCode::Ok as i32,
            message: String::new(),
        },
        Err(e) => DeleteLedgerResponse {
            status: e.status() as i32,
            message: e.to_string(),
        },
    }
}
