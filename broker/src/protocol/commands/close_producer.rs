//! CLOSE_PRODUCER → SUCCESS once the producer's sends are receipted (the receipt task
//! drains its queue before it ends).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::CommandCloseProducer;

/// Handles CLOSE_PRODUCER (also for an id that was never created: a client's retry path).
pub async fn handle(conn: &mut Connection, c: CommandCloseProducer) -> Result<()> {
    conn.producers.remove(&c.producer_id);
    conn.send(cmd::success(c.request_id)).await
}
