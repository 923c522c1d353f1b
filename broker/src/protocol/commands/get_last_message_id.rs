//! GET_LAST_MESSAGE_ID: the topic's last durable position and the subscription's
//! mark-delete position.

use common::{EntryId, LedgerId, Position};

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandGetLastMessageId, CommandGetLastMessageIdResponse, ServerError,
};

/// Handles GET_LAST_MESSAGE_ID.
pub async fn handle(conn: &mut Connection, c: CommandGetLastMessageId) -> Result<()> {
    let Some(cs) = conn.consumers.get(&c.consumer_id) else {
        return conn
            .send(cmd::error(
                c.request_id,
                ServerError::ConsumerNotFound,
                "no such consumer".into(),
            ))
            .await;
    };
    // An empty topic answers -1:-1 style ids (ledger and entry at their maximum), as Pulsar does.
    let none = Position::new(LedgerId(u64::MAX), EntryId(u64::MAX));
    let last = cs.topic.ml.last_position().unwrap_or(none);
    let mark = cs.subscription.mark_delete().unwrap_or(none);
    conn.send(BaseCommand {
        r#type: Type::GetLastMessageIdResponse as i32,
        get_last_message_id_response: Some(CommandGetLastMessageIdResponse {
            last_message_id: cmd::message_id(last),
            request_id: c.request_id,
            consumer_mark_delete_position: Some(cmd::message_id(mark)),
        }),
        ..Default::default()
    })
    .await
}
