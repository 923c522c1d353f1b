//! `ListLedgers`: every ledger id this bookie holds.

use proto::bookie::ListLedgersResponse;

use crate::engine::Engine;

/// Serves one listing.
pub fn handle(engine: &Engine) -> ListLedgersResponse {
    ListLedgersResponse {
        ledger_ids: engine
            .storage()
            .ledger_ids()
            .into_iter()
            .map(|l| l.0)
            .collect(),
    }
}
