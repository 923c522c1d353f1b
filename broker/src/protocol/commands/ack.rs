//! ACK: individual or cumulative, several message ids per command; ACK_RESPONSE when the
//! client asked for one (a request id: clients with ack receipts enabled wait for it).
//!
//! A batch-index ack (`ack_set` with bits still set: those messages of the batch are not
//! acknowledged yet) is recorded in the cursor (and persisted with it); the entry is
//! acknowledged once no bit is left, and until then it is delivered again with the remaining
//! bits as the MESSAGE's `ack_set`, so the client skips what was acknowledged.

use common::{EntryId, LedgerId, Position};

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::command_ack::AckType;
use crate::protocol::pb::{BaseCommand, CommandAck, CommandAckResponse, ServerError};

/// Whether an ack of a message id acknowledges its whole entry.
fn whole_entry(m: &crate::protocol::pb::MessageIdData) -> bool {
    m.ack_set.iter().all(|word| *word == 0)
}

/// Handles ACK.
pub async fn handle(conn: &mut Connection, c: CommandAck) -> Result<()> {
    let Some(cs) = conn.consumers.get(&c.consumer_id) else {
        return respond(conn, &c, Some(ServerError::ConsumerNotFound)).await;
    };
    let cumulative = c.ack_type == AckType::Cumulative as i32;
    let positions: Vec<Position> = c
        .message_id
        .iter()
        .filter(|m| whole_entry(m))
        .map(|m| Position::new(LedgerId(m.ledger_id), EntryId(m.entry_id)))
        .collect();
    cs.subscription.ack(&positions, cumulative);
    for m in c.message_id.iter().filter(|m| !whole_entry(m)) {
        let p = Position::new(LedgerId(m.ledger_id), EntryId(m.entry_id));
        cs.subscription.ack_partial(p, &m.ack_set, cumulative);
    }
    respond(conn, &c, None).await
}

pub(crate) async fn respond(
    conn: &Connection,
    c: &CommandAck,
    error: Option<ServerError>,
) -> Result<()> {
    let Some(request_id) = c.request_id else {
        return Ok(());
    };
    conn.send(BaseCommand {
        r#type: Type::AckResponse as i32,
        ack_response: Some(CommandAckResponse {
            consumer_id: c.consumer_id,
            error: error.map(|e| e as i32),
            message: error.map(|_| format!("no consumer {} on this connection", c.consumer_id)),
            request_id: Some(request_id),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
}
