//! `BookieInfo`: id, state and disk space.

use proto::bookie::BookieInfoResponse;

use crate::disk;
use crate::server::Shared;

/// Serves one bookie-info request.
pub fn handle(shared: &Shared) -> BookieInfoResponse {
    let (free, total) = disk::space(shared.engine.storage().dir()).unwrap_or((0, 0));
    BookieInfoResponse {
        bookie_id: shared.bookie_id.to_string(),
        state: shared.state_name().into(),
        disk_free_bytes: free,
        disk_total_bytes: total,
        ledgers: shared.engine.storage().ledger_ids().len() as u64,
    }
}
