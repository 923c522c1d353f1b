//! CLOSE_CONSUMER → SUCCESS: detach the consumer (its unacknowledged entries go to others)
//! and persist the cursor.

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::CommandCloseConsumer;

/// Handles CLOSE_CONSUMER.
pub async fn handle(conn: &mut Connection, c: CommandCloseConsumer) -> Result<()> {
    if let Some(cs) = conn.consumers.remove(&c.consumer_id) {
        cs.subscription.remove_consumer((conn.id, c.consumer_id));
        if let Err(e) = cs.subscription.flush().await {
            tracing::warn!(error = %e, "cursor flush on consumer close failed");
        }
        cs.topic.release(&cs.subscription.name).await;
    }
    conn.send(cmd::success(c.request_id)).await
}
