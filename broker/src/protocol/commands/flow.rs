//! FLOW: more permits (counted in messages) for a consumer.

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::CommandFlow;

/// Handles FLOW.
pub async fn handle(conn: &mut Connection, c: CommandFlow) -> Result<()> {
    if let Some(cs) = conn.consumers.get(&c.consumer_id) {
        cs.subscription
            .flow((conn.id, c.consumer_id), c.message_permits);
    }
    Ok(())
}
