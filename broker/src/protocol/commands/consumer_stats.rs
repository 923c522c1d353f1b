//! CONSUMER_STATS: the consumer's name, permits, unacknowledged messages, its subscription's
//! type and backlog (rates are not tracked per consumer: not sent).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandConsumerStats, CommandConsumerStatsResponse, ServerError,
};

/// Handles CONSUMER_STATS.
pub async fn handle(conn: &mut Connection, c: CommandConsumerStats) -> Result<()> {
    let resp = match conn.consumers.get(&c.consumer_id) {
        None => CommandConsumerStatsResponse {
            request_id: c.request_id,
            error_code: Some(ServerError::ConsumerNotFound as i32),
            error_message: Some(format!("no consumer {} on this connection", c.consumer_id)),
            ..Default::default()
        },
        Some(cs) => {
            let v = cs.subscription.view();
            let key = (conn.id, c.consumer_id);
            let mine = v.consumers.iter().find(|c| c.0 == key).cloned();
            let acked: u64 = v.acked_runs.iter().map(|(_, f, l)| l - f + 1).sum();
            let backlog = cs
                .topic
                .ml
                .entries_after(v.mark_delete)
                .saturating_sub(acked);
            CommandConsumerStatsResponse {
                request_id: c.request_id,
                consumer_name: mine.as_ref().map(|m| m.1.clone()),
                available_permits: mine.as_ref().map(|m| m.2.max(0) as u64),
                unacked_messages: mine.as_ref().map(|m| m.3),
                r#type: Some(crate::topic::stats::type_name(v.sub_type).to_owned()),
                msg_backlog: Some(backlog),
                ..Default::default()
            }
        }
    };
    conn.send(BaseCommand {
        r#type: Type::ConsumerStatsResponse as i32,
        consumer_stats_response: Some(resp),
        ..Default::default()
    })
    .await
}
