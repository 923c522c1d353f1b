//! CLOSE_PRODUCER → SUCCESS only after every receipt of the producer's earlier sends: the
//! answer goes through the producer's receipt queue, behind them.

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::commands::send::PendingReceipt;
use crate::protocol::pb::CommandCloseProducer;

/// Handles CLOSE_PRODUCER (also for an id that was never created: a client's retry path).
pub async fn handle(conn: &mut Connection, c: CommandCloseProducer) -> Result<()> {
    let removed = conn.producers.remove(&c.producer_id);
    if let Some(p) = &removed {
        p.topic.remove_producer((conn.id, c.producer_id));
    }
    match removed {
        Some(p)
            if p.receipts
                .send(PendingReceipt::Close(c.request_id))
                .await
                .is_ok() =>
        {
            Ok(())
        }
        _ => conn.send(cmd::success(c.request_id)).await,
    }
}
