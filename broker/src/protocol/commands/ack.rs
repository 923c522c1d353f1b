//! ACK: individual or cumulative, several message ids per command.

use common::{EntryId, LedgerId, Position};

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::CommandAck;
use crate::protocol::pb::command_ack::AckType;

/// Handles ACK.
pub async fn handle(conn: &mut Connection, c: CommandAck) -> Result<()> {
    let Some(cs) = conn.consumers.get(&c.consumer_id) else {
        return Ok(());
    };
    let positions: Vec<Position> = c
        .message_id
        .iter()
        .map(|m| Position::new(LedgerId(m.ledger_id), EntryId(m.entry_id)))
        .collect();
    cs.subscription
        .ack(&positions, c.ack_type == AckType::Cumulative as i32);
    Ok(())
}
