//! REDELIVER_UNACKNOWLEDGED_MESSAGES: send a consumer's unacknowledged entries again (the
//! given ones, or all), with their redelivery count raised; a newer `consumer_epoch` is taken
//! first, so what is dispatched from then on carries it.

use common::{EntryId, LedgerId, Position};

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::CommandRedeliverUnacknowledgedMessages;

/// Handles REDELIVER_UNACKNOWLEDGED_MESSAGES.
pub async fn handle(
    conn: &mut Connection,
    c: CommandRedeliverUnacknowledgedMessages,
) -> Result<()> {
    if let Some(cs) = conn.consumers.get(&c.consumer_id) {
        let ids: Vec<Position> = c
            .message_ids
            .iter()
            .map(|m| Position::new(LedgerId(m.ledger_id), EntryId(m.entry_id)))
            .collect();
        if let Some(epoch) = c.consumer_epoch {
            cs.subscription.raise_epoch((conn.id, c.consumer_id), epoch);
        }
        cs.subscription.redeliver((conn.id, c.consumer_id), &ids);
    }
    Ok(())
}
