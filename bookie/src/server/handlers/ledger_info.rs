//! `LedgerInfo`: fenced flag, LAC, last entry, size.

use common::LedgerId;
use proto::bookie::{LedgerInfoRequest, LedgerInfoResponse, StatusCode};

use crate::engine::Engine;

/// Serves one ledger-info request.
pub async fn handle(engine: &Engine, req: LedgerInfoRequest) -> LedgerInfoResponse {
    match engine.info(LedgerId(req.ledger_id)).await {
        Ok(i) => LedgerInfoResponse {
            status: StatusCode::Ok as i32,
            fenced: i.fenced,
            lac: i.lac,
            last_entry_id: i.last_entry.map_or(-1, |e| e.0 as i64),
            entries: i.entries,
            bytes: i.bytes,
            message: String::new(),
        },
        Err(e) => LedgerInfoResponse {
            status: e.status() as i32,
            message: e.to_string(),
            last_entry_id: -1,
            lac: -1,
            ..Default::default()
        },
    }
}
